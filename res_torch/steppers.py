"""Generic exponential steppers in data-prediction (denoiser) form, driven by coefficient tables.

With ``lambda = -log sigma``, ``h = lambda_to - lambda_from`` and the denoiser ``D``, the
probability-flow ODE ``dx/dlambda = -x + D(x, e^{-lambda})`` is stepped by an explicit
exponential Runge–Kutta method (Hochbruck & Ostermann 2010, eq. 2.20; ``docs/tableau_format.md``
with ``L = -1``)::

    U_i     = e^{-c_i h} x_n + h sum_{j<i} a_ij D(U_j, sigma_n e^{-c_j h})
    x_{n+1} = e^{-h}     x_n + h sum_i    b_i  D(U_i, sigma_n e^{-c_i h})

A multistep method has one stage; its other "stages" are the denoiser values stored at the
previous ``j - 1`` steps, at nodes ``c_j = (lambda_{n-j+1} - lambda_n) / h_n`` taken from the
actual ``lambda`` of those evaluations (so variable step ratios are exact), and it begins with the
tableau's ``startup`` methods. A start-up method may be a multistep tableau or a single-step one
with any number of stages; a single-step start-up step runs all its stages (as
:func:`run_singlestep` would on that step) and stores its first stage value ``D(x_n, sigma_n)``
(node ``lambda_n``) as the history value of the step. Starting values of local error
``O(h^{p})`` keep the global order ``p`` of a ``p``-th order multistep method (e.g. RES-3M starts
with a RES-2S step; Hairer, Nørsett & Wanner, *Solving ODEs I*, sect. III.2). A step to
``sigma = 0`` returns the denoiser output (1 NFE).

All coefficients of a run are computed once, in float64 on the host (:meth:`Tableau.evaluate`),
and moved to the sample's device once (and cached there, :func:`clear_device_tables`); the
loops contain no host-device synchronisation. Each update is a chain of in-place ``lerp_``
kernels (:func:`lerp_chain`) where the loop owns the iterate (:class:`_Ownership`).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import trange

from res_torch.errors import NonFiniteSampleError
from res_torch.grid import StepGrid
from res_torch.noise import NoiseSampler
from res_torch.tableau import Tableau, TableauError, load_tableau

__all__ = [
    "Denoiser",
    "MultistepCoefficients",
    "NonFiniteSampleError",
    "SinglestepCoefficients",
    "clear_device_tables",
    "erk_coefficients",
    "lerp_chain",
    "multistep_coefficients",
    "run_multistep",
    "run_singlestep",
]

Denoiser = Callable[..., torch.Tensor]



@dataclass(frozen=True)
class SinglestepCoefficients:
    """Float64 coefficients of an ``s``-stage single-step method on an ``N``-step grid::

        U_i     = stage_decay[n, i] x_n + sum_{j<i} stage_weights[n, i, j] D_j
        D_i     = D(U_i, stage_sigma[n, i])
        x_{n+1} = decay[n] x_n + sum_i weights[n, i] D_i

    (for an exponential method ``decay = e^{-h}``, ``weights = h b``, ``stage_decay = e^{-c h}``,
    ``stage_weights = h A``). ``stage_used[i][j]`` / ``weight_used[i]`` say which entries are
    structurally non-zero; the others are skipped. Denoising steps are not in these tables.
    """

    decay: torch.Tensor
    weights: torch.Tensor
    stage_decay: torch.Tensor
    stage_weights: torch.Tensor
    stage_sigma: torch.Tensor
    stage_used: tuple[tuple[bool, ...], ...]
    weight_used: tuple[bool, ...]

    @property
    def stages(self) -> int:
        return self.weights.shape[1]


@dataclass(frozen=True)
class MultistepCoefficients:
    """Float64 coefficients of a multistep method on an ``N``-step grid::

        x_{n+1} = decay[n] x_n + sum_{j < used[n]} weights[n, j] D_{n-j}

    where ``D_{n-j}`` is the denoiser value of step ``n - j`` (``D_n`` the current one) and
    ``used[n]`` the number of values the method of step ``n`` (start-up or main) needs.
    A step whose method (``methods[n]``) is a key of ``singlestep`` is instead a step of that
    multi-stage single-step start-up method, with the coefficients ``singlestep[methods[n]]``
    (on the whole grid; its rows here are zero and ``used[n]`` is 1: the history value it
    leaves is its first stage value ``D_n``).
    """

    decay: torch.Tensor
    weights: torch.Tensor
    used: tuple[int, ...]
    methods: tuple[str, ...]
    singlestep: Mapping[str, SinglestepCoefficients]


def erk_coefficients(
    tableau: Tableau, grid: StepGrid, values: Mapping[str, float] | None = None
) -> SinglestepCoefficients:
    """Coefficients of a single-step tableau on ``grid`` (``Tableau.evaluate`` at every ``h``)."""
    if tableau.is_multistep:
        raise TableauError(f"{tableau.name!r} is a multistep method; use multistep_coefficients")
    n, s = grid.steps, tableau.stages
    finite = ~torch.tensor(grid.denoising, dtype=torch.bool)
    h = grid.h[finite]
    step = grid.lambda_step[finite]
    c, a, b = tableau.evaluate(h, dict(values or {}))
    decay = torch.zeros(n, dtype=torch.float64)
    weights = torch.zeros(n, s, dtype=torch.float64)
    stage_decay = torch.ones(n, s, dtype=torch.float64)
    stage_weights = torch.zeros(n, s, s, dtype=torch.float64)
    stage_sigma = grid.sigma_hat[:, None].expand(n, s).clone()
    decay[finite] = torch.exp(-h)
    weights[finite] = h[:, None] * b
    stage_decay[finite] = torch.exp(-c * h[:, None])
    stage_weights[finite] = h[:, None, None] * a
    stage_sigma[finite] = grid.sigma_hat[finite][:, None] * torch.exp(-c * step[:, None])
    weights[~finite, 0] = 1.0
    return SinglestepCoefficients(
        decay=decay,
        weights=weights,
        stage_decay=stage_decay,
        stage_weights=stage_weights,
        stage_sigma=stage_sigma,
        stage_used=tuple(tuple(bool(entry) for entry in row) for row in tableau.a),
        weight_used=tuple(bool(entry) for entry in tableau.b),
    )


def multistep_coefficients(
    tableau: Tableau,
    grid: StepGrid,
    values: Mapping[str, float] | None = None,
    load: Callable[[str], Tableau] = load_tableau,
) -> MultistepCoefficients:
    """Coefficients of a multistep tableau (with its start-up methods) on ``grid``.

    Start-up methods are multistep tableaux or single-step ones; those with more than one stage
    get :func:`erk_coefficients` on the whole grid (``MultistepCoefficients.singlestep``). The
    history nodes of step ``n`` are ``c_j = (lambda_{n-j+1} - lambda_n) / h_n`` with
    ``lambda_m = -log sigma_hat_m`` the point of step ``m``'s denoiser evaluation and ``h_n`` the
    step in ``lambda`` (``grid.lambda_step``).
    """
    values = dict(values or {})
    fixed = set(values) & set(tableau.history_parameters)
    if fixed:
        raise TableauError(
            f"{sorted(fixed)} are history nodes of {tableau.name!r}; they are set from the grid"
        )
    n = grid.steps
    startup = tableau.startup_tableaux(load)
    methods = [startup[m] if m < len(startup) else tableau for m in range(n)]
    for m, method in enumerate(methods):
        needs = method.stages if method.is_multistep else 1
        if needs > m + 1:
            raise TableauError(
                f"{method.name!r} needs {needs - 1} previous values at step {m} of {tableau.name!r}"
            )
    singlestep = {
        method.name: erk_coefficients(method, grid)
        for method in methods
        if not method.is_multistep and method.stages > 1
    }
    smax = max(1 if method.name in singlestep else method.stages for method in methods)
    h = grid.h
    lam = grid.lambda_hat
    denoising = grid.denoising
    decay = torch.zeros(n, dtype=torch.float64)
    weights = torch.zeros(n, smax, dtype=torch.float64)
    for name in dict.fromkeys(method.name for method in methods):
        steps = [m for m in range(n) if methods[m].name == name and not denoising[m]]
        if not steps or name in singlestep:
            continue
        method = methods[steps[0]]
        index = torch.tensor(steps)
        hs = h[index]
        step_values: dict[str, Any] = dict(values) if method is tableau else {}
        for j, parameter in enumerate(method.history_parameters, start=1):
            step_values[parameter] = (lam[index - j] - lam[index]) / grid.lambda_step[index]
        _, _, b = method.evaluate(hs, step_values)
        decay[index] = torch.exp(-hs)
        weights[index, : method.stages] = hs[:, None] * b
    used = [
        1 if denoising[m] or methods[m].name in singlestep else methods[m].stages for m in range(n)
    ]
    weights[torch.tensor(denoising, dtype=torch.bool), 0] = 1.0
    return MultistepCoefficients(
        decay=decay,
        weights=weights,
        used=tuple(used),
        methods=tuple(method.name for method in methods),
        singlestep=singlestep,
    )


def _coefficient_dtype(x: torch.Tensor) -> torch.dtype:
    """Coefficients are applied in at least float32 (half-precision scalars lose too much)."""
    return torch.promote_types(x.dtype, torch.float32)


def _split(table: torch.Tensor, leaf_ndim: int = 0) -> list:
    """``table`` as nested lists of its ``leaf_ndim``-dimensional sub-tensors (views)."""
    rows = table.unbind(0)
    return list(rows) if table.ndim == leaf_ndim + 1 else [_split(r, leaf_ndim) for r in rows]


def _on_device(table: torch.Tensor, x: torch.Tensor) -> list:
    """``table`` moved to ``x``'s device once, as nested lists of 0-d tensors (views)."""
    return _split(table.to(device=x.device, dtype=_coefficient_dtype(x)))


