"""The fast loop: runs the tables of :mod:`res_torch.coefficients` with few kernels per step.

Every method is the same step (formulas: :mod:`res_torch.coefficients`; the readable version
is :func:`res_torch.reference.sample_reference`, the oracle of this loop in the tests)::

    Y_1 = Y(x_n, sigma_hat_n);  U_i = a_i x_n + sum_j A_ij Y_j,  Y_i = Y(U_i, sigma_i)
    x_{n+1} = a x_n + sum_i w_i Y_i + sum_j w_{s+j} Y_{n-j}

All coefficients of a run are float64 numbers computed once on the host, moved to the
sample's device once (and cached there, :func:`clear_device_tables`); the loop contains no
host-device synchronisation. Each affine update is a chain of ``lerp`` kernels
(:func:`lerp_chain`): the first writes a new tensor, unless the loop may overwrite the iterate
(:class:`_Ownership`: never a tensor the model has received), and the others write in place.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import trange

from res_torch.coefficients import Coefficients, StepCoefficients
from res_torch.errors import (
    DeviceError,
    NoiseError,
    NonFiniteSampleError,
    SampleError,
    SigmasError,
)
from res_torch.grid import StepGrid
from res_torch.noise import NoiseSampler
from res_torch.reference import checked_noise_sampler, checked_output

__all__ = [
    "LERP_AMPLIFICATION_LIMIT",
    "Denoiser",
    "NonFiniteSampleError",
    "check_flags",
    "check_model",
    "clear_device_tables",
    "lerp_chain",
    "run",
]

Denoiser = Callable[..., torch.Tensor]


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


class _HandedOut:
    """The device tables whose entries the loop hands out: the model's sigma vectors and the
    callback's ``sigma_hat``. k-diffusion makes these fresh for every call; here they are cached
    across runs, so a model or callback that writes into its argument (``sigma *= c``) would
    change every later call. A write shows in the tensor's version counter (shared by all views
    of a table); :meth:`repair` then copies the host values back, before the loop reads them
    again. Reading the counters costs no device work."""

    def __init__(self) -> None:
        self.tables: list[tuple[torch.Tensor, torch.Tensor]] = []  # (device, host float64)
        self.versions: list[int] = []

    def add(self, host: torch.Tensor, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``host`` (rows of values, expanded along ``x``'s batch for a 2-d ``host``) on the
        device, watched."""
        device = host.to(device=x.device, dtype=dtype, copy=True)
        if host.ndim == 2:
            device = device.expand(-1, x.shape[0]).contiguous()
        self.tables.append((device, host))
        self.versions.append(device._version)
        return device

    def repair(self) -> None:
        for k, (device, host) in enumerate(self.tables):
            if device._version != self.versions[k]:
                with torch.no_grad():
                    device.copy_(host.to(device.dtype).expand_as(device))
                self.versions[k] = device._version


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
    and writes one: ``K`` passes over memory where ``a x`` plus one ``addcmul`` per term
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
"""A term ``(j, coefficient)`` of an affine row: the value ``V_j`` and its weight or link."""
_Plan = tuple["torch.Tensor | None", "tuple[int, torch.Tensor, bool] | None", list]
"""One affine row on the device: ``(None, first link, other links)`` for a lerp chain or
``(decay, None, terms)`` for ``decay x`` followed by one ``addcmul_`` per term. The first link
``(j, t, from_value)`` is ``lerp(x, V_j, t)``, or with ``from_value`` ``lerp(V_j, x, t)``: ``t``
is then the weight of ``x``, kept exact where it is small."""


