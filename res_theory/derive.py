"""Solve the stiff order conditions for the weights of exponential integrators.

Ansatz (as in the literature, e.g. Hochbruck & Ostermann 2005 sect. 5): every weight is a linear
combination of phi functions with coefficients depending only on the nodes,
``b_i(Z) = Σ_k β_ik phi_k(Z)``, ``a_ij(Z) = Σ_k α_ijk phi_k(c_i Z)`` (plus, where a condition
needs it, ``phi_k(c_m Z)`` of other nodes). Because ``phi_1, …, phi_K`` of one argument are
linearly independent, a condition that is linear in the weights and holds *identically* in ``Z``
splits into linear equations for the coefficients.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.matrices import DomainMatrix

from res_theory.check import taylor_coefficients
from res_theory.phi import phi
from res_theory.tableau import C2_MIN, ExpTableau, Parameter, Z, exact_value, phi_terms

__all__ = [
    "Derivation",
    "DerivationError",
    "derive",
    "derive_multistep",
    "max_order_for",
    "MAX_STAGES",
    "quadrature_weights",
    "res_3s_family",
]


class DerivationError(ValueError):
    """The order conditions have no solution of the requested form."""


MAX_STAGES = 5
"""Most stages :func:`derive` accepts: its ansatz has ``O(s² p)`` unknowns and the bilinear
stage conditions of more stages are out of reach of the staged solve (an order-5 method needs
eight stages, Luan & Ostermann 2014)."""


def max_order_for(stages: int, case: str = "scalar") -> int:
    """An upper bound on the stiff order of any explicit ``stages``-stage exponential RK method.

    Proof (``docs/theory.md``, "Order bounds"): conditions ``psi_1..psi_{p-1} ≡ 0`` force at
    least ``p - 1`` distinct nodes (the ``phi_q`` are linearly independent), so ``p ≤ s + 1``;
    for ``p = s + 1`` all nodes are distinct and ``b(Z)`` is the unique quadrature, so
    ``Σ_i b_i(z1) psi_{2,i}(z2) ≡ 0`` (operator case, ``p ≥ 4``) forces
    ``psi_{2,2} = c_2² phi_2(c_2 z) ≡ 0``, impossible; ``p = 3, s = 2`` and ``p = 2, s = 1`` fail
    already in the scalar case (``b_2(0) = 1/(2 c_2) ≠ 0`` against condition 4 weakened;
    ``psi_2(0) = 1/2``). So ``p ≤ s`` in the operator case and for ``s ≤ 2``, else ``p ≤ s + 1``.

    >>> [max_order_for(s) for s in (1, 2, 3, 4)], max_order_for(4, "operator")
    ([1, 2, 4, 5], 4)
    """
    return stages if case == "operator" or stages <= 2 else stages + 1


def quadrature_weights(nodes: tuple[sp.Expr, ...]) -> tuple[sp.Expr, ...]:
    """Weights ``b_i = Σ_k β_ik phi_k(Z)`` with ``psi_q ≡ 0`` for ``q = 1..s`` (``s = len(nodes)``).

    ``psi_q = phi_q - Σ_i b_i c_i^{q-1}/(q-1)! ≡ 0`` for all ``q ≤ s`` means
    ``Σ_i β_ik c_i^{q-1}/(q-1)! = δ_qk``: ``β = V^{-1}``, ``V_qi = c_i^{q-1}/(q-1)!`` (a scaled
    Vandermonde matrix, invertible iff the nodes are distinct). This is the exponential
    Adams-type quadrature (Hochbruck & Ostermann, Acta Numerica 2010, sect. 2.4).
    """
    nodes = tuple(exact_value(c, "node") for c in nodes)
    s = len(nodes)
    if len(set(nodes)) != s:
        raise DerivationError(f"nodes must be distinct, got {nodes}")
    v = sp.Matrix(s, s, lambda q, i: nodes[i] ** q / math.factorial(q))
    beta = v.inv()
    return tuple(
        sp.Add(*(sp.factor(beta[i, k]) * phi(k + 1, Z) for k in range(s))) for i in range(s)
    )


def derive_multistep(history: tuple[sp.Expr, ...]) -> tuple[sp.Expr, ...]:
    """Weights of the exponential multistep method with history nodes ``c_2, c_3, …`` (``< 0``)
    whose conditions ``psi_1 = … = psi_s = 0`` hold identically (for multistep methods the stages
    are exact, so these are all the conditions up to order ``s``)."""
    return quadrature_weights((sp.Integer(0), *history))


def res_3s_family() -> ExpTableau:
    """3-stage RES family in ``c2, c3``: ``psi_1 = psi_2 = psi_3 ≡ 0`` and condition 4 weakened.

    * ``b`` from :func:`quadrature_weights` on ``(0, c2, c3)``:
      ``b_2 = (c3 phi_2 - 2 phi_3)/(c2 (c3 - c2))``, ``b_3 = (2 phi_3 - c2 phi_2)/(c3 (c3 - c2))``;
    * ``a_21 = c2 phi_1(c2 Z)``, ``a_31 = c3 phi_1(c3 Z) - a_32`` (row sums);
    * condition 4 in weakened form ``b_2(0) psi_{2,2}(Z) + b_3(0) psi_{2,3}(Z) ≡ 0`` (linear in
      ``a_32``): ``a_32 = (c3^2 phi_2(c3 Z) + γ c2^2 phi_2(c2 Z))/c2`` with
      ``γ = b_2(0)/b_3(0) = c3 (3 c3 - 2)/(c2 (2 - 3 c2))``.

    Condition 4 cannot hold identically together with ``psi_3`` (neither in the operator nor in
    the scalar case: it forces ``b_2 ∝ b_3`` with a constant factor, while ``psi_2 = psi_3 = 0``
    forces ``b_2/b_3`` to be a non-constant function of ``Z``); see ``docs/theory.md``.
    Stiff order 3 (Hochbruck–Ostermann 2005, Thm. 4.7). At ``c2 = 1/2, c3 = 1`` the ``h → 0``
    limit is Kutta's third-order method. ``b_embedded``: RES-2S on stages 1, 2 (the embedded
    order-2 pair :func:`res_theory.embedded.embedded_pair` selects).
    """
    c2, c3 = sp.symbols("c2 c3")
    b = quadrature_weights((0, c2, c3))
    b0 = [sp.factor(x.subs(Z, 0)) for x in b]
    gamma = sp.factor(b0[1] / b0[2])
    a32 = sp.expand((c3**2 * phi(2, c3 * Z) + gamma * c2**2 * phi(2, c2 * Z)) / c2)
    a31 = sp.expand(c3 * phi(1, c3 * Z) - a32)
    return ExpTableau(
        "res_3s",
        "RES single-step, 3 stages (derived)",
        (0, c2, c3),
        ((0, 0, 0), (c2 * phi(1, c2 * Z), 0, 0), (a31, a32, 0)),
        b,
        parameters=(
            Parameter(
                "c2",
                sp.Rational(1, 2),
                C2_MIN,
                sp.Rational(2, 3),
                True,
                False,
                "second node; c2 = 2/3 is singular (b_3(0) = 0)",
            ),
            Parameter("c3", 1, sp.Rational(2, 3), 1, False, True, "third node (> c2)"),
        ),
        source="this project: res_theory.derive.res_3s_family (Hochbruck-Ostermann 2005 "
        "conditions); compare the public 3-stage 'RES' (MATH.md end), which is a different method",
        derivation="psi_1..psi_3 = 0 identically (linear solve for b); condition 4 in weakened "
        "form (linear in a_32); row sums. derive(3, 3) finds the same family (scalar and "
        "operator case): all four order-3 conditions identically has no solution",
        b_embedded=(phi(1, Z) - phi(2, Z) / c2, phi(2, Z) / c2, 0),
    )


@dataclass(frozen=True)
class Derivation:
    """Result of :func:`derive`: the family, its free coefficients and the weakened conditions."""

    tableau: ExpTableau
    free: tuple[sp.Symbol, ...]
    weakened: tuple[str, ...]

    def __str__(self) -> str:
        t = self.tableau
        lines = [f"{t.title}: nodes {list(t.c)}"]
        lines += [f"  a{i + 1}{j + 1} = {t.A[i][j]}" for i in range(t.stages) for j in range(i)]
        lines += [f"  b{i + 1} = {x}" for i, x in enumerate(t.b)]
        lines.append(f"  weakened top-order conditions: {list(self.weakened) or 'none'}")
        lines.append(f"  free coefficients (set to 0): {[str(f) for f in self.free] or 'none'}")
        return "\n".join(lines) + "\n"


def derive(
    stages: int,
    order: int,
    nodes: tuple[sp.Expr, ...] | None = None,
    case: str = "scalar",
) -> Derivation:
    """Solve the stiff conditions up to ``order`` for an explicit ``stages``-stage method.

    Ansatz: ``b_i = Σ_{k≤order} β_ik phi_k(Z)``,
    ``a_ij = Σ_k (α_ijk phi_k(c_i Z) + α'_ijk phi_k(c_j Z))``
    for ``j ≥ 2`` and ``a_i1`` from the row sums ``psi_{1,i} = 0``; if that has no solution,
    again with ``phi_k(c_m Z)`` of every stage ``m ≤ i`` in ``a_ij`` (:func:`_stage_ansatz`:
    Hochbruck–Ostermann's 5-stage method needs it). Conditions of order
    ``< order`` must hold identically (in ``case``: ``"scalar"`` identities in ``Z``, or
    ``"operator"`` identities in independent ``z_k``); those of order ``order`` identically if
    possible, otherwise as few as possible in weakened form (``b_i(0)``), which still gives
    stiff order ``order`` (Hochbruck & Ostermann 2005, Thm. 4.7). An identity is imposed through
    its Taylor coefficients (enough of them to fix the ansatz), solved linear-first; the result is
    then re-checked with :func:`res_theory.check.check`. Coefficients the conditions leave free
    are set to 0 and listed. Raises :class:`DerivationError` if no member of the ansatz exists.
    """
    from res_theory.conditions import CASES, MAX_ORDER, order_conditions

    if not isinstance(stages, int) or isinstance(stages, bool) or not 1 <= stages <= MAX_STAGES:
        raise DerivationError(f"stages must be an integer in 1..{MAX_STAGES}, got {stages!r}")
    if not isinstance(order, int) or isinstance(order, bool) or not 1 <= order <= MAX_ORDER:
        raise DerivationError(f"order must be an integer in 1..{MAX_ORDER}, got {order!r}")
    if case not in CASES:
        raise DerivationError(f"case must be one of {CASES}, got {case!r}")
    if order > max_order_for(stages, case):
        raise DerivationError(
            f"no {stages}-stage method of stiff order {order} ({case} case) exists: "
            f"{stages} stages allow at most order {max_order_for(stages, case)}"
        )
    if nodes is None:
        nodes = tuple(sp.Symbol(f"c{i}") for i in range(2, stages + 1))
    nodes = (sp.Integer(0), *(exact_value(c, "node") for c in nodes))
    if len(nodes) != stages:
        raise DerivationError(f"need {stages - 1} nodes c2..c{stages}, got {len(nodes) - 1}")
    s, K = stages, order
    beta = [[sp.Symbol(f"beta_{i + 1}_{k}") for k in range(1, K + 1)] for i in range(s)]
    b = [sum(beta[i][k - 1] * phi(k, Z) for k in range(1, K + 1)) for i in range(s)]
    betas = [x for row in beta for x in row]
    conditions = order_conditions(order)
    top = [c for c in conditions if c.order == order]
    # weaken inner (non-quadrature) conditions before the quadrature conditions psi_q
    weak_sets = [
        weak
        for n_weak in range(len(top) + 1)
        for weak in sorted(
            itertools.combinations(top, n_weak), key=lambda w: sum(c.tree.is_leaf for c in w)
        )
    ]
    # with three stages or fewer the wide stage ansatz is the narrow one
    ansatze = [_stage_ansatz(s, K, nodes, wide) for wide in ((False, True) if s > 3 else (False,))]
    rng = random.Random(7)
    generic = {
        c: sp.Rational(rng.randint(1, 10**6), 10**6 + 7) for c in nodes if isinstance(c, sp.Symbol)
    }
    problem = _Problem(s, K, nodes, case, conditions, generic)
    for weak in weak_sets:
        weights = problem.weights(b, betas, weak)
        if weights is None:
            continue
        for A, alphas in ansatze:
            found = problem.stages(weights, A, alphas, weak)
            if found is not None:
                return found
    raise DerivationError(
        f"no {s}-stage method of stiff order {order} ({case} case) in the phi-combination ansatz"
    )


def _stage_ansatz(
    s: int, K: int, nodes: tuple[sp.Expr, ...], wide: bool
) -> tuple[list[list[sp.Expr]], list[sp.Symbol]]:
    """``A`` with unknown coefficients: ``a_ij = Σ_m Σ_k α_ijmk phi_k(c_m Z)`` for ``j ≥ 2`` over
    the arguments of stages ``m ∈ {i, j}`` (``wide``: every stage ``m ≤ i``, as
    Hochbruck–Ostermann's ``a_52`` needs ``phi_k(c_4 Z)``; one term per distinct node value),
    ``a_i1`` from the row sums."""
    A: list[list[sp.Expr]] = [[sp.Integer(0)] * s for _ in range(s)]
    alphas: list[sp.Symbol] = []
    for i in range(1, s):
        candidates = range(1, i + 1) if wide else (i,)
        for j in range(1, i):
            stages = {nodes[m]: m for m in sorted({*candidates, j}, reverse=True)}
            entry = sp.Integer(0)
            for m in sorted(stages.values()):
                for k in range(1, K + 1):
                    sym = sp.Symbol(f"alpha_{i + 1}{j + 1}_{m + 1}_{k}")
                    alphas.append(sym)
                    entry += sym * phi(k, nodes[m] * Z)
            A[i][j] = entry
        A[i][0] = nodes[i] * phi(1, nodes[i] * Z) - sum(A[i][1:i], sp.Integer(0))
    return A, alphas


@dataclass(frozen=True)
class _Problem:
    """The conditions of one :func:`derive` call, imposed in two stages: the quadrature
    conditions ``psi_q`` for the weights ``b`` (:meth:`weights`), then, with ``b`` fixed, the
    inner conditions for the stage coefficients (:meth:`stages`)."""

    s: int
    K: int
    nodes: tuple[sp.Expr, ...]
    case: str
    conditions: list
    generic: dict[sp.Symbol, sp.Expr]

    def equations(self, cond: Any, tab: SimpleNamespace, weakened: bool) -> list[sp.Expr]:
        """The Taylor coefficients of ``cond``'s residual on ``tab``, split by monomials."""
        variables = cond.variables if self.case == "operator" else (Z,)
        residual = cond.residual(tab, self.case, weakened=weakened)
        out = []
        for coeff in taylor_coefficients(residual, variables, 2 * self.K + 2):
            if coeff != 0:
                out.extend(sp.Poly(coeff, *variables).coeffs())
        return out

    def weights(
        self, b: list[sp.Expr], betas: list[sp.Symbol], weak: tuple
    ) -> tuple[dict, list[sp.Expr], tuple[sp.Symbol, ...]] | None:
        """``(substitution, b, free)`` solving the quadrature conditions (``weak`` ones
        weakened), the ``free`` coefficients set to 0, or None."""
        tab = SimpleNamespace(stages=self.s, c=self.nodes, A=None, b=b, kind="singlestep")
        leaf_eqs = [
            e for c in self.conditions if c.tree.is_leaf for e in self.equations(c, tab, c in weak)
        ]
        # pivot on the last stages' coefficients: the free ones (set to 0) are then early
        # stages', whose few a_ij could not meet the inner conditions (HO4: b_2 = b_3 = 0)
        solution = _solve(leaf_eqs, betas[::-1], self.generic)
        if solution is None:
            return None
        subs = _with_free_set_to_zero(solution, betas)
        free = tuple(u for u in betas if u not in solution)
        return subs, [_substitute(x, subs) for x in b], free

    def stages(
        self,
        weights: tuple[dict, list[sp.Expr], tuple[sp.Symbol, ...]],
        A: list[list[sp.Expr]],
        alphas: list[sp.Symbol],
        weak: tuple,
    ) -> Derivation | None:
        """The method with these weights and stage coefficients ``A`` solving the inner
        conditions, if :func:`res_theory.check.check` confirms its order; else None."""
        from res_theory.check import check

        subs, b_fixed, free_weights = weights
        s, order, nodes = self.s, self.K, self.nodes
        # every inner condition has exactly one b factor (the root): clear its denominators
        denominator = sp.lcm([sp.denom(sp.together(t[0])) for x in b_fixed for t in phi_terms(x)])
        tab = SimpleNamespace(
            stages=s,
            c=nodes,
            A=A,
            b=[sp.expand(sp.cancel(x * denominator)) for x in b_fixed],
            kind="singlestep",
        )
        inner_eqs = [
            e
            for c in self.conditions
            if not c.tree.is_leaf
            for e in self.equations(c, tab, c in weak)
        ]
        solution = _solve(inner_eqs, alphas, self.generic)
        if solution is None:
            return None
        subs = {**subs, **_with_free_set_to_zero(solution, alphas)}
        free = (*free_weights, *(u for u in alphas if u not in solution))
        params = tuple(
            Parameter(str(c), sp.Rational(i, s - 1), 0, 1, False, True, f"node c{i + 1}")
            for i, c in enumerate(nodes)
            if isinstance(c, sp.Symbol)
        )
        tableau = ExpTableau(
            f"derived_{s}s{order}",
            f"derived {s}-stage family, order {order} ({self.case} case)",
            nodes,
            tuple(tuple(_substitute(x, subs) for x in row) for row in A),
            tuple(b_fixed),
            parameters=params,
            source="res_theory.derive.derive",
            derivation=f"stiff conditions up to order {order}, {self.case} case; weakened: "
            + (", ".join(c.name for c in weak) or "none"),
        )
        report = check(tableau, order=order)
        achieved = report.scalar_order if self.case == "scalar" else report.stiff_order
        if achieved >= order:
            return Derivation(tableau, free, tuple(c.name for c in weak))
        return None


def _with_free_set_to_zero(
    solution: dict[sp.Symbol, sp.Expr], unknowns: list[sp.Symbol]
) -> dict[sp.Symbol, sp.Expr]:
    """``solution`` completed by the unknowns it leaves free, set to 0 (also inside the solved
    values, which may be written in terms of them)."""
    free = {u: sp.Integer(0) for u in unknowns if u not in solution}
    return {**{k: sp.expand(v.subs(free)) for k, v in solution.items()}, **free}


def _substitute(x: sp.Expr, subs: dict) -> sp.Expr:
    return sp.expand(sp.sympify(x).subs(subs))


def _solve(
    eqs: list[sp.Expr], unknowns: list[sp.Symbol], generic: dict[sp.Symbol, sp.Expr]
) -> dict[sp.Symbol, sp.Expr] | None:
    """Solve polynomial equations linear-first, pivoting in the order of ``unknowns``;
    ``None`` if inconsistent.

    Each linear batch is first reduced at the *generic* numeric node values ``generic`` (exact
    rationals): inconsistency is detected there, and only the independent equations (pivot rows)
    are then solved symbolically with ``linsolve`` over the field of the nodes.
    """
    solution: dict[sp.Symbol, sp.Expr] = {}
    pending = list(dict.fromkeys(e for e in eqs if e != 0))
    while pending:
        polys = {e: sp.Poly(e, *unknowns) for e in pending}
        pending = [e for e in pending if not polys[e].is_zero]
        if any(polys[e].total_degree() == 0 for e in pending):
            return None  # a non-zero equation without unknowns
        if not pending:
            break
        linear = [e for e in pending if polys[e].total_degree() == 1]
        todo = linear or pending
        present = set().union(*(e.free_symbols for e in todo))
        syms = [u for u in unknowns if u in present]  # pivots in the order of ``unknowns``
        if linear:
            m, rhs = sp.linear_eq_to_matrix([e.subs(generic) for e in todo], syms)
            rows = _independent_rows(m.row_join(rhs))
            if len(rows) != len(_independent_rows(m)):
                return None
            todo = [todo[r] for r in rows]
            found = sp.linsolve(todo, syms)
            if not found:
                return None
            step = {k: v for k, v in zip(syms, next(iter(found)), strict=True) if k != v}
        else:
            step = _bilinear_step(todo, syms, generic)
            if step is not None:  # the rest is linear now: continue with it
                solution = {k: v.subs(step) for k, v in solution.items()}
                solution.update(step)
                pending = [sp.expand(sp.numer(sp.together(e.subs(step)))) for e in pending]
                continue
            found = sp.solve(todo, syms, dict=True)
            if not found:
                return None
            step = found[0]
        solution = {k: v.subs(step) for k, v in solution.items()}
        solution.update(step)
        rest = [e for e in pending if e not in linear] if linear else []
        pending = [sp.numer(sp.together(e.subs(step))) for e in rest]
        pending = [sp.expand(e) for e in pending]
        # the linear batch was reduced to independent rows: its other rows hold generically
    return {k: sp.factor(v) for k, v in solution.items()}


def _bilinear_step(
    eqs: list[sp.Expr], unknowns: list[sp.Symbol], generic: dict[sp.Symbol, sp.Expr]
) -> dict[sp.Symbol, sp.Expr] | None:
    """Values for one side of a *bilinear* system, or None if ``eqs`` are not bilinear.

    The stage conditions are bilinear: e.g. ``Σ_i b_i J Σ_j a_ij J psi_{2,j}`` multiplies the
    coefficients of row ``j`` (inside ``psi_{2,j}``) with those of the later rows ``i``. If every
    quadratic monomial is ``x y`` with ``x ∈ X``, ``y ∈ Y`` for a split of the unknowns (a
    2-colouring of their co-occurrence graph), fixing the smaller side ``X`` leaves a *linear*
    system in ``Y``. ``X`` is tried at each unit vector (one ``phi_k`` term, as in the
    literature's tableaux) and at a generic rational point; of the choices whose linear system
    in ``Y`` is consistent, the one with the shortest solution (free coefficients set to 0;
    total length of the printed values) is returned. Every solution found this way solves the
    original system; the family it belongs to is the slice with the chosen ``X``
    (``docs/theory.md``; for Hochbruck–Ostermann's nodes it is their ``a_32 = phi_2(Z/2)``).
    """
    edges: dict[sp.Symbol, set[sp.Symbol]] = {}
    for e in eqs:
        for monom in sp.Poly(e, *unknowns).monoms():
            if sum(monom) == 2:
                pair = [u for u, k in zip(unknowns, monom, strict=True) if k]
                if len(pair) != 2:
                    return None  # a square: not bilinear
                edges.setdefault(pair[0], set()).add(pair[1])
                edges.setdefault(pair[1], set()).add(pair[0])
            elif sum(monom) > 2:
                return None
    colour: dict[sp.Symbol, int] = {}
    for start in edges:
        if start in colour:
            continue
        colour[start], todo = 0, [start]
        while todo:
            u = todo.pop()
            for v in edges[u]:
                if v not in colour:
                    colour[v] = 1 - colour[u]
                    todo.append(v)
                elif colour[v] == colour[u]:
                    return None  # an odd cycle: no bipartite split
    sides = [[u for u in unknowns if colour.get(u) == k] for k in (0, 1)]
    xs = min(sides, key=len)
    ys = [u for u in unknowns if u not in xs]
    rng = random.Random(11)
    candidates = [[sp.Integer(int(i == k)) for i in range(len(xs))] for k in range(len(xs))]
    candidates.append([sp.Rational(rng.randint(1, 97), rng.randint(1, 97)) for _ in xs])
    best: tuple[int, dict[sp.Symbol, sp.Expr]] | None = None
    for values in candidates:
        step = dict(zip(xs, values, strict=True))
        reduced = [sp.expand(e.subs(step)) for e in eqs]
        solved = _solve(reduced, ys, generic)
        if solved is None:
            continue
        size = sum(len(sp.sstr(v)) for v in _with_free_set_to_zero(solved, ys).values())
        if best is None or size < best[0]:
            best = (size, step)
    return None if best is None else best[1]


def _independent_rows(matrix: sp.Matrix) -> list[int]:
    """Indices of a maximal set of linearly independent rows of a rational matrix (exact
    fraction-field elimination with SymPy's ``DomainMatrix`` over ``QQ``: orders of magnitude
    faster than ``Matrix.rank`` on the few-hundred-row systems of 5-stage methods)."""
    if matrix.rows == 0 or matrix.cols == 0:
        return []
    return list(DomainMatrix.from_Matrix(matrix).convert_to(QQ).transpose().rref()[1])
