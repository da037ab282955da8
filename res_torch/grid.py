"""The step grid of a sampling run: validated noise levels and where each step starts and ends.

Step ``i`` of a run over ``sigmas = (sigma_0 > ... > sigma_N >= 0)``:

1. EDM churn (optional): ``sigma_hat_i = sigma_i (1 + gamma_i)``, add noise of standard deviation
   ``s_noise sqrt(sigma_hat_i^2 - sigma_i^2)``;
2. the deterministic (ODE) step from ``sigma_hat_i`` to ``sigma_to_i``: ``sigma_{i+1}`` or, with
   ``eta > 0``, the ancestral ``sigma_down`` (then add noise ``s_noise sigma_up``).

In ``lambda = -log sigma`` the ODE step has length ``h_i = log(sigma_hat_i / sigma_to_i)``; a step
to ``sigma_to = 0`` (``h = inf``) is a *denoising step*: the result is the denoiser output.
Everything here is computed on the host in float64, once, before the sampling loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from res_torch.noise import ancestral_step, churn_gamma

__all__ = ["SigmasError", "StepGrid", "make_grid", "validate_sigmas"]


class SigmasError(ValueError):
    """The noise levels are not a valid sampling schedule."""


def validate_sigmas(sigmas: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``sigmas`` as a float64 CPU tensor, checked: 1-d, >= 2 entries, finite, strictly
    decreasing, positive except possibly the last entry, which may be 0."""
    if torch.is_tensor(sigmas):
        if sigmas.is_complex() or not (sigmas.is_floating_point() or sigmas.dtype.is_signed):
            raise SigmasError(f"sigmas must be a real tensor, got dtype {sigmas.dtype}")
        values = sigmas.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            values = torch.as_tensor(sigmas, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SigmasError(f"sigmas must be a 1-d tensor of noise levels ({exc})") from None
    if values.ndim != 1 or values.numel() < 2:
        raise SigmasError(f"sigmas must be 1-d with at least 2 entries, got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise SigmasError(f"sigmas must be finite, got {values.tolist()}")
    if (values[:-1] <= 0).any() or values[-1] < 0:
        raise SigmasError("sigmas must be positive (only the last entry may be 0)")
    if (values[1:] >= values[:-1]).any():
        raise SigmasError(f"sigmas must be strictly decreasing, got {values.tolist()}")
    return values


@dataclass(frozen=True)
class StepGrid:
    """Per-step noise levels of a run (float64 CPU tensors of shape ``(N,)``).

    ``sigma``: schedule value at the start; ``sigma_hat``: after churn, where the denoiser is first
    evaluated; ``sigma_to``: end of the ODE step; ``churn_noise`` and ``step_noise``: standard
    deviations of the noise added before (churn) and after (ancestral) the ODE step.
    """

    sigma: torch.Tensor
    sigma_hat: torch.Tensor
    sigma_next: torch.Tensor
    sigma_to: torch.Tensor
    churn_noise: torch.Tensor
    step_noise: torch.Tensor

    @property
    def steps(self) -> int:
        return self.sigma.numel()

    @property
    def h(self) -> torch.Tensor:
        """``log(sigma_hat / sigma_to)``; ``inf`` for denoising steps."""
        return torch.log(self.sigma_hat) - torch.log(self.sigma_to)

    @property
    def denoising(self) -> list[bool]:
        """Which steps end at ``sigma = 0`` (their result is the denoiser output)."""
        return (self.sigma_to == 0).tolist()

    @property
    def lambda_hat(self) -> torch.Tensor:
        """``-log sigma_hat``: the ``lambda`` of each step's first denoiser evaluation."""
        return -torch.log(self.sigma_hat)

    @property
    def stochastic(self) -> bool:
        return bool((self.churn_noise > 0).any() or (self.step_noise > 0).any())


def make_grid(
    sigmas: torch.Tensor | Sequence[float],
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    eta: float = 0.0,
) -> StepGrid:
    """The :class:`StepGrid` of ``sigmas`` with EDM churn (``s_churn``, ``s_tmin``, ``s_tmax``,
    ``s_noise``; see :func:`res_torch.noise.churn_gamma`) and/or ancestral noise (``eta``; see
    :func:`res_torch.noise.ancestral_step`)."""
    values = validate_sigmas(sigmas)
    if not math.isfinite(s_noise) or s_noise < 0:
        raise ValueError(f"s_noise must be finite and >= 0, got {s_noise}")
    sigma, sigma_next = values[:-1], values[1:]
    gamma = churn_gamma(values, s_churn, s_tmin, s_tmax)
    sigma_hat = sigma * (1 + gamma)
    churn_noise = s_noise * (sigma_hat**2 - sigma**2).clamp_min(0).sqrt()
    sigma_to, sigma_up = ancestral_step(sigma_hat, sigma_next, eta)
    if eta == 0:
        sigma_to = sigma_next
    return StepGrid(
        sigma=sigma,
        sigma_hat=sigma_hat,
        sigma_next=sigma_next,
        sigma_to=sigma_to,
        churn_noise=churn_noise,
        step_noise=s_noise * sigma_up,
    )
