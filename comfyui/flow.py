"""Flow (CONST) models in the variance-exploding variable the res samplers step in.

ComfyUI's rectified-flow models (SD3, Flux, ... : ``model_sampling`` is a ``comfy.model_sampling
.CONST``) use ``x_t = (1 - t) x_0 + t eps`` and schedules of ``t`` in [0, 1], and their wrapper
returns the denoised ``x_0``. Dividing by ``1 - t`` gives the VE form the res samplers integrate,

    y = x / (1 - t) = x_0 + sigma eps,    sigma = t / (1 - t),    D_VE(y, sigma) = D(x, t),

(the map of :class:`res_torch.adapters.FlowDenoiser`, here for a model that returns ``x_0``)
whose ``lambda = -log sigma = log((1 - t) / t)`` is the half-log-SNR in which ComfyUI's own
exponential samplers step flow models (``sigma_to_half_log_snr`` in
``comfy/k_diffusion/sampling.py``, used by ``dpmpp_2m_sde``, ``dpmpp_3m_sde``, ``er_sde``,
``sa_solver``, ``seeds_2/3``). Passing the flow schedule to a res sampler as if ``t`` were
``sigma`` still integrates the probability-flow ODE consistently (in ``-log t``), but the noise
of stochastic sampling (``eta``, churn) is only right in the VE form: measured on Gaussian data
N(0.3, 0.7^2), RES-2M SDE (eta = 1, 64 steps) gives mean 0.297, std 0.730 through this
conversion and mean 0.616, std 1.122 without it (tests/comfyui/test_flow.py).

``t = 1`` (pure noise, ``sigma = inf``) cannot be a grid point: as ComfyUI does
(``offset_first_sigma_for_snr``), a first ``t = 1`` is replaced by
``model_sampling.percent_to_sigma(1e-4)`` and the sample ``x`` (pure noise there) is taken as
the state at that ``t``. (Euler and Heun without noise run in ``t`` itself instead:
:func:`comfyui.sampler.steps_in_flow_time`.) A first ``t`` above 1 (beyond
:data:`FLOW_TIME_SLACK`) is refused for every method (:func:`flow_times`): no flow schedule has
one (a VE model's sigmas given to a flow model do), and ComfyUI's noise scaling
``t eps + (1 - t) x_0`` makes ``x`` at ``t = 14.6`` a state of no time; taken as the state near
``t = 1`` it gave a sample std of 5 on data of std 0.7, and Heun run in ``t`` from there 4.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from res_torch.checks import nonnegative
from res_torch.errors import NoiseError, SigmasError
from res_torch.grid import validate_sigmas

__all__ = [
    "FIRST_PERCENT",
    "FLOW_TIME_SLACK",
    "flow_times",
    "is_flow",
    "model_sampling_of",
    "sample_flow",
    "ve_sigma",
]

FIRST_PERCENT = 1e-4
"""The percent ComfyUI's ``offset_first_sigma_for_snr`` moves a first ``t >= 1`` to."""

FLOW_TIME_SLACK = 1e-5
"""How far above 1 a first flow time may lie and still be ``t = 1``: a shifted schedule's
``shift t / (1 + (shift - 1) t)`` at ``t = 1``, computed in float32, can miss 1 by a few units
in the last place (1.2e-7 each)."""


def model_sampling_of(model: Any) -> Any | None:
    """The ``model_sampling`` object behind the model ComfyUI hands a sampler function
    (``KSamplerX0Inpaint`` -> guider -> ``model_patcher.get_model_object("model_sampling")``),
    or ``None`` for a plain denoiser outside ComfyUI."""
    patcher = getattr(getattr(model, "inner_model", None), "model_patcher", None)
    if patcher is None:
        return None
    return patcher.get_model_object("model_sampling")


def is_flow(model_sampling: Any) -> bool:
    """Whether ``model_sampling`` is ComfyUI's ``CONST`` (flow) parameterisation."""
    if model_sampling is None:
        return False
    try:
        from comfy.model_sampling import CONST
    except ImportError:  # not inside ComfyUI
        return False
    return isinstance(model_sampling, CONST)


