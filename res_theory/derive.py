"""Solve the stiff order conditions for the weights of exponential integrators.

Ansatz (as in the literature, e.g. Hochbruck & Ostermann 2005 sect. 5): every weight is a linear
combination of phi functions with coefficients depending only on the nodes,
``b_i(Z) = Σ_k β_ik phi_k(Z)``, ``a_ij(Z) = Σ_k α_ijk phi_k(c_i Z)`` (plus, where a condition
needs it, ``phi_k(c_m Z)`` of other nodes). Because ``phi_1, …, phi_K`` of one argument are
linearly independent, a condition that is linear in the weights and holds *identically* in ``Z``
splits into linear equations for the coefficients.
"""

from __future__ import annotations

import math

import sympy as sp

from res_theory.phi import phi
from res_theory.tableau import Z, ExpTableau, Parameter

__all__ = ["derive_multistep", "quadrature_weights", "res_3s_family", "DerivationError"]


class DerivationError(ValueError):
    """The order conditions have no solution of the requested form."""


def quadrature_weights(nodes: tuple[sp.Expr, ...]) -> tuple[sp.Expr, ...]:
    """Weights ``b_i = Σ_k β_ik phi_k(Z)`` with ``psi_q ≡ 0`` for ``q = 1..s`` (``s = len(nodes)``).

    ``psi_q = phi_q - Σ_i b_i c_i^{q-1}/(q-1)! ≡ 0`` for all ``q ≤ s`` means
    ``Σ_i β_ik c_i^{q-1}/(q-1)! = δ_qk``: ``β = V^{-1}``, ``V_qi = c_i^{q-1}/(q-1)!`` (a scaled
    Vandermonde matrix, invertible iff the nodes are distinct). This is the exponential
    Adams-type quadrature (Hochbruck & Ostermann, Acta Numerica 2010, sect. 2.4).
    """
    nodes = tuple(sp.sympify(c) for c in nodes)
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
    limit is Kutta's third-order method.
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
            Parameter("c2", sp.Rational(1, 2), 0, sp.Rational(2, 3), False, False,
                      "second node; c2 = 2/3 is singular (b_3(0) = 0)"),
            Parameter("c3", 1, sp.Rational(2, 3), 1, False, True, "third node (> c2)"),
        ),
        source="this project: res_theory.derive.res_3s_family (Hochbruck-Ostermann 2005 "
        "conditions); compare the public 3-stage 'RES' (MATH.md end), which is a different method",
        derivation="psi_1..psi_3 = 0 identically (linear solve for b); condition 4 in weakened "
        "form (linear in a_32); row sums",
    )
