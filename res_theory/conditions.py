"""Stiff order conditions of exponential Runge–Kutta methods, generated from the error recursion.

Derivation (Hochbruck & Ostermann, SIAM J. Numer. Anal. 43 (2005) 1069–1090, Sect. 4; Luan &
Ostermann, "Exponential B-series: the stiff case", SIAM J. Numer. Anal. 51 (2013)). Insert the
exact solution ``ū_i = u(t_n + c_i h)`` into the method. Taylor expanding ``f(t) = g(u(t), t)``
inside the variation-of-constants formula gives the *defects*::

    δ_{n+1} = Σ_q h^q psi_q(Z) f^{(q-1)}(t_n),
    Δ_{n,i} = Σ_q h^q psi_{q,i}(Z) f^{(q-1)}(t_n),
    psi_q(Z)     = phi_q(Z) - Σ_i b_i(Z) c_i^{q-1}/(q-1)!
    psi_{q,i}(Z) = c_i^q phi_q(c_i Z) - Σ_j a_ij(Z) c_j^{q-1}/(q-1)!

and the stage errors ``E_i = U_i - ū_i`` and the local error ``e_{n+1}`` satisfy::

    E_i     = -Δ_{n,i} + h Σ_j a_ij(Z) (g(ū_j + E_j, t_n + c_j h) - g(ū_j, t_n + c_j h))
    e_{n+1} = -δ_{n+1} + h Σ_i b_i(Z)  (g(ū_i + E_i, t_n + c_i h) - g(ū_i, t_n + c_i h)).

Expanding ``g(ū_j + E, ·) - g(ū_j, ·) = Σ_{m≥1} (1/m!) ∂_u^m g [E, …, E]`` and
``∂_u^m g(ū_j, t_n + c_j h) = Σ_r (c_j h)^r/r! D^{m,r}`` (``D^{m,r}`` = r-th time derivative of
``∂_u^m g`` along the solution, bounded operators: ``J = D^{1,0}``, ``K = D^{1,1}``,
``B = D^{2,0}``) writes the local error as ``Σ_T h^{|T|} Φ(T) T`` over rooted trees ``T``:

* a leaf ``ℓ_q`` is a defect term, ``|ℓ_q| = q`` (inside stages ``q ≥ 2``: the row-sum
  simplifying assumption ``psi_{1,i} = 0`` is assumed and checked separately);
* a node ``[D^{m,r}; T_1..T_m]`` has ``|T| = 1 + r + Σ |T_k|`` and
  ``Φ_i(T) = Σ_j a_ij c_j^r/r! Π_k Φ_j(T_k)`` (inside),
  ``Φ(T) = Σ_i b_i c_i^r/r! Π_k Φ_i(T_k)`` (root).

The condition of tree ``T`` is ``Φ(T) = 0`` (constant factors and signs dropped); its *order* is
``|T|`` (the power of ``h`` in the local error). The operators do not commute with ``Z``, so each
node of the tree carries its own variable ``z_1, z_2, …`` (preorder): "= 0 for all J" is the
identity ``Σ_i b_i(z1) psi_{2,i}(z2) ≡ 0`` (operator case). With ``L`` scalar (diffusion sampling,
``L = -1``) all variables equal ``Z`` (scalar case).

Counting trees gives 1, 1, 2, 4 conditions at orders 1–4 (Hochbruck–Ostermann 2005, Table 2.1),
9 at order 5 and 20 at order 6 (``docs/theory.md``: Luan–Ostermann's sixteen up to order 5 are
these 17 without ``psi_1``, which their method form satisfies by construction).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from res_theory.phi import phi
from res_theory.tableau import ExpTableau, Z

__all__ = [
    "MAX_ORDER",
    "Tree",
    "OrderCondition",
    "order_conditions",
    "row_sum_residual",
    "ConditionError",
]

MAX_ORDER = 6
"""Highest order generated (20 conditions of order 6, 37 in all; order 7 would add 48 and make a
check take minutes)."""


class ConditionError(ValueError):
    """Order conditions were asked for with an invalid order or case."""


CASES = ("operator", "scalar")


@dataclass(frozen=True, order=True)
class Tree:
    """A tree of the local-error expansion: defect leaf ``ℓ_q`` or node ``[D^{m,r}; children]``."""

    q: int = 0
    r: int = 0
    children: tuple[Tree, ...] = ()

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def order(self) -> int:
        return self.q if self.is_leaf else 1 + self.r + sum(t.order for t in self.children)

    @property
    def size(self) -> int:
        """Number of vertices (= number of independent variables ``z_k`` of its condition)."""
        return 1 + sum(t.size for t in self.children)

    def operator_name(self) -> str:
        m, r = len(self.children), self.r
        if m == 1:
            return {0: "J", 1: "K"}.get(r, f"D^(1,{r})")
        return "B" if (m, r) == (2, 0) else f"D^({m},{r})"

    def formula(self) -> str:
        """Readable condition, e.g. ``sum_i b_i J sum_j a_ij J psi_{2,j}``."""
        return f"psi_{self.q}" if self.is_leaf else self._sum("i", "b_i")

    def _inner(self, i: str) -> str:
        if self.is_leaf:
            return f"psi_{{{self.q},{i}}}"
        j = chr(ord(i) + 1)
        return self._sum(j, f"a_{i}{j}")

    def _sum(self, i: str, weight: str) -> str:
        cpow = {0: "", 1: f" c_{i}"}.get(self.r, f" c_{i}^{self.r}/{self.r}!")
        inner = [t._inner(i) for t in self.children]
        body = f" {inner[0]}" if len(inner) == 1 else "(" + ", ".join(inner) + ")"
        return f"sum_{i} {weight}{cpow} {self.operator_name()}{body}"


@functools.cache
def _trees(order: int, inner: bool) -> tuple[Tree, ...]:
    """All trees of the given order; ``inner`` trees (inside a stage) have leaves ``q ≥ 2``."""
    out: list[Tree] = []
    if order >= (2 if inner else 1):
        out.append(Tree(q=order))
    for r in range(order - 1):
        rest = order - 1 - r
        for m in range(1, rest // 2 + 1):
            for parts in _partitions(rest, m, 2):
                pools = [_trees(p, True) for p in parts]
                for combo in itertools.product(*pools):
                    children = tuple(sorted(combo))
                    out.append(Tree(r=r, children=children))
    return tuple(sorted(set(out), key=lambda t: (t.size, t)))


def _partitions(n: int, m: int, least: int) -> list[tuple[int, ...]]:
    """Non-increasing tuples of ``m`` integers ``≥ least`` summing to ``n``."""
    if m == 1:
        return [(n,)] if n >= least else []
    return [
        (first, *rest)
        for first in range(n - least * (m - 1), least - 1, -1)
        for rest in _partitions(n - first, m - 1, least)
        if rest[0] <= first
    ]


@dataclass(frozen=True)
class OrderCondition:
    """One stiff order condition ``Φ(T)(z_1, …) ≡ 0``: its tree, order and residual builder."""

    name: str
    order: int
    tree: Tree

    @property
    def variables(self) -> tuple[sp.Symbol, ...]:
        return tuple(sp.Symbol(f"z{k}") for k in range(1, self.tree.size + 1))

    def residual(
        self, tableau: ExpTableau, case: str = "operator", weakened: bool = False
    ) -> sp.Expr:
        """The residual ``Φ(T)`` of ``tableau``: operator case in ``z1, z2, …``; scalar in ``Z``.

        ``weakened=True`` puts ``b_i(0)`` in place of ``b_i(Z)`` (root variable set to ``0``),
        the weakened form that suffices for the top order (Hochbruck–Ostermann 2005, Thm. 4.7).
        """
        if case not in CASES:
            raise ConditionError(f"case must be one of {CASES}, got {case!r}")
        if case == "scalar":
            variables: list[sp.Expr] = [Z] * self.tree.size
        else:
            variables = list(self.variables)
        if weakened:
            variables[0] = sp.Integer(0)
        return _residual(self.tree, tableau, variables)


def _residual(tree: Tree, tab: ExpTableau, variables: list[sp.Expr]) -> sp.Expr:
    """``Φ(T)`` with vertex ``k`` (preorder) of ``tree`` carrying the variable ``variables[k]``."""
    c = tab.c
    exact_stages = tab.kind == "multistep"

    def node(t: Tree, at: int, weights: list[tuple[int, sp.Expr]], inner_of: Callable) -> sp.Expr:
        z = variables[at]
        offsets = list(itertools.accumulate((ch.size for ch in t.children), initial=at + 1))
        total = sp.Integer(0)
        for j, w in weights:
            if w == 0:
                continue
            term = w.subs(Z, z) * c[j] ** t.r / math.factorial(t.r)
            for child, off in zip(t.children, offsets, strict=False):
                term *= inner_of(child, j, off)
            total += term
        return total

    def inner(t: Tree, i: int, at: int) -> sp.Expr:
        if t.is_leaf:
            if exact_stages:
                return sp.Integer(0)
            z, q = variables[at], t.q
            return c[i] ** q * phi(q, c[i] * z) - sum(
                (
                    tab.A[i][j].subs(Z, z) * c[j] ** (q - 1) / math.factorial(q - 1)
                    for j in range(i)
                ),
                sp.Integer(0),
            )
        return node(t, at, [(j, tab.A[i][j]) for j in range(i)], inner)

    if tree.is_leaf:
        z, q = variables[0], tree.q
        return phi(q, z) - sum(
            (b.subs(Z, z) * c[i] ** (q - 1) / math.factorial(q - 1) for i, b in enumerate(tab.b)),
            sp.Integer(0),
        )
    return node(tree, 0, list(enumerate(tab.b)), inner)


@functools.cache
def order_conditions(order: int, case: str = "operator") -> tuple[OrderCondition, ...]:
    """All stiff order conditions of orders ``1..order``, generated from the trees above.

    ``case`` only records how residuals are meant to be read (``"operator"``: identities in the
    independent variables ``z_k``; ``"scalar"``: identities in ``Z``); the trees are the same.
    """
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ConditionError(f"order must be a positive integer, got {order!r}")
    if order > MAX_ORDER:
        raise ConditionError(f"order must be at most {MAX_ORDER}, got {order}")
    if case not in CASES:
        raise ConditionError(f"case must be one of {CASES}, got {case!r}")
    return tuple(
        OrderCondition(name=t.formula(), order=p, tree=t)
        for p in range(1, order + 1)
        for t in _trees(p, False)
    )


def row_sum_residual(tableau: ExpTableau, i: int) -> sp.Expr:
    """``psi_{1,i}(Z) = c_i phi_1(c_i Z) - Σ_j a_ij(Z)`` (assumed; 0 if multistep)."""
    if tableau.kind == "multistep":
        return sp.Integer(0)
    return tableau.c[i] * phi(1, tableau.c[i] * Z) - sum(tableau.A[i][:i], sp.Integer(0))
