"""``method="auto"``: the sampler for an NFE budget, from a small table measured by the league.

The budget of a run is what the table's methods spend on the caller's ``sigmas`` in an ODE
run (:func:`budget_of`): one evaluation per step, ``len(sigmas) - 1``, one fewer where they take
the free first step (``sigmas[1] >= FREE_START_SIGMA``, runs from pure noise:
:meth:`res_torch.methods.InterpolatedMethod.starts_free`); with ``eta`` or churn their first step
is evaluated and the budget is ``len(sigmas) - 1``. Ranges and reasoning
(``docs/designed_methods.md`` has the measured numbers; exact-denoiser testbeds):

* up to 10 evaluations, ``res_pc3_free``: most steps are long in ``lambda``; interpolating
  ``eps`` through 3 values in ``sigma^p``, the power in which the step's nodes are evenly
  spaced (``sigma^(1/7)`` on the EDM grid), keeps the extrapolation weights those of equal
  steps whatever the step ratio, and the corrector is off on the long steps (where it would
  not contract); 4 values extrapolate worse over such steps. The free first step (the
  denoiser is nearly constant far above the data's scale) gives the budget one more step;
* 11 to 15, ``res_ab3_free``: the same extrapolation without the corrector. On the EDM, flow
  and VP grids it is the more accurate of the two there (on the geometric mean over the
  testbeds); the corrector pays on sharply peaked data (``gmm_sharp``) at NFE 8-10, where
  dropping it costs several times the defect, and on Karras rho = 3;
* 16 and more, ``res_pc4_free``: 4 values with the corrector, which acts on almost every
  step. On the EDM grid ``res_pc4_logsigma`` (DEIS's variable) is more accurate at NFE 20-30
  than ``res_pc4_grid``, but several times less accurate on Karras rho = 3 and flow grids; the
  grid's own variable is the one that holds on every grid measured.

Measured on six grids: Karras rho 7 and 3, exponential, flow shift 3 (each 80 -> 0.002 -> 0),
VP and Stable Diffusion's discrete grid (their own ranges), for data of about unit scale, the
free first step's premise (:data:`res_torch.methods.FREE_START_SIGMA`): data far from it
(10x) wants ``res_pc3_grid`` / ``res_pc4_grid`` by name.
The table is data, not read from experiment files at run time (``res_torch`` never imports
``experiments``); ``tests/experiments/test_auto_table.py`` checks it against the committed
league results.

>>> recommend(10), recommend(15), recommend(16)
('res_pc3_free', 'res_ab3_free', 'res_pc4_free')
>>> budget_of([80.0, 24.0, 1.0, 0.0]), budget_of([2.0, 1.0, 0.5, 0.0])
(2, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from res_torch.checks import integer
from res_torch.errors import NFEBudgetError
from res_torch.grid import validate_sigmas
from res_torch.methods import METHODS

__all__ = ["AUTO_TABLE", "auto_table_markdown", "budget_of", "recommend"]

AUTO_TABLE: tuple[tuple[float, str], ...] = (
    (10, "res_pc3_free"),
    (15, "res_ab3_free"),
    (math.inf, "res_pc4_free"),
)
"""``(largest NFE, method)`` rows in increasing order: the first row whose bound is at least the
budget names the method (module docstring for the reasoning)."""


def recommend(nfe: int) -> str:
    """The method of :data:`AUTO_TABLE` for a budget of ``nfe`` evaluations (``nfe >= 1``)."""
    nfe = integer("nfe", nfe, 1, None, NFEBudgetError)
    return next(method for bound, method in AUTO_TABLE if nfe <= bound)


def budget_of(sigmas: torch.Tensor | Sequence[float], stochastic: bool = False) -> int:
    """The budget a schedule implies: what the table's methods (one evaluation per step, all
    free-start) spend on it, ``len(sigmas) - 1`` (the step to 0, if any, costs 1 like every
    other step), one fewer where they take the free first step (an ODE run: ``stochastic``
    False, no ``eta`` or churn). ``sigmas`` are checked as the samplers check them
    (:func:`res_torch.grid.validate_sigmas`; one level: 0)."""
    levels = validate_sigmas(sigmas, min_entries=1).tolist()
    free = METHODS[AUTO_TABLE[0][1]].starts_free(levels, stochastic)
    return len(levels) - 1 - int(free)


def auto_table_markdown() -> str:
    """:data:`AUTO_TABLE` as a Markdown table (``docs/designed_methods.md`` quotes it)."""
    lines = ["| NFE | method |", "|---|---|"]
    low = 1
    for bound, method in AUTO_TABLE:
        span = f"{low} and more" if math.isinf(bound) else f"{low}–{int(bound)}"
        lines.append(f"| {span} | `{method}` |")
        low = int(bound) + 1 if not math.isinf(bound) else low
    return "\n".join(lines)
