"""Embedded pairs: the b_embedded field, the checker's report on it, the selection rule, and the
estimate's behaviour on a scalar test problem."""

from __future__ import annotations

import mpmath
import pytest
import sympy as sp

from res_theory import library
from res_theory.check import check
from res_theory.embedded import embedded_pair, is_non_degenerate
from res_theory.phi import phi, phi_mp
from res_theory.tableau import ExpTableau, TableauError, Z

c2 = sp.Symbol("c2")


@pytest.mark.parametrize(
    ("name", "stages", "orders"),
    [
        ("res_2s", (1,), (2, 1)),
        ("res_3s", (1, 2), (3, 2)),
        ("res_2m", (1,), (2, 1)),
        ("res_3m", (1, 2), (3, 2)),
    ],
)
def test_library_pairs_are_the_selected_ones(name: str, stages: tuple, orders: tuple) -> None:
    tab = library.get(name)
    pair = embedded_pair(tab)
    assert pair.stages == stages
    for x, y in zip(pair.tableau.b_embedded, tab.b_embedded, strict=True):
        assert sp.simplify(x - y) == 0
    report = check(tab, order=orders[0] + 1)
    assert report.embedded is not None
    assert (report.stiff_order, report.embedded.stiff_order) == orders
    assert (report.scalar_order, report.embedded.scalar_order) == orders
    assert str(report).splitlines()[-1].startswith(f"embedded weights: stiff order {orders[1]}")


def test_res_3s_pair_prefers_the_tighter_estimate() -> None:
    pair = embedded_pair(library.get("res_3s"))
    constants = dict(pair.candidates)
    # C_3 of b-hat at c2 = 1/2, c3 = 1: stages (1, 2) is RES-2S (C_3 = sqrt(2*(9/4-3+2))/12)
    assert constants[(1, 2)] == f"C_3 = {float(sp.sqrt(sp.Rational(5, 2)) / 12):.6g}"
    assert float(constants[(1, 3)].split("= ")[1]) > float(constants[(1, 2)].split("= ")[1])


def test_degenerate_estimates_are_recognised() -> None:
    """RES-2S at c2 = 2/3 has psi_3(0) = 0: as an embedded order-2 method its estimate would
    lose an order for quadrature-type problems; at c2 = 1/2 it does not."""
    assert not is_non_degenerate(check(library.get("res_2s").at(c2="2/3"), order=3))
    assert is_non_degenerate(check(library.get("res_2s").at(c2="1/2"), order=3))
    pair = embedded_pair(library.get("krogstad"))
    assert ((1, 4), "C_3 = 0.0833333") in pair.candidates
    hochbruck = library.get("hochbruck_ostermann4")
    with pytest.raises(TableauError, match="no nested embedded pair"):
        embedded_pair(hochbruck)
    with pytest.raises(TableauError, match="no lower order"):
        embedded_pair(library.get("ddim"))


def test_b_embedded_is_validated_and_substituted() -> None:
    res = library.get("res_2s")
    assert res.at(c2="1/3").b_embedded == (phi(1, Z), 0)
    res3 = library.get("res_3s").at(c2="1/4")
    assert sp.simplify(res3.b_embedded[1] - 4 * phi(2, Z)) == 0
    half = sp.Rational(1, 2)
    args = ("x", "x", (0, half), ((0, 0), (half * phi(1, half * Z), 0)), (phi(1, Z), 0))
    with pytest.raises(TableauError, match="b_embedded has 1 entries"):
        ExpTableau(*args, b_embedded=(phi(1, Z),))
    with pytest.raises(TableauError, match="equals b"):
        ExpTableau(*args, b_embedded=(phi(1, Z), 0))
    with pytest.raises(TableauError, match="unknown symbols"):
        ExpTableau(*args, b_embedded=(phi(1, Z) - c2 * phi(2, Z), c2 * phi(2, Z)))
    with pytest.raises(TableauError, match="not a linear combination"):
        ExpTableau(*args, b_embedded=(phi(1, Z) ** 2, 0))
    with pytest.raises(TableauError, match="no embedded weights"):
        library.get("ddim").embedded()


def _step(tab: ExpTableau, h: mpmath.mpf, u0: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """One step of ``u' = -u + g(u, t)``, ``g = cos(t) + u^2/4`` (scalar, ``Z = -h``): the
    order-p solution and the estimate ``h Σ (b_i - b̂_i) g_i``."""

    def value(entry: sp.Expr) -> mpmath.mpf:
        f = sp.lambdify(Z, entry, modules=[{"phi": phi_mp}, "mpmath"])
        return mpmath.mpf(f(-h))

    def g(u: mpmath.mpf, t: mpmath.mpf) -> mpmath.mpf:
        return mpmath.cos(t) + u**2 / 4

    c = [mpmath.mpf(sp.Rational(x).p) / sp.Rational(x).q for x in tab.c]
    gs = []
    for i in range(tab.stages):
        ui = mpmath.exp(-c[i] * h) * u0 + h * sum(value(tab.A[i][j]) * gs[j] for j in range(i))
        gs.append(g(ui, c[i] * h))
    u1 = mpmath.exp(-h) * u0 + h * sum(value(b) * x for b, x in zip(tab.b, gs, strict=True))
    est = h * sum(
        (value(b) - value(bh)) * x for b, bh, x in zip(tab.b, tab.b_embedded, gs, strict=True)
    )
    return u1, est


@pytest.mark.parametrize(("name", "p"), [("res_2s", 2), ("res_3s", 3)])
def test_estimate_scales_like_h_to_the_embedded_order_plus_one(name: str, p: int) -> None:
    """``est = O(h^p)`` exactly (non-degenerate): est(h)/est(h/2) -> 2^p."""
    tab = library.get(name).at(**{q.name: q.default for q in library.get(name).parameters})
    with mpmath.workdps(40):
        ests = [_step(tab, mpmath.mpf(2) ** -k, mpmath.mpf(1) / 2)[1] for k in (6, 7, 8)]
        rates = [mpmath.log(abs(ests[k] / ests[k + 1]), 2) for k in range(2)]
    assert all(abs(r - p) < 0.1 for r in rates), rates