LERP_AMPLIFICATION_LIMIT = 4.0
"""Largest rounding-error amplification accepted for a lerp chain (:func:`lerp_chain`)."""


def lerp_chain(
    decay: float, weights: Sequence[float], limit: float = LERP_AMPLIFICATION_LIMIT
) -> tuple[list[int], list[float]] | None:
    """Write ``a x + sum_j w_j D_j`` as successive linear interpolations, or None.

    For consistent weights, ``sum_j w_j = 1 - a`` (``h sum_i b_i = 1 - e^{-h}``, and likewise the
    row sums of ``A``), the chain ``y_0 = x``, ``y_k = lerp(y_{k-1}, D_{j_k}, t_k) = (1 - t_k)
    y_{k-1} + t_k D_{j_k}`` ends in ``y_K = a x + sum_j w_j D_j`` for ``t_k = w_{j_k} / R_k``,
    ``R_k = 1 - sum_{l > k} w_{j_l}`` (so ``R_K = 1``, ``R_0 = a``). Every link reads two tensors
    and writes one in place: ``K`` passes over memory where ``a x`` plus one ``addcmul`` per term
    takes ``K + 1``. A link ``k >= 2`` multiplies the rounding error already in ``y_{k-1}`` by
    ``(1 + |t_k|) |R_k / R_{k-1}|``, unbounded as ``t_k -> 1``; of the given and the reversed
    order of the terms, the one with the smaller largest factor is returned as ``(order, t)``
    if that factor is at most ``limit``; None otherwise (or for inconsistent weights).
    """
    total = sum(weights)
    if not weights or abs(total - (1 - decay)) > 1e-14 * max(1.0, *map(abs, weights)):
        return None
    best: tuple[float, list[int], list[float]] | None = None
    for order in (list(range(len(weights))), list(reversed(range(len(weights))))):
        rest, links, factor = 1.0, [], 1.0
        for k in reversed(range(len(order))):
            if rest == 0.0:
                break
            t = weights[order[k]] / rest
            links.append(t)
            previous = rest - weights[order[k]]
            if k > 0:
                factor = max(factor, (1 + abs(t)) * abs(rest) / max(abs(previous), 1e-300))
            rest = previous
        else:
            if math.isfinite(factor) and (best is None or factor < best[0]):
                best = (factor, order, links[::-1])
    if best is None or best[0] > limit:
        return None
    return best[1], best[2]


