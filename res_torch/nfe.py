"""Counting denoiser evaluations (NFE) and turning an NFE budget into a schedule.

Counting rule (the paper's, which counts the final denoising evaluation): a run over
``sigmas = (sigma_0, ..., sigma_N)`` has ``N`` steps; a step to ``sigma = 0`` costs 1 evaluation
(the denoiser output is the result); every other step costs ``s`` evaluations for an ``s``-stage
single-step method, 2 for Heun, 1 for Euler/DDIM and 1 for a multistep method, except that the
``k``-th step of a multistep method (``k < len(startup)``) costs what its start-up method costs
(``s`` for an ``s``-stage single-step start-up method, 1 for a multistep one). So
``nfe = sum_{k < N - 1} cost_k + 1`` for a schedule ending in 0 and ``sum_{k < N} cost_k``
otherwise; for a method without multi-stage start-up, ``nfe = s (N - 1) + 1`` and ``s N``.
A free-start method (:meth:`res_torch.methods.InterpolatedMethod.starts_free`: an ODE run whose
second level is at least ``FREE_START_SIGMA``) takes its first step without an evaluation of its
own, so ``nfe = N - 1`` there (this count assumes an ODE run; with ``eta``, or churn at any
level, the first step is evaluated, one more), and :func:`sigmas_for_nfe` gives it one more step
for the same budget.
Examples: RES-2S at NFE 9 takes 4 two-stage steps and the final denoising step (5 nonzero
sigmas); RES-3M (start-up RES-2S, RES-2M) with ``N - 1 >= 1`` non-final steps costs
``(N - 1) + 1 + 1`` (one extra evaluation for the RES-2S stage, 1 for the final step).
A repeated sigma (a zero-length step) is refused (``SigmasError``); a nearly repeated one is a
step like any other: where a multistep method passes over a too-close stored value or runs a
lower order (:data:`res_torch.coefficients.NODE_SPACING_MIN`) only its coefficients change.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from res_torch.checks import integer
from res_torch.errors import NFEBudgetError, ScheduleError
from res_torch.grid import validate_sigmas
from res_torch.methods import Method, method_of
from res_torch.recommend import budget_of, recommend
from res_torch.schedules import (
    MAX_STEPS,
    get_sigmas_discrete,
    get_sigmas_exponential,
    get_sigmas_flow,
    get_sigmas_karras,
    get_sigmas_polyexponential,
    get_sigmas_uniform,
    get_sigmas_vp,
)
from res_torch.tableau import Tableau

__all__ = [
    "NFEBudgetError",
    "SCHEDULES",
    "evaluations_per_step",
    "has_range",
    "nfe",
    "sigmas_for_nfe",
]

SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "karras": get_sigmas_karras,
    "exponential": get_sigmas_exponential,
    "flow": get_sigmas_flow,
    "uniform": get_sigmas_uniform,
    "polyexponential": get_sigmas_polyexponential,
    "vp": get_sigmas_vp,
    "discrete": get_sigmas_discrete,
}
"""Schedules by name; all but ``vp`` and ``discrete`` (a model's own range) take ``sigma_min``
and ``sigma_max`` (:func:`has_range`)."""


def has_range(schedule: str) -> bool:
    """Whether the :data:`SCHEDULES` function ``schedule`` takes ``sigma_min``/``sigma_max``.

    >>> has_range("karras"), has_range("vp"), has_range("discrete")
    (True, False, False)
    """
    if schedule not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    return "sigma_min" in inspect.signature(SCHEDULES[schedule]).parameters


def evaluations_per_step(method: str | Path | Tableau | Method) -> int:
    """Denoiser evaluations of one (non-final) step of ``method`` itself (its descriptor's
    ``stages``: a named method, a tableau name or path, a :class:`Tableau` or a descriptor).
    The start-up steps of a multistep method cost what their start-up method costs (see
    :func:`nfe`).

    >>> evaluations_per_step("res_2s"), evaluations_per_step("heun"), evaluations_per_step("ipndm")
    (2, 2, 1)
    """
    return method_of(method).stages


def _step_costs(
    method: str | Path | Tableau | Method, steps: int, sigmas: Sequence[float] | None = None
) -> list[int]:
    """Evaluations of the first ``steps`` non-final steps of ``method`` (start-up included; a
    free first step where ``sigmas`` allow one, :meth:`Method.step_costs`)."""
    return method_of(method).step_costs(steps, sigmas)


def nfe(method: str | Path | Tableau | Method, sigmas: torch.Tensor | Sequence[float]) -> int:
    """Number of denoiser evaluations of ``method`` over ``sigmas`` (rule: module docstring);
    ``"auto"`` counts those of the method it runs there (:mod:`res_torch.recommend`).

    >>> nfe("res_2s", [80.0, 10.0, 1.0, 0.0]), nfe("res_3m", [80.0, 10.0, 1.0, 0.0])
    (5, 4)
    >>> nfe("auto", [80.0, 10.0, 1.0, 0.0]), nfe("auto", [8.0, 4.0, 1.0, 0.0])  # free start
    (2, 3)
    >>> nfe("res_2m", [1.0])
    0
    """
    values = validate_sigmas(sigmas, min_entries=1)
    if method != "auto":
        method_of(method)  # an unknown method is an error whatever the schedule
    if values.numel() == 1:
        return 0  # no step: the samplers return x unchanged
    if method == "auto":
        method = recommend(budget_of(values))
    return _nfe_of(method, values.tolist())


def _nfe_of(method: str | Path | Tableau | Method, levels: list[float]) -> int:
    """:func:`nfe` of a validated schedule of at least two ``levels``, ``method`` not ``auto``."""
    steps = len(levels) - 1
    final = int(levels[-1] == 0)
    return sum(_step_costs(method, steps - final, levels)) + final


def sigmas_for_nfe(
    nfe: int,
    method: str | Path | Tableau | Method,
    schedule: str = "karras",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    **schedule_options: Any,
) -> torch.Tensor:
    """The ``schedule`` (ending in 0) on which ``method`` uses exactly ``nfe`` evaluations.

    Solves ``nfe = sum_{k < n - 1} cost_k + 1`` (module docstring; ``s (n - 1) + 1`` for an
    ``s``-stage method; ``method="auto"``: the method :func:`res_torch.recommend.recommend`
    names for ``nfe``) for the number ``n`` of nonzero sigmas; raises :class:`NFEBudgetError`
    when there is no integer solution (e.g. NFE 10 for a 2-stage method, NFE 2 for RES-3M,
    whose first step costs 2). ``sigma_min``/``sigma_max`` (default: the schedule's, 0.002 and
    80) and ``rho`` go to the schedules that have them (``karras``: default 7,
    ``polyexponential``: default 1; ``vp`` and ``discrete`` run over their model's own range);
    ``schedule_options`` to the schedule function (e.g. ``beta_d`` for ``vp``, ``spacing`` for
    ``discrete``). A free-start method gets one step more where its first step is then free
    (an ODE run); where neither grid spends ``nfe`` (the discrete grid's ``leading`` spacing
    moves its second level with the step count), :class:`NFEBudgetError`.
    """
    nfe = integer("nfe", nfe, 1, MAX_STEPS, NFEBudgetError)
    if method == "auto":
        method = recommend(nfe)
    if schedule not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    costs = _step_costs(method, nfe)  # at least 1 evaluation per step: nfe steps suffice
    steps, spent = 0, 0
    while spent + costs[steps] <= nfe - 1:
        spent += costs[steps]
        steps += 1
    if spent != nfe - 1:
        below, above = spent + 1, spent + costs[steps] + 1
        per_step = evaluations_per_step(method)
        start = "" if set(costs) == {per_step} else f" (its first steps: {costs[: steps + 1]})"
        raise NFEBudgetError(
            f"NFE {nfe} is not attainable with {method} ({per_step} evaluations per step{start} "
            f"+ 1 for the final denoising step): the nearest budgets are {below} and {above}"
        )
    options = dict(schedule_options)
    accepted = set(inspect.signature(SCHEDULES[schedule]).parameters) - {"n", "device", "dtype"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ScheduleError(
            f"schedule {schedule!r} has no option(s) {unknown}; it takes {sorted(accepted)}"
        )
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is not None:
            if not has_range(schedule):
                raise ScheduleError(f"schedule {schedule!r} has its own range: no {name}")
            options[name] = value
    if rho is not None:
        if schedule not in ("karras", "polyexponential"):
            raise ScheduleError(f"schedule {schedule!r} has no rho")
        options["rho"] = rho
    build = SCHEDULES[schedule]
    candidates = [steps + 1]
    if method_of(method).free_start:  # one more step where its first step is free
        candidates.insert(0, steps + 2)
    for levels in candidates:
        if levels > MAX_STEPS:  # the free-start grid of the largest budgets
            continue
        sigmas = build(levels, device=device, dtype=dtype, **options)
        if _nfe_of(method, sigmas.tolist()) == nfe:
            return sigmas
    if candidates[0] > MAX_STEPS:
        raise NFEBudgetError(
            f"NFE {nfe} is not attainable with {method} on this {schedule} grid: its free first "
            f"step needs {candidates[0]} noise levels, more than MAX_STEPS = {MAX_STEPS}"
        )
    raise NFEBudgetError(
        f"NFE {nfe} is not attainable with {method} on this {schedule} grid: with one more step "
        "its first step is not free, with one fewer it is (the grid's second level moves with "
        "the step count)"
    )
