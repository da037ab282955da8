"""Noise for stochastic sampling: noise samplers, EDM churn and ancestral (eta) step sizes.

A *noise sampler* is a callable ``noise_sampler(sigma, sigma_next) -> Tensor`` returning
standard normal noise shaped like the sample (k-diffusion's convention). Churn noise of step
``i`` is drawn as ``noise_sampler(sigma_hat_i, sigma_i)`` and the step's ancestral/SDE noise as
``noise_sampler(sigma_i, sigma_{i+1})``: disjoint intervals, so an interval-based sampler (a
Brownian tree) gives independent draws. Samplers accept either
one (``noise_sampler=``) or a ``torch.Generator`` (``generator=``); same generator seed, same
samples, on any device (the noise is drawn on the generator's device and then moved).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from res_torch.checks import integer, nonnegative, real, scalar
from res_torch.errors import NoiseError

__all__ = [
    "NoiseOptions",
    "NoiseSampler",
    "ancestral_step",
    "churn_gamma",
    "default_noise_sampler",
    "resolve_noise_sampler",
    "sde_step_noise",
]

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def default_noise_sampler(
    x: torch.Tensor, generator: torch.Generator | None = None
) -> NoiseSampler:
    """Standard normal noise like ``x`` from ``generator`` (the global RNG when ``None``)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    device = generator.device if generator is not None else x.device

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        return noise.to(x.device)

    return sample


def resolve_noise_sampler(
    x: torch.Tensor,
    generator: torch.Generator | None,
    noise_sampler: NoiseSampler | None,
) -> NoiseSampler:
    """The run's noise: ``noise_sampler`` if given, else one drawing from ``generator``."""
    if noise_sampler is not None:
        if generator is not None:
            raise NoiseError("pass either generator= or noise_sampler=, not both")
        if not callable(noise_sampler):
            raise TypeError("noise_sampler must be callable as noise_sampler(sigma, sigma_next)")
        return noise_sampler
    return default_noise_sampler(x, generator)


def _levels(name: str, values: Any) -> torch.Tensor:
    """Noise levels as a floating tensor (numbers and lists as float64), else NoiseError."""
    if torch.is_tensor(values):
        return values if values.is_floating_point() else values.to(torch.float64)
    try:
        return torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise NoiseError(f"{name} must be a tensor of noise levels ({error})") from None


def churn_gamma(
    sigmas: torch.Tensor, s_churn: float, s_tmin: float = 0.0, s_tmax: float = math.inf
) -> torch.Tensor:
    """EDM's churn factors (Karras et al. 2022, Algorithm 2; Zhang et al. 2023, Algorithm 2).

    For the ``N = len(sigmas) - 1`` steps: ``gamma_i = min(s_churn / N, sqrt(2) - 1)`` where
    ``s_tmin <= sigma_i <= s_tmax``, else 0. The step then starts from ``sigma_hat = sigma_i
    (1 + gamma_i)`` after adding noise of standard deviation ``sqrt(sigma_hat^2 - sigma_i^2)``.
    """
    s_churn = nonnegative("s_churn", s_churn, NoiseError)
    s_tmin = nonnegative("s_tmin", s_tmin, NoiseError)
    s_tmax = real("s_tmax", s_tmax, NoiseError, infinite=True)  # a number, as s_tmin
    if not s_tmax >= s_tmin:
        raise NoiseError(f"s_tmax must be a number >= s_tmin, got {s_tmax} < {s_tmin}")
    sigmas = _levels("sigmas", sigmas)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise NoiseError(f"sigmas must be 1-d with at least 2 levels, got {tuple(sigmas.shape)}")
    current = sigmas[:-1]
    gamma = min(s_churn / current.numel(), math.sqrt(2) - 1)
    inside = (current >= s_tmin) & (current <= s_tmax)
    return torch.where(inside, torch.full_like(current, gamma), torch.zeros_like(current))


def sde_step_noise(
    lambda_step: torch.Tensor, sigma_next: torch.Tensor, eta: float, s_noise: float = 1.0
) -> torch.Tensor:
    """Standard deviation of the noise after an SDE-DPM-Solver++ step (Lu et al. 2022, eq. (9);
    :mod:`res_torch.grid`): ``s_noise sigma_next sqrt(1 - e^{-2 eta lambda_step})`` for the step
    of length ``lambda_step = log(sigma / sigma_next)`` in ``lambda``; 0 for a step to
    ``sigma_next = 0`` (``lambda_step = inf``) and for ``eta = 0``."""
    eta, s_noise = nonnegative("eta", eta, NoiseError), nonnegative("s_noise", s_noise, NoiseError)
    lambda_step = _levels("lambda_step", lambda_step)
    sigma_next = _levels("sigma_next", sigma_next)
    finite = torch.isfinite(lambda_step)
    spread = torch.where(
        finite, -torch.expm1(-2 * eta * lambda_step), torch.zeros_like(lambda_step)
    )
    return s_noise * sigma_next * spread.sqrt()