_Term = tuple[int, torch.Tensor]
"""A term ``(j, coefficient)`` of an affine row: the value ``D_j`` and its weight or link."""


class _AffineRow:
    """One row of a method over all steps, on the sample's device:
    ``out = a_n x + sum_{j in columns} w_nj D_j``.

    Each step is applied either as a lerp chain (:func:`lerp_chain`, ``K`` kernels for ``K``
    terms) or directly as ``a x`` followed by one ``addcmul_`` per term; which, and all the
    chain coefficients, is decided in float64 on the host before the loop. ``in_place=True``
    lets the row overwrite ``x`` (the caller owns it and no term aliases it); otherwise the
    first kernel writes a new tensor.
    """

    def __init__(
        self, decay: torch.Tensor, weights: torch.Tensor, columns: list[int], x: torch.Tensor
    ) -> None:
        chains = [
            lerp_chain(a, w)
            for a, w in zip(decay.tolist(), weights[:, columns].tolist(), strict=True)
        ]
        links = torch.zeros(len(chains), max(len(columns), 1), dtype=torch.float64)
        for n, chain in enumerate(chains):
            if chain is not None:
                links[n, : len(chain[1])] = torch.tensor(chain[1], dtype=torch.float64)
        links_on_device = _on_device(links, x)
        decay_on_device = _on_device(decay, x)
        weights_on_device = _on_device(weights, x)
        # per step: (None, first link, other links) or (decay, None, terms)
        self.plans: list[tuple[torch.Tensor | None, _Term | None, list[_Term]]] = []
        for n, chain in enumerate(chains):
            if chain is None:
                terms = [(j, weights_on_device[n][j]) for j in columns]
                self.plans.append((decay_on_device[n], None, terms))
            else:
                chained = [(columns[j], links_on_device[n][k]) for k, j in enumerate(chain[0])]
                self.plans.append((None, chained[0], chained[1:]))

    def __call__(
        self, i: int, x: torch.Tensor, values: list[torch.Tensor], in_place: bool
    ) -> torch.Tensor:
        """The row at step ``i`` (in ``x`` itself when ``in_place``)."""
        decay, first, rest = self.plans[i]
        if first is not None:  # lerp chain
            j, t = first
            out = x.lerp_(values[j], t) if in_place else torch.lerp(x, values[j], t)
            for j, t in rest:
                out.lerp_(values[j], t)
            return out
        out = x.mul_(decay) if in_place else torch.mul(x, decay)
        for j, weight in rest:
            out.addcmul_(weight, values[j])
        return out


