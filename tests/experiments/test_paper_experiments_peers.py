"""diffusers' UniPC driven on an EDM denoiser (experiments.diffusion.peers) converges to the
exact ODE
solution of a Gaussian data distribution, whose probability-flow ODE is solvable in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.diffusion.peers import PeerSamplerError, sample_unipc

MU, S = 0.3, 0.5
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact ``D(x, sigma) = mu + s^2/(s^2 + sigma^2) (x - mu)`` for ``x_0 ~ N(mu, s^2 I)``."""
    sigma = sigma.view(-1, *([1] * (x.ndim - 1)))
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def exact_sample(x_start: torch.Tensor) -> torch.Tensor:
    """``x(sigma) - mu`` scales as ``sqrt(s^2 + sigma^2)``; then the step ``D(x, sigma_min)``."""
    x_min = MU + math.sqrt(S**2 + SIGMA_MIN**2) / math.sqrt(S**2 + SIGMA_MAX**2) * (x_start - MU)
    return gaussian_denoiser(x_min, torch.full((x_start.shape[0],), SIGMA_MIN, dtype=x_start.dtype))


def karras(n: int, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = SIGMA_MIN ** (1 / rho), SIGMA_MAX ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


@pytest.fixture
def start() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return SIGMA_MAX * torch.randn(32, 4, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("order", [2, 3])
def test_unipc_converges_to_exact_solution(start: torch.Tensor, order: int) -> None:
    exact = exact_sample(start)
    errors = [
        float(
            (sample_unipc(gaussian_denoiser, start, karras(n), order=order, disable=True) - exact)
            .norm(dim=1)
            .mean()
        )
        for n in (20, 40, 80)
    ]
    assert errors[-1] < 2e-3
    # Error falls at least like second order when the step count doubles (measured ~3rd order).
    assert errors[1] < errors[0] / 4 and errors[2] < errors[1] / 4


def test_unipc_counts_one_evaluation_per_step(start: torch.Tensor) -> None:
    calls = []

    def counting(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(float(sigma[0]))
        return gaussian_denoiser(x, sigma)

    sample_unipc(counting, start, karras(9), disable=True)
    assert len(calls) == 9
    assert calls[0] == pytest.approx(SIGMA_MAX) and calls[-1] == pytest.approx(SIGMA_MIN)


@pytest.mark.parametrize(
    ("sigmas", "order", "message"),
    [
        (torch.tensor([80.0, 1.0]), 2, "end in 0"),
        (torch.tensor([1.0, 80.0, 0.0]), 2, "decreasing"),
        (torch.tensor([80.0]), 2, ">= 2 levels"),
        (torch.tensor([80.0, 1.0, 0.0]), 4, "order"),
    ],
)
def test_unipc_rejects_bad_input(sigmas: torch.Tensor, order: int, message: str) -> None:
    with pytest.raises(PeerSamplerError, match=message):
        sample_unipc(gaussian_denoiser, torch.zeros(2, 3), sigmas, order=order)
