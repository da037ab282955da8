"""Named samplers with the k-diffusion signature, and the :func:`sample` dispatcher.

Every sampler is ``sample_X(model, x, sigmas, extra_args=None, callback=None, disable=None,
**options)``: ``model(x, sigma * x.new_ones(batch), **extra_args)`` returns the denoised estimate
``D(x, sigma)`` (EDM / variance-exploding parameterisation, ``x = x_0 + sigma eps``); ``sigmas``
is strictly decreasing and may end in 0 (that last step returns the denoiser output, 1 NFE);
``callback`` receives ``{'x', 'i', 'sigma', 'sigma_hat', 'denoised'}`` after each step's first
evaluation; ``disable`` switches the tqdm bar off.

Options shared by all samplers:

* ``s_churn, s_tmin, s_tmax, s_noise``: EDM stochastic sampling, the paper's Algorithm 2
  (Zhang, Song & Chen 2023; Karras et al. 2022 Alg. 2): before step ``i`` with ``s_tmin <=
  sigma_i <= s_tmax``, ``gamma = min(s_churn / N, sqrt(2) - 1)``, ``sigma_hat = sigma_i (1 +
  gamma)``, ``x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) s_noise eps``, then the ODE step from
  ``sigma_hat`` to ``sigma_{i+1}``.
* ``eta`` with ``noise_type``: per-step noise (:mod:`res_torch.grid` has the formulas).
  ``"ancestral"`` (default): k-diffusion's ``get_ancestral_step`` semantics, the ODE step goes to
  ``sigma_down`` and noise ``s_noise sigma_up`` is added. ``"sde"``: the exact SDE-DPM-Solver++
  form (equal to k-diffusion's ``dpmpp_2m_sde`` for ``dpmpp_2m``; for ``dpmpp_3m`` equal to
  its ``dpmpp_3m_sde`` except at the second step, where this start-up is DPM-Solver++(2M) as in
  diffusers), which any tableau
  gets by evaluating its coefficients at ``(1 + eta) h``. Prefer ``"sde"`` for multistep
  methods: with ``"ancestral"`` their stored denoiser values come from before the injected
  noise, which biases the result at coarse steps (measured on Gaussian data N(0.3, 0.7^2) with
  its exact denoiser, Karras schedule, eta = 1: RES-2M's sample std is 1.05 at 40 steps and
  0.73 at 160 with ``"ancestral"``, 0.74 and 0.70 with ``"sde"``). History nodes
  always use the actual ``lambda`` of the stored evaluations. Euler and Heun (steps in
  ``sigma``) support only ``"ancestral"``.
* ``generator`` (a ``torch.Generator``) or ``noise_sampler`` (``f(sigma, sigma_next)``): the noise.
* Performance: the coefficient tables of a (method, parameters, sigmas, noise options)
  combination are computed once in float64 and cached (``PLAN_CACHE_SIZE`` entries), and so
  are their copies on the device (per device, dtype and batch size; ``clear_plan_cache()``
  forgets both); the loop has no host-device synchronisation. Each update ``a x + sum_j w_j
  D_j`` is a chain of ``lerp`` kernels (:func:`res_torch.steppers.lerp_chain`) that, from the
  second step on, overwrites the iterate in place: one kernel per term and no allocation. A
  new tensor is written instead for the caller's input, with a callback (so references to
  iterates stay valid), under autograd, and when the model returns or modifies its input.
* ``check_finite`` (default True): one check after the loop; raises
  :class:`~res_torch.steppers.NonFiniteSampleError` if the sample is NaN/inf.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from res_torch.errors import UnknownMethodError
from res_torch.grid import StepGrid, make_grid, validate_sigmas
from res_torch.noise import NoiseSampler, resolve_noise_sampler
from res_torch.steppers import (
    Denoiser,
    SinglestepCoefficients,
    clear_device_tables,
    erk_coefficients,
    multistep_coefficients,
    run_multistep,
    run_singlestep,
)
from res_torch.tableau import Tableau, available_tableaux, load_tableau

__all__ = [
    "SAMPLERS",
    "UnknownMethodError",
    "cached_tableau",
    "clear_plan_cache",
    "sample",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_dpmpp_2s",
    "sample_dpmpp_3m",
    "sample_erk",
    "sample_euler",
    "sample_heun",
    "sample_res_2m",
    "sample_res_2s",
    "sample_res_3m",
    "sample_res_3s",
]

Callback = Callable[[dict], Any]



@functools.lru_cache(maxsize=64)
def cached_tableau(name_or_path: str) -> Tableau:
    """:func:`load_tableau`, parsed once per process."""
    return load_tableau(name_or_path)


def _tableau(tableau: str | Path | Tableau) -> Tableau:
    if isinstance(tableau, Tableau):
        return tableau
    if not isinstance(tableau, str | Path):
        raise TypeError(f"tableau must be a name, a path or a Tableau, got {tableau!r}")
    return cached_tableau(str(tableau))


PLAN_CACHE_SIZE = 32
"""How many (method, parameters, sigmas, noise options) coefficient tables are kept."""
_PLANS: OrderedDict[tuple, tuple[object, StepGrid, Any]] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def _planned(
    owner: object,
    params: Mapping[str, float],
    sigmas: torch.Tensor | Sequence[float],
    grid_options: Mapping[str, Any],
    build: Callable[[StepGrid], Any],
) -> tuple[StepGrid, Any]:
    """The step grid and coefficient tables of a run, computed once (float64, on the host) and
    kept in a small LRU cache, so repeated calls with the same schedule skip all set-up."""
    values = validate_sigmas(sigmas)
    numbers = []
    for name, value in sorted(params.items()):
        try:
            numbers.append((name, float(value)))
        except (TypeError, ValueError):
            raise TypeError(f"parameter {name} must be a number, got {value!r}") from None
    key = (id(owner), tuple(numbers), tuple(values.tolist()), tuple(sorted(grid_options.items())))
    with _PLANS_LOCK:
        entry = _PLANS.get(key)
        if entry is not None and entry[0] is owner:
            _PLANS.move_to_end(key)
            return entry[1], entry[2]
    grid = make_grid(values, **grid_options)
    coefficients = build(grid)
    with _PLANS_LOCK:
        _PLANS[key] = (owner, grid, coefficients)
        if len(_PLANS) > PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    return grid, coefficients


def clear_plan_cache() -> None:
    """Forget all cached coefficient tables, on the host and on devices (the next call of each
    sampler computes them again, as a first call does)."""
    with _PLANS_LOCK:
        _PLANS.clear()
    clear_device_tables()


def _noise_for(
    x: torch.Tensor,
    grid: StepGrid,
    generator: torch.Generator | None,
    noise_sampler: NoiseSampler | None,
) -> NoiseSampler | None:
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    return resolve_noise_sampler(x, generator, noise_sampler) if grid.stochastic else None


def _sigmas_tensor(sigmas: torch.Tensor | Sequence[float], x: torch.Tensor) -> torch.Tensor:
    return sigmas if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, device=x.device)


def sample_erk(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    tableau: str | Path | Tableau,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    eta: float = 0.0,
    noise_type: str = "ancestral",
    generator: torch.Generator | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
    **tableau_params: float,
) -> torch.Tensor:
    """Sample with any exported tableau (name, path or :class:`Tableau`), single-step or multistep.

    ``tableau_params`` are the tableau's free parameters (e.g. ``c2=0.5``), checked against
    their admissible intervals. See :mod:`res_torch.steppers` for the update formulas.
    """
    method = _tableau(tableau)
    grid_options = dict(
        s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise, eta=eta,
        noise_type=noise_type,
    )  # fmt: skip
    if method.is_multistep:
        build = functools.partial(
            multistep_coefficients, method, values=tableau_params, load=cached_tableau
        )
    else:
        build = functools.partial(erk_coefficients, method, values=tableau_params)
    grid, coefficients = _planned(method, tableau_params, sigmas, grid_options, build)
    noise = _noise_for(x, grid, generator, noise_sampler)
    options = dict(
        extra_args=extra_args,
        callback=callback,
        disable=disable,
        noise_sampler=noise,
        check_finite=check_finite,
    )
    sigmas = _sigmas_tensor(sigmas, x)
    run = run_multistep if method.is_multistep else run_singlestep
    return run(model, x, sigmas, grid, coefficients, **options)


def _named(stem: str, doc: str, parameters: Sequence[str] = ()) -> Callable[..., torch.Tensor]:
    """A ``sample_<stem>`` function that runs the shipped tableau ``stem``."""

    def sampler(
        model: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        extra_args: Mapping[str, Any] | None = None,
        callback: Callback | None = None,
        disable: bool | None = None,
        **options: Any,
    ) -> torch.Tensor:
        if "tableau" in options:
            raise TypeError(f"sample_{stem} runs the tableau {stem!r}; use sample_erk for others")
        return sample_erk(model, x, sigmas, extra_args, callback, disable, tableau=stem, **options)

    sampler.__name__ = sampler.__qualname__ = f"sample_{stem}"
    sampler.__doc__ = (
        doc
        + (f"\n\n    Tableau options: {', '.join(parameters)}." if parameters else "")
        + "\n    Shared options: see :mod:`res_torch.samplers`."
    )
    return sampler


sample_ddim = _named(
    "ddim", "DDIM = exponential Euler: ``x' = e^{-h} x + h phi_1(h) D(x, sigma)`` (paper sign)."
)
sample_res_3s = _named(
    "res_3s",
    "RES 3-stage single-step (third order, order conditions met identically in h).",
    ("c2", "c3"),
)
sample_res_2m = _named(
    "res_2m",
    "RES multistep, 2nd order: ``x' = e^{-h}x + h[(phi_1 + phi_2/r) D_n - (phi_2/r) D_{n-1}]``, "
    "``r = h_prev/h``; first step DDIM.",
)
sample_res_3m = _named(
    "res_3m", "RES multistep, 3rd order (two history values); start-up RES-2S (c2 = 1/2), RES-2M."
)
sample_dpmpp_2m = _named(
    "dpmpp_2m",
    "DPM-Solver++(2M): ``x' = e^{-h}x + h phi_1 [(1 + 1/(2r)) D_n - 1/(2r) D_{n-1}]``; first "
    "step DDIM.",
)
sample_dpmpp_3m = _named(
    "dpmpp_3m", "DPM-Solver++(3M) (two history values); start-up DDIM, DPM-Solver++(2M)."
)


def sample_res_2s(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    c2: float = 0.5,
    **options: Any,
) -> torch.Tensor:
    """RES 2-stage single-step (Zhang, Song & Chen 2023, Alg. 1): ``a_21 = c2 phi_1(c2 h)``,
    ``b_2 = phi_2(h)/c2``, ``b_1 = phi_1(h) - b_2``; ``c2`` in (0, 1]. Options: as
    :func:`sample_erk`."""
    return sample_erk(
        model, x, sigmas, extra_args, callback, disable, tableau="res_2s", c2=c2, **options
    )


def sample_dpmpp_2s(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    c2: float = 0.5,
    **options: Any,
) -> torch.Tensor:
    """DPM-Solver++(2S): ``a_21 = c2 phi_1(c2 h)``, ``b_2 = phi_1(h)/(2 c2)``,
    ``b_1 = phi_1(h) - b_2``. Options: as :func:`sample_erk`."""
    return sample_erk(
        model, x, sigmas, extra_args, callback, disable, tableau="dpmpp_2s", c2=c2, **options
    )


def _sigma_space_coefficients(grid: StepGrid, heun: bool) -> SinglestepCoefficients:
    """Euler / EDM-Heun in ``sigma`` for ``dx/dsigma = (x - D)/sigma`` in the affine form of
    :class:`SinglestepCoefficients`. With ``r = sigma_to / sigma_hat`` and ``dt = sigma_to -
    sigma_hat``, Euler is ``x' = r x + (1 - r) D_1`` (identical to DDIM). Heun (Karras et al.
    2022, Alg. 1/2): ``U = r x + (1 - r) D_1``, ``x' = x + dt/2 [(x - D_1)/sigma_hat + (U -
    D_2)/sigma_to] = r x + (dt (1 - r)/(2 sigma_to) - dt/(2 sigma_hat)) D_1 - dt/(2 sigma_to) D_2``.
    """
    n = grid.steps
    s = 2 if heun else 1
    finite = ~torch.tensor(grid.denoising, dtype=torch.bool)
    start, end = grid.sigma_hat, torch.where(finite, grid.sigma_to, grid.sigma_hat)
    r = torch.where(finite, end / start, torch.zeros_like(start))
    dt = end - start
    weights = torch.zeros(n, s, dtype=torch.float64)
    stage_weights = torch.zeros(n, s, s, dtype=torch.float64)
    if heun:
        weights[:, 0] = torch.where(finite, dt * (1 - r) / (2 * end) - dt / (2 * start), 1.0)
        weights[:, 1] = torch.where(finite, -dt / (2 * end), 0.0)
        stage_weights[:, 1, 0] = 1 - r
    else:
        weights[:, 0] = 1 - r
    return SinglestepCoefficients(
        decay=r,
        weights=weights,
        stage_decay=r[:, None].expand(n, s).clone(),
        stage_weights=stage_weights,
        stage_sigma=torch.stack([start, end], dim=-1)[:, :s],
        stage_used=((), (True,))[:s],
        weight_used=(True,) * s,
    )


def _sample_in_sigma(
    heun: bool,
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None,
    callback: Callback | None,
    disable: bool | None,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    eta: float,
    noise_type: str,
    generator: torch.Generator | None,
    noise_sampler: NoiseSampler | None,
    check_finite: bool,
) -> torch.Tensor:
    if noise_type != "ancestral":
        raise ValueError(
            f"{'heun' if heun else 'euler'} steps in sigma and supports only "
            f"noise_type='ancestral', got {noise_type!r} (use ddim or a tableau for 'sde')"
        )
    grid_options = dict(
        s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise, eta=eta,
        noise_type=noise_type,
    )  # fmt: skip
    build = functools.partial(_sigma_space_coefficients, heun=heun)
    owner = sample_heun if heun else sample_euler
    grid, coefficients = _planned(owner, {}, sigmas, grid_options, build)
    noise = _noise_for(x, grid, generator, noise_sampler)
    return run_singlestep(
        model,
        x,
        _sigmas_tensor(sigmas, x),
        grid,
        coefficients,
        extra_args=extra_args,
        callback=callback,
        disable=disable,
        noise_sampler=noise,
        check_finite=check_finite,
    )


def sample_euler(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    eta: float = 0.0,
    noise_type: str = "ancestral",
    generator: torch.Generator | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Euler in ``sigma``: ``x' = x + (sigma' - sigma)(x - D)/sigma`` (k-diffusion
    ``sample_euler``; equal to DDIM in exact arithmetic)."""
    return _sample_in_sigma(
        False, model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax,
        s_noise, eta, noise_type, generator, noise_sampler, check_finite,
    )  # fmt: skip


