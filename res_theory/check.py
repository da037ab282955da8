"""Check a tableau against the stiff order conditions and report its orders.

For every condition of :func:`res_theory.conditions.order_conditions` the residual ``Φ(T)`` is
classified, in the operator case (independent variables ``z_k``) and in the scalar case
(``L = -1``: all variables equal ``Z = -h``), as

* ``identically``  — ``Φ(T) ≡ 0`` (for all parameter values of a family);
* ``weakened``     — only ``Φ(T)`` with ``b_i(0)`` in place of ``b_i(Z)`` vanishes identically;
  enough at the top order (Hochbruck & Ostermann 2005, Theorem 4.7);
* ``classically``  — ``Φ(T) = O(h)`` as ``h → 0`` with ``L`` bounded (its Taylor series starts at
  degree ``≥ 1``); the leading Taylor term is reported;
* ``fails``        — none of the above.

The *stiff order* is the largest ``p`` with every condition of order ``< p`` identically and every
condition of order ``p`` identically or weakened (and the row sums ``psi_{1,i} ≡ 0``). The *scalar
order* is the same with the scalar statuses. The *classical order* is ``min_T (|T| + v_T) - 1``
with ``v_T`` the degree of the first non-zero Taylor term of ``Φ(T)`` (capped at the checked order).

"Identically" is decided numerically at 60 significant digits (mpmath ground truth) at random
points ``z_k ∈ [-3, -1/4]`` and random exact parameter values inside the family's intervals: a
non-zero analytic function vanishes at such random points with probability zero. Taylor
coefficients are computed exactly (SymPy) and tested for zero symbolically.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import mpmath
import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import PolyElement

from res_theory.conditions import (
    CASES,
    ConditionError,
    OrderCondition,
    order_conditions,
    row_sum_residual,
)
from res_theory.phi import phi, phi_mp
from res_theory.tableau import ExpTableau, Z

__all__ = ["ConditionResult", "OrderReport", "check", "taylor_coefficients", "vanishes_identically"]

STATUSES = ("identically", "weakened", "classically", "fails")
_DPS = 60
_ZERO = mpmath.mpf(10) ** -40
h = sp.Symbol("h", positive=True)
_VARIABLES = {h, *(sp.Symbol(f"z{k}") for k in range(1, 64))}


def vanishes_identically(
    expr: sp.Expr,
    variables: tuple[sp.Symbol, ...],
    tableau: ExpTableau,
    samples: int = 3,
    seed: int = 0,
) -> bool:
    """``expr ≡ 0`` in ``variables`` and the tableau's free parameters (random 60-digit points)."""
    expr = sp.sympify(expr)
    if expr == 0:
        return True
    params = tableau.symbols
    args = (*variables, *params)
    extra = expr.free_symbols - set(args)
    if extra:
        raise ValueError(f"residual has unexpected symbols {extra}")
    f = sp.lambdify(args, expr, modules=[{"phi": phi_mp}, "mpmath"])
    rng = random.Random(seed)
    with mpmath.workdps(_DPS):
        for _ in range(samples):
            zs = [mpmath.mpf(-0.25) - 2.75 * mpmath.mpf(rng.random()) for _ in variables]
            values = _sample_parameters(tableau, rng)
            ps = [mpmath.mpf(v.p) / v.q for v in (values[s] for s in params)]
            if abs(f(*zs, *ps)) > _ZERO:
                return False
    return True


def _sample_parameters(tableau: ExpTableau, rng: random.Random) -> dict[sp.Symbol, sp.Rational]:
    values = {p.symbol: p.sample(rng) for p in tableau.parameters}
    history = [p.symbol for p in tableau.parameters if p.role == "history_node"]
    ordered = sorted((values[s] for s in history), reverse=True)
    values.update(zip(history, ordered, strict=True))  # c2 > c3 > ... (older steps further back)
    return values


def _irrational(expr: sp.Expr) -> bool:
    """Whether ``expr`` holds a constant that is not rational (a root of a number, ``pi``)."""
    roots = any(p.base.is_number and not p.exp.is_Integer for p in expr.atoms(sp.Pow))
    return roots or any(not n.is_Rational for n in expr.atoms(sp.Number, sp.NumberSymbol))