def _sigma_vectors(sigma: torch.Tensor, x: torch.Tensor) -> list:
    """The float64 noise levels ``sigma`` (any shape) as nested lists of ``(batch,)`` tensors on
    ``x``'s device in ``x``'s dtype: the model's ``sigma * x.new_ones(batch)``, made once."""
    table = sigma.to(device=x.device, dtype=x.dtype)[..., None]
    return _split(table.expand(*sigma.shape, x.shape[0]).contiguous(), leaf_ndim=1)


class _Evaluator:
    """Calls ``model(x, sigma_vector, **extra_args)``, checks the output's shape and brings it
    to the sample's dtype."""

    def __init__(self, model: Denoiser, x: torch.Tensor, extra_args: dict) -> None:
        self.model, self.extra_args = model, extra_args
        self.shape, self.dtype = x.shape, x.dtype

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        denoised = self.model(x, sigma, **self.extra_args)
        if not torch.is_tensor(denoised) or denoised.shape != self.shape:
            shape = tuple(denoised.shape) if torch.is_tensor(denoised) else type(denoised).__name__
            raise ValueError(f"model returned {shape}, expected a tensor of shape {self.shape}")
        if denoised.dtype != self.dtype:  # e.g. half-precision output under autocast
            denoised = denoised.to(self.dtype)
        return denoised


