"""OrderReport.error_constant and the parameter choice by minimise_error_constant."""

from __future__ import annotations

import pytest
import sympy as sp

from res_theory import library
from res_theory.check import check
from res_theory.conditions import ConditionError
from res_theory.derive import quadrature_weights
from res_theory.design import minimise_error_constant
from res_theory.phi import phi
from res_theory.tableau import ExpTableau, Parameter, TableauError, Z

R = sp.Rational
c2, c3, theta = sp.symbols("c2 c3 theta")


def test_exponential_euler_constant_is_phi2_at_zero() -> None:
    # psi_2 = phi_2(Z) - 0: leading term 1/2, the only order-2 condition
    assert library.get("ddim").report(2).error_constant() == R(1, 2)


def test_res_2s_constant_by_hand() -> None:
    """psi_3(0) = 1/6 - c2/4 and b_2(0) psi_{2,2}(0) = (1/(2 c2)) (c2^2/2) = c2/4."""
    report = library.get("res_2s").report(3)
    want = sp.sqrt((R(1, 6) - c2 / 4) ** 2 + (c2 / 4) ** 2)
    for case in ("operator", "scalar"):
        assert sp.simplify(report.error_constant(case) ** 2 - want**2) == 0
    best = minimise_error_constant(library.get("res_2s"))
    assert best.values == {"c2": R(1, 3)} and best.constant == sp.sqrt(2) / 12 and best.interior


def test_weakened_and_classical_conditions_enter_with_their_leading_term() -> None:
    # ETDRK4 (Cox-Matthews): stiff order 2, condition 4 only classical (leading degree 2)
    report = library.get("cox_matthews_etdrk4").report(4)
    terms = report.leading_terms()
    assert list(terms) == ["sum_i b_i J psi_{2,i}"]
    assert report.error_constant() > 0
    # res_3s: the weakened order-3 condition counts at q = 4
    assert "sum_i b_i J psi_{2,i}" in library.get("res_3s").report(4).leading_terms()


def test_operator_and_scalar_constants_differ_where_the_variables_do() -> None:
    report = library.get("luan_ostermann5").report(6)
    op, sc = report.error_constant("operator"), report.error_constant("scalar")
    assert op.is_positive and sc.is_positive and op != sc


def test_error_constant_needs_the_next_order_checked() -> None:
    with pytest.raises(ConditionError, match="check up to order 3"):
        library.get("res_2s").report(2).error_constant()
    with pytest.raises(ConditionError, match="case"):
        library.get("res_2s").report(3).error_constant("matrix")


def test_res_3s_optimum() -> None:
    """Over c2 in (0, 2/3), c3 in (2/3, 1] the infimum lies on the edge c3 -> 2/3; with c3 = 1
    fixed, the optimal c2 is the root of the derivative's numerator inside (0, 2/3)."""
    best = minimise_error_constant(library.get("res_3s"))
    assert not best.interior and abs(float(best.values["c3"]) - 2 / 3) < 1e-6
    assert float(best.constant) < float(
        library.get("res_3s").report(4).error_constant().subs({c2: R(1, 2), c3: 1})
    )
    fixed = minimise_error_constant(library.get("res_3s").at(c3=1))
    square = library.get("res_3s").at(c3=1).report(4).error_constant("scalar") ** 2
    x = float(fixed.values["c2"])
    assert 0 < x < 2 / 3 and fixed.interior
    assert abs(float(sp.diff(square, c2).subs(c2, x))) < 1e-9
    for other in (x - 1e-3, x + 1e-3, 0.5):
        assert float(square.subs(c2, other)) > float(fixed.constant) ** 2


def _multistep_family() -> ExpTableau:
    """3-value exponential multistep weights of order 2 with a free weight theta:
    b = RES-2M on (0, c2) + theta * n phi_2, n = (c2 - c3, c3, -c2) (Σ n = Σ n c = 0)."""
    base = (*quadrature_weights((0, c2)), 0)
    n = (c2 - c3, c3, -c2)
    b = tuple(sp.expand(x + theta * m * phi(2, Z)) for x, m in zip(base, n, strict=True))
    history = [
        Parameter(name, default, None, 0, role="history_node")
        for name, default in (("c2", -1), ("c3", -2))
    ]
    return ExpTableau(
        "family",
        "family",
        (0, c2, c3),
        ((0,) * 3,) * 3,
        b,
        parameters=(*history, Parameter("theta", 0, -4, 4)),
        kind="multistep",
        startup=("ddim", "res_2m"),
    )


def test_multistep_weight_is_chosen_for_third_order() -> None:
    """psi_3(0) = 1/6 - c2/4 - theta c2 c3 (c2 - c3)/4 = 5/12 - theta/2 at c2 = -1, c3 = -2:
    the minimiser finds theta = 5/6, which makes psi_3 hold in weakened form (stiff order 3
    at equal steps)."""
    best = minimise_error_constant(_multistep_family())
    assert best.values == {"theta": R(5, 6)} and best.constant == 0 and best.order == 3
    chosen = _multistep_family().at(c2=-1, c3=-2, theta=R(5, 6))
    assert check(chosen, order=3).stiff_order == 3
    assert check(_multistep_family().at(c2=-1, c3=-2, theta=0), order=3).stiff_order == 2


def test_minimise_needs_free_parameters() -> None:
    with pytest.raises(TableauError, match="no free parameters"):
        minimise_error_constant(library.get("krogstad"))
    with pytest.raises(TableauError, match="no free parameters"):
        minimise_error_constant(library.get("res_2m"))
