"""Named samplers with the k-diffusion signature, and the :func:`sample` dispatcher.

Every sampler is ``sample_X(model, x, sigmas, extra_args=None, callback=None, disable=None,
**options)``: ``model(x, sigma * x.new_ones(batch), **extra_args)`` returns the denoised estimate
``D(x, sigma)`` (EDM / variance-exploding parameterisation, ``x = x_0 + sigma eps``); ``sigmas``
is strictly decreasing (a repeated value, a zero-length step, is refused) and may end in 0 (that
last step returns the denoiser output, 1 NFE); nearly repeated values are fine: a multistep
method passes over a stored value closer than ``NODE_SPACING_MIN = 1/64`` of the step and uses
an older one or a lower order (:data:`res_torch.coefficients.NODE_SPACING_MIN`, the error
analysis there);
``callback`` receives ``{'x', 'i', 'sigma', 'sigma_hat', 'denoised'}`` after each step's first
evaluation (at the free first step of ``res_pc3_free``/``res_pc4_free``, which has none there,
before the step with ``denoised = 0``, the value it assumes; a change the callback makes to ``x``
enters the step as at any other); ``disable`` switches the tqdm bar off.

Options shared by all samplers:

* ``s_churn, s_tmin, s_tmax, s_noise``: EDM stochastic sampling, the paper's Algorithm 2
  (Zhang, Song & Chen 2023; Karras et al. 2022 Alg. 2): before step ``i`` with ``s_tmin <=
  sigma_i <= s_tmax``, ``gamma = min(s_churn / N, sqrt(2) - 1)``, ``sigma_hat = sigma_i (1 +
  gamma)``, ``x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) s_noise eps``, then the ODE step from
  ``sigma_hat`` to ``sigma_{i+1}``.
* ``eta`` with ``noise_type``: per-step noise (:mod:`res_torch.grid` has the formulas).
  ``"ancestral"``: k-diffusion's ``get_ancestral_step`` semantics, the ODE step goes to
  ``sigma_down`` and noise ``s_noise sigma_up`` is added. ``"sde"``: the exact SDE-DPM-Solver++
  form (equal to k-diffusion's ``dpmpp_2m_sde`` for ``dpmpp_2m``; for ``dpmpp_3m`` equal to
  its ``dpmpp_3m_sde`` except at the second step, where this start-up is DPM-Solver++(2M) as in
  diffusers), which any tableau
  gets by evaluating its coefficients at ``(1 + eta) h``. The default (``noise_type=None``) is
  the method's ``default_noise_type``: ``"sde"`` for the exponential multistep tableaux
  (``res_2m``, ``res_3m``, ``dpmpp_2m``, ``dpmpp_3m``), ``"ancestral"`` for every other method.
  With ``"ancestral"`` a multistep tableau's stored denoiser values come from before the
  injected noise, which biases the result at coarse steps (measured on Gaussian data
  N(0.3, 0.7^2) with its exact denoiser, Karras schedule 14.6 -> 0.03, eta = 1: RES-2M's sample
  std is 2.06 / 0.81 at 10 / 40 steps with ``"ancestral"``, 0.89 / 0.71 with ``"sde"``).
  History nodes always use the actual ``lambda`` of the stored evaluations. The methods that
  step in ``sigma`` (Euler, Heun, iPNDM, iPNDM-v, DEIS; ``Method.noise_types``) support only
  ``"ancestral"``.
* ``generator`` (a ``torch.Generator``) or ``noise_sampler`` (``f(sigma, sigma_next)``): the noise.
* Performance: the coefficient tables of a (method, parameters, sigmas, noise options)
  combination are computed once in float64 and cached (``PLAN_CACHE_SIZE`` entries), and so
  are their copies on the device (per device, dtype and batch size; ``clear_plan_cache()``
  forgets both); the loop has no host-device synchronisation. Each update ``a x + sum_j w_j
  D_j`` is a chain of ``lerp`` kernels (:func:`res_torch.steppers.lerp_chain`), one per term,
  the first writing a new tensor: the loop never writes into a tensor the model has received
  (a model, cache or hook may keep its input, as k-diffusion allows), nor into the caller's
  input or an iterate a callback has seen. Only the corrected iterate of a predictor–corrector
  step, which the model never sees, is updated in place. The model's ``sigma`` vectors and the
  callback's ``sigma_hat`` are entries of those cached tables: a model or callback that writes
  into them (``sigma *= c``) changes no later call, the loop restores the values
  (:mod:`res_torch.steppers`). The caches are built outside inference mode, so a
  run under ``torch.inference_mode()`` (as ComfyUI samples) leaves them usable by runs that
  record autograd.
* Autograd: unlike k-diffusion's samplers (decorated with ``torch.no_grad()``), these record
  the model's graph when autograd is on, so a loss on the sample can be differentiated through
  sampling (tested against the all-fresh path). For plain inference wrap the call in
  ``torch.no_grad()`` or ``torch.inference_mode()``, as ComfyUI and diffusers pipelines do:
  otherwise a network with parameters keeps every step's activations.
* ``extra_args`` with a ``"seed"`` (ComfyUI passes one) and neither ``generator`` nor
  ``noise_sampler``: the noise is drawn from a generator seeded with it (as ComfyUI's samplers
  do); ``extra_args`` still reaches the model unchanged.
* ``sigmas`` with a single entry: ``x`` is returned unchanged (no step, no evaluation).
* ``check_finite`` (default True): one check after the loop; raises
  :class:`~res_torch.steppers.NonFiniteSampleError` if the sample is NaN/inf. A ``meta``-device
  ``x`` (a shape-only run) needs ``check_finite=False`` (:class:`~res_torch.errors.DeviceError`).
  ``check_finite`` must be a bool and ``disable`` a bool or ``None`` (``TypeError``).
* Checks before the first evaluation: ``model``, ``callback`` and ``noise_sampler`` callable,
  ``generator`` a ``torch.Generator`` (``TypeError``). Every model output and noise draw must be
  a floating-point tensor of ``x``'s shape on ``x``'s device (else
  :class:`~res_torch.errors.ModelOutputError` / :class:`~res_torch.errors.NoiseError`: an int
  output would be truncated, a ``(1, d)`` draw broadcast over the batch); another floating
  dtype is cast to ``x``'s.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from res_torch.coefficients import Coefficients, coefficients
from res_torch.errors import NoiseError, UnknownMethodError
from res_torch.grid import StepGrid, make_grid, validate_sigmas
from res_torch.methods import METHODS, Method, cached_tableau, method_of
from res_torch.noise import NoiseOptions, NoiseSampler
from res_torch.recommend import AUTO_TABLE, budget_of, recommend
from res_torch.steppers import Denoiser, check_flags, check_model, clear_device_tables, run
from res_torch.tableau import Tableau, available_tableaux, parameter_number

__all__ = [
    "SAMPLERS",
    "UnknownMethodError",
    "cached_tableau",
    "clear_plan_cache",
    "sample",
    "sample_ddim",
    "sample_deis",
    "sample_dpmpp_2m",
    "sample_dpmpp_2s",
    "sample_dpmpp_3m",
    "sample_erk",
    "sample_euler",
    "sample_heun",
    "sample_ipndm",
    "sample_ipndm_v",
    "sample_method",
    "sample_res_2m",
    "sample_res_2s",
    "sample_res_3m",
    "sample_res_3s",
    "sample_res_ab3_free",
    "sample_res_ab3_grid",
    "sample_res_pc2_lambda",
    "sample_res_pc3_free",
    "sample_res_pc3_grid",
    "sample_res_pc3_rho7",
    "sample_res_pc4_free",
    "sample_res_pc4_grid",
    "sample_res_pc4_logsigma",
    "sample_res_pc4_rho7",
    "sample_res_pc4_sigma",
]

Callback = Callable[[dict], Any]
_GRID_OPTIONS = tuple(inspect.signature(make_grid).parameters)[1:]
"""The keywords of :func:`res_torch.grid.make_grid` (churn and per-step noise options)."""
ODE = NoiseOptions()
"""No churn, no per-step noise."""

PLAN_CACHE_SIZE = 32
"""How many (method, parameters, sigmas, noise options) coefficient tables are kept."""
_PLANS: OrderedDict[tuple, tuple[tuple, StepGrid, Coefficients]] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def planned(
    method: Method,
    params: Mapping[str, Any],
    sigmas: torch.Tensor | Sequence[float],
    noise: NoiseOptions,
) -> tuple[StepGrid, Coefficients]:
    """The step grid and coefficient tables of a run, computed once (float64, on the host) and
    kept in a small LRU cache, so repeated calls with the same schedule skip all set-up."""
    values = validate_sigmas(sigmas)
    numbers = []
    for name, value in sorted(params.items()):
        numbers.append((name, parameter_number(name, value)))
    options = noise.grid_options()
    owner = method.tableau if method.tableau is not None else method
    # the start-up files as they are now (cached_tableau reads an edited file anew)
    startup = method.tableau.startup_tableaux(cached_tableau) if method.tableau else ()
    sources = (owner, *startup)
    # typed: True == 1 hashes alike, and a cached plan must not let a refused option through
    typed = tuple(sorted((name, type(v).__name__, v) for name, v in options.items()))
    key = (tuple(map(id, sources)), tuple(numbers), tuple(values.tolist()), typed)
    with _PLANS_LOCK:
        entry = _PLANS.get(key)
        if entry is not None and all(a is b for a, b in zip(entry[0], sources, strict=True)):
            _PLANS.move_to_end(key)
            return entry[1], entry[2]
    with torch.inference_mode(False):  # cached: usable by later runs that record autograd
        grid = make_grid(values, **options)
        table = coefficients(method, grid, dict(numbers))
    with _PLANS_LOCK:
        _PLANS[key] = (sources, grid, table)
        if len(_PLANS) > PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    return grid, table


def clear_plan_cache() -> None:
    """Forget all cached coefficient tables, on the host and on devices (the next call of each
    sampler computes them again, as a first call does)."""
    with _PLANS_LOCK:
        _PLANS.clear()
    clear_device_tables()


def _single_level(model: Any, sigmas: Any) -> bool:
    """Whether ``sigmas`` holds one noise level only (a run of no step, which returns ``x``);
    the schedule and the model are checked either way."""
    check_model(model)
    return validate_sigmas(sigmas, min_entries=1).numel() == 1


def sample_method(
    method: str | Path | Tableau | Method,
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    noise: NoiseOptions = ODE,
    check_finite: bool = True,
    **params: Any,
) -> torch.Tensor:
    """Run any method (descriptor, name, tableau) with the stochastic options ``noise``."""
    described = method_of(method)
    check_flags(disable, check_finite)
    if not torch.is_tensor(x) or not x.is_floating_point():
        kind = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor, got {kind}")
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a mapping, got {type(extra_args).__name__}")
    if noise.noise_type not in described.noise_types:
        raise NoiseError(
            f"{described.name} steps in {described.variable} and supports only noise_type "
            f"{' or '.join(map(repr, described.noise_types))}, got {noise.noise_type!r} "
            "(use ddim or a tableau for 'sde')"
        )
    if _single_level(model, sigmas):
        return x  # no step (k-diffusion and ComfyUI do the same)
    grid, table = planned(described, params, sigmas, noise)
    sampler = noise.sampler(x, extra_args) if grid.stochastic else None
    schedule = sigmas if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, device=x.device)
    return run(
        model, x, schedule, grid, table, extra_args=extra_args, callback=callback,
        disable=disable, noise_sampler=sampler, check_finite=check_finite,
    )  # fmt: skip


def _sampler(
    method: str | Path | Tableau,
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None,
    callback: Callback | None,
    disable: bool | None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    eta: float = 0.0,
    noise_type: str | None = None,
    generator: torch.Generator | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
    **params: Any,
) -> torch.Tensor:
    """The public keywords bundled into :class:`NoiseOptions` (``noise_type`` ``None``: the
    method's :attr:`~res_torch.methods.Method.default_noise_type`)."""
    if noise_type is None:
        noise_type = method_of(method).default_noise_type
    noise = NoiseOptions(
        s_churn, s_tmin, s_tmax, s_noise, eta, noise_type, generator, noise_sampler
    )
    return sample_method(
        method, model, x, sigmas, extra_args, callback, disable, noise=noise,
        check_finite=check_finite, **params,
    )  # fmt: skip


def sample_erk(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    tableau: str | Path | Tableau,
    **options: Any,
) -> torch.Tensor:
    """Sample with any exported tableau (name, path or :class:`Tableau`), single-step or multistep.

    Other keywords are the shared options (module docstring) and the tableau's free parameters
    (e.g. ``c2=0.5``), checked against their admissible intervals. See
    :mod:`res_torch.coefficients` for the update formulas.
    """
    if not isinstance(tableau, str | Path | Tableau):
        raise TypeError(f"tableau must be a name, a path or a Tableau, got {tableau!r}")
    method = tableau if isinstance(tableau, Tableau) else cached_tableau(str(tableau))
    return _sampler(method, model, x, sigmas, extra_args, callback, disable, **options)


def _named(stem: str, doc: str, parameters: Sequence[str] = ()) -> Callable[..., torch.Tensor]:
    """A ``sample_<stem>`` function that runs the method ``stem`` (descriptor or tableau)."""

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
            raise TypeError(f"sample_{stem} runs the method {stem!r}; use sample_erk for others")
        return _sampler(stem, model, x, sigmas, extra_args, callback, disable, **options)

    sampler.__name__ = sampler.__qualname__ = f"sample_{stem}"
    sampler.__doc__ = (
        doc
        + (f"\n\n    Method options: {', '.join(parameters)}." if parameters else "")
        + "\n    Shared options: see :mod:`res_torch.samplers`."
    )
    return sampler


sample_ddim = _named(
    "ddim", "DDIM = exponential Euler: ``x' = e^{-h} x + h phi_1(h) D(x, sigma)`` (paper sign)."
)
sample_res_2s = _named(
    "res_2s",
    "RES 2-stage single-step (Zhang, Song & Chen 2023, Alg. 1): ``a_21 = c2 phi_1(c2 h)``, "
    "``b_2 = phi_2(h)/c2``, ``b_1 = phi_1(h) - b_2``; ``c2`` in [1/64, 1], default 1/2 (the "
    "weights grow like 1/c2: :data:`res_torch.coefficients.NODE_SPACING_MIN`).",
    ("c2",),
)
sample_dpmpp_2s = _named(
    "dpmpp_2s",
    "DPM-Solver++(2S): ``a_21 = c2 phi_1(c2 h)``, ``b_2 = phi_1(h)/(2 c2)``, "
    "``b_1 = phi_1(h) - b_2``; ``c2`` in [1/64, 1], default 1/2.",
    ("c2",),
)
sample_res_3s = _named(
    "res_3s",
    "RES 3-stage single-step (third order, order conditions met identically in h); ``c2`` in "
    "[1/64, 2/3), ``c3`` in (2/3, 1].",
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
sample_euler = _named(
    "euler",
    "Euler in ``sigma``: ``x' = x + (sigma' - sigma)(x - D)/sigma`` (k-diffusion "
    "``sample_euler``; equal to DDIM in exact arithmetic).",
)
sample_heun = _named(
    "heun",
    "EDM's Heun sampler in ``sigma`` (Karras et al. 2022, Alg. 1; with ``s_churn`` Alg. 2): "
    "Euler predictor, trapezoidal corrector; the step to ``sigma = 0`` is the denoiser output.",
)
sample_ipndm = _named(
    "ipndm",
    "iPNDM (Zhang & Chen 2023): ``x' = x + (sigma' - sigma) sum_j AB_k[j] eps_{n-j}`` with the "
    "fixed Adams–Bashforth coefficients of order ``k = min(n + 1, max_order)`` (k-diffusion / "
    "ComfyUI ``sample_ipndm``); the step to 0 is the denoiser output.",
    ("max_order (1-4, default 4)",),
)
sample_ipndm_v = _named(
    "ipndm_v",
    "iPNDM-v (Zhou et al. 2023): variable-step Adams–Bashforth on ``eps`` in ``sigma``, "
    "``w_j = int ell_j(sigma) dsigma`` over the actual noise levels (ComfyUI ``ipndm_v``).",
    ("max_order (1-4, default 4)",),
)
sample_deis = _named(
    "deis",
    "DEIS tAB (Zhang & Chen 2023; diffusers ``DEISMultistepScheduler``, log-rho): "
    "``x' = x + sum_j w_j eps_{n-j}``, ``w_j = int_sigma^sigma' ell_j(log s) ds``.",
    ("max_order (1-3, default 3)",),
)

_DESIGNED = (
    "integrated exactly, with the corrector through the new point where it contracts (no extra "
    "evaluation); after a correction the next ``eps`` is ``(x_{n+1} - D(x^p))/sigma`` "
    "(``docs/designed_methods.md``)."
)
sample_res_pc4_sigma = _named(
    "res_pc4_sigma",
    "Designed: ``eps`` interpolated in ``sigma`` through 4 values (variable-step AB4 = "
    "iPNDM-v), " + _DESIGNED,
    ("values (1-4, default 4)",),
)
sample_res_pc4_logsigma = _named(
    "res_pc4_logsigma",
    "Designed: ``eps`` interpolated in ``log sigma`` through 4 values (DEIS-4), " + _DESIGNED,
    ("values (1-4, default 4)",),
)
sample_res_pc4_rho7 = _named(
    "res_pc4_rho7",
    "Designed: ``eps`` interpolated in ``sigma^(1/7)`` (uniform on EDM grids) through 4 values, "
    + _DESIGNED,
    ("values (1-4, default 4)",),
)
sample_res_pc3_rho7 = _named(
    "res_pc3_rho7",
    "Designed: ``eps`` interpolated in ``sigma^(1/7)`` through 3 values, " + _DESIGNED,
    ("values (1-3, default 3)",),
)
sample_res_pc3_grid = _named(
    "res_pc3_grid",
    "Designed: ``eps`` interpolated in ``sigma^p`` through 3 values, ``p`` per step the power "
    "in which the step's nodes are most evenly spaced (``1/rho`` on Karras grids, 0 on "
    "exponential ones), " + _DESIGNED,
    ("values (1-3, default 3)",),
)
sample_res_pc4_grid = _named(
    "res_pc4_grid",
    "Designed: ``eps`` interpolated in the grid's own ``sigma^p`` (as ``res_pc3_grid``) through "
    "4 values, " + _DESIGNED,
    ("values (1-4, default 4)",),
)
sample_res_ab3_grid = _named(
    "res_ab3_grid",
    "Designed: ``eps`` extrapolated in the grid's own ``sigma^p`` (as ``res_pc3_grid``) through "
    "3 values without a corrector (an Adams–Bashforth method in ``sigma^p``, integrated "
    "exactly in ``sigma``; ``docs/designed_methods.md``).",
    ("values (1-3, default 3)",),
)
_FREE = (
    "with a free first step: from ``sigma_0`` to ``sigma_1`` it takes no evaluation of its own "
    "(``x^p = (sigma_1/sigma_0) x_0``, ``D_1 = D(x^p, sigma_1)``, ``x_1 = (sigma_1/sigma_0) "
    "x_0 + (1 - sigma_1/sigma_0) D_1``, ``D_1`` handed on), so an ODE run from "
    "``sigma_1 >= FREE_START_SIGMA = 10`` spends ``len(sigmas) - 2`` evaluations; from lower "
    "levels, or with ``eta`` or churn, the first step is evaluated (``docs/designed_methods.md``)."
)
sample_res_pc3_free = _named(
    "res_pc3_free", "Designed: ``res_pc3_grid`` " + _FREE, ("values (1-3, default 3)",)
)
sample_res_pc4_free = _named(
    "res_pc4_free", "Designed: ``res_pc4_grid`` " + _FREE, ("values (1-4, default 4)",)
)
sample_res_ab3_free = _named(
    "res_ab3_free", "Designed: ``res_ab3_grid`` " + _FREE, ("values (1-3, default 3)",)
)
sample_res_pc2_lambda = _named(
    "res_pc2_lambda",
    "Designed: ``D`` interpolated in ``lambda`` through 2 values (RES-2M) with the exponential "
    "Adams–Moulton corrector through the new point, PEC (``docs/designed_methods.md``).",
    ("values (1-2, default 2)",),
)

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
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "deis": sample_deis,
    "res_pc4_sigma": sample_res_pc4_sigma,
    "res_pc4_logsigma": sample_res_pc4_logsigma,
    "res_pc4_rho7": sample_res_pc4_rho7,
    "res_pc3_rho7": sample_res_pc3_rho7,
    "res_pc3_grid": sample_res_pc3_grid,
    "res_pc4_grid": sample_res_pc4_grid,
    "res_ab3_grid": sample_res_ab3_grid,
    "res_pc3_free": sample_res_pc3_free,
    "res_pc4_free": sample_res_pc4_free,
    "res_ab3_free": sample_res_ab3_free,
    "res_pc2_lambda": sample_res_pc2_lambda,
}
"""The named samplers; :func:`sample` also accepts any shipped tableau name."""


def sample(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    *,
    method: str = "res_2s",
    **options: Any,
) -> torch.Tensor:
    """Dispatch to ``sample_<method>`` (``SAMPLERS``), to :func:`sample_method` for another
    descriptor of :data:`res_torch.methods.METHODS`, or, for any other shipped tableau name
    (``krogstad``, ``hochbruck_ostermann4``, ...), to :func:`sample_erk`. ``method="auto"``
    runs the method :func:`res_torch.recommend.recommend` names for the budget ``sigmas``
    implies (:func:`res_torch.recommend.budget_of`: ``len(sigmas) - 1`` evaluations, one fewer
    for an ODE run from ``sigmas[1] >= 10``, where the table's methods start free; spent
    exactly). ``method`` is
    keyword-only (k-diffusion's positional order: ``model, x, sigmas, extra_args, callback,
    disable``)."""
    if isinstance(extra_args, str):
        raise TypeError(f"method is keyword-only: sample(model, x, sigmas, method={extra_args!r})")
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    if method == "auto":  # the table of res_torch.recommend for the budget the sigmas imply
        if _single_level(model, sigmas):  # no step: the table's first method checks the rest
            chosen = AUTO_TABLE[0][1]
            return sample(model, x, sigmas, extra_args, callback, disable, method=chosen, **options)
        values = validate_sigmas(sigmas)
        noise = {k: options[k] for k in _GRID_OPTIONS if options.get(k) is not None}
        budget = budget_of(values, stochastic=not make_grid(values, **noise).ode)
        chosen = recommend(budget)
        try:
            return sample(model, x, sigmas, extra_args, callback, disable, method=chosen, **options)
        except NoiseError as exc:  # say which method the options were checked against
            raise NoiseError(
                f"method='auto' chose {chosen} for {budget} evaluations: {exc}"
            ) from None
    if method in SAMPLERS:
        return SAMPLERS[method](model, x, sigmas, extra_args, callback, disable, **options)
    if method in METHODS:  # a descriptor without a named sampler (e.g. registered at run time)
        return _sampler(method, model, x, sigmas, extra_args, callback, disable, **options)
    if method in available_tableaux():
        return sample_erk(
            model, x, sigmas, extra_args, callback, disable, tableau=method, **options
        )
    known = sorted(set(SAMPLERS) | set(METHODS) | set(available_tableaux()))
    raise UnknownMethodError(f"unknown sampling method {method!r}; known: {', '.join(known)}")
