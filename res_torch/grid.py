"""The step grid of a sampling run: validated noise levels and where each step starts and ends.

Step ``i`` of a run over ``sigmas = (sigma_0 > ... > sigma_N >= 0)``:

1. EDM churn (optional): ``sigma_hat_i = sigma_i (1 + gamma_i)``, add noise of standard deviation
   ``s_noise sqrt(sigma_hat_i^2 - sigma_i^2)``;
2. the deterministic step from ``sigma_hat_i`` to ``sigma_to_i``, then noise ``step_noise_i``:

   * ODE (``eta = 0``): to ``sigma_{i+1}``, no noise; ``h = log(sigma_hat / sigma_{i+1})``.
   * ``noise_type="ancestral"`` (k-diffusion's ``get_ancestral_step``): the ODE step to
     ``sigma_down``, then noise ``s_noise sigma_up``; ``h = log(sigma_hat / sigma_down)``.
   * ``noise_type="sde"`` (SDE-DPM-Solver++, Lu et al. 2022, eq. (9); k-diffusion's
     ``dpmpp_2m_sde``): the reverse SDE ``dx = [-(1+eta) x + (1+eta) D] dlambda + noise`` has the
     same exponential form in ``tau = (1+eta) lambda``, so any tableau applies with the coefficient
     step ``h = (1+eta) log(sigma_hat / sigma_{i+1})``, stages at the real ``lambda``; then noise
     ``s_noise sigma_{i+1} sqrt(1 - e^{-2 eta log(sigma_hat / sigma_{i+1})})``.

``h`` is the step length the tableau's coefficients are evaluated at and ``lambda_step`` the
step in ``lambda = -log sigma`` (stage ``i`` is evaluated at ``sigma_hat e^{-c_i lambda_step}``,
history nodes are ratios of ``lambda`` differences to ``lambda_step``); they differ only for
``"sde"``. A step to ``sigma_to = 0`` (``h = inf``) is a *denoising step*: the result is the
denoiser output.
Everything here is computed on the host in float64, once, before the sampling loop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from res_torch.checks import nonnegative
from res_torch.errors import NoiseError, SigmasError
from res_torch.noise import ancestral_step, churn_gamma, sde_step_noise

__all__ = ["NOISE_TYPES", "SIGMA_MAX", "SigmasError", "StepGrid", "make_grid", "validate_sigmas"]

NOISE_TYPES = ("ancestral", "sde")


SIGMA_MAX = 1e150
"""The largest noise level a schedule may hold, and ``1/SIGMA_MAX`` the smallest positive one:
the coefficients use ``sigma^2`` (VP conversions, noise-form steps) in float64, whose range ends
at about 1e±308."""


def validate_sigmas(
    sigmas: torch.Tensor | Sequence[float], *, min_entries: int = 2
) -> torch.Tensor:
    """``sigmas`` as a float64 CPU tensor, checked: 1-d, >= ``min_entries`` entries (1: a
    schedule of one level, a run of no step; never fewer), finite, within :data:`SIGMA_MAX`,
    strictly decreasing, positive except possibly the last entry, which may be 0. A repeated
    value (a zero-length step) is refused rather than skipped: every step of the schedule is a
    step of the run (callback index, NFE count, noise draws); nearly repeated values are
    accepted (the multistep methods drop history values that are too close,
    :data:`res_torch.coefficients.NODE_SPACING_MIN`)."""
    if torch.is_tensor(sigmas):
        if sigmas.layout != torch.strided or sigmas.is_quantized or sigmas.is_nested:
            kind = "sparse" if sigmas.layout != torch.strided else "quantized or nested"
            raise SigmasError(f"sigmas must be a plain dense tensor, got a {kind} one")
        if sigmas.is_complex() or not (sigmas.is_floating_point() or sigmas.dtype.is_signed):
            raise SigmasError(f"sigmas must be a real tensor, got dtype {sigmas.dtype}")
        if sigmas.device.type == "meta":
            raise SigmasError("sigmas are on the meta device (no values); pass them on the CPU")
        values = sigmas.detach().to(device="cpu", dtype=torch.float64)
    else:
        if getattr(getattr(sigmas, "dtype", None), "kind", None) == "b" or (
            isinstance(sigmas, Sequence) and any(isinstance(v, bool) for v in sigmas)
        ):  # refused as a bool tensor is (NumPy's bool arrays have dtype.kind "b")
            raise SigmasError("sigmas must be real noise levels, got booleans")
        try:
            values = torch.as_tensor(sigmas, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SigmasError(f"sigmas must be a 1-d tensor of noise levels ({exc})") from None
    min_entries = max(min_entries, 1)  # an empty schedule is never one
    if values.ndim != 1 or values.numel() < min_entries:
        raise SigmasError(
            f"sigmas must be 1-d with at least {min_entries} noise level(s), got shape "
            f"{tuple(values.shape)}"
        )
    listed = values.tolist()  # checked on the host: a few microseconds, no kernel launches
    bad = [v for v in listed if not math.isfinite(v)]
    if bad:
        raise SigmasError(
            f"sigmas must be finite; {len(bad)} of {len(listed)} are not, the first: {bad[:3]}"
        )
    positive = [v for v in listed if v > 0]
    if positive and not 1 / SIGMA_MAX <= min(positive) <= max(positive) <= SIGMA_MAX:
        raise SigmasError(
            f"positive sigmas must lie in [{1 / SIGMA_MAX:g}, {SIGMA_MAX:g}] (their squares "
            f"leave float64's range beyond), got {min(positive):g} .. {max(positive):g}"
        )
    if any(v <= 0 for v in listed[:-1]) or listed[-1] < 0:
        raise SigmasError("sigmas must be positive (only the last entry may be 0)")
    for i, (earlier, later) in enumerate(zip(listed, listed[1:], strict=False)):
        if later == earlier:
            raise SigmasError(
                f"sigmas[{i}] = sigmas[{i + 1}] = {earlier}: a zero-length step is refused "
                "(drop repeated values, e.g. with torch.unique_consecutive)"
            )
        if later > earlier:
            raise SigmasError(
                f"sigmas must be strictly decreasing, got sigmas[{i}] = {earlier} < "
                f"sigmas[{i + 1}] = {later}"
            )
    return values


@dataclass(frozen=True)
class StepGrid:
    """Per-step noise levels of a run (float64 CPU tensors of shape ``(N,)``).

    ``sigma``: schedule value at the start; ``sigma_hat``: after churn, where the denoiser is first
    evaluated; ``sigma_to``: end of the deterministic step; ``churn_noise`` and ``step_noise``:
    standard deviations of the noise added before (churn) and after (ancestral/SDE) the step;
    ``h`` and ``lambda_step``: see the module docstring (``inf`` for denoising steps).
    """

    sigma: torch.Tensor
    sigma_hat: torch.Tensor
    sigma_next: torch.Tensor
    sigma_to: torch.Tensor
    churn_noise: torch.Tensor
    step_noise: torch.Tensor
    h: torch.Tensor
    lambda_step: torch.Tensor

    @property
    def steps(self) -> int:
        return self.sigma.numel()

    @functools.cached_property
    def denoising(self) -> list[bool]:
        """Which steps end at ``sigma = 0`` (their result is the denoiser output)."""
        return (self.sigma_to == 0).tolist()

    @property
    def lambda_hat(self) -> torch.Tensor:
        """``-log sigma_hat``: the ``lambda`` of each step's first denoiser evaluation."""
        return -torch.log(self.sigma_hat)

    @functools.cached_property
    def stochastic(self) -> bool:
        return bool((self.churn_noise > 0).any() or (self.step_noise > 0).any())

    @functools.cached_property
    def ode(self) -> bool:
        """Whether every step is the probability-flow ODE's: no churn (``sigma_hat = sigma``) and
        no per-step noise form (``eta = 0``: ``sigma_to = sigma_next``, ``h = lambda_step``),
        whatever ``s_noise`` (``s_noise = 0`` draws no noise but keeps ``eta``'s steps)."""
        return (
            torch.equal(self.sigma_hat, self.sigma)
            and torch.equal(self.sigma_to, self.sigma_next)
            and torch.equal(self.h, self.lambda_step)
        )


