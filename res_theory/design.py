"""Choose the free parameters of a family by its error constant.

:meth:`res_theory.check.OrderReport.error_constant` gives ``C_q(θ)``, the norm of the leading
terms at the first failing order ``q``, as an exact expression in the family's free parameters
``θ`` (``c2`` of RES-2S, ``c2, c3`` of RES-3S, free weights of a multistep family).
:func:`minimise_error_constant` minimises ``C_q²`` (a rational function) over the parameters'
intervals. History nodes of multistep methods are not design parameters: they are set to their
defaults (equal steps, ``c_j = -(j - 1)``).

One free parameter: exact, from the real roots of the numerator of ``d(C_q²)/dθ`` inside the
interval and the interval's ends. Several: bounded quasi-Newton (SciPy L-BFGS-B) from a grid of
starting points, then Newton on the gradient at 30 digits (``sympy.nsolve``) and, where a
rational with a small denominator fits to 25 digits and makes the gradient vanish exactly, the
exact value.

>>> from res_theory import library
>>> best = minimise_error_constant(library.get("res_2s"))
>>> best.values, best.constant, best.order
({'c2': 1/3}, sqrt(2)/12, 3)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp

from res_theory.check import check
from res_theory.conditions import CASES, ConditionError
from res_theory.tableau import ExpTableau, TableauError

__all__ = ["Optimum", "minimise_error_constant"]

_MAX_ORDER = 6


@dataclass(frozen=True)
class Optimum:
    """The parameters minimising ``C_q`` (``case``), the minimum, and whether it is interior."""

    values: dict[str, sp.Expr]
    constant: sp.Expr
    order: int
    case: str
    interior: bool

    def __str__(self) -> str:
        shown = ", ".join(f"{k} = {sp.sstr(v)} ({float(v):.10g})" for k, v in self.values.items())
        where = "interior minimum" if self.interior else "on the interval's boundary"
        return (
            f"{shown}: C_{self.order} = {sp.sstr(self.constant)} = {float(self.constant):.6g} "
            f"({self.case} case, {where})"
        )


def minimise_error_constant(tableau: ExpTableau, case: str = "scalar") -> Optimum:
    """Free parameters of ``tableau`` minimising its error constant ``C_q`` (module doc)."""
    if case not in CASES:
        raise ConditionError(f"case must be one of {CASES}, got {case!r}")
    history = {p.name: p.default for p in tableau.parameters if p.role == "history_node"}
    family = tableau.at(**history) if history else tableau
    free = list(family.parameters)
    if not free:
        raise TableauError(f"{tableau.name} has no free parameters to choose")
    for order in range(2, _MAX_ORDER + 1):
        report = check(family, order=order)
        if report.first_failing_order(case) <= order:
            break
    else:
        raise ConditionError(f"{tableau.name}: order {_MAX_ORDER} holds; nothing to minimise")
    q = report.first_failing_order(case)
    square = sp.factor(report.error_constant(case) ** 2)
    if len(free) == 1:
        values, interior = _minimise_1d(square, free[0])
    else:
        values, interior = _minimise_nd(square, free)
    point = {sp.Symbol(k): v for k, v in values.items()}
    constant = sp.sqrt(sp.factor(square.subs(point)))
    constant = sp.nsimplify(constant) if not constant.is_Number else constant
    return Optimum(values, constant, q, case, interior)


def _minimise_1d(square: sp.Expr, param) -> tuple[dict[str, sp.Expr], bool]:
    x = param.symbol
    numerator = sp.numer(sp.together(sp.diff(square, x)))
    lo, hi = param.lower, param.upper
    candidates: list[tuple[sp.Expr, bool]] = []
    if numerator.has(x):
        for root in sp.Poly(numerator, x).real_roots():
            inside = (lo is None or root > lo) and (hi is None or root < hi)
            if inside:
                candidates.append((root, True))
    for end in (lo, hi):
        if end is not None:
            candidates.append((end, False))
    if not candidates:
        raise ConditionError(f"no minimum of the error constant in {param.interval()}")

    def value(point: sp.Expr) -> float:
        limit = sp.limit(square, x, point) if not point.is_Rational else square.subs(x, point)
        return float(limit) if limit.is_finite else float("inf")

    best, interior = min(candidates, key=lambda cand: value(cand[0]))
    return {param.name: sp.nsimplify(best) if best.is_Rational else best}, interior


def _minimise_nd(square: sp.Expr, params: list) -> tuple[dict[str, sp.Expr], bool]:
    from scipy.optimize import minimize

    xs = [p.symbol for p in params]
    f = sp.lambdify([xs], square, "math")
    bounds = []
    for p in params:
        lo = float(p.lower) if p.lower is not None else float(p.default) - 4
        hi = float(p.upper) if p.upper is not None else float(p.default) + 4
        margin = 1e-9 * max(1.0, hi - lo)
        bounds.append(
            (lo + (0 if p.lower_inclusive else margin), hi - (0 if p.upper_inclusive else margin))
        )

    def safe(v):
        try:
            out = f(list(v))
        except (ZeroDivisionError, OverflowError, ValueError):
            return float("inf")
        return out if out == out else float("inf")

    starts = itertools.product(
        *([lo + (hi - lo) * t for t in (0.1, 0.3, 0.5, 0.7, 0.9)] for lo, hi in bounds)
    )
    best = min(
        (minimize(safe, list(x0), bounds=bounds, method="L-BFGS-B") for x0 in starts),
        key=lambda r: r.fun,
    )
    interior = all(lo + 1e-6 < v < hi - 1e-6 for v, (lo, hi) in zip(best.x, bounds, strict=True))
    values = [sp.Float(v, 15) for v in best.x]
    if interior:
        grad = [sp.numer(sp.together(sp.diff(square, x))) for x in xs]
        try:
            refined = sp.nsolve(grad, xs, values, prec=30)
            values = [sp.Float(v, 30) for v in refined]
        except (ValueError, ZeroDivisionError):
            pass
        exact = [sp.nsimplify(v, tolerance=1e-25, rational=True) for v in values]
        if all(max(sp.fraction(e)[1], 1) < 10**6 for e in exact) and all(
            sp.simplify(g.subs(dict(zip(xs, exact, strict=True)))) == 0 for g in grad
        ):
            values = exact
    return {p.name: v for p, v in zip(params, values, strict=True)}, interior
