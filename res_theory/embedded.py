"""Embedded pairs: a second weight vector ``b̂`` of order ``p - 1`` on the stages of an order-``p``
method, so that ``est = h Σ_i (b_i - b̂_i)(Z) g_i`` estimates the local error for step control.

Since ``b`` has order ``p``, ``est`` is the local error of the embedded method up to
``O(h^{p+1})``: its leading terms are those of ``b̂`` at order ``p``
(:meth:`res_theory.check.OrderReport.leading_terms`). The estimate is *useful* when

* it is **non-degenerate**: every order-``p`` condition of ``b̂`` that does not hold
  identically has a non-zero constant term ``Φ_T(0)``, so ``est`` sees every elementary
  differential of order ``p`` the method does not integrate exactly and does not lose an order
  as ``h → 0`` (a ``b̂`` of classical order ``p`` would estimate
  ``O(h^{p+1})`` and accept far too large steps);
* it is **as tight as possible**: among non-degenerate candidates, the smallest error
  constant ``C_p`` of ``b̂`` (scalar case, default parameters), so the estimate overstates the
  error of the propagated order-``p`` solution (local extrapolation) least.

Candidates (:func:`embedded_pair`) are the nested lower-order methods used in practice
(Cox–Matthews/Krogstad-type ETD pairs, the exponential Rosenbrock pair ``exprb32``, k-diffusion's
DPM-Solver-2 inside DPM-Solver-3): ``b̂`` is the exponential quadrature of order ``p - 1``
(:func:`res_theory.derive.quadrature_weights`) on ``p - 1`` distinct nodes that include
``c_1 = 0``, zero on the other stages, so an embedded step needs no stage of its own.
Each candidate is re-checked by :func:`res_theory.check.check` (the inner conditions of order
``p - 1`` must hold too).

Multistep methods: the stages are the stored history, so the same rule gives an estimate from
the history alone: ``res_3m`` minus ``res_2m`` (the last two values), ``res_2m`` minus DDIM.

>>> from res_theory import library
>>> pair = embedded_pair(library.get("res_2s"))
>>> pair.tableau.b_embedded, pair.stages
((phi(1, Z), 0), (1,))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import sympy as sp

from res_theory.check import OrderReport, check
from res_theory.conditions import CASES, ConditionError
from res_theory.derive import quadrature_weights
from res_theory.tableau import ExpTableau, TableauError

__all__ = ["EmbeddedPair", "embedded_pair", "is_non_degenerate"]


@dataclass(frozen=True)
class EmbeddedPair:
    """The tableau with ``b_embedded`` set, the stages ``b̂`` uses (1-based), its report, and
    every candidate tried with its error constant or why it was rejected."""

    tableau: ExpTableau
    stages: tuple[int, ...]
    report: OrderReport
    candidates: tuple[tuple[tuple[int, ...], str], ...]

    def __str__(self) -> str:
        t, e = self.tableau, self.report
        lines = [
            f"{t.name}: order {e.scalar_order + 1} with an embedded order-{e.scalar_order} "
            f"estimate on stages {list(self.stages)}"
        ]
        lines += [f"  bhat{i + 1} = {x}" for i, x in enumerate(t.b_embedded or ())]
        lines.append("  candidates (stages: embedded error constant C_p, scalar case, defaults):")
        lines += [f"    {list(s)}: {why}" for s, why in self.candidates]
        return "\n".join(lines) + "\n"


def is_non_degenerate(report: OrderReport, case: str = "scalar") -> bool:
    """No condition of the first failing order ``q`` holds only classically: each one either
    holds identically (that tree is integrated exactly, as the stages of a multistep method) or
    has a non-zero constant Taylor term."""
    q = report.first_failing_order(case)
    for r in report.conditions:
        status = r.status if case == "operator" else r.scalar_status
        degree = r.leading_degree if case == "operator" else r.scalar_leading_degree
        if r.order == q and status != "identically" and degree != 0:
            return False
    return True


def embedded_pair(tableau: ExpTableau, case: str = "scalar") -> EmbeddedPair:
    """The embedded pair of ``tableau`` chosen by the rule of the module doc.

    ``case`` says in which sense the orders ``p`` and ``p - 1`` are meant (``"scalar"``: the
    diffusion case ``L = -1``; ``"operator"``: stiff orders). Raises :class:`TableauError` if
    no candidate qualifies.
    """
    if case not in CASES:
        raise ConditionError(f"case must be one of {CASES}, got {case!r}")
    main = check(tableau, order=min(tableau.stages + 1, 6))
    p = main.stiff_order if case == "operator" else main.scalar_order
    if p < 2:
        raise TableauError(f"{tableau.name} has order {p}: no lower order to embed")
    base = replace(tableau, b_embedded=None)
    defaults = {par.name: par.default for par in tableau.parameters}
    tried: list[tuple[tuple[int, ...], str]] = []
    best: tuple[float, tuple[int, ...], ExpTableau, OrderReport] | None = None
    for rest in itertools.combinations(range(1, tableau.stages), p - 2):
        stages = (0, *rest)
        label = tuple(i + 1 for i in stages)
        nodes = [tableau.c[i] for i in stages]
        if len(set(nodes)) != len(nodes):
            tried.append((label, "repeated nodes"))
            continue
        weights = quadrature_weights(tuple(nodes))
        b_hat = [sp.Integer(0)] * tableau.stages
        for i, w in zip(stages, weights, strict=True):
            b_hat[i] = w
        if tuple(b_hat) == tuple(sp.expand(x) for x in tableau.b):
            tried.append((label, "equals b"))
            continue
        candidate = replace(base, b_embedded=tuple(b_hat))
        report = check(
            candidate.embedded().at(**defaults) if defaults else candidate.embedded(), order=p
        )
        order = report.stiff_order if case == "operator" else report.scalar_order
        if order != p - 1:
            tried.append((label, f"embedded order {order}, not {p - 1}"))
            continue
        if not is_non_degenerate(report, case):
            tried.append((label, f"degenerate: an order-{p} term vanishes at h = 0"))
            continue
        constant = float(report.error_constant("scalar"))
        tried.append((label, f"C_{p} = {constant:.6g}"))
        if best is None or constant < best[0]:
            best = (constant, label, candidate, report)
    if best is None:
        raise TableauError(f"{tableau.name}: no nested embedded pair of order {p - 1} qualifies")
    _, label, candidate, report = best
    return EmbeddedPair(candidate, label, report, tuple(tried))
