"""The reference loop (res_torch.reference) is the oracle of the fast in-place loop: every
shipped method, with and without churn/eta, agrees to 1e-12 in float64."""

from __future__ import annotations

import pytest
import torch

from res_torch import SAMPLERS, available_tableaux, get_sigmas_karras, method_of, sample
from res_torch.coefficients import coefficients
from res_torch.grid import make_grid
from res_torch.noise import default_noise_sampler
from res_torch.reference import sample_reference

METHODS = sorted(set(SAMPLERS) | set(available_tableaux()))
OPTIONS = [
    {},
    {"s_churn": 3.0, "s_tmin": 0.05, "s_tmax": 50.0},
    {"eta": 0.8, "noise_type": "ancestral"},
    {"eta": 0.6, "noise_type": "sde"},
    {"eta": 0.5, "s_churn": 2.0, "s_noise": 0.9},
]


def nonlinear_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A smooth denoiser that is not affine in ``x`` (so stage values really differ)."""
    s = sigma.view(-1, *([1] * (x.ndim - 1)))
    return 0.3 + 0.49 / (0.49 + s**2) * (x - 0.3) + 0.1 * torch.tanh(x / (1 + s))


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "ode")
@pytest.mark.parametrize("method", METHODS)
def test_fast_loop_equals_the_reference_loop(method, options):
    described = method_of(method)
    noise_type = options.get("noise_type", described.default_noise_type)
    if noise_type not in described.noise_types:
        pytest.skip(f"{method} has no {noise_type} form")
    sigmas = get_sigmas_karras(9, 0.01, 60.0)
    x = 60 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fast = sample(
        nonlinear_denoiser, x, sigmas, method=method, disable=True,
        generator=torch.Generator().manual_seed(1), **options,
    )  # fmt: skip
    grid = make_grid(sigmas, **{**options, "noise_type": noise_type})
    table = coefficients(described, grid)
    noise = default_noise_sampler(x, torch.Generator().manual_seed(1))
    expected = sample_reference(nonlinear_denoiser, x, grid, table, noise)
    scale = expected.abs().max()
    assert (fast - expected).abs().max() <= 1e-12 * scale
    # and the run really is stochastic when asked to be, deterministic otherwise
    again = sample(
        nonlinear_denoiser, x, sigmas, method=method, disable=True,
        generator=torch.Generator().manual_seed(2), **options,
    )  # fmt: skip
    assert torch.equal(again, fast) == (not grid.stochastic)


@pytest.mark.parametrize("method", ["res_2s", "res_3m", "heun", "ipndm", "deis"])
def test_reference_loop_makes_the_nfe_count_of_model_calls(method, counting):
    from res_torch import nfe

    sigmas = get_sigmas_karras(7, 0.01, 60.0)
    model = counting(nonlinear_denoiser)
    x = torch.ones(2, 3, dtype=torch.float64)
    sample_reference(model, x, make_grid(sigmas), coefficients(method, make_grid(sigmas)))
    assert model.calls == nfe(method, sigmas)
