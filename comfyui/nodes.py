"""The SamplerCustom-style node: a res_torch method with its parameters, as a ``SAMPLER``.

Its output plugs into SamplerCustom / SamplerCustomAdvanced like the stock sampler nodes:
``comfy.samplers.KSAMPLER(fn, extra_options=options)``, where ``fn`` is the method's function
(:func:`.sampler.comfy_sampler`) and ``options`` are the res_torch keywords: the method's free
parameters (``c2``, ``c3`` where the tableau has them), ``eta`` with ``noise_type``
(``"ancestral"`` or ``"sde"``; the node's ``"default"`` passes none: the method's own),
``s_noise`` and EDM churn ``s_churn``, ``s_tmin``, ``s_tmax``
(noise levels in the model's own sigma: ``t`` for flow models).
"""

from __future__ import annotations

from typing import Any

import torch

import res_torch
from res_torch import ResError, load_tableau
from res_torch.tableau import parameter_number

from .methods import free_parameters, methods
from .sampler import comfy_sampler

__all__ = ["NodeParameterError", "ResTorchSampler", "check_options", "sampler_options"]

PARAMETER_DEFAULTS = {"c2": 0.5, "c3": 1.0}
"""The node's ``c2``/``c3`` widgets and their defaults (those of RES-2S, DPM-Solver++(2S),
RES-3S)."""

NOISE_TYPES = ["default", "ancestral", "sde"]
"""The node's ``noise_type`` choices; ``default`` is the method's own
(:attr:`res_torch.methods.Method.default_noise_type`: ``sde`` for the exponential multistep
methods, ``ancestral`` for the others)."""


class NodeParameterError(ResError):
    """A node widget set to a value the chosen method has no use for."""


def sampler_options(method: str, **values: Any) -> dict[str, Any]:
    """The res_torch keywords of a node run: the method's free parameters from ``values``
    (checked against their intervals) and every other value as given.

    A ``c2``/``c3`` the method does not have must be left at its default: an error rather than
    a silently ignored setting.
    """
    free = {p.name: p for p in free_parameters(method)}
    options = {}
    for name, value in values.items():
        if name in free:
            options[name] = parameter_number(name, value)
            free[name].check(options[name])
        elif name in PARAMETER_DEFAULTS:
            if parameter_number(name, value) != PARAMETER_DEFAULTS[name]:
                takers = [m for m in methods() if name in {p.name for p in free_parameters(m)}]
                raise NodeParameterError(
                    f"{method} has no parameter {name}; leave {name} at "
                    f"{PARAMETER_DEFAULTS[name]} or choose one of {', '.join(takers)}"
                )
        else:
            options[name] = value
    return options


C2_MIN = float(next(p for p in load_tableau("res_2s").parameters if p.name == "c2").lower())
"""The smallest ``c2`` the shipped tableaux accept (docs/MATH.md section 4: below it the stage
weights, of size ``1/c2``, amplify rounding)."""


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise the error a run with ``options`` would raise, when the node runs rather than when
    sampling starts: ``method`` on a one-number problem with a zero denoiser (three steps, no
    network; its own generator, so the global RNG is untouched)."""
    zero = torch.zeros(1, 1)
    res_torch.sample(
        lambda x, sigma, **_: torch.zeros_like(x), zero, torch.tensor([2.0, 1.0, 0.5, 0.0]),
        disable=True, method=method, generator=torch.Generator().manual_seed(0), **options,
    )  # fmt: skip


def _float(default: float, low: float, high: float, tooltip: str) -> tuple[str, dict]:
    return ("FLOAT", {"default": default, "min": low, "max": high, "step": 0.01,
                      "tooltip": tooltip})  # fmt: skip


class ResTorchSampler:
    """A res_torch sampler with its parameters, for SamplerCustom (ComfyUI's ``SAMPLER``)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "method": (methods(), {"default": "res_2s", "tooltip": "res_torch method"}),
                "eta": _float(0.0, 0.0, 100.0, "per-step noise; 0 = the ODE sampler"),
                "noise_type": (NOISE_TYPES, {"default": "default", "tooltip": (
                    "how eta adds noise: ancestral (k-diffusion) or sde (SDE-DPM-Solver++ "
                    "form); default: sde for res_2m, res_3m, dpmpp_2m, dpmpp_3m, ancestral "
                    "for the others")}),
                "s_noise": _float(1.0, 0.0, 100.0, "scale of the added noise (eta and churn)"),
                "c2": _float(0.5, C2_MIN, 1.0, "second node c2 (res_2s, dpmpp_2s, res_3s)"),
                "c3": _float(1.0, 0.0, 1.0, "third node c3 (res_3s)"),
                "s_churn": _float(0.0, 0.0, 1000.0, "EDM churn (Karras et al. Alg. 2)"),
                "s_tmin": _float(0.0, 0.0, 1e4, "churn only at sigma >= s_tmin"),
                "s_tmax": _float(1e4, 0.0, 1e4, "churn only at sigma <= s_tmax"),
            }
        }  # fmt: skip

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"
    DESCRIPTION = "Exponential-integrator samplers (RES, DPM-Solver++, ETD-RK) from res_torch."

    def get_sampler(self, method: str, **values: Any) -> tuple[Any]:
        import comfy.samplers

        if values.get("noise_type") == "default":
            del values["noise_type"]
        options = sampler_options(method, **values)
        check_options(method, options)
        return (comfy.samplers.KSAMPLER(comfy_sampler(method), extra_options=options),)
