"""Every coefficient res_torch computes from the exported files agrees with the SymPy tableau.

``load_tableau(name).evaluate(h, params, embedded=...)`` (float64; ``b_embedded`` too where the
tableau has one) is compared with the SymPy expression of the
same entry evaluated by mpmath at 50 digits, for ``h`` over ``[1e-8, 50]`` and several parameter
values (including unequal multistep history nodes). Tolerance: ``1e-13`` relative to the
magnitude of the entry's terms, ``max(|exact|, Σ_t |coefficient_t phi_k(-scale_t h)|)``: a
coefficient that is a difference of ``O(1)`` terms (``b_1 = phi_1 - phi_2/c2`` at ``c2 = 1/2``
and small ``h`` is ``O(h)``) cannot be computed from the term form more accurately than the
terms' rounding, so plain relative error there measures the format, not the exporter.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp
import torch

from res_theory import library
from res_theory.phi import phi, phi_mp
from res_theory.tableau import Z, phi_terms
from res_torch.tableau import load_tableau

H = [float(x) for x in torch.logspace(-8, math.log10(50), 23, dtype=torch.float64)] + [0.3, 1.0]

PARAMETER_SETS = {
    "res_2s": [{}, {"c2": 1.0}, {"c2": 0.1}, {"c2": 0.77}],
    "dpmpp_2s": [{}, {"c2": 1.0}, {"c2": 0.3}],
    "res_3s": [{}, {"c2": 0.25, "c3": 0.8}, {"c2": 0.6, "c3": 0.7}],
    "res_2m": [{}, {"c2": -0.5}, {"c2": -2.5}],
    "dpmpp_2m": [{}, {"c2": -0.5}, {"c2": -2.5}],
    "res_3m": [{}, {"c2": -0.7, "c3": -1.9}, {"c2": -2.0, "c3": -2.5}],
    "dpmpp_3m": [{}, {"c2": -0.7, "c3": -1.9}, {"c2": -2.0, "c3": -2.5}],
}


def _exact_and_scale(entry: sp.Expr, values: dict, h: float) -> tuple[mpmath.mpf, mpmath.mpf]:
    exact = mpmath.mpf(0)
    scale = mpmath.mpf(0)
    for coeff, k, s in phi_terms(entry):
        c = mpmath.mpf(sp.Rational(coeff.subs(values)).p) / sp.Rational(coeff.subs(values)).q
        sv = sp.Rational(s.subs(values))
        term = c * phi_mp(k, -(mpmath.mpf(sv.p) / sv.q) * mpmath.mpf(h))
        exact += term
        scale += abs(term)
    return exact, max(abs(exact), scale)


@pytest.mark.parametrize("name", library.names())
def test_torch_coefficients_match_sympy_at_50_digits(name: str) -> None:
    symbolic = library.get(name)
    torch_tab = load_tableau(name)
    hs = torch.tensor(H, dtype=torch.float64)
    worst = 0.0
    for overrides in PARAMETER_SETS.get(name, [{}]):
        values = symbolic.parameter_values({k: sp.nsimplify(v) for k, v in overrides.items()})
        embedded = symbolic.b_embedded is not None
        c, a, b, *b_hat = torch_tab.evaluate(hs, overrides, embedded=embedded)
        for i, ci in enumerate(symbolic.c):
            assert float(c[0, i]) == pytest.approx(float(ci.subs(values)), rel=1e-15)
        with mpmath.workdps(50):
            for n, h in enumerate(H):
                entries = [(b[n, i], symbolic.b[i]) for i in range(symbolic.stages)] + [
                    (a[n, i, j], symbolic.A[i][j]) for i in range(symbolic.stages) for j in range(i)
                ]
                if embedded:
                    entries += [
                        (b_hat[0][n, i], symbolic.b_embedded[i]) for i in range(symbolic.stages)
                    ]
                for got, entry in entries:
                    exact, scale = _exact_and_scale(entry, values, h)
                    if scale == 0:
                        assert float(got) == 0.0
                        continue
                    err = float(abs(mpmath.mpf(float(got)) - exact) / scale)
                    worst = max(worst, err)
                    assert err <= 1e-13, (name, overrides, h, entry, float(got), exact)
    assert worst <= 1e-13


def test_phi_terms_rebuild_every_entry_exactly() -> None:
    """The exported terms reproduce each SymPy entry exactly (nothing lost in the export)."""
    for name in library.names():
        tab = library.get(name)
        for entry in (*tab.b, *(x for row in tab.A for x in row)):
            rebuilt = sum(
                (coeff * phi(k, s * Z) for coeff, k, s in phi_terms(entry)), sp.Integer(0)
            )
            assert sp.expand(rebuilt - entry) == 0, (name, entry)
