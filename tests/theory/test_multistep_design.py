"""res_theory.multistep_design: order conditions, weights and error constants of the
interpolation multistep family, checked symbolically and against the coefficients the res_torch
samplers use (the ``lagrange`` family) at 40 digits."""

import math

import pytest
import sympy as sp
import torch

from res_theory.derive import quadrature_weights
from res_theory.multistep_design import (
    FORMS,
    VARIABLES,
    MultistepDesignError,
    StepFamily,
    error_constant,
    evaluate,
    free_first_step,
    h,
    numeric_weights,
    order_condition_residuals,
    sigma_n,
    weights,
)
from res_theory.tableau import Z
from res_torch import METHODS, coefficients, get_sigmas_flow, get_sigmas_karras, make_grid
from res_torch.coefficients import free_first_step as torch_free_first_step
from res_torch.coefficients import grid_exponents, interpolated_values, interpolation_weights

c1 = sp.Symbol("c1", negative=True)
FAMILIES = [StepFamily(f, v) for f in FORMS for v in VARIABLES if v != "power"] + [
    StepFamily(f, "power", sp.Rational(2, 9)) for f in FORMS
]


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
FAMILY_OF = {"log_sigma": "lambda", "sigma": "sigma", "rho7": "rho7"}


@pytest.mark.parametrize(
    "family",
    [f for f in FAMILIES if f.variable in VARIABLE_OF],
    ids=lambda f: f"{f.form}-{f.variable}",
)
@pytest.mark.parametrize("corrector", [False, True])
def test_float64_weights_agree_with_sympy_at_40_digits(family, corrector):
    """A Karras-like step with three history levels (and the new one for the corrector): the
    fully symbolic weights, the 40-digit solve of the same conditions and the float64 ones."""
    levels = [9.5, 4.1, 1.6, 0.55]  # sigma_{n-2}, sigma_{n-1}, sigma_n, sigma_{n+1}
    s_n, s_next = levels[2], levels[3]
    step = math.log(s_n / s_next)
    history = [levels[2], levels[1], levels[0]]
    points = history + ([s_next] if corrector else [])
    nodes = [sp.nsimplify(math.log(s_n / s) / step, rational=True) for s in points]
    exact = weights(family, nodes)
    solved = numeric_weights(family, nodes, repr(step), repr(s_n))
    floats = interpolation_weights(points, s_n, s_next, family.form, VARIABLE_OF[family.variable])
    values = {h: repr(step), sigma_n: repr(s_n)}
    scale = sum(abs(float(evaluate(w, values))) for w in exact)
    for w, n, f in zip(exact, solved, floats, strict=True):
        assert abs(float(evaluate(w, values)) - float(n)) <= 1e-30 * scale
        assert abs(float(n) - f) <= 1e-13 * scale


LAGRANGE = [name for name, method in METHODS.items() if method.family == "lagrange"]


def _family(method, sigmas, n: int) -> StepFamily:
    """The step family of step ``n``: the method's fixed variable, or for ``"grid"`` the power
    ``sigma^p_n`` the core chose for that step (read exactly from its float)."""
    if method.interpolation != "grid":
        return StepFamily(method.prediction, FAMILY_OF[method.interpolation])
    grid = make_grid(sigmas)
    p = grid_exponents(grid, method.history + 1, interpolated_values(method, grid))[n]
    if p == 0:
        return StepFamily(method.prediction, "lambda")
    return StepFamily(method.prediction, "power", sp.Rational(p))


IRREGULAR = {
    "karras_nfe6": get_sigmas_karras(6, 0.002, 80.0),
    "karras_nfe12_rho3": get_sigmas_karras(12, 0.002, 80.0, rho=3.0),
    "karras_nfe30": get_sigmas_karras(30, 0.002, 80.0),
    "random": torch.tensor([60.0, 31.0, 29.5, 9.0, 2.2, 1.9, 0.4, 0.05, 0.011, 0.0]),
    "flow_nfe10": get_sigmas_flow(10, 0.002, 80.0),
}


