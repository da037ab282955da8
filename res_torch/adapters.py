"""Adapters that present a network as a denoiser ``model(x, sigma, **kw) -> D(x, sigma)``.

Every sampler in ``res_torch`` works in the variance-exploding (EDM) parameterisation
``x = x_0 + sigma * eps`` and calls ``model(x, sigma * x.new_ones(batch), **extra_args)``, which
must return the denoised estimate ``D(x, sigma) ≈ E[x_0 | x]`` (k-diffusion's convention). The
wrappers here turn the common network parameterisations into that form (``docs/MATH.md`` §1):

* :class:`EDMDenoiser` -- a raw EDM network ``F`` with Karras et al.'s preconditioning.
* :class:`DiscreteEpsDenoiser` -- a DDPM eps-prediction network on a discrete ``alphas_cumprod``
  schedule (Ho et al. 2020); :class:`DiscreteVDenoiser` -- the same with v-prediction
  (Salimans & Ho 2022). Both share :class:`DiscreteSchedule` for ``sigma <-> t``.
* :class:`FlowDenoiser` -- a rectified-flow / flow-matching velocity network
  (Liu et al. 2022, Lipman et al. 2022).

All are ``torch.nn.Module`` s whose buffers follow ``.to(device)``; they take dtype and device
from their inputs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from res_torch.checks import positive
from res_torch.errors import AdapterError
from res_torch.reference import validated_output
from res_torch.schedules import MAX_TRAIN_TIMESTEPS, discrete_timesteps

__all__ = [
    "DiscreteEpsDenoiser",
    "DiscreteSchedule",
    "DiscreteVDenoiser",
    "EDMDenoiser",
    "FlowDenoiser",
    "PREDICTION_TYPES",
    "denoised_from_output",
    "edm_preconditioning",
]

Network = Callable[..., torch.Tensor]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")


def _check_net(net: Any) -> Network:
    """``net`` unless it is not callable (``TypeError`` now, not at the first model call)."""
    if not callable(net):
        raise TypeError(f"net must be callable as net(x, t, **kwargs), got {net!r:.60}")
    return net


def denoised_from_output(
    prediction_type: str, output: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor | float
) -> torch.Tensor:
    """``D(x, sigma)`` from a network's ``output`` at the VE state ``x`` (``docs/MATH.md`` §1):

    * ``"epsilon"`` (DDPM eps): ``D = x - sigma eps``;
    * ``"v_prediction"`` (Salimans & Ho 2022): with ``alpha = 1/sqrt(1 + sigma^2)``,
      ``D = alpha (alpha x) - sigma alpha v``;
    * ``"sample"``: ``D = output``;
    * ``"flow_prediction"`` (velocity ``v = eps - x_0``): ``t = sigma/(1 + sigma)``,
      ``D = (1 - t) x - t v``.

    ``sigma`` broadcasts against ``x`` (a float or a tensor shaped ``(batch, 1, ...)``);
    ``output`` must be a floating-point tensor of ``x``'s shape on ``x``'s device
    (:class:`~res_torch.errors.ModelOutputError`).
    """
    output = validated_output(output, x, "the network")
    if prediction_type == "epsilon":
        return x - sigma * output
    if prediction_type == "v_prediction":
        alpha = (1 + sigma**2) ** -0.5 if not torch.is_tensor(sigma) else (1 + sigma**2).rsqrt()
        return alpha * (x * alpha) - sigma * alpha * output
    if prediction_type == "sample":
        return output
    if prediction_type == "flow_prediction":
        t = sigma / (1 + sigma)
        return x * (1 - t) - t * output
    raise AdapterError(
        f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
    )


def edm_preconditioning(
    sigma: torch.Tensor, sigma_data: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` (Karras et al. 2022, Table 1).

    ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with
    ``c_skip = sd^2/(sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1/sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma)/4`` (``sigma`` a tensor or a
    number).
    """
    sigma = torch.as_tensor(sigma)
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), total.rsqrt(), sigma.log() / 4


def _on_host(values: torch.Tensor) -> bool:
    """Whether checking ``values`` is free: a CPU tensor. Reading a GPU tensor's values would
    synchronise the host with the device at every model call, so there the checks are left to
    the samplers, which validate the whole schedule once, on the host, before their loop."""
    return values.device.type == "cpu"


def _offending(values: torch.Tensor, bad: torch.Tensor, k: int = 6) -> str:
    """How many of ``values`` are ``bad`` (a boolean mask of their shape) and the first ``k``
    of them, so that a message stays short for a large batch."""
    count, listed = int(bad.sum()), values[bad].flatten()[:k].tolist()
    verb, first = "is" if count == 1 else "are", f", the first {k}" if count > k else ""
    return f"{count} of {values.numel()} {verb} not{first}: {listed}"


