"""The generated stiff order conditions coincide with the table of MATH.md (Hochbruck–Ostermann).

The table's formulas are written out below *only as test oracles*; the library generates its
conditions from trees. Both are evaluated for a random 4-stage tableau at random independent
points ``z1, z2, z3`` (operator case) at 50 digits and must agree.
"""

from __future__ import annotations

import math
import random

import mpmath
import pytest
import sympy as sp

from res_theory.conditions import ConditionError, order_conditions
from res_theory.phi import phi, phi_mp
from res_theory.tableau import ExpTableau, Z

z1, z2, z3 = sp.symbols("z1 z2 z3")


def _random_tableau(seed: int) -> ExpTableau:
    rng = random.Random(seed)
    rat = lambda: sp.Rational(rng.randint(-9, 9), rng.randint(1, 7))  # noqa: E731
    s = 4
    c = [sp.Integer(0)] + [sp.Rational(rng.randint(1, 12), 12) for _ in range(s - 1)]
    A = [[sp.Integer(0)] * s for _ in range(s)]
    for i in range(1, s):
        for j in range(i - 1):
            A[i][j] = rat() * phi(1, c[i] * Z) + rat() * phi(2, c[i] * Z)
        A[i][i - 1] = c[i] * phi(1, c[i] * Z) - sum(A[i][: i - 1], sp.Integer(0))
    b = [rat() * phi(1, Z) + rat() * phi(2, Z) + rat() * phi(3, Z) for _ in range(s)]
    return ExpTableau("random", "random", tuple(c), tuple(map(tuple, A)), tuple(b))


def _table(t: ExpTableau) -> dict[str, sp.Expr]:
    """MATH.md section 3, rows 1-8 (psi_j and psi_{j,i} as defined there)."""
    s, c, A, b = t.stages, t.c, t.A, t.b

    def psi(j: int, z: sp.Expr) -> sp.Expr:
        return phi(j, z) - sum(
            b[i].subs(Z, z) * c[i] ** (j - 1) / math.factorial(j - 1) for i in range(s)
        )

    def psi_i(j: int, i: int, z: sp.Expr) -> sp.Expr:
        return c[i] ** j * phi(j, c[i] * z) - sum(
            (A[i][k].subs(Z, z) * c[k] ** (j - 1) / math.factorial(j - 1) for k in range(i)),
            sp.Integer(0),
        )

    B = lambda i: b[i].subs(Z, z1)  # noqa: E731
    return {
        "psi_1": psi(1, z1),
        "psi_2": psi(2, z1),
        "psi_3": psi(3, z1),
        "sum_i b_i J psi_{2,i}": sum(B(i) * psi_i(2, i, z2) for i in range(s)),
        "psi_4": psi(4, z1),
        "sum_i b_i J psi_{3,i}": sum(B(i) * psi_i(3, i, z2) for i in range(s)),
        "sum_i b_i J sum_j a_ij J psi_{2,j}": sum(
            B(i) * sum((A[i][k].subs(Z, z2) * psi_i(2, k, z3) for k in range(i)), sp.Integer(0))
            for i in range(s)
        ),
        "sum_i b_i c_i K psi_{2,i}": sum(B(i) * c[i] * psi_i(2, i, z2) for i in range(s)),
    }


def _value(expr: sp.Expr, point: dict) -> mpmath.mpf:
    f = sp.lambdify(list(point), expr, modules=[{"phi": phi_mp}, "mpmath"])
    return f(*point.values())


def test_counts_per_order() -> None:
    counts = [sum(1 for c in order_conditions(5) if c.order == p) for p in range(1, 6)]
    assert counts[:4] == [1, 1, 2, 4]  # Hochbruck & Ostermann (2005), Table 2.1
    # Luan & Ostermann's nine order-5 conditions, the bilinear B(psi_2,i, psi_2,i) among them
    assert counts[4] == 9
    names = {c.name for c in order_conditions(5) if c.order == 5}
    assert "sum_i b_i B(psi_{2,i}, psi_{2,i})" in names
    assert "sum_i b_i c_i^2/2! D^(1,2) psi_{2,i}" in names


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_conditions_coincide_with_the_table(seed: int) -> None:
    tab = _random_tableau(seed)
    table = _table(tab)
    generated = {c.name: c for c in order_conditions(4)}
    assert set(generated) == set(table)
    rng = random.Random(seed)
    with mpmath.workdps(50):
        for name, oracle in table.items():
            cond = generated[name]
            residual = cond.residual(tab, "operator")
            for _ in range(2):
                point = {z: mpmath.mpf(-3 * rng.random() - 0.1) for z in (z1, z2, z3)}
                want = _value(oracle, point)
                got = _value(residual, point)
                assert abs(got - want) <= mpmath.mpf(10) ** -40 * (1 + abs(want)), name
                assert abs(want) > mpmath.mpf(10) ** -6 or name == "psi_1"  # a random tableau fails


def test_orders_match_table() -> None:
    expected = {
        "psi_1": 1,
        "psi_2": 2,
        "psi_3": 3,
        "sum_i b_i J psi_{2,i}": 3,
        "psi_4": 4,
        "sum_i b_i J psi_{3,i}": 4,
        "sum_i b_i J sum_j a_ij J psi_{2,j}": 4,
        "sum_i b_i c_i K psi_{2,i}": 4,
    }
    assert {c.name: c.order for c in order_conditions(4)} == expected


def test_scalar_case_collapses_variables() -> None:
    tab = _random_tableau(4)
    for cond in order_conditions(4):
        scalar = cond.residual(tab, "scalar")
        operator = cond.residual(tab, "operator")
        assert scalar.free_symbols <= {Z}
        assert sp.simplify(operator.subs({v: Z for v in cond.variables}) - scalar) == 0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_order_is_rejected(bad: object) -> None:
    with pytest.raises(ConditionError, match="order"):
        order_conditions(bad)


def test_bad_case_is_rejected() -> None:
    with pytest.raises(ConditionError, match="case"):
        order_conditions(3, case="matrix")
    with pytest.raises(ConditionError, match="case"):
        order_conditions(3)[0].residual(_random_tableau(1), case="matrix")
