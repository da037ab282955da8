"""``method="auto"``: the sampler for an NFE budget, from a small table measured by the league.

The budget of a run is what a one-evaluation-per-step method spends on the caller's ``sigmas``,
``len(sigmas) - 1`` (:mod:`res_torch.nfe`); the table lists only such methods, so ``auto``
spends exactly that budget. Ranges and reasoning (``docs/designed_methods.md`` has the
measured numbers; exact-denoiser testbeds, EDM Karras grid rho = 7, 80 -> 0.002 -> 0):

* up to 15 evaluations, ``res_pc3_rho7``: most steps are long in ``lambda``; interpolating
  ``eps`` through 3 values in ``sigma^(1/7)``, the variable in which this grid is uniform,
  keeps the extrapolation weights those of equal steps whatever the step ratio, and the
  corrector is off on the long steps (where it would not contract); 4 values extrapolate
  worse over such steps (measured at every NFE from 6 to 15);
* 16 and more, ``res_pc4_logsigma``: ``eps`` through 4 values in ``log sigma`` (DEIS's
  variable) with the corrector on almost every step; best at NFE 20 and 30, tied with
  ``res_pc4_rho7`` at 50.

The table is data, not read from experiment files at run time (``res_torch`` never imports
``experiments``); ``tests/experiments/test_auto_table.py`` checks it against the committed
league results.

>>> recommend(10), recommend(15), recommend(16)
('res_pc3_rho7', 'res_pc3_rho7', 'res_pc4_logsigma')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from res_torch.errors import NFEBudgetError

__all__ = ["AUTO_TABLE", "auto_table_markdown", "budget_of", "recommend"]

AUTO_TABLE: tuple[tuple[float, str], ...] = ((15, "res_pc3_rho7"), (math.inf, "res_pc4_logsigma"))
"""``(largest NFE, method)`` rows in increasing order: the first row whose bound is at least the
budget names the method (module docstring for the reasoning)."""


def recommend(nfe: int) -> str:
    """The method of :data:`AUTO_TABLE` for a budget of ``nfe`` evaluations (``nfe >= 1``)."""
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise NFEBudgetError(f"nfe must be an integer >= 1, got {nfe!r}")
    return next(method for bound, method in AUTO_TABLE if nfe <= bound)


def budget_of(sigmas: torch.Tensor | Sequence[float]) -> int:
    """The budget a schedule implies: ``len(sigmas) - 1`` evaluations of a one-evaluation-per-
    step method (the step to 0, if any, costs 1 like every other step)."""
    return len(sigmas) - 1


def auto_table_markdown() -> str:
    """:data:`AUTO_TABLE` as a Markdown table (``docs/designed_methods.md`` quotes it)."""
    lines = ["| NFE | method |", "|---|---|"]
    low = 1
    for bound, method in AUTO_TABLE:
        span = f"{low} and more" if math.isinf(bound) else f"{low}–{int(bound)}"
        lines.append(f"| {span} | `{method}` |")
        low = int(bound) + 1 if not math.isinf(bound) else low
    return "\n".join(lines)
