"""Property-based checks at 50 digits: families satisfy their conditions for random parameters."""

from __future__ import annotations

import mpmath
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from res_theory import library
from res_theory.conditions import order_conditions
from res_theory.phi import phi_mp
from res_theory.tableau import Z

c2s = st.fractions(min_value=0, max_value=1, max_denominator=1000).filter(lambda x: x > 0)
hs = st.floats(min_value=1e-8, max_value=50, allow_nan=False)


def _scalar_residual_value(tab, cond, values: dict, h: float) -> mpmath.mpf:
    expr = cond.residual(tab, "scalar").subs(values)
    f = sp.lambdify([Z], expr, modules=[{"phi": phi_mp}, "mpmath"])
    return f(-mpmath.mpf(h))


def _conditions_held(tab, names: set[str]) -> list:
    return [c for c in order_conditions(3) if c.name in names]


@settings(max_examples=25, deadline=None)
@given(c2=c2s, h=hs)
def test_res_2s_conditions_vanish_at_50_digits(c2, h) -> None:
    tab = library.get("res_2s")
    values = {sp.Symbol("c2"): sp.Rational(c2.numerator, c2.denominator)}
    with mpmath.workdps(50):
        for cond in _conditions_held(tab, {"psi_1", "psi_2"}):
            value = _scalar_residual_value(tab, cond, values, h)
            assert abs(value) < mpmath.mpf(10) ** -45, (cond.name, c2, h, value)
        psi3 = next(c for c in order_conditions(3) if c.name == "psi_3")
        assert abs(_scalar_residual_value(tab, psi3, values, h)) > mpmath.mpf(10) ** -30


@settings(max_examples=15, deadline=None)
@given(
    c2=st.fractions(min_value=0, max_value="2/3", max_denominator=500).filter(
        lambda x: 0 < x < sp.Rational(2, 3)
    ),
    c3=st.fractions(min_value="2/3", max_value=1, max_denominator=500).filter(
        lambda x: x > sp.Rational(2, 3)
    ),
    h=hs,
)
def test_res_3s_family_conditions_at_50_digits(c2, c3, h) -> None:
    tab = library.get("res_3s")
    values = {sp.Symbol("c2"): sp.nsimplify(c2), sp.Symbol("c3"): sp.nsimplify(c3)}
    with mpmath.workdps(50):
        for cond in _conditions_held(tab, {"psi_1", "psi_2", "psi_3"}):
            assert abs(_scalar_residual_value(tab, cond, values, h)) < mpmath.mpf(10) ** -40
        cond4 = next(c for c in order_conditions(3) if c.name == "sum_i b_i J psi_{2,i}")
        weak = cond4.residual(tab, "scalar", weakened=True).subs(values)
        f = sp.lambdify([Z], weak, modules=[{"phi": phi_mp}, "mpmath"])
        assert abs(f(-mpmath.mpf(h))) < mpmath.mpf(10) ** -40


@settings(max_examples=15, deadline=None)
@given(
    r=st.lists(
        st.fractions(min_value="1/10", max_value=3, max_denominator=300), min_size=2, max_size=2
    ),
    h=hs,
)
def test_res_3m_conditions_for_random_history(r, h) -> None:
    """History nodes c2 = -r0, c3 = -(r0 + r1) for any positive step ratios."""
    tab = library.get("res_3m")
    c2 = -sp.nsimplify(r[0])
    c3 = c2 - sp.nsimplify(r[1])
    values = {sp.Symbol("c2"): c2, sp.Symbol("c3"): c3}
    with mpmath.workdps(50):
        for cond in _conditions_held(tab, {"psi_1", "psi_2", "psi_3"}):
            assert abs(_scalar_residual_value(tab, cond, values, h)) < mpmath.mpf(10) ** -40
