"""Empirical order of convergence: least-squares slope of log(error) against log(h).

If ``e(h) ≈ C h^p`` then ``log e = log C + p log h``; the order ``p`` is the least-squares slope
over the *asymptotic range*. That range is chosen by one rule for every problem and method:

1. discard points whose error is not finite or not above ``floor`` (the accuracy of the
   reference solution, or a round-off level: below it the error measures the reference, not
   the integrator);
2. of the remaining points keep the ``window`` smallest step sizes (the finest resolutions are
   the asymptotic ones; the coarsest may be pre-asymptotic).

At least :data:`MIN_POINTS` points must remain, otherwise :class:`SlopeFitError` is raised
instead of a number that would mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_POINTS", "SlopeFit", "SlopeFitError", "fit_slope", "local_slopes"]

MIN_POINTS = 3
DEFAULT_WINDOW = 4


class SlopeFitError(ValueError):
    """Too few usable (step size, error) points for a meaningful slope."""


@dataclass(frozen=True)
class SlopeFit:
    """A fitted order ``slope`` and the range of step sizes ``[h_min, h_max]`` it used."""

    slope: float
    intercept: float
    h_min: float
    h_max: float
    n_points: int

    def predict(self, h: float) -> float:
        """The fitted error ``e^{intercept} h^{slope}``."""
        return math.exp(self.intercept) * h**self.slope


def local_slopes(h: Sequence[float], errors: Sequence[float]) -> list[float]:
    """``log(e_i / e_{i+1}) / log(h_i / h_{i+1})`` between consecutive points (sorted by ``h``)."""
    pairs = sorted(zip(h, errors, strict=True), reverse=True)
    return [
        math.log(e0 / e1) / math.log(h0 / h1) if e0 > 0 and e1 > 0 else math.nan
        for (h0, e0), (h1, e1) in zip(pairs, pairs[1:], strict=False)
    ]


def fit_slope(
    h: Sequence[float],
    errors: Sequence[float],
    floor: float = 0.0,
    window: int = DEFAULT_WINDOW,
) -> SlopeFit:
    """Least-squares slope of ``log errors`` on ``log h`` over the asymptotic range (module doc)."""
    if len(h) != len(errors):
        raise SlopeFitError(f"{len(h)} step sizes but {len(errors)} errors")
    if window < MIN_POINTS:
        raise SlopeFitError(f"window must be >= {MIN_POINTS}, got {window}")
    if any(not (x > 0 and math.isfinite(x)) for x in h):
        raise SlopeFitError(f"step sizes must be positive and finite, got {list(h)}")
    usable = sorted(
        (x, e) for x, e in zip(h, errors, strict=True) if math.isfinite(e) and e > floor
    )
    chosen = usable[:window]
    if len(chosen) < MIN_POINTS:
        raise SlopeFitError(
            f"only {len(chosen)} of {len(h)} points have a finite error above the floor "
            f"{floor:.3g}; a slope needs at least {MIN_POINTS} (use more or larger step sizes)"
        )
    if len({x for x, _ in chosen}) < 2:
        raise SlopeFitError("the fit needs at least two distinct step sizes")
    log_h = np.log([x for x, _ in chosen])
    log_e = np.log([e for _, e in chosen])
    slope, intercept = np.polyfit(log_h, log_e, 1)
    return SlopeFit(
        slope=float(slope),
        intercept=float(intercept),
        h_min=chosen[0][0],
        h_max=chosen[-1][0],
        n_points=len(chosen),
    )