class _SinglestepUpdate:
    """The stages and update of a single-step method (:class:`SinglestepCoefficients`) at a
    non-denoising step ``i``, given the first stage value ``D_1 = D(x_n, stage_sigma[i, 0])``::

        U_i = stage_decay[i] x_n + sum_j stage_weights[i, j] D_j,   D_i = D(U_i, stage_sigma[i])
        x_{n+1} = decay x_n + sum_i weights[i] D_i
    """

    def __init__(self, coefficients: SinglestepCoefficients, x: torch.Tensor) -> None:
        s = coefficients.stages
        self.stage_rows = [
            _AffineRow(
                coefficients.stage_decay[:, stage],
                coefficients.stage_weights[:, stage],
                [j for j in range(stage) if coefficients.stage_used[stage][j]],
                x,
            )
            for stage in range(1, s)
        ]
        self.update = _AffineRow(
            coefficients.decay,
            coefficients.weights,
            [j for j in range(s) if coefficients.weight_used[j]],
            x,
        )
        self.stage_sigma = _sigma_vectors(coefficients.stage_sigma, x)

    def __call__(
        self, i: int, x: torch.Tensor, first: torch.Tensor, evaluate: _Evaluator, in_place: bool
    ) -> torch.Tensor:
        """``x_{n+1}`` (in ``x`` itself when ``in_place``; the stages never overwrite ``x``)."""
        denoised = [first]
        for stage, row in enumerate(self.stage_rows, start=1):
            u = row(i, x, denoised, in_place=False)
            denoised.append(evaluate(u, self.stage_sigma[i][stage]))
        return self.update(i, x, denoised, in_place)


class _GridNoise:
    """The churn and per-step noise of a run (:class:`StepGrid`), scales on the device.

    Churn (EDM Algorithm 2) raises the noise level from ``sigma_i`` to ``sigma_hat_i`` and draws
    ``noise_sampler(sigma_hat_i, sigma_i)``; the step's ancestral/SDE noise draws
    ``noise_sampler(sigma_i, sigma_{i+1})``: disjoint intervals, so a Brownian-tree sampler gives
    independent draws. Both return a new tensor.
    """

    def __init__(self, grid: StepGrid, x: torch.Tensor) -> None:
        self.churn_scale = _on_device(grid.churn_noise, x)
        self.step_scale = _on_device(grid.step_noise, x)
        self.has_churn = (grid.churn_noise > 0).tolist()
        self.has_step_noise = (grid.step_noise > 0).tolist()

    def churn(
        self, i: int, x: torch.Tensor, sigmas: torch.Tensor, sigma_hat: list, sampler: Any
    ) -> torch.Tensor:
        """``x`` raised from ``sigma_i`` to ``sigma_hat_i`` (a step with ``has_churn[i]``)."""
        return x + self.churn_scale[i] * sampler(sigma_hat[i], sigmas[i])

    def step(self, i: int, x: torch.Tensor, sigmas: torch.Tensor, sampler: Any) -> torch.Tensor:
        """The noise after step ``i`` (a step with ``has_step_noise[i]``)."""
        return x + self.step_scale[i] * sampler(sigmas[i], sigmas[i + 1])


@dataclass(frozen=True)
class _SinglestepTables:
    """Everything a single-step run needs on the device, built before the loop."""

    step: _SinglestepUpdate
    sigma_hat: list[torch.Tensor]
    noise: _GridNoise

    @classmethod
    def build(cls, grid: StepGrid, coefficients: SinglestepCoefficients, x: torch.Tensor):
        return cls(
            _SinglestepUpdate(coefficients, x),
            _on_device(grid.sigma_hat, x),
            _GridNoise(grid, x),
        )