@pytest.mark.parametrize("grid", IRREGULAR, ids=str)
@pytest.mark.parametrize("name", LAGRANGE)
def test_sampler_coefficients_are_the_order_condition_solutions(name, grid):
    """Every predictor and corrector weight (and the decay) the core computes for the designed
    methods (correctors where they contract: tests/torch/test_designed_methods.py) equals the
    40-digit solution of the order conditions C_q at the step's actual history nodes, relative
    1e-12 (of the step's sum of |w|), on irregular grids."""
    method = METHODS[name]
    table = coefficients(method, make_grid(IRREGULAR[grid]))
    levels = [step.sigmas[0] for step in table.steps]
    checked, available = 0, interpolated_values(method, make_grid(IRREGULAR[grid]))
    for n, step in enumerate(table.steps[:-1]):
        if step.guessed:  # the free first step: test_free_first_step_is_the_sympy_derivation
            checked += 2
            continue
        family = _family(method, IRREGULAR[grid], n)
        s_n, s_next = levels[n], levels[n + 1]
        h_n = math.log(s_n / s_next)
        k = len(step.weights)
        assert k == min(available[n], method.history + 1)
        theta = [math.log(s_n / levels[n - j]) / h_n for j in range(k)]
        rows = [(step.weights, theta)]
        if step.corrector:
            rows.append((step.corrector, [*theta, 1.0]))
        for got, nodes in rows:
            exact = numeric_weights(family, [repr(c) for c in nodes], repr(h_n), repr(s_n))
            scale = sum(abs(float(w)) for w in exact)
            for g, w in zip(got, exact, strict=True):
                assert abs(g - float(w)) <= 1e-12 * scale, (n, got, exact)
            checked += 1
        decay = 1.0 if method.prediction == "noise" else s_next / s_n
        assert step.decay == pytest.approx(decay, rel=1e-15)
    corrected = sum(bool(step.corrector) for step in table.steps)
    assert checked == len(levels) - 1 + corrected
    if grid == "karras_nfe30" and method.corrector:  # short steps: the corrector acts on most
        assert corrected >= 20


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
    with pytest.raises(MultistepDesignError, match="exponent"):
        StepFamily("noise", "power")
    with pytest.raises(MultistepDesignError, match="exponent"):
        StepFamily("noise", "power", sp.Rational(-1, 2))
    with pytest.raises(MultistepDesignError, match="exponent"):
        StepFamily("noise", "sigma", sp.Rational(1, 2))
    with pytest.raises(MultistepDesignError, match="distinct"):
        weights(StepFamily("noise", "sigma"), (0, 0))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("levels", [(80.0, 71.6), (80.0, 24.4), (14.6146, 10.9073), (3e4, 27.0)])
def test_free_first_step_is_the_sympy_derivation_at_40_digits(form, levels):
    """res_torch's free first step (the first step of ``res_pc3_free``/``res_pc4_free``) against
    the exact derivation: decay, predictor and corrector weights to 1e-13 relative; the
    noise-form corrector and the data form's agree on ``x_1`` for any ``x_0`` and ``D_1``."""
    sigma_from, sigma_to = levels
    exact = free_first_step(form)
    step = torch_free_first_step(sigma_from, sigma_to, form)
    values = {h: sp.log(sp.Rational(str(sigma_from)) / sp.Rational(str(sigma_to))),
              sigma_n: sp.Rational(str(sigma_from))}  # fmt: skip
    expected = [exact[0], *exact[1], *exact[2]]
    got = [step.decay, *step.weights, *step.corrector]
    for want, have in zip(expected, got, strict=True):
        want = float(sp.N(sp.sympify(want).subs(values), 40))
        assert have == pytest.approx(want, rel=1e-13, abs=1e-13 * sigma_from)
    assert step.guessed and step.linearisation == 0.0
    if form == "noise":  # x_1 = r x_0 + (1 - r) D_1 whatever x_0 and D_1
        r, x0, d1 = sigma_to / sigma_from, 1.7, -0.4
        y0 = x0 / sigma_from
        y1 = (x0 + step.weights[0] * y0 - d1 * 1.0) / sigma_to  # eps at x^p with D(x^p) = d1
        x1 = step.decay * x0 + step.corrector[0] * y0 + step.corrector[1] * y1
        assert x1 == pytest.approx(r * x0 + (1 - r) * d1, rel=1e-12)


def test_free_first_step_bad_form():
    with pytest.raises(MultistepDesignError, match="form"):
        free_first_step("velocity")
