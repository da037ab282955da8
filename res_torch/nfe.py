"""Counting denoiser evaluations (NFE) and turning an NFE budget into a schedule.

Counting rule (the paper's, which counts the final denoising evaluation): a run over
``sigmas = (sigma_0, ..., sigma_N)`` has ``N`` steps; a step to ``sigma = 0`` costs 1 evaluation
(the denoiser output is the result); every other step costs ``s`` evaluations for an ``s``-stage
single-step method, 2 for Heun, 1 for Euler/DDIM and 1 for a multistep method (its start-up
steps included). So ``nfe = s (N - 1) + 1`` for a schedule ending in 0, and ``s N`` otherwise.
Example: RES-2S at NFE 9 takes 4 two-stage steps and the final denoising step (5 nonzero sigmas).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from res_torch.grid import validate_sigmas
from res_torch.samplers import SAMPLERS, UnknownMethodError, cached_tableau
from res_torch.schedules import (
    get_sigmas_exponential,
    get_sigmas_karras,
    get_sigmas_polyexponential,
    get_sigmas_uniform,
    get_sigmas_vp,
)
from res_torch.tableau import Tableau, TableauError

__all__ = ["NFEBudgetError", "SCHEDULES", "evaluations_per_step", "nfe", "sigmas_for_nfe"]

SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "karras": get_sigmas_karras,
    "exponential": get_sigmas_exponential,
    "uniform": get_sigmas_uniform,
    "polyexponential": get_sigmas_polyexponential,
    "vp": get_sigmas_vp,
}
"""Schedules by name; all but ``vp`` take ``sigma_min`` and ``sigma_max``."""

_IN_SIGMA = {"euler": 1, "heun": 2}


class NFEBudgetError(ValueError):
    """An NFE budget that the method cannot spend exactly."""


def evaluations_per_step(method: str | Path | Tableau) -> int:
    """Denoiser evaluations of one (non-final) step of ``method``: a named sampler, a tableau
    name or path, or a :class:`Tableau` (stages for single-step, 1 for multistep)."""
    if isinstance(method, str) and method in _IN_SIGMA:
        return _IN_SIGMA[method]
    if isinstance(method, Tableau):
        tableau = method
    else:
        try:
            tableau = cached_tableau(str(method))
        except TableauError as exc:
            raise UnknownMethodError(
                f"unknown method {method!r} (named samplers: {', '.join(SAMPLERS)}; {exc})"
            ) from None
    return 1 if tableau.is_multistep else tableau.stages


def nfe(method: str | Path | Tableau, sigmas: torch.Tensor | Sequence[float]) -> int:
    """Number of denoiser evaluations of ``method`` over ``sigmas`` (rule: module docstring)."""
    values = validate_sigmas(sigmas)
    steps = values.numel() - 1
    final = int(values[-1] == 0)
    return evaluations_per_step(method) * (steps - final) + final


def sigmas_for_nfe(
    nfe: int,
    method: str | Path | Tableau,
    schedule: str = "karras",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    **schedule_options: Any,
) -> torch.Tensor:
    """The ``schedule`` (ending in 0) on which ``method`` uses exactly ``nfe`` evaluations.

    Solves ``nfe = s (n - 1) + 1`` for the number ``n`` of nonzero sigmas; raises
    :class:`NFEBudgetError` when there is no integer solution (e.g. NFE 10 for a 2-stage
    method). ``rho`` goes to schedules that have it (``karras``: default 7, ``polyexponential``:
    default 1); ``schedule_options`` to the schedule function (e.g. ``beta_d`` for ``vp``).
    """
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise NFEBudgetError(f"nfe must be an integer >= 1, got {nfe!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    per_step = evaluations_per_step(method)
    steps, remainder = divmod(nfe - 1, per_step)
    if remainder:
        below, above = steps * per_step + 1, (steps + 1) * per_step + 1
        raise NFEBudgetError(
            f"NFE {nfe} is not attainable with {method} ({per_step} evaluations per step + 1 "
            f"for the final denoising step): the nearest budgets are {below} and {above}"
        )
    options = dict(schedule_options)
    if schedule != "vp":
        options.update(sigma_min=sigma_min, sigma_max=sigma_max)
    if rho is not None:
        if schedule not in ("karras", "polyexponential"):
            raise ValueError(f"schedule {schedule!r} has no rho")
        options["rho"] = rho
    return SCHEDULES[schedule](steps + 1, device=device, dtype=dtype, **options)