def ancestral_step(
    sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-diffusion's ``get_ancestral_step``: ``(sigma_down, sigma_up)``.

    ``sigma_up = min(sigma_to, eta sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2))``,
    ``sigma_down = sqrt(sigma_to^2 - sigma_up^2)``: the deterministic step goes to ``sigma_down``
    and fresh noise of standard deviation ``sigma_up`` brings the sample back to ``sigma_to``.
    ``eta = 1`` is DDPM-like ancestral sampling, ``eta = 0`` the ODE.
    """
    eta = nonnegative("eta", eta, NoiseError)
    sigma_from, sigma_to = _levels("sigma_from", sigma_from), _levels("sigma_to", sigma_to)
    on_host = sigma_from.device.type == "cpu" and sigma_to.device.type == "cpu"  # free to check
    if on_host and not bool(
        torch.all((sigma_from > 0) & (sigma_to >= 0) & (sigma_to <= sigma_from))
    ):
        raise NoiseError(
            "ancestral_step needs 0 <= sigma_to <= sigma_from and sigma_from > 0, got "
            f"{sigma_from.tolist()} -> {sigma_to.tolist()}"
        )
    variance = sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2
    sigma_up = torch.minimum(sigma_to, eta * variance.clamp_min(0).sqrt())
    sigma_down = (sigma_to**2 - sigma_up**2).clamp_min(0).sqrt()
    return sigma_down, sigma_up


@dataclass(frozen=True)
class NoiseOptions:
    """The stochastic options of a run, passed through as one object.

    ``s_churn, s_tmin, s_tmax, s_noise``: EDM churn (:func:`churn_gamma`); ``eta`` with
    ``noise_type`` (``"ancestral"`` or ``"sde"``): per-step noise (:mod:`res_torch.grid`);
    ``generator`` or ``noise_sampler``: where the noise comes from (:meth:`sampler`).
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    eta: float = 0.0
    noise_type: str = "ancestral"
    generator: torch.Generator | None = None
    noise_sampler: NoiseSampler | None = None

    def __post_init__(self) -> None:  # checked even for a run that draws no noise
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {self.generator!r}")
        if self.noise_sampler is not None and not callable(self.noise_sampler):
            raise TypeError("noise_sampler must be callable as noise_sampler(sigma, sigma_next), "
                            f"got {self.noise_sampler!r}")  # fmt: skip

    def grid_options(self) -> dict[str, Any]:
        """The keywords of :func:`res_torch.grid.make_grid` (hashable values: a one-element
        tensor as its number, so that a plan cached for it does not outlive an in-place change
        of the tensor)."""
        options = dict(
            s_churn=self.s_churn, s_tmin=self.s_tmin, s_tmax=self.s_tmax,
            s_noise=self.s_noise, eta=self.eta, noise_type=self.noise_type,
        )  # fmt: skip
        return {name: scalar(value) for name, value in options.items()}

    def sampler(self, x: torch.Tensor, extra_args: Mapping[str, Any] | None = None) -> NoiseSampler:
        """The run's noise: ``noise_sampler``, else draws from ``generator``, else (as ComfyUI's
        ``default_noise_sampler`` does) from a generator on ``x``'s device seeded with
        ``extra_args["seed"]`` if given, plus 1 on the CPU (ComfyUI draws the initial noise
        on the CPU from the seed itself; the same stream again would inject that noise a
        second time), else from the global RNG."""
        generator = self.generator
        seed = (extra_args or {}).get("seed")
        if generator is None and self.noise_sampler is None and seed is not None:
            # torch.Generator.manual_seed's range
            seed = integer("extra_args['seed']", seed, -(2**63), 2**64 - 1, NoiseError)
            device = "cpu" if x.device.type == "meta" else x.device  # meta: no generator
            if torch.device(device).type == "cpu":
                seed = seed + 1 if seed < 2**64 - 1 else 0  # 2**64 wraps to 0 in uint64
            generator = torch.Generator(device=device).manual_seed(seed)
        return resolve_noise_sampler(x, generator, self.noise_sampler)
