"""phi functions: recurrence, integral form, series, paper convention, mpmath ground truth."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from res_theory.phi import PhiError, paper_phi, phi, phi_as_exp, phi_mp, phi_series

z = sp.Symbol("z")


def test_symbolic_special_values() -> None:
    assert phi(0, z) == sp.exp(z)
    for k in range(6):
        assert phi(k, 0) == sp.Rational(1, math.factorial(k))
    assert isinstance(phi(3, z), phi)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(0, 6), x=st.floats(-50, 50, allow_nan=False).filter(lambda v: abs(v) > 1e-6))
def test_recurrence_and_closed_form(k: int, x: float) -> None:
    with mpmath.workdps(60):
        xm = mpmath.mpf(x)
        lhs = phi_mp(k + 1, xm)
        rhs = (phi_mp(k, xm) - mpmath.mpf(1) / math.factorial(k)) / xm
        assert abs(lhs - rhs) <= mpmath.mpf(10) ** -40 * (abs(lhs) + abs(rhs) + 1)
        closed = phi_as_exp(k, z)
        value = mpmath.mpf(sp.N(closed.subs(z, sp.Float(x, 80)), 60))
        assert abs(value - phi_mp(k, xm)) <= mpmath.mpf(10) ** -30 * (1 + abs(value))


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 5), x=st.floats(-20, 5, allow_nan=False))
def test_integral_form(k: int, x: float) -> None:
    with mpmath.workdps(30):
        integral = mpmath.quad(
            lambda t: mpmath.exp((1 - t) * x) * t ** (k - 1) / mpmath.factorial(k - 1), [0, 1]
        )
        assert abs(integral - phi_mp(k, x)) <= mpmath.mpf(10) ** -25 * (1 + abs(integral))


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_series_matches_at_small_arguments(k: int) -> None:
    poly = phi_series(k, z, 25)
    with mpmath.workdps(50):
        for x in ("1e-8", "-0.3", "0.7"):
            xm = mpmath.mpf(x)
            value = mpmath.mpf(sp.N(poly.subs(z, sp.Float(x, 60)), 50))
            assert abs(value - phi_mp(k, xm)) <= mpmath.mpf(10) ** -20


def test_paper_convention() -> None:
    h = sp.Symbol("h", positive=True)
    assert paper_phi(1, h) == phi(1, -h)
    assert sp.simplify(paper_phi(1, h).rewrite(sp.exp) - (1 - sp.exp(-h)) / h) == 0
    assert (
        sp.simplify(paper_phi(2, h).rewrite(sp.exp) - (1 - paper_phi(1, h).rewrite(sp.exp)) / h)
        == 0
    )


def test_small_h_accuracy_at_50_digits() -> None:
    with mpmath.workdps(50):
        x = mpmath.mpf("-1e-8")
        value = phi_mp(4, x)
        series = sum(x**n / mpmath.factorial(n + 4) for n in range(10))
        assert abs(value - series) < mpmath.mpf(10) ** -45


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None])
def test_bad_index(bad: object) -> None:
    with pytest.raises(PhiError):
        phi_mp(bad, 0.5)  # type: ignore[arg-type]
    with pytest.raises(PhiError):
        paper_phi(bad, z)  # type: ignore[arg-type]


def test_symbolic_bad_index() -> None:
    with pytest.raises(PhiError):
        phi(-1, z)
    with pytest.raises(PhiError):
        phi(sp.Rational(1, 2), z)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("z", [sp.Rational(-7, 10), sp.Rational(3, 2), sp.Rational(-1, 10**8)])
def test_sympy_numeric_evaluation_uses_the_phi_function(k, z):
    """``sp.N(phi(k, z))`` is phi_k(z) (it once fell back to an unrelated mpmath function)."""
    exact = sp.N(phi(k, z).rewrite(sp.exp), 60)
    assert abs(sp.N(phi(k, z), 40) - exact) <= sp.Float("1e-35") * abs(exact)
