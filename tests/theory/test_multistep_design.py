"""res_theory.multistep_design: order conditions, weights and error constants of the league's
multistep family, checked symbolically and against the float64 samplers at 40 digits."""

import math

import pytest
import sympy as sp

from experiments.league.multistep import lagrange_weights
from res_theory.derive import quadrature_weights
from res_theory.multistep_design import (
    FORMS,
    VARIABLES,
    MultistepDesignError,
    StepFamily,
    error_constant,
    evaluate,
    h,
    order_condition_residuals,
    sigma_n,
    weights,
)
from res_theory.tableau import Z

c1 = sp.Symbol("c1", negative=True)
FAMILIES = [StepFamily(f, v) for f in FORMS for v in VARIABLES]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f.form}-{f.variable}")
def test_two_node_weights_meet_their_order_conditions_identically(family):
    nodes = (0, c1)
    w = weights(family, nodes)
    residuals = order_condition_residuals(family, nodes, w, 2)
    assert all(sp.simplify(r) == 0 for r in residuals)
    assert sp.simplify(error_constant(family, nodes)) != 0


def test_data_form_in_lambda_is_exponential_adams():
    """w_j = h b_j(Z = -h) with b from res_theory.derive.quadrature_weights (psi_q = 0)."""
    nodes = (sp.Integer(0), sp.Rational(-4, 5), sp.Rational(-19, 10))
    w = weights(StepFamily("denoised", "lambda"), nodes)
    b = quadrature_weights(nodes)
    for wj, bj in zip(w, b, strict=True):
        value = evaluate(wj, {h: "0.7"})
        reference = evaluate(h * bj.subs(Z, -h), {h: "0.7"})
        assert abs(value - reference) < sp.Float(10) ** -35


VARIABLE_OF = {"lambda": "log_sigma", "sigma": "sigma", "rho7": "rho7"}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f.form}-{f.variable}")
@pytest.mark.parametrize("corrector", [False, True])
def test_float64_weights_agree_with_sympy_at_40_digits(family, corrector):
    """A Karras-like step with three history levels (and the new one for the corrector)."""
    levels = [9.5, 4.1, 1.6, 0.55]  # sigma_{n-2}, sigma_{n-1}, sigma_n, sigma_{n+1}
    s_n, s_next = levels[2], levels[3]
    step = math.log(s_n / s_next)
    history = [levels[2], levels[1], levels[0]]
    points = ([s_next] if corrector else []) + history
    nodes = [sp.nsimplify(math.log(s_n / s) / step, rational=True) for s in points]
    exact = weights(family, nodes)
    floats = lagrange_weights(s_n, s_next, points, family.form, VARIABLE_OF[family.variable])
    values = {h: repr(step), sigma_n: repr(s_n)}
    scale = sum(abs(float(evaluate(w, values))) for w in exact)
    for w, f in zip(exact, floats, strict=True):
        assert abs(float(evaluate(w, values)) - f) <= 1e-13 * scale


def test_adams_bashforth_error_constant():
    """Noise form in sigma on equal steps: AB2's local error is (5/12) dsigma^3 eps'' (the
    classical constant); E_2 multiplies d^2 eps / du^2 = sigma_n^2 eps'' with u = sigma/sigma_n."""
    family = StepFamily("noise", "sigma")
    step = 0.3
    dsigma = 1 - math.exp(-step)  # |sigma_{n+1} - sigma_n| / sigma_n
    history = -math.log(1 + dsigma) / step  # theta of sigma_{n-1} = sigma_n (1 + dsigma)
    nodes = (0, sp.nsimplify(history, rational=False))
    e2 = float(evaluate(error_constant(family, nodes), {h: repr(step), sigma_n: "1"}))
    assert abs(e2) == pytest.approx(5 / 12 * dsigma**3, rel=1e-6)


def test_bad_input():
    with pytest.raises(MultistepDesignError, match="form"):
        StepFamily("velocity", "sigma")
    with pytest.raises(MultistepDesignError, match="variable"):
        StepFamily("noise", "time")
    with pytest.raises(MultistepDesignError, match="distinct"):
        weights(StepFamily("noise", "sigma"), (0, 0))