def _check_levels(sigma: torch.Tensor) -> None:
    """:class:`~res_torch.errors.AdapterError` unless every noise level is positive and
    finite."""
    bad = ~((sigma > 0) & torch.isfinite(sigma))
    if bool(bad.any()):
        raise AdapterError(f"sigma must be positive and finite; {_offending(sigma, bad)}")


def _real_times(t: Any, name: str) -> torch.Tensor:
    """``t`` as a tensor; ``TypeError`` for booleans or complex values (not times)."""
    t = torch.as_tensor(t)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    return t


def _result_dtype(values: torch.Tensor) -> torch.dtype:
    """The dtype of a timestep/noise-level conversion of ``values``: their own if floating,
    else float64, or float32 on Apple's ``mps``, which has no float64 (the conversion itself
    runs in float64 on the host)."""
    if values.is_floating_point():
        return values.dtype
    return torch.float32 if values.device.type == "mps" else torch.float64


def _scaling_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the adapters form ``sigma^2`` and the scalings in: at least float32 (in float16
    ``sigma^2`` overflows above ``sigma = 256``, and ``1/sqrt(1 + sigma^2)`` would become 0);
    the network's inputs and the denoised result are cast back to ``x``'s dtype."""
    return torch.promote_types(x.dtype, torch.float32)


def _sigma_like(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``sigma`` as a tensor broadcastable against ``x`` (scalar or one value per batch item).

    ``TypeError`` unless ``x`` is a floating-point tensor (an integer one would truncate
    ``sigma`` and the result) and ``sigma`` a real tensor or number (not a ``bool``);
    :class:`~res_torch.errors.AdapterError` for a shape other than ``()``, ``(1,)`` or
    ``(batch,)`` and, where that costs no device synchronisation (:func:`_on_host`), for a noise
    level that is not strictly positive and finite.
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        kind = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a floating-point torch.Tensor, got {kind}")
    if x.ndim < 1:
        raise AdapterError("x must have a batch dimension, got a 0-d tensor")
    if torch.is_tensor(sigma):
        if sigma.dtype == torch.bool or sigma.is_complex():
            raise TypeError(f"sigma must hold real noise levels, got dtype {sigma.dtype}")
        sigma = sigma.to(device=x.device)
        if not sigma.is_floating_point():
            sigma = sigma.to(x.dtype)
    elif isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma must be a tensor or a real number, got {sigma!r:.40}")
    else:
        sigma = torch.tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim > 1 or (sigma.ndim == 1 and sigma.shape[0] not in (1, x.shape[0])):
        raise AdapterError(
            f"sigma must be a scalar or have shape (batch,) = ({x.shape[0]},), "
            f"got shape {tuple(sigma.shape)}"
        )
    if _on_host(sigma):
        _check_levels(sigma)
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).expand(x.shape[0], *([1] * (x.ndim - 1)))


class EDMDenoiser(nn.Module):
    """A raw network ``F(x_in, c_noise, **kw)`` with EDM preconditioning (Karras et al. 2022).

    ``D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))``,
    coefficients from :func:`edm_preconditioning`; ``c_noise`` is passed with shape ``(batch,)``.
    """

    def __init__(self, net: Network, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net = _check_net(net)
        self.sigma_data = positive("sigma_data", sigma_data, AdapterError)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        s = _sigma_like(x, sigma).to(_scaling_dtype(x))
        c_skip, c_out, c_in, c_noise = edm_preconditioning(s, self.sigma_data)
        output = self.net((c_in * x).to(x.dtype), c_noise.flatten().to(x.dtype), **kwargs)
        output = validated_output(output, x, "the network")
        return (c_skip * x + c_out * output).to(x.dtype)


class DiscreteSchedule(nn.Module):
    """The noise levels of a discrete-time DDPM schedule and the map ``sigma <-> t``.

    ``sigma_t = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])`` for ``t = 0..T-1``
    (Ho et al. 2020; Karras et al. 2022, App. C.1). Between the integer timesteps ``t`` is
    interpolated *linearly in log sigma*, as k-diffusion's ``DiscreteSchedule`` and diffusers'
    ``_sigma_to_t`` do, so :meth:`sigma_to_t` returns a *fractional* timestep unless
    ``quantize=True`` (nearest integer timestep in log sigma; the network then sees a slightly
    different noise level than the scaling uses). Noise levels outside ``[sigma_min, sigma_max]``
    map to the end timesteps ``0`` or ``T-1``.
    """

    sigmas: torch.Tensor
    log_sigmas: torch.Tensor

    def __init__(self, alphas_cumprod: torch.Tensor, quantize: bool = False) -> None:
        super().__init__()
        try:
            ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise AdapterError(
                f"alphas_cumprod must be a 1-d tensor of numbers ({error})"
            ) from None
        if ac.ndim != 1 or ac.shape[0] < 2 or ac.shape[0] > MAX_TRAIN_TIMESTEPS:
            raise AdapterError(
                f"alphas_cumprod must be a 1-d tensor with 2 to {MAX_TRAIN_TIMESTEPS} entries, "
                f"got shape {tuple(ac.shape)}"
            )
        if not bool(torch.all((ac > 0) & (ac < 1))):
            raise AdapterError(
                "alphas_cumprod must lie strictly inside (0, 1) (sigma_t = sqrt((1-a)/a) must be "
                f"positive and finite); got range [{ac.min().item()}, {ac.max().item()}]"
                + (
                    "; a zero-terminal-SNR schedule ends at 0: clamp that value (diffusers uses "
                    "2**-24)"
                    if ac[-1].item() == 0
                    else ""
                )
            )
        if not bool(torch.all(ac[1:] < ac[:-1])):
            raise AdapterError("alphas_cumprod must be strictly decreasing in t")
        sigmas = ((1 - ac) / ac).sqrt()
        if not bool(torch.isfinite(sigmas).all() and (sigmas[1:] > sigmas[:-1]).all()):
            raise AdapterError(  # alphas_cumprod so close to 0 or 1 that float64 cannot resolve
                "alphas_cumprod gives noise levels sqrt((1-a)/a) that are not finite and "
                f"strictly increasing in float64 (range [{sigmas.min().item():.4g}, "
                f"{sigmas.max().item():.4g}])"
            )
        self.register_buffer("sigmas", sigmas, persistent=False)
        self.register_buffer("log_sigmas", sigmas.log(), persistent=False)
        self.quantize = quantize

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def num_timesteps(self) -> int:
        return self.sigmas.shape[0]

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        """Timestep(s) of finite noise level(s) ``sigma > 0``, in ``sigma``'s dtype (float64
        inside; ``sigma`` is checked where that is free, :func:`_on_host`)."""
        sigma = torch.as_tensor(sigma)
        if _on_host(sigma):
            _check_levels(sigma)
        dtype = _result_dtype(sigma)
        log_sigmas = self.log_sigmas.to(torch.float64)
        log_sigma = sigma.to(log_sigmas.device).to(torch.float64).log()
        quantize = self.quantize if quantize is None else quantize
        if quantize:
            dists = (log_sigma.reshape(-1, 1) - log_sigmas).abs()
            return dists.argmin(dim=-1).reshape(sigma.shape).to(dtype=dtype, device=sigma.device)
        low = (torch.searchsorted(log_sigmas, log_sigma.contiguous(), right=True) - 1).clamp(
            0, self.num_timesteps - 2
        )
        lo, hi = log_sigmas[low], log_sigmas[low + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        return (low + w).to(dtype=dtype, device=sigma.device)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise level(s) at real (fractional) timestep(s) ``t`` in ``[0, T-1]`` (booleans:
        ``TypeError``)."""
        t = _real_times(t, "timesteps")
        dtype = _result_dtype(t)
        log_sigmas = self.log_sigmas.to(torch.float64)
        t64 = t.to(log_sigmas.device).to(torch.float64)
        bad = ~((t64 >= 0) & (t64 <= self.num_timesteps - 1))
        if bool(bad.any()):
            raise AdapterError(
                f"timesteps must lie in [0, {self.num_timesteps - 1}]; {_offending(t64, bad)}"
            )
        low = t64.floor().long().clamp(max=self.num_timesteps - 2)
        w = t64 - low
        log_sigma = (1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]
        return log_sigma.exp().to(dtype=dtype, device=t.device)

    def get_sigmas(
        self, n: int | None = None, spacing: str = "normal", steps_offset: int = 0
    ) -> torch.Tensor:
        """``n`` decreasing noise levels at :func:`res_torch.schedules.discrete_timesteps`
        ``(n, T, spacing, steps_offset)``, then 0 (float64, on the table's device); ``n =
        None``: every training level (k-diffusion's ``DiscreteSchedule.get_sigmas``)."""
        n = self.num_timesteps if n is None else n
        ts = discrete_timesteps(n, self.num_timesteps, spacing, steps_offset)
        sigmas = self.t_to_sigma(ts.to(self.log_sigmas.device))
        return torch.cat([sigmas, sigmas.new_zeros(1)])

    def _network_inputs(
        self, x: torch.Tensor, sigma: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(sigma (batch, 1, ...), x_vp = x / sqrt(1 + sigma^2), t (batch,))``."""
        s = _sigma_like(x, sigma)
        t = self.sigma_to_t(s.flatten().to(torch.float64)).to(device=x.device, dtype=x.dtype)
        s = s.to(_scaling_dtype(x))
        return s, (x * (1 + s**2).rsqrt()).to(x.dtype), t


class DiscreteEpsDenoiser(DiscreteSchedule):
    """A DDPM eps-prediction network ``eps(x_vp, t, **kw)`` as a VE denoiser.

    The VP state is ``x_vp = sqrt(abar) x_0 + sqrt(1 - abar) eps = x / sqrt(1 + sigma^2)``, so
    ``D(x, sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), t(sigma))`` (Karras et al. 2022,
    Table 1, "VP"; k-diffusion ``DiscreteEpsDDPMDenoiser``). ``t(sigma)`` is
    :meth:`DiscreteSchedule.sigma_to_t`: fractional by default, nearest with ``quantize=True``.
    """

    def __init__(self, net: Network, alphas_cumprod: torch.Tensor, quantize: bool = False) -> None:
        super().__init__(alphas_cumprod, quantize)
        self.net = _check_net(net)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        s, x_vp, t = self._network_inputs(x, sigma)
        return denoised_from_output("epsilon", self.net(x_vp, t, **kwargs), x, s).to(x.dtype)


class DiscreteVDenoiser(DiscreteSchedule):
    """A v-prediction network ``v(x_vp, t, **kw)`` (Salimans & Ho 2022) as a VE denoiser.

    With ``alpha = 1/sqrt(1 + sigma^2)``, ``s = sigma/sqrt(1 + sigma^2)`` (so ``x_vp = alpha x_0
    + s eps``) and ``v = alpha eps - s x_0``: ``x_0 = alpha x_vp - s v``, hence
    ``D(x, sigma) = alpha^2 x - s v(alpha x, t(sigma))`` (k-diffusion ``DiscreteVDDPMDenoiser``).
    """

    def __init__(self, net: Network, alphas_cumprod: torch.Tensor, quantize: bool = False) -> None:
        super().__init__(alphas_cumprod, quantize)
        self.net = _check_net(net)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        s, x_vp, t = self._network_inputs(x, sigma)
        return denoised_from_output("v_prediction", self.net(x_vp, t, **kwargs), x, s).to(x.dtype)


class FlowDenoiser(nn.Module):
    """A rectified-flow / flow-matching velocity network ``v(x_t, t * timestep_scale, **kw)``.

    The flow path ``x_t = (1 - t) x_0 + t eps`` with velocity ``v = eps - x_0`` (Liu et al. 2022;
    Lipman et al. 2022; SD3 / diffusers ``FlowMatchEulerDiscreteScheduler``) is the VE path
    rescaled: ``sigma = t/(1 - t)``, ``x = x_t/(1 - t)``. Hence ``t = sigma/(1 + sigma)``,
    ``x_t = x/(1 + sigma)`` and ``D(x, sigma) = x_t - t v(x_t, t)``. ``timestep_scale`` is the
    factor the network expects on ``t`` (diffusers' transformers take ``1000 t``).
    """

    def __init__(self, net: Network, timestep_scale: float = 1.0) -> None:
        super().__init__()
        self.net = _check_net(net)
        self.timestep_scale = positive("timestep_scale", timestep_scale, AdapterError)

    @staticmethod
    def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
        """``t = sigma/(1 + sigma)`` (flow time in ``[0, 1)``) for finite ``sigma >= 0``."""
        sigma = torch.as_tensor(sigma)
        bad = ~((sigma >= 0) & torch.isfinite(sigma))
        if bool(bad.any()):
            raise AdapterError(f"sigma must be finite and non-negative; {_offending(sigma, bad)}")
        return sigma / (1 + sigma)

    @staticmethod
    def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
        """``sigma = t/(1 - t)`` for flow time ``t`` in ``[0, 1)``."""
        t = _real_times(t, "flow time t")
        bad = ~((t >= 0) & (t < 1))
        if bool(bad.any()):
            raise AdapterError(f"flow time t must lie in [0, 1); {_offending(t, bad)}")
        return t / (1 - t)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        s = _sigma_like(x, sigma).to(x.dtype)
        t = s / (1 + s)
        velocity = self.net(x * (1 - t), t.flatten() * self.timestep_scale, **kwargs)
        return denoised_from_output("flow_prediction", velocity, x, s)