def taylor_coefficients(
    expr: sp.Expr, variables: tuple[sp.Symbol, ...], degree: int
) -> list[sp.Expr]:
    """Homogeneous parts ``[P_0, …, P_degree]`` of ``expr`` in ``variables`` (``z_k → t z_k``).

    ``phi_k(s z) = Σ_n (s z)^n/(n+k)!`` is expanded termwise; products are truncated at
    ``degree``. The arithmetic runs in a sparse polynomial ring in ``variables`` over the field
    of rational functions of the other symbols (SymPy ``ring`` over ``QQ(params)``), which is
    an order of magnitude faster than expanding expressions (``res_3s`` to order 6: 26 s → 3 s).

    >>> z = sp.Symbol("z")
    >>> taylor_coefficients(phi(1, 2 * z), (z,), 2)
    [1, z, 2*z**2/3]
    """
    expr = sp.sympify(expr)
    vs = tuple(variables)
    others = expr.free_symbols - set(vs)
    # symbols that occur in a denominator need a fraction field; the rest (e.g. the unknowns
    # of :func:`res_theory.derive.derive`) stay polynomial, which avoids costly gcds
    denominators = set().union(
        *(x.base.free_symbols for x in expr.atoms(sp.Pow) if x.exp.is_negative)
    )
    fractional = sorted(others & denominators, key=sp.default_sort_key)
    polynomial = sorted(others - denominators, key=sp.default_sort_key)
    domain = QQ.frac_field(*fractional) if fractional else QQ
    if polynomial:
        domain = domain.poly_ring(*polynomial)
    if _irrational(expr):  # sqrt(2)/2 as a node: SymPy's expression domain, exact but slower
        domain = sp.EX
    ring, *gens = sp.polys.rings.ring(vs, domain)
    of = dict(zip(vs, gens, strict=True))

    def trunc(p: PolyElement) -> PolyElement:
        return ring({m: c for m, c in p.items() if sum(m) <= degree})

    def ser(e: sp.Expr) -> PolyElement:
        if not (e.free_symbols & set(vs)):
            return ring(domain.from_sympy(e))
        if e in of:
            return of[e]
        if e.is_Add:
            return sum((ser(a) for a in e.args), ring.zero)
        if e.is_Mul:
            out = ring.one
            for a in e.args:
                out = trunc(out * ser(a))
            return out
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            base, out = ser(e.base), ring.one
            for _ in range(int(e.exp)):
                out = trunc(out * base)
            return out
        if isinstance(e, phi | sp.exp):
            k, arg = (0, e.args[0]) if isinstance(e, sp.exp) else (int(e.args[0]), e.args[1])
            a = ser(arg)
            if any(sum(m) != 1 for m in a.itermonoms()):
                raise ValueError(f"phi argument {arg} is not linear in {variables}")
            out, power = ring.zero, ring.one
            for n in range(degree + 1):
                out += power * domain.convert(QQ(1, math.factorial(n + k)))
                power = trunc(power * a)
            return out
        raise ValueError(f"cannot expand {e} in a Taylor series")

    series = ser(expr)
    parts = [ring.zero] * (degree + 1)
    for m, c in series.items():
        parts[sum(m)] += ring({m: c})
    return [p.as_expr() for p in parts]


def _is_zero(x: sp.Expr) -> bool:
    return sp.expand(sp.numer(sp.together(x))) == 0


@dataclass(frozen=True)
class ConditionResult:
    """The verdict on one condition in both cases, with residual and leading Taylor terms."""

    name: str
    order: int
    status: str
    scalar_status: str
    residual: sp.Expr
    leading_degree: int | None
    leading_term: sp.Expr | None
    scalar_leading_degree: int | None
    scalar_leading_term: sp.Expr | None

    def to_dict(self) -> dict:
        def s(x: sp.Expr | None) -> str | None:
            return None if x is None else sp.sstr(x)

        return {
            "name": self.name,
            "order": self.order,
            "status": self.status,
            "scalar_status": self.scalar_status,
            "residual": s(self.residual),
            "leading_degree": self.leading_degree,
            "leading_term": s(self.leading_term),
            "scalar_leading_term": s(self.scalar_leading_term),
        }


