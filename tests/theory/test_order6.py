"""Order 6: counts, oracle formulas for some order-6 conditions, satisfiability, the library's
verdicts and the time budget."""

from __future__ import annotations

import math
import random
import time

import mpmath
import pytest
import sympy as sp

from res_theory import library
from res_theory.check import check
from res_theory.conditions import MAX_ORDER, ConditionError, order_conditions
from res_theory.derive import derive_multistep
from res_theory.phi import phi, phi_mp
from res_theory.tableau import ExpTableau, Z

R = sp.Rational


def test_counts_are_the_rooted_tree_numbers() -> None:
    """1, 1, 2, 4, 9, 20 per order (rooted trees); from psi_2 on: 36 conditions up to order 6,
    Luan & Alhsmy's count (the literature's form satisfies psi_1 by construction)."""
    conds = order_conditions(6)
    assert [sum(c.order == p for c in conds) for p in range(1, 7)] == [1, 1, 2, 4, 9, 20]
    assert len(conds) - 1 == 36
    assert len({c.name for c in conds}) == len(conds)
    assert MAX_ORDER == 6
    with pytest.raises(ConditionError, match="at most 6"):
        order_conditions(7)


def _random_tableau(seed: int, s: int = 5) -> ExpTableau:
    rng = random.Random(seed)
    rat = lambda: R(rng.randint(-9, 9), rng.randint(1, 7))  # noqa: E731
    c = [sp.Integer(0)] + [R(rng.randint(1, 12), 12) for _ in range(s - 1)]
    A = [[sp.Integer(0)] * s for _ in range(s)]
    for i in range(1, s):
        for j in range(i - 1):
            A[i][j] = rat() * phi(1, c[i] * Z) + rat() * phi(2, c[i] * Z)
        A[i][i - 1] = c[i] * phi(1, c[i] * Z) - sum(A[i][: i - 1], sp.Integer(0))
    b = [rat() * phi(1, Z) + rat() * phi(2, Z) + rat() * phi(3, Z) for _ in range(s)]
    return ExpTableau("random", "random", tuple(c), tuple(map(tuple, A)), tuple(b))


def _oracles(t: ExpTableau, z: list[sp.Symbol]) -> dict[str, sp.Expr]:
    """Three order-6 conditions written out by hand (test oracles), one variable per vertex in
    preorder: the tallest tree, a bilinear one and c K psi_4."""
    s, c, A, b = t.stages, t.c, t.A, t.b

    def psi_i(j: int, i: int, x: sp.Expr) -> sp.Expr:
        return c[i] ** j * phi(j, c[i] * x) - sum(
            (A[i][k].subs(Z, x) * c[k] ** (j - 1) / math.factorial(j - 1) for k in range(i)),
            sp.Integer(0),
        )

    def a(i: int, j: int, x: sp.Expr) -> sp.Expr:
        return A[i][j].subs(Z, x)

    tall = sum(
        b[i].subs(Z, z[0]) * a(i, j, z[1]) * a(j, k, z[2]) * a(k, m, z[3]) * psi_i(2, m, z[4])
        for i in range(s)
        for j in range(i)
        for k in range(j)
        for m in range(k)
    )
    bilinear = sum(
        b[i].subs(Z, z[0])
        * sum((a(i, j, z[1]) * psi_i(2, j, z[2]) for j in range(i)), sp.Integer(0))
        * psi_i(2, i, z[3])
        for i in range(s)
    )
    ck = sum(b[i].subs(Z, z[0]) * c[i] * psi_i(4, i, z[1]) for i in range(s))
    return {
        "sum_i b_i J sum_j a_ij J sum_k a_jk J sum_l a_kl J psi_{2,l}": tall,
        "sum_i b_i B(sum_j a_ij J psi_{2,j}, psi_{2,i})": bilinear,
        "sum_i b_i c_i K psi_{4,i}": ck,
    }


@pytest.mark.parametrize("seed", [5, 6])
def test_order6_conditions_coincide_with_hand_written_formulas(seed: int) -> None:
    tab = _random_tableau(seed)
    generated = {c.name: c for c in order_conditions(6) if c.order == 6}
    rng = random.Random(seed)
    with mpmath.workdps(40):
        for name, oracle in _oracles(tab, list(sp.symbols("z1:6"))).items():
            cond = generated[name]
            residual = cond.residual(tab, "operator")
            point = {v: mpmath.mpf(-3 * rng.random() - 0.1) for v in cond.variables}
            args = list(point)
            got = sp.lambdify(args, residual, modules=[{"phi": phi_mp}, "mpmath"])(*point.values())
            want = sp.lambdify(args, oracle, modules=[{"phi": phi_mp}, "mpmath"])(*point.values())
            assert abs(got - want) <= mpmath.mpf(10) ** -30 * (1 + abs(want)), name
            assert abs(want) > mpmath.mpf(10) ** -8, name  # not vacuous on a random tableau


def _multistep(history: tuple[int, ...]) -> ExpTableau:
    """Exponential Adams weights (quadrature on ``0, history``) at fixed equal-step nodes."""
    s = len(history) + 1
    return ExpTableau(
        f"adams{s}",
        "exponential Adams",
        (0, *history),
        ((0,) * s,) * s,
        derive_multistep(tuple(sp.Integer(x) for x in history)),
        kind="multistep",
        startup=("ddim",) * (s - 1),
    )


def test_order6_is_reachable_and_psi6_is_not_vacuous() -> None:
    """Six history values give psi_1..psi_6 ≡ 0: stiff order 6. With five, order 5 and psi_6
    fails with psi_6(0) = 1/720 - Σ b_i(0) c_i^5/5!, recomputed here from the classical weights
    (the Adams-Bashforth weights at equal steps: Σ b_i(0) c_i^5/5! with c = 0, -1, ..., -4)."""
    six = _multistep((-1, -2, -3, -4, -5))
    assert check(six, order=6).stiff_order == 6
    five = _multistep((-1, -2, -3, -4))
    report = check(five, order=6)
    assert report.stiff_order == 5
    psi6 = next(r for r in report.conditions if r.name == "psi_6")
    weights = [x.subs(Z, 0) for x in five.b]
    want = R(1, 720) - sum(w * cc**5 / 120 for w, cc in zip(weights, five.c, strict=True))
    assert psi6.status == "fails" and psi6.leading_term == want != 0


def test_no_library_method_has_order_6_fast() -> None:
    """Hochbruck-Ostermann's 5-stage method stays at order 4 when checked to order 6 (every
    library method, expRK5s8 included, in the slow test below)."""
    report = check(library.get("hochbruck_ostermann4"), order=6)
    assert (report.stiff_order, report.scalar_order) == (4, 4)
    failing = [r.name for r in report.conditions if r.order == 6 and r.status == "fails"]
    assert "psi_6" in failing


@pytest.mark.slow
@pytest.mark.parametrize("name", library.names())
def test_no_library_method_has_order_6(name: str) -> None:
    report = check(library.get(name), order=6)
    assert report.stiff_order < 6 and report.scalar_order < 6 and report.classical_order < 6


def test_order6_conditions_and_check_are_fast() -> None:
    """``conditions --order 6`` and ``check --order 6`` within 10 s (CPU time of this process:
    the machine is shared). res_3s (symbolic c2, c3) is the slowest library check."""
    order_conditions.cache_clear()
    start = time.process_time()
    order_conditions(6)
    assert time.process_time() - start < 1
    start = time.process_time()
    check(library.get("res_3s"), order=6)
    assert time.process_time() - start < 10