def sample_heun(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    eta: float = 0.0,
    noise_type: str = "ancestral",
    generator: torch.Generator | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """EDM's Heun sampler in ``sigma`` (Karras et al. 2022, Alg. 1; with ``s_churn`` Alg. 2):
    Euler predictor, trapezoidal corrector; the step to ``sigma = 0`` is a plain Euler step
    (the denoiser output)."""
    return _sample_in_sigma(
        True, model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax,
        s_noise, eta, noise_type, generator, noise_sampler, check_finite,
    )  # fmt: skip


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "res_2s": sample_res_2s,
    "res_3s": sample_res_3s,
    "res_2m": sample_res_2m,
    "res_3m": sample_res_3m,
    "dpmpp_2s": sample_dpmpp_2s,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
}
"""The named samplers; :func:`sample` also accepts any shipped tableau name."""


def sample(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    method: str = "res_2s",
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    **options: Any,
) -> torch.Tensor:
    """Dispatch to ``sample_<method>`` (``SAMPLERS``) or, for any other shipped tableau name
    (``krogstad``, ``hochbruck_ostermann4``, ...), to :func:`sample_erk`."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    if method in SAMPLERS:
        return SAMPLERS[method](model, x, sigmas, extra_args, callback, disable, **options)
    if method in available_tableaux():
        return sample_erk(
            model, x, sigmas, extra_args, callback, disable, tableau=method, **options
        )
    known = sorted(set(SAMPLERS) | set(available_tableaux()))
    raise UnknownMethodError(f"unknown sampling method {method!r}; known: {', '.join(known)}")