@dataclass(frozen=True)
class OrderReport:
    """Orders of a tableau and the verdict on every condition up to ``max_order``.

    ``embedded`` is the report on the embedded weights ``b_embedded`` (same stages, same
    ``max_order``), or None if the tableau has none.
    """

    name: str
    max_order: int
    row_sums: bool
    conditions: tuple[ConditionResult, ...]
    stiff_order: int
    scalar_order: int
    classical_order: int
    embedded: OrderReport | None = None

    def error_coefficient(self) -> sp.Expr | None:
        """Leading Taylor term (operator case) of the first condition not holding identically."""
        for r in self.conditions:
            if r.status != "identically":
                return r.leading_term
        return None

    def first_failing_order(self, case: str = "operator") -> int:
        """``p + 1``: ``p`` the stiff order (``case="operator"``) or the scalar order."""
        if case not in CASES:
            raise ConditionError(f"case must be one of {CASES}, got {case!r}")
        return (self.stiff_order if case == "operator" else self.scalar_order) + 1

    def leading_terms(self, case: str = "operator") -> dict[str, sp.Expr]:
        """The leading Taylor terms that make up :meth:`error_constant`, by condition name."""
        q = self.first_failing_order(case)
        if q > self.max_order:
            raise ConditionError(
                f"{self.name}: order {q - 1} holds up to the checked order {self.max_order}; "
                f"check up to order {q} for its error constant"
            )
        out = {}
        for r in self.conditions:
            status, lead = (
                (r.status, r.leading_term)
                if case == "operator"
                else (r.scalar_status, r.scalar_leading_term)
            )
            if r.order <= q and status != "identically" and lead is not None:
                out[r.name] = lead
        return out

    def error_constant(self, case: str = "operator") -> sp.Expr:
        """Euclidean norm of the leading terms at the first failing order ``q = p + 1``.

        The local error is ``Σ_T h^{|T|} Φ_T(z) T`` (trees ``T``, independent elementary
        differentials). Take every condition of order ``≤ q`` that does not hold identically
        (those of order ``q`` and the weakened ones of order ``p``), its leading Taylor part
        ``Σ_α κ_{T,α} z^α`` (operator case: monomials in ``z1, z2, …``; scalar case ``L = -1``:
        powers of ``h``), and return ``C_q = (Σ_{T,α} κ_{T,α}²)^{1/2}``, an exact expression in
        the family's parameters. For ``h → 0`` it is the norm of the principal error
        coefficients (Hairer, Nørsett & Wanner I, sect. II.3, in the tree basis of
        :mod:`res_theory.conditions`); a condition that holds only classically (leading degree
        ``d ≥ 1``) enters with its ``h^{q+d}`` term, so a method that is not of stiff order ``q``
        never gets ``C_q = 0``. :func:`res_theory.design.minimise_error_constant` picks free
        parameters with it.

        >>> from res_theory import library
        >>> library.get("ddim").report(2).error_constant()
        1/2
        >>> library.get("res_2s").at(c2=1).report(3).error_constant("scalar")
        sqrt(10)/12
        """
        total = sp.Integer(0)
        for lead in self.leading_terms(case).values():
            numerator, denominator = sp.fraction(sp.together(lead))
            gens = sorted(numerator.free_symbols & _VARIABLES, key=str) or [h]
            coeffs = sp.Poly(numerator, *gens).coeffs()
            total += sp.Add(*(cf**2 for cf in coeffs)) / denominator**2
        return sp.sqrt(sp.factor(total))

    def to_dict(self) -> dict:
        return {
            "stiff_order": self.stiff_order,
            "scalar_order": self.scalar_order,
            "classical_order": self.classical_order,
            "checked_up_to": self.max_order,
            "row_sums": "identically" if self.row_sums else "fails",
            "conditions": [r.to_dict() for r in self.conditions],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        rows = [("ord", "condition", "operator", "scalar (L=-1)", "leading term (scalar, h)")]
        for r in self.conditions:
            lead = "0" if r.scalar_status == "identically" else sp.sstr(r.scalar_leading_term)
            rows.append((str(r.order), r.name, r.status, r.scalar_status, lead))
        widths = [max(len(row[k]) for row in rows) for k in range(4)]
        lines = [
            f"{self.name}: stiff order {self.stiff_order}, "
            f"scalar (L=-1) order {self.scalar_order}, "
            f"classical order {self.classical_order} (checked up to order {self.max_order}; "
            f"row sums psi_1,i = 0: {'yes' if self.row_sums else 'NO'})"
        ]
        for k, row in enumerate(rows):
            lines.append(
                "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=False)) + "  " + row[4]
            )
            if k == 0:
                lines.append("-" * (sum(widths) + 8 + len(row[4])))
        for case in CASES:
            lines.append(f"error constant ({case} case): {self._describe_constant(case)}")
        if self.embedded is not None:
            e = self.embedded
            lines.append(
                f"embedded weights: stiff order {e.stiff_order}, scalar order {e.scalar_order}, "
                f"classical order {e.classical_order}; "
                f"error constant (scalar case) {e._describe_constant('scalar')}"
            )
        return "\n".join(lines)

    def _describe_constant(self, case: str) -> str:
        q = self.first_failing_order(case)
        if q > self.max_order:
            return f"not computed (needs --order {q})"
        value = self.error_constant(case)
        shown = sp.sstr(value) if value.free_symbols else f"{sp.sstr(value)} = {float(value):.6g}"
        return f"C_{q} = {shown}"


def _leading(
    expr: sp.Expr, variables: tuple[sp.Symbol, ...], degree: int, tableau: ExpTableau
) -> tuple[int | None, sp.Expr | None]:
    """Degree and value of the lowest non-zero Taylor part of ``expr`` (up to ``degree``).

    The degree is found first with the family's parameters at two random rationals (exact
    arithmetic over ``QQ``, fast); only that part is then computed symbolically.
    """
    if not (expr.free_symbols - set(variables)):
        coeffs = taylor_coefficients(expr, variables, degree)
        n = next((n for n, x in enumerate(coeffs) if not _is_zero(x)), None)
        return (None, None) if n is None else (n, sp.factor(coeffs[n]))
    rng = random.Random(1)
    lead = None
    for _ in range(2):
        point = _sample_parameters(tableau, rng)
        coeffs = taylor_coefficients(expr.subs(point), variables, degree)
        first = next((n for n, x in enumerate(coeffs) if not _is_zero(x)), None)
        lead = first if lead is None or first is None else min(lead, first)
    if lead is None:
        return None, None
    for n, coeff in enumerate(taylor_coefficients(expr, variables, lead)):
        if not _is_zero(coeff):
            return n, sp.factor(coeff)
    return None, None


def _status(
    cond: OrderCondition, tab: ExpTableau, case: str, residual: sp.Expr, lead: int | None
) -> str:
    """The verdict on one condition. An exact non-zero Taylor part (``lead`` not None) already
    rules out ``identically``; a non-zero constant part (``lead == 0``) also rules out
    ``weakened`` (setting the root variable to 0 keeps the constant part)."""
    variables = cond.variables if case == "operator" else (Z,)
    if lead is None and vanishes_identically(residual, variables, tab):
        return "identically"
    if lead == 0:
        return "fails"
    if vanishes_identically(cond.residual(tab, case, weakened=True), variables, tab):
        return "weakened"
    return "classically"


def _order_from(statuses: list[tuple[int, str]], max_order: int) -> int:
    p = 0
    for q in range(1, max_order + 1):
        below = all(s == "identically" for o, s in statuses if o < q)
        top = all(s in ("identically", "weakened") for o, s in statuses if o == q)
        if not (below and top):
            break
        p = q
    return p


def check(tableau: ExpTableau, order: int = 4) -> OrderReport:
    """Check ``tableau`` against all stiff order conditions up to ``order`` (see module doc)."""
    if not isinstance(tableau, ExpTableau):
        raise TypeError(f"check needs an ExpTableau, got {type(tableau).__name__}")
    conditions = order_conditions(order)
    row_sums = all(
        vanishes_identically(row_sum_residual(tableau, i), (Z,), tableau)
        for i in range(tableau.stages)
    )
    results = []
    for cond in conditions:
        degree = order + 2 - cond.order
        residual = cond.residual(tableau, "operator")
        lead_deg, lead = _leading(residual, cond.variables, degree, tableau)
        scalar = cond.residual(tableau, "scalar")
        s_deg, s_lead = _leading(scalar, (Z,), degree, tableau)
        results.append(
            ConditionResult(
                name=cond.name,
                order=cond.order,
                status=_status(cond, tableau, "operator", residual, lead_deg),
                scalar_status=_status(cond, tableau, "scalar", scalar, s_deg),
                residual=residual,
                leading_degree=lead_deg,
                leading_term=lead,
                scalar_leading_degree=s_deg,
                scalar_leading_term=None if s_lead is None else sp.factor(s_lead.subs(Z, -h)),
            )
        )
    stiff = _order_from([(r.order, r.status) for r in results], order)
    scalar_order = _order_from([(r.order, r.scalar_status) for r in results], order)
    if not row_sums:
        stiff, scalar_order = min(stiff, 1), min(scalar_order, 1)
    reach = [
        r.order + (order + 3 - r.order if r.leading_degree is None else r.leading_degree)
        for r in results
        if r.status != "identically"
    ]
    classical = min([order, *(x - 1 for x in reach)])
    embedded = None if tableau.b_embedded is None else check(tableau.embedded(), order=order)
    return OrderReport(
        tableau.name, order, row_sums, tuple(results), stiff, scalar_order, classical, embedded
    )