class _Numbers:
    """Float64 host numbers collected before the loop and moved to the device in one copy."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def on_device(self, x: torch.Tensor) -> list[torch.Tensor]:
        table = torch.tensor(self.values or [0.0], dtype=torch.float64)
        return _on_device(table, x)


def _row(numbers: _Numbers, decay: float, weights: Sequence[float]) -> tuple:
    """The host plan of ``decay x + sum_j weights_j V_j`` (exact zeros skipped): indices into
    ``numbers``, resolved to device scalars by :func:`_resolve`."""
    columns = [j for j, w in enumerate(weights) if w != 0.0]
    chain = lerp_chain(decay, [weights[j] for j in columns]) if columns else None
    if chain is None:
        return (numbers.add(decay), None, [(j, numbers.add(weights[j])) for j in columns])
    order, ts = chain
    rest = [(columns[j], numbers.add(t)) for j, t in zip(order[1:], ts[1:], strict=True)]
    first = columns[order[0]]
    if abs(ts[0]) > 0.5:
        # y_1 = lerp(V, x, s) with s = a/R_1, the weight of x: lerp(x, V, t) would carry it as
        # 1 - t, losing a = e^{-h} to rounding when it is small (an absolute error eps |x|)
        return (None, (first, numbers.add(decay / (decay + weights[first])), True), rest)
    return (None, (first, numbers.add(ts[0]), False), rest)


def _resolve(plan: tuple, scalars: list[torch.Tensor]) -> _Plan:
    decay, first, rest = plan
    return (
        None if decay is None else scalars[decay],
        None if first is None else (first[0], scalars[first[1]], first[2]),
        [(j, scalars[k]) for j, k in rest],
    )


def _apply(plan: _Plan, x: torch.Tensor, values: list[torch.Tensor], in_place: bool):
    """One affine row (in ``x`` itself when ``in_place``)."""
    decay, first, rest = plan
    if first is not None:  # lerp chain
        j, t, from_value = first
        if from_value:  # t is the weight of x
            out = torch.lerp(values[j], x, t, out=x if in_place else None)
        else:
            out = x.lerp_(values[j], t) if in_place else torch.lerp(x, values[j], t)
        for j, t in rest:
            out.lerp_(values[j], t)
        return out
    out = x.mul_(decay) if in_place else torch.mul(x, decay)
    for j, weight in rest:
        out.addcmul_(weight, values[j])
    return out


class _StepPlan:
    """One step on the device: evaluation sigmas (``(batch,)`` vectors for the model and 0-d
    scalars for ``eps``), stage rows and the update row."""

    def __init__(self, step: StepCoefficients, numbers: _Numbers) -> None:
        self.denoising, self.guessed = step.denoising, step.guessed
        self.sigma = [numbers.add(s) for s in step.sigmas]
        self.stage_rows = [
            _row(numbers, step.stage_decay[i], step.stage_weights[i])
            for i in range(step.stages - 1)
        ]
        self.update = None if step.denoising else _row(numbers, step.decay, step.weights)
        self.corrector = _row(numbers, step.decay, step.corrector) if step.corrector else None
        self.corrector_values = len(step.corrector) - 1
        linearisation = step.linearisation
        self.linearisation = None if linearisation is None else numbers.add(linearisation)

    def resolve(self, scalars: list[torch.Tensor], vectors: list[torch.Tensor]) -> None:
        self.sigma_vector = [vectors[k] for k in self.sigma]
        self.sigma = [scalars[k] for k in self.sigma]
        self.stage_rows = [_resolve(row, scalars) for row in self.stage_rows]
        self.update = None if self.update is None else _resolve(self.update, scalars)
        self.corrector = None if self.corrector is None else _resolve(self.corrector, scalars)
        if self.linearisation is not None:
            self.linearisation = scalars[self.linearisation]


class _Tables:
    """Everything a run needs on the device, built before the loop."""

    def __init__(self, grid: StepGrid, table: Coefficients, x: torch.Tensor) -> None:
        numbers = _Numbers()
        self.steps = [_StepPlan(step, numbers) for step in table.steps]
        scalars = numbers.on_device(x)
        self.handed_out = _HandedOut()
        host = torch.tensor(numbers.values or [0.0], dtype=torch.float64)
        vectors = list(self.handed_out.add(host[:, None], x, x.dtype).unbind(0))
        for step in self.steps:
            step.resolve(scalars, vectors)
        self.sigma_hat = _split(self.handed_out.add(grid.sigma_hat, x, _coefficient_dtype(x)))
        self.noise = _GridNoise(grid, x)


class _Evaluator:
    """Calls ``model(x, sigma_vector, **extra_args)`` and checks the output
    (:func:`~res_torch.reference.checked_output`: shape, floating dtype, device; cast to the
    sample's dtype)."""

    def __init__(
        self,
        model: Denoiser,
        x: torch.Tensor,
        extra_args: dict,
        handed_out: _HandedOut | None = None,
    ) -> None:
        self.model, self.extra_args, self.like = model, extra_args, x
        self.handed_out = handed_out

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        output = self.model(x, sigma, **self.extra_args)
        if self.handed_out is not None:  # the sigma vectors are cached tables
            self.handed_out.repair()
        return checked_output(output, self.like)


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
    with torch.inference_mode(False):  # cached: usable by later runs that record autograd
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

    Never the caller's input; never a tensor the model has received (a model, hook or cache may
    keep a reference to its input, as k-diffusion's loops, which never write into ``x``,
    allow); never with a callback (it may keep references to ``x``); never when autograd
    records the model (it may have saved ``x`` for its backward pass); never when the denoiser
    output shares memory with ``x`` (a model that returns or modifies its input). What is left
    is the corrected iterate of a predictor–corrector step (the model saw the predicted point,
    not it): its update writes into it instead of allocating (on the CPU a fresh tensor also
    costs page faults and cache misses; in the host-bound regime each allocation costs more
    than the kernel itself).
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


def check_model(model: Any) -> None:
    """``TypeError`` unless ``model`` can be called as ``model(x, sigma, **extra_args)``."""
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, sigma, **extra_args), got {model!r}")


def check_flags(disable: Any, check_finite: Any) -> None:
    """``TypeError`` unless ``disable`` is a bool or ``None`` (tqdm decides) and
    ``check_finite`` a bool (``None`` would switch the final check off, ``"no"`` on)."""
    if disable is not None and not isinstance(disable, bool):
        raise TypeError(f"disable must be True, False or None, got {disable!r:.40}")
    if not isinstance(check_finite, bool):
        raise TypeError(f"check_finite must be True or False, got {check_finite!r:.40}")