def make_grid(
    sigmas: torch.Tensor | Sequence[float],
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    eta: float = 0.0,
    noise_type: str = "ancestral",
) -> StepGrid:
    """The :class:`StepGrid` of ``sigmas`` with EDM churn (``s_churn``, ``s_tmin``, ``s_tmax``,
    ``s_noise``; see :func:`res_torch.noise.churn_gamma`) and/or per-step noise (``eta`` with
    ``noise_type`` ``"ancestral"`` or ``"sde"``; see the module docstring)."""
    values = validate_sigmas(sigmas)
    s_noise = nonnegative("s_noise", s_noise, NoiseError)
    if noise_type not in NOISE_TYPES:
        raise NoiseError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
    sigma, sigma_next = values[:-1], values[1:]
    gamma = churn_gamma(values, s_churn, s_tmin, s_tmax)
    sigma_hat = sigma * (1 + gamma)
    churn_noise = s_noise * (sigma_hat**2 - sigma**2).clamp_min(0).sqrt()
    sigma_down, sigma_up = ancestral_step(sigma_hat, sigma_next, eta)
    sigma_to = sigma_next if eta == 0 or noise_type == "sde" else sigma_down
    # log(sigma_hat/sigma_to) to relative accuracy also for short steps (a difference of logs
    # carries an absolute error of eps |log sigma|); inf for a denoising step (sigma_to = 0)
    lambda_step = torch.log1p((sigma_hat - sigma_to) / sigma_to)
    if noise_type == "sde":
        h = (1 + eta) * lambda_step
        step_noise = sde_step_noise(lambda_step, sigma_next, eta, s_noise)
    else:
        h = lambda_step
        step_noise = s_noise * sigma_up
    return StepGrid(
        sigma=sigma,
        sigma_hat=sigma_hat,
        sigma_next=sigma_next,
        sigma_to=sigma_to,
        churn_noise=churn_noise,
        step_noise=step_noise,
        h=h,
        lambda_step=lambda_step,
    )