@dataclass(frozen=True)
class _MultistepTables:
    """Everything a multistep run needs on the device, built before the loop."""

    rows: list[_AffineRow]
    singlestep: list[_SinglestepUpdate | None]
    sigma_hat: list[torch.Tensor]
    sigma_in: list[torch.Tensor]
    noise: _GridNoise

    @classmethod
    def build(cls, grid: StepGrid, coefficients: MultistepCoefficients, x: torch.Tensor):
        rows = {
            used: _AffineRow(coefficients.decay, coefficients.weights, list(range(used)), x)
            for used in set(coefficients.used)
        }
        singlestep = {
            name: _SinglestepUpdate(table, x) for name, table in coefficients.singlestep.items()
        }
        return cls(
            [rows[used] for used in coefficients.used],
            [singlestep.get(name) for name in coefficients.methods],
            _on_device(grid.sigma_hat, x),
            _sigma_vectors(grid.sigma_hat, x),
            _GridNoise(grid, x),
        )


TABLE_CACHE_SIZE = 32
"""How many device tables (per coefficient set, device, dtype and batch size) are kept."""
_TABLES: OrderedDict[tuple, tuple[object, object, Any]] = OrderedDict()
_TABLES_LOCK = threading.Lock()


def _device_tables(grid: StepGrid, coefficients: Any, x: torch.Tensor, build: Callable) -> Any:
    """``build(grid, coefficients, x)``, kept in a small LRU cache: a repeated call with the
    same (cached) coefficients on the same device, dtype and batch size moves nothing to the
    device and decides nothing on the host."""
    key = (id(grid), id(coefficients), x.device, x.dtype, x.shape[0])
    with _TABLES_LOCK:
        entry = _TABLES.get(key)
        if entry is not None and entry[0] is grid and entry[1] is coefficients:
            _TABLES.move_to_end(key)
            return entry[2]
    tables = build(grid, coefficients, x)
    with _TABLES_LOCK:
        _TABLES[key] = (grid, coefficients, tables)
        if len(_TABLES) > TABLE_CACHE_SIZE:
            _TABLES.popitem(last=False)
    return tables


def clear_device_tables() -> None:
    """Forget the cached device tables (e.g. to time a first call)."""
    with _TABLES_LOCK:
        _TABLES.clear()


class _Ownership:
    """Whether the loop may overwrite its iterate ``x`` in place.

    Never the caller's input; never with a callback (it may keep references to ``x``); never
    when autograd records the model (it may have saved ``x`` for its backward pass); never when
    the denoiser output shares memory with ``x`` (a model that returns or modifies its input).
    Otherwise every iterate after the first is a tensor the loop made, and the updates write
    into it instead of allocating (on the CPU a fresh tensor also costs page faults and cache
    misses; in the host-bound regime each allocation costs more than the kernel itself).
    """

    def __init__(self, callback: Any) -> None:
        self.allowed = callback is None
        self.grad = torch.is_grad_enabled()
        self.owned = False

    def may_overwrite(self, x: torch.Tensor, denoised: torch.Tensor) -> bool:
        return (
            self.owned
            and not (self.grad and (x.requires_grad or denoised.requires_grad))
            and x.untyped_storage().data_ptr() != denoised.untyped_storage().data_ptr()
        )

    def made(self, fresh: bool) -> None:
        """The new iterate is one the loop made (``fresh``) or a tensor it must not write."""
        self.owned = self.allowed and fresh


def _check_inputs(
    model: Any, x: Any, extra_args: Any, grid: StepGrid, sampler: NoiseSampler | None
) -> dict:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, sigma, **extra_args), got {model!r}")
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError("x must have a batch dimension (ndim >= 1)")
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a mapping, got {type(extra_args).__name__}")
    if grid.stochastic and sampler is None:
        raise ValueError("a stochastic run needs a noise_sampler")
    return dict(extra_args or {})