def _check_inputs(
    model: Any,
    x: Any,
    extra_args: Any,
    grid: StepGrid,
    sampler: NoiseSampler | None,
    callback: Any,
    disable: Any,
    check_finite: Any,
) -> dict:
    """Everything checkable before the first model call."""
    check_flags(disable, check_finite)
    check_model(model)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(dict) or None, got {callback!r}")
    if sampler is not None and not callable(sampler):
        raise TypeError(f"noise_sampler must be callable as noise_sampler(sigma, sigma_next), "
                        f"got {sampler!r}")  # fmt: skip
    if not torch.is_tensor(x) or not x.is_floating_point():
        kind = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a floating-point tensor, got {kind}")
    if x.ndim < 1:
        raise SampleError("x must have a batch dimension (ndim >= 1)")
    if check_finite and x.device.type == "meta":
        raise DeviceError("x is on the meta device (no values to check): pass check_finite=False")
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a mapping, got {type(extra_args).__name__}")
    if grid.stochastic and sampler is None:
        raise NoiseError("a stochastic run needs a noise_sampler")
    # the model gets its noise levels in x's dtype; churn can raise a later one above the first
    ends = torch.stack(grid.sigma_hat.aminmax())
    rounded = ends.to(x.dtype)
    if not bool(torch.isfinite(rounded).all() and (rounded > 0).all()):
        low, high = ends.tolist()
        raise SigmasError(
            f"the noise levels {low:g} .. {high:g} round to 0 or inf in x's dtype {x.dtype}: "
            "use a wider dtype for x"
        )
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


def _predict(kind: str, x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor):
    """``Y``: ``D``, or ``eps = (x - D)/sigma`` (a new tensor)."""
    return denoised if kind == "denoised" else torch.sub(x, denoised).div_(sigma)


def run(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    grid: StepGrid,
    table: Coefficients,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run the tables ``table`` over ``grid`` (``sigmas``: the caller's schedule tensor,
    passed to ``callback`` and the noise sampler)."""
    extra_args = _check_inputs(
        model, x, extra_args, grid, noise_sampler, callback, disable, check_finite
    )
    if noise_sampler is not None:
        noise_sampler = checked_noise_sampler(noise_sampler, x)
    tables = _device_tables(grid, table, x, _Tables)
    sigma_hat, noise, kind = tables.sigma_hat, tables.noise, table.prediction
    evaluate = _Evaluator(model, x, extra_args, tables.handed_out)
    ownership = _Ownership(callback)
    keep = table.history
    history: list[torch.Tensor] = []
    pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (D, Y) at a corrected point
    for i in _progress(grid.steps, disable):
        step = tables.steps[i]
        if noise.has_churn[i]:
            x = noise.churn(i, x, sigmas, sigma_hat, noise_sampler)
            ownership.made(fresh=True)
        if step.guessed:  # the free first step: D taken as 0, no evaluation here
            denoised, first = torch.zeros_like(x), None
        elif pending is None:
            denoised, first = evaluate(x, step.sigma_vector[0]), None
            ownership.made(fresh=False)  # the model has seen x
        else:
            (denoised, first), pending = pending, None
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat[i],
                 "denoised": denoised}
            )  # fmt: skip
            tables.handed_out.repair()
        if step.denoising:
            x = denoised
            ownership.made(fresh=False)
        else:
            values = [_predict(kind, x, denoised, step.sigma[0]) if first is None else first]
            for stage, row in enumerate(step.stage_rows, start=1):
                u = _apply(row, x, values, in_place=False)
                stage_denoised = evaluate(u, step.sigma_vector[stage])
                values.append(_predict(kind, u, stage_denoised, step.sigma[stage]))
            in_place = ownership.may_overwrite(x, denoised)
            if step.corrector is None:
                x = _apply(step.update, x, values + history, in_place)
            else:  # predictor, one evaluation there (reused by the next step), corrector
                predicted = _apply(step.update, x, values + history, in_place=False)
                following = tables.steps[i + 1]
                new = evaluate(predicted, following.sigma_vector[0])
                pending = (new, _predict(kind, predicted, new, following.sigma[0]))
                used = (values + history)[: step.corrector_values]
                x = _apply(step.corrector, x, [*used, pending[1]], in_place)
                if step.linearisation is not None:  # D and Y at the corrected point
                    new = torch.sub(x, predicted).mul_(step.linearisation).add_(new)
                    pending = (new, _predict(kind, x, new, following.sigma[0]))
            ownership.made(fresh=True)
            if keep:
                history = [values[0], *history[: keep - 1]]
        if noise.has_step_noise[i]:
            x = noise.step(i, x, sigmas, noise_sampler)
            ownership.made(fresh=True)
    return _finish(x, check_finite)
