"""External samplers driven on an EDM denoiser: diffusers' UniPC (Zhao et al. 2023).

``diffusers.UniPCMultistepScheduler`` works in the variance-preserving (VP) parameterisation
``x_vp = alpha x_0 + s eps`` with ``alpha = 1/sqrt(1 + sigma^2)``, ``s = sigma alpha`` and its
``sigmas`` are the variance-exploding noise levels ``sigma = s/alpha``. An EDM denoiser
``D(x_ve, sigma)`` (``x_ve = x_0 + sigma eps``) is therefore a data ("sample") prediction of the
scheduler's model once its input is rescaled, ``x_ve = x_vp / alpha = x_vp sqrt(1 + sigma^2)``
(MATH.md section 1: ``x_vp = alpha x_ve``). :func:`sample_unipc` replaces the scheduler's own
noise levels by the caller's grid ``sigmas`` (the same grid our samplers get, ending in 0), so
UniPC integrates exactly the probability-flow ODE of the other methods. With ``n + 1`` entries in
``sigmas`` it evaluates the denoiser ``n`` times: once per step, the corrector of step ``i``
reusing the evaluation that starts step ``i + 1``, and the last step (to ``sigma = 0``, first order
because of ``lower_order_final``) returning the denoiser output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["PeerSamplerError", "sample_unipc"]

Denoiser = Callable[..., torch.Tensor]


class PeerSamplerError(ValueError):
    """An external sampler was asked for something it cannot do."""


@torch.no_grad()
def sample_unipc(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    disable: bool | None = None,
    order: int = 2,
    solver_type: str = "bh2",
) -> torch.Tensor:
    """Sample with diffusers' ``UniPCMultistepScheduler`` (UniPC-``order``, B(h) variant).

    ``model(x, sigma_batch) -> denoised`` is an EDM denoiser, ``x`` the starting point at
    ``sigmas[0]`` (variance-exploding scale, e.g. ``sigmas[0] * noise``), ``sigmas`` a decreasing
    grid ending in 0. Returns the sample at ``sigma = 0``. Same signature as k-diffusion's
    samplers; ``callback`` receives ``{"x", "i", "sigma", "denoised"}`` in the VE scale.
    """
    from diffusers import UniPCMultistepScheduler

    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise PeerSamplerError(
            f"sigmas must be a 1-D grid of >= 2 levels, got shape {tuple(sigmas.shape)}"
        )
    if float(sigmas[-1]) != 0.0:
        raise PeerSamplerError(
            f"sigmas must end in 0 (final denoising step), got {float(sigmas[-1])}"
        )
    if not bool((sigmas[:-1] > sigmas[1:]).all()):
        raise PeerSamplerError("sigmas must be strictly decreasing")
    if order not in (1, 2, 3):
        raise PeerSamplerError(f"UniPC order must be 1, 2 or 3, got {order}")
    extra_args = {} if extra_args is None else extra_args
    n_steps = sigmas.numel() - 1
    scheduler = UniPCMultistepScheduler(
        solver_order=order,
        prediction_type="sample",
        solver_type=solver_type,
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    scheduler.set_timesteps(n_steps)
    # Our grid replaces diffusers' discrete one; timesteps only index the steps.
    scheduler.sigmas = sigmas.detach().to(device="cpu", dtype=torch.float64)
    scheduler.timesteps = torch.arange(n_steps - 1, -1, -1, device=x.device)
    grid = sigmas.to(x)
    alpha0 = (1 + grid[0] ** 2).rsqrt()
    x_vp = x * alpha0
    ones = x.new_ones([x.shape[0]])
    for i in tqdm(range(n_steps), disable=disable, desc="unipc", leave=False):
        sigma = grid[i]
        x_ve = x_vp * (1 + sigma**2).sqrt()
        denoised = model(x_ve, sigma * ones, **extra_args)
        if callback is not None:
            callback({"x": x_ve, "i": i, "sigma": sigma, "denoised": denoised})
        x_vp = scheduler.step(denoised, scheduler.timesteps[i], x_vp).prev_sample
    return x_vp  # alpha = 1 at sigma = 0