def _progress(steps: int, disable: bool | None) -> Iterable[int]:
    """The step indices, with a tqdm bar unless ``disable`` is True (``None``: tqdm decides)."""
    return range(steps) if disable is True else trange(steps, disable=disable)


def _finish(x: torch.Tensor, check_finite: bool) -> torch.Tensor:
    """One check after the loop: NaN/inf anywhere makes the sum non-finite (summed in at least
    float32, which cannot overflow for finite samples of any sensible size)."""
    total = x.sum(dtype=_coefficient_dtype(x)) if check_finite else None
    if total is not None and not bool(torch.isfinite(total)):
        raise NonFiniteSampleError(
            "the sample contains NaN/inf: the model returned non-finite values (or the step "
            "sizes are too large for the dtype); pass check_finite=False to return it anyway"
        )
    return x


def run_singlestep(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    grid: StepGrid,
    coefficients: SinglestepCoefficients,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run a single-step method (see :class:`SinglestepCoefficients`) over ``grid``.

    ``sigmas`` is the caller's schedule tensor (passed through to ``callback``).
    """
    extra_args = _check_inputs(model, x, extra_args, grid, noise_sampler)
    tables = _device_tables(grid, coefficients, x, _SinglestepTables.build)
    step, sigma_hat, noise = tables.step, tables.sigma_hat, tables.noise
    evaluate = _Evaluator(model, x, extra_args)
    denoising = grid.denoising
    ownership = _Ownership(callback)
    for i in _progress(grid.steps, disable):
        if noise.has_churn[i]:
            x = noise.churn(i, x, sigmas, sigma_hat, noise_sampler)
            ownership.made(fresh=True)
        denoised = evaluate(x, step.stage_sigma[i][0])
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat[i],
                 "denoised": denoised}
            )  # fmt: skip
        if denoising[i]:
            x = denoised
            ownership.made(fresh=False)
        else:
            x = step(i, x, denoised, evaluate, ownership.may_overwrite(x, denoised))
            ownership.made(fresh=True)
        if noise.has_step_noise[i]:
            x = noise.step(i, x, sigmas, noise_sampler)
            ownership.made(fresh=True)
    return _finish(x, check_finite)


def run_multistep(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    grid: StepGrid,
    coefficients: MultistepCoefficients,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run a multistep method (see :class:`MultistepCoefficients`) over ``grid``: one
    denoiser evaluation per step, at ``sigma_hat``, except for the steps of multi-stage
    single-step start-up methods, which evaluate all their stages."""
    extra_args = _check_inputs(model, x, extra_args, grid, noise_sampler)
    tables = _device_tables(grid, coefficients, x, _MultistepTables.build)
    sigma_hat, sigma_in, noise = tables.sigma_hat, tables.sigma_in, tables.noise
    evaluate = _Evaluator(model, x, extra_args)
    denoising = grid.denoising
    ownership = _Ownership(callback)
    keep = max(coefficients.used) - 1
    history: list[torch.Tensor] = []
    for i in _progress(grid.steps, disable):
        if noise.has_churn[i]:
            x = noise.churn(i, x, sigmas, sigma_hat, noise_sampler)
            ownership.made(fresh=True)
        denoised = evaluate(x, sigma_in[i])
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat[i],
                 "denoised": denoised}
            )  # fmt: skip
        if denoising[i]:
            x = denoised
            ownership.made(fresh=False)
        else:
            in_place = ownership.may_overwrite(x, denoised)
            singlestep = tables.singlestep[i]
            if singlestep is not None:
                x = singlestep(i, x, denoised, evaluate, in_place)
            else:
                x = tables.rows[i](i, x, [denoised, *history], in_place)
            ownership.made(fresh=True)
        if keep:
            history = [denoised, *history[: keep - 1]]
        if noise.has_step_noise[i]:
            x = noise.step(i, x, sigmas, noise_sampler)
            ownership.made(fresh=True)
    return _finish(x, check_finite)
