"""The k-diffusion-style sampler functions that ComfyUI's KSampler path calls.

``comfy.samplers.KSAMPLER`` calls ``fn(model_k, noise, sigmas, extra_args=extra_args,
callback=k_callback, disable=disable_pbar, **extra_options)``; the function for a method runs
``res_torch.sample(..., method=method)``, stepping flow (CONST) models in their VE form
(:mod:`.flow`) and every other model as it is (ComfyUI's ``sigmas`` are VE noise levels for
eps, v and EDM models). ``extra_args`` (``model_options``, ``seed``, ``denoise_mask``) reach the
model unchanged; seeding from ``extra_args["seed"]`` and ``len(sigmas) == 1`` are res_torch's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

import res_torch

from .flow import is_flow, model_sampling_of, sample_flow
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
    noisy = any(options.get(name, 0) not in (0, 0.0, None) for name in ("eta", "s_churn"))
    if noisy and method == "heun":
        raise res_torch.NoiseError(
            "heun on a flow model runs without noise (eta = s_churn = 0), as ComfyUI's heun; "
            "use a res method for stochastic sampling"
        )
    return not noisy


@functools.cache
def comfy_sampler(method: str) -> Callable[..., torch.Tensor]:
    """The ``sample_<menu name>`` function of ``method`` (one object per method)."""

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
        if is_flow(model_sampling) and len(sigmas) > 1 and not steps_in_flow_time(method, options):
            return sample_flow(
                run, model, x, sigmas, model_sampling, extra_args, callback, disable, **options
            )
        return run(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                   **options)  # fmt: skip

    sampler.__name__ = sampler.__qualname__ = f"sample_{menu_name(method)}"
    sampler.__doc__ = f"res_torch {method!r} for ComfyUI (see :mod:`res_torch.samplers`)."
    return sampler