def flow_times(sigmas: Any, *, min_entries: int = 2) -> torch.Tensor:
    """``sigmas`` checked as a flow model's schedule, as a float64 CPU tensor: res_torch's checks
    (:func:`res_torch.grid.validate_sigmas`, messages in flow times) and a first time of at most
    1 (up to :data:`FLOW_TIME_SLACK`)."""
    times = validate_sigmas(sigmas, min_entries=min_entries)
    if times[0] > 1 + FLOW_TIME_SLACK:
        raise SigmasError(
            f"flow times must be <= 1 (t = 1 is pure noise), got t_0 = {float(times[0]):.8g}: "
            "sigmas made for a VE model?"
        )
    return times


def _flow_time_bound(name: str, value: Any) -> float:
    """A churn bound ``s_tmin``/``s_tmax`` given in flow time: finite and >= 0, or ``inf``
    (k-diffusion's default ``s_tmax``: no upper bound)."""
    return math.inf if value == math.inf else nonnegative(name, value, NoiseError)


def ve_sigma(t: float) -> float:
    """``sigma = t / (1 - t)``; ``inf`` for ``t >= 1``.

    >>> ve_sigma(0.5), ve_sigma(0.0), ve_sigma(1.0)
    (1.0, 0.0, inf)
    """
    return math.inf if t >= 1 else t / (1 - t)


def _t(sigma: Any) -> Any:
    """``t = sigma / (1 + sigma)`` (numbers or tensors)."""
    return sigma / (1 + sigma)


def _per_sample(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def sample_flow(
    run: Callable[..., torch.Tensor],
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    model_sampling: Any,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    **options: Any,
) -> torch.Tensor:
    """Run the VE sampler ``run`` (``res_torch.sample`` with its method) on a flow model.

    ``sigmas`` are flow times ``t_0 > ... > t_N`` (``len >= 2``), ``x`` the state at ``t_0``.
    The model is called as ComfyUI calls it, ``model(x_t, t * s_in, **extra_args)``, with
    ``extra_args`` unchanged; the callback sees ``x_t``, ``t`` and the denoised ``x_0``;
    ``s_tmin``/``s_tmax`` are flow times; a ``noise_sampler`` is called with flow times.
    Returns the state at ``t_N``. Half-precision states are stepped in float32 (``y`` is up to
    ``1 / (1 - t_0) = 3e4`` times ``x`` after the offset: beyond float16's range).
    """
    if not torch.is_tensor(x) or not x.is_floating_point():  # before the conversion casts it
        kind = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor, got {kind}")
    times = flow_times(sigmas).clone()  # messages in flow times, before conversion
    if len(times) > 1 and times[1] >= 1:
        raise SigmasError(f"flow times after the first must be < 1, got {times.tolist()[:6]}")
    if times[0] >= 1:
        first = float(model_sampling.percent_to_sigma(FIRST_PERCENT))
        if len(times) > 1 and first <= times[1]:
            raise SigmasError(
                f"the first flow time t = 1 is moved to {first:.8g} (ComfyUI's offset), which "
                f"is not above the second, {float(times[1]):.8g}: use fewer steps or a second "
                "time further from 1"
            )
        times[0] = first
    ve = times / (1 - times)

    def ve_model(y: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return model(y / (1 + _per_sample(sigma, y)), _t(sigma), **kwargs)

    def flow_callback(info: dict) -> Any:
        x_t = info["x"] / (1 + info["sigma_hat"])
        t, t_hat = _t(info["sigma"]), _t(info["sigma_hat"])
        return callback({**info, "x": x_t, "sigma": t, "sigma_hat": t_hat})

    bounds = {b: _flow_time_bound(b, options[b]) for b in ("s_tmin", "s_tmax") if b in options}
    if bounds.get("s_tmin", 0.0) >= 1:
        raise NoiseError(f"s_tmin is a flow time and must be < 1, got {bounds['s_tmin']}")
    if bounds.get("s_tmin", 0.0) > bounds.get("s_tmax", math.inf):
        raise NoiseError(f"s_tmax must be >= s_tmin (flow times), got {bounds}")
    options.update({bound: ve_sigma(t) for bound, t in bounds.items()})
    flow_noise = options.get("noise_sampler")
    if callable(flow_noise):
        options["noise_sampler"] = lambda s, s_next: flow_noise(_t(s), _t(s_next))

    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    y = run(
        ve_model,
        x / (1 - float(times[0])),
        ve,
        extra_args=extra_args,
        callback=None if callback is None else flow_callback,
        disable=disable,
        **options,
    )
    return (y * (1 - float(times[-1]))).to(dtype)
