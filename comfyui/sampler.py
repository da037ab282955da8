"""The k-diffusion-style sampler functions that ComfyUI's KSampler path calls.

``comfy.samplers.KSAMPLER`` calls ``fn(model_k, noise, sigmas, extra_args=extra_args,
callback=k_callback, disable=disable_pbar, **extra_options)``; the function for a method runs
``res_torch.sample(..., method=method)``, stepping flow (CONST) models in their VE form
(:mod:`.flow`) and every other model as it is (ComfyUI's ``sigmas`` are VE noise levels for
eps, v and EDM models). ``extra_args`` (``model_options``, ``seed``, ``denoise_mask``) reach the
model unchanged; seeding from ``extra_args["seed"]`` and ``len(sigmas) == 1`` are res_torch's.
Like ComfyUI's own ``sample_*`` functions it runs under ``torch.no_grad()``: a caller outside
ComfyUI's ``inference_mode`` (a script, another node pack's thread) would otherwise keep every
step's activations (res_torch records autograd when it is on).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

import res_torch

from .flow import flow_times, is_flow, model_sampling_of, sample_flow
from .methods import menu_name

__all__ = ["comfy_sampler", "steps_in_flow_time"]


def steps_in_flow_time(method: str, options: Mapping[str, Any]) -> bool:
    """Whether a flow model runs in its own time ``t`` rather than the VE form: Euler and Heun
    (``sigma_rk``: steps in the ODE's own variable) without noise, as ComfyUI's ``euler`` and
    ``heun`` run flow models. Euler is the same step in either form; Heun's trapezoid is not,
    and in the VE form its first step starts at ``sigma = 3e4`` (the offset first level,
    :mod:`.flow`), where it misses by orders of magnitude at a few steps. With noise (the VE
    form's) Heun on a flow model is refused. ``auto`` picks a multistep res method
    (:func:`res_torch.recommend`), which runs in the VE form."""
    if method == "auto" or res_torch.method_of(method).family != "sigma_rk":
        return False
    noisy = any(_adds_noise(options.get(name)) for name in ("eta", "s_churn"))
    if noisy and method == "heun":
        raise res_torch.NoiseError(
            "heun on a flow model runs without noise (eta = s_churn = 0), as ComfyUI's heun; "
            "use a res method for stochastic sampling"
        )
    return not noisy


def _adds_noise(value: Any) -> bool:
    """Whether an ``eta``/``s_churn`` value asks for noise: a positive number. Anything else (0,
    ``None``, or a value res_torch refuses: negative, NaN, not a number) runs the noise-free path,
    where res_torch names the bad value instead of heun's refusal of noise."""
    try:
        return float(value) > 0
    except (TypeError, ValueError, RuntimeError):
        return False


@functools.cache
def comfy_sampler(method: str) -> Callable[..., torch.Tensor]:
    """The ``sample_<menu name>`` function of ``method`` (one object per method)."""

    @torch.no_grad()
    def sampler(
        model: Callable[..., torch.Tensor],
        x: torch.Tensor,
        sigmas: torch.Tensor,
        extra_args: Mapping[str, Any] | None = None,
        callback: Callable[[dict], Any] | None = None,
        disable: bool | None = None,
        **options: Any,
    ) -> torch.Tensor:
        run = functools.partial(res_torch.sample, method=method)
        model_sampling = model_sampling_of(model)
        # a flow model with a step to take (its times checked first: a 0-d tensor has no len)
        stepping = is_flow(model_sampling) and flow_times(sigmas, min_entries=1).numel() > 1
        if stepping and not steps_in_flow_time(method, options):
            return sample_flow(
                run, model, x, sigmas, model_sampling, extra_args, callback, disable, **options
            )
        return run(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                   **options)  # fmt: skip

    sampler.__name__ = sampler.__qualname__ = f"sample_{menu_name(method)}"
    sampler.__doc__ = f"res_torch {method!r} for ComfyUI (see :mod:`res_torch.samplers`)."
    return sampler
