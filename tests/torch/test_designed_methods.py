"""The designed ``lagrange`` methods (``res_pc4_sigma``, ``_logsigma``, ``_rho7``, ``_grid``,
``res_pc3_rho7``, ``_grid``, ``res_pc2_lambda``): weights against textbook formulas, the grid's
own variable, the linearised
history, orders of convergence on the exact Gaussian ODE, where the corrector acts, NFE and bad
input. Their coefficients against the SymPy order conditions:
``tests/theory/test_multistep_design.py``; fast loop against the reference loop:
``tests/torch/test_reference_loop.py`` (every name in ``SAMPLERS``)."""

from __future__ import annotations

import math
from dataclasses import replace

import mpmath
import pytest
import torch

from res_torch import (
    METHODS,
    ResError,
    SigmasError,
    get_sigmas_exponential,
    get_sigmas_flow,
    get_sigmas_karras,
    nfe,
    recommend,
    sample,
    sample_res_pc2_lambda,
    sample_res_pc4_logsigma,
    sample_res_pc4_sigma,
    sigmas_for_nfe,
)
from res_torch.coefficients import (
    coefficients,
    grid_exponents,
    interpolation_weights,
    power_variable,
    uniformising_exponent,
)
from res_torch.errors import NFEBudgetError, TableauError
from res_torch.grid import make_grid
from res_torch.recommend import budget_of
from res_torch.samplers import sample_method

from .conftest import GaussianProblem

DESIGNED = [name for name, method in METHODS.items() if method.family == "lagrange"]
ADAMS_BASHFORTH = {
    1: [1.0],
    2: [3 / 2, -1 / 2],
    3: [23 / 12, -16 / 12, 5 / 12],
    4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
}
ADAMS_MOULTON = {  # on (eps_n, eps_{n-1}, ..., eps_new)
    2: [1 / 2, 1 / 2],
    3: [8 / 12, -1 / 12, 5 / 12],
    5: [646 / 720, -264 / 720, 106 / 720, -19 / 720, 251 / 720],
}


def test_the_designs_are_registered_samplers():
    assert DESIGNED == [
        "res_pc4_sigma", "res_pc4_logsigma", "res_pc4_rho7", "res_pc3_rho7", "res_pc3_grid",
        "res_pc4_grid", "res_ab3_grid", "res_pc3_free", "res_pc4_free", "res_ab3_free",
        "res_pc2_lambda",
    ]  # fmt: skip
    for name in DESIGNED:
        assert METHODS[name].is_multistep and METHODS[name].stages == 1


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_noise_form_in_sigma_on_equal_steps_is_adams_bashforth(k):
    step = -0.25
    nodes = [3.0 - step * j for j in range(k)]  # sigma_n = 3, history above it
    w = interpolation_weights(nodes, 3.0, 3.0 + step, "noise", "sigma")
    assert [v / step for v in w] == pytest.approx(ADAMS_BASHFORTH[k], rel=1e-13, abs=1e-13)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_corrector_in_sigma_on_equal_steps_is_adams_moulton(k):
    step = -0.25
    nodes = [3.0 - step * j for j in range(k - 1)] + [3.0 + step]
    w = interpolation_weights(nodes, 3.0, 3.0 + step, "noise", "sigma")
    assert [v / step for v in w] == pytest.approx(ADAMS_MOULTON[k], rel=1e-13, abs=1e-13)


@pytest.mark.parametrize("n", [3, 6, 31])
@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0, 20.0])
def test_the_uniformising_exponent_of_a_karras_grid_is_one_over_rho(rho, n):
    sigmas = get_sigmas_karras(n, 0.002, 80.0, rho=rho)[:-1].tolist()
    assert uniformising_exponent(sigmas) == pytest.approx(1 / rho, abs=1e-12)
    assert uniformising_exponent(sigmas[::-1]) == pytest.approx(1 / rho, abs=1e-12)


def test_the_uniformising_exponent_of_exponential_and_flow_grids():
    assert uniformising_exponent(get_sigmas_exponential(9, 0.01, 50.0)[:-1].tolist()) == 0.0
    flow = get_sigmas_flow(30, 0.002, 80.0, shift=3.0)[:-1].tolist()
    # uniform in sigma/(sigma + 3): like log sigma where sigma >> 3, like sigma where sigma << 3
    assert uniformising_exponent(flow[:4]) < 0.05 and uniformising_exponent(flow[-4:]) > 0.9
    assert uniformising_exponent([2.0, 1.0]) == pytest.approx(1 / 7)  # too few: the EDM default


def test_power_variable_is_accurate_as_the_exponent_vanishes():
    """``(sigma^p - 1)/p`` to a few ulps against 40-digit mpmath, where ``sigma^p`` itself
    would lose all digits of the spacing (p = 1e-14)."""
    with mpmath.workdps(40):
        for p in (1e-14, 1e-8, 1 / 7, 1.0):
            for s in (0.002, 0.7, 3.0, 80.0):
                exact = mpmath.expm1(mpmath.mpf(p) * mpmath.log(s)) / mpmath.mpf(p)
                assert power_variable(p)(s) == pytest.approx(float(exact), rel=4e-16, abs=0)
    assert power_variable(0.0) is math.log


@pytest.mark.parametrize(
    ("sigmas", "fixed"),
    [
        (get_sigmas_karras(12, 0.002, 80.0), "res_pc4_rho7"),
        (get_sigmas_exponential(12, 0.002, 80.0), "res_pc4_logsigma"),
        (torch.linspace(20.0, 0.5, 12, dtype=torch.float64).tolist() + [0.0], "res_pc4_sigma"),
    ],
    ids=["karras7", "exponential", "uniform"],
)
def test_the_grid_variable_is_the_fixed_one_on_grids_uniform_in_it(sigmas, fixed):
    """On a grid uniform in sigma^(1/7), log sigma or sigma every step's exponent is that power,
    and the grid methods' tables are the fixed-variable methods' (relative 1e-12)."""
    grid = make_grid(sigmas)
    for values in (3, 4):
        exponents = grid_exponents(grid, values)
        p = {"res_pc4_rho7": 1 / 7, "res_pc4_logsigma": 0.0, "res_pc4_sigma": 1.0}[fixed]
        assert exponents[:-1] == pytest.approx([p] * (len(exponents) - 1), abs=1e-12)
        assert math.isnan(exponents[-1])
        ours = coefficients(f"res_pc{values}_grid", grid)
        theirs = coefficients(fixed, grid, {"values": values})
        for a, b in zip(ours.steps, theirs.steps, strict=True):
            assert len(a.corrector) == len(b.corrector)
            scale = max(map(abs, a.weights + a.corrector), default=1.0)
            for x, y in zip(a.weights + a.corrector, b.weights + b.corrector, strict=True):
                assert abs(x - y) <= 1e-12 * scale


def test_the_grid_variable_follows_a_flow_grid_along_it():
    """A flow grid (uniform in sigma/(sigma + 3)) gets log sigma at its start and nearly sigma
    at its end, the exponent rising along it."""
    exponents = grid_exponents(make_grid(get_sigmas_flow(20, 0.002, 80.0)), 3)[:-1]
    assert exponents[0] < 0.05 and exponents[-2] > 0.5
    assert all(a <= b + 1e-9 for a, b in zip(exponents[:-2], exponents[1:-1], strict=True))


def test_data_form_weights_are_the_res_multistep_ones():
    """Data form in lambda with nodes sigma_n, sigma_{n-1}: RES-2M's weights
    h (phi_1 + phi_2/r), -h phi_2/r with r = h_prev/h (MATH.md sect. 4)."""
    s_prev, s_n, s_next = 5.0, 2.0, 0.7
    h, h_prev = math.log(s_n / s_next), math.log(s_prev / s_n)
    phi1 = -math.expm1(-h) / h
    phi2 = (1 - phi1) / h
    r = h_prev / h
    w = interpolation_weights([s_n, s_prev], s_n, s_next, "denoised", "log_sigma")
    assert w == pytest.approx([h * (phi1 + phi2 / r), -h * phi2 / r], rel=1e-13)
    table = coefficients("res_2m", make_grid([s_prev, s_n, s_next, 0.0]))
    ours = coefficients("res_pc2_lambda", make_grid([s_prev, s_n, s_next, 0.0]), {"values": 2})
    assert ours.steps[1].weights == pytest.approx(table.steps[1].weights, rel=1e-13)


def _exact_gaussian_run(problem, method, levels, x0):
    """The closed-form states at ``levels`` and one designed step from exact history values."""
    states = [problem.exact(x0, levels[0], s) for s in levels]
    table = coefficients(method, make_grid([*levels, 0.0]))
    step = table.steps[len(levels) - 2]  # the step into levels[-1] (corrected: a step follows)

    def y(x, s):
        d = problem.denoiser(x, torch.full((x.shape[0],), s, dtype=x.dtype))
        return (x - d) / s if table.prediction == "noise" else d

    history = [y(states[-2 - j], levels[-2 - j]) for j in range(len(step.weights))]
    x_n = states[-2]
    x = step.decay * x_n + sum(w * v for w, v in zip(step.weights, history, strict=True))
    if not step.corrector:  # a predictor-only method (res_ab3_*)
        return x, states[-1]
    new = y(x, levels[-1])
    *old, weight_new = step.corrector
    x = step.decay * x_n + weight_new * new + sum(w * v for w, v in zip(old, history, strict=True))
    return x, states[-1]


@pytest.mark.parametrize("name", DESIGNED)
def test_local_error_order_with_exact_history(name):
    """One corrected step from exact history values on the closed-form Gaussian trajectory:
    local error O(h^{order + 1}) (``order`` = corrector nodes: 5 for the 4-value predictors,
    3 for the 2-value one; without a corrector the predictor's values, 3 for ``res_ab3_*``)."""
    problem, method = GaussianProblem(mu=0.3, s=0.7), METHODS[name]
    x0 = torch.linspace(-3, 3, 5, dtype=torch.float64)[:, None]
    k = method.history + 1
    errors = []
    for h in (0.05, 0.025, 0.0125):
        levels = [2.0 * math.exp(-h * j) for j in range(k + 1)]
        x, exact = _exact_gaussian_run(problem, name, levels, x0)
        errors.append(float((x - exact).abs().max()))
    slope = math.log2(errors[-2] / errors[-1])
    # measured: 5.9 (pc4_sigma), 6.5 (pc4_logsigma, near rounding at the finest step), 4.1
    assert slope == pytest.approx(method.order + 1, abs=0.5), (errors, slope)


@pytest.mark.parametrize("name", DESIGNED)
def test_global_order_with_free_warm_start(name):
    """The sample at sigma = 0.05 against the closed form on grids uniform in lambda (sigma 10
    -> 0.05). The free warm start's first step (one value + corrector through the new point)
    has local error O(h^3), which caps the global order at 3, as iPNDM's Euler start caps
    it at 2 (and caps the ``res_ab3_*`` methods, whose first step has no corrector); the main
    steps' order shows in the local-error test (measured slopes 3.1, 3.0, 3.0; they approach 3
    from above, 4.2 for res_pc4_sigma at 20-40 steps)."""
    problem = GaussianProblem()
    x0 = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None] * 10
    errors = []
    for n in (160, 320, 640):
        sigmas = get_sigmas_exponential(n, 0.05, 10.0)[:-1]
        out = sample(problem.denoiser, x0, sigmas, method=name, disable=True)
        errors.append(float((out - problem.exact(x0, 10.0, 0.05)).abs().max()))
    slope = math.log2(errors[-2] / errors[-1])
    assert slope == pytest.approx(3 if METHODS[name].corrector else 2, abs=0.3), (errors, slope)


def _handed_on(method, problem, x0, sigmas):
    """``(x, D)`` at each step start: D is what the run uses there (evaluated or handed on)."""
    seen = []
    sample_method(
        method, problem.denoiser, x0, sigmas, disable=True,
        callback=lambda info: seen.append((info["x"].clone(), info["denoised"].clone(),
                                           float(info["sigma"]))),
    )  # fmt: skip
    return [
        float((d - problem.denoiser(x, torch.full((x.shape[0],), s, dtype=x.dtype))).abs().max())
        for x, d, s in seen
    ]


def test_linearised_history_is_the_denoiser_at_the_corrected_point_for_matching_data():
    """With ``linearisation_scale = s`` the values handed on after a correction come from the
    denoiser linearised with Jacobian ``s^2/(s^2 + sigma^2)``: exact for data N(mu, s^2), so
    every handed-on D equals D(x_{n+1}). The shipped ``s = 0`` keeps D(x^p) (not D(x_{n+1}),
    the corrected point differs), the PEC rule of ``res_pc2_lambda`` likewise."""
    problem = GaussianProblem(mu=0.3, s=0.5)
    x0 = 80 * torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = sigmas_for_nfe(10, "res_pc4_sigma")
    matched = replace(METHODS["res_pc4_sigma"], name="matched", linearisation_scale=0.5)
    table = coefficients(matched, make_grid(sigmas))
    assert sum(bool(step.corrector) for step in table.steps) >= 4
    assert max(_handed_on(matched, problem, x0, sigmas)) <= 1e-12 * 80
    for name in ("res_pc4_sigma", "res_pc2_lambda"):
        assert max(_handed_on(METHODS[name], problem, x0, sigmas)) > 1e-6


@pytest.mark.parametrize("name", DESIGNED)
def test_one_evaluation_per_step(name, counting):
    sigmas = get_sigmas_karras(9, 0.002, 80.0)
    model = counting(GaussianProblem().denoiser)
    x = 80 * torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sample(model, x, sigmas, method=name, disable=True)
    free = METHODS[name].free_start  # the first step's evaluation is the second step's
    assert model.calls == nfe(name, sigmas) == 9 - free
    assert len(sigmas_for_nfe(5, name)) == 6 + free


def test_corrector_only_where_no_noise_comes_in_between_and_it_contracts():
    grid = make_grid(get_sigmas_karras(6, 0.01, 60.0), eta=0.5)
    assert not any(step.corrector for step in coefficients("res_pc4_sigma", grid).steps)
    sigmas = sigmas_for_nfe(10, "res_pc4_sigma")
    for name in (n for n in DESIGNED if not METHODS[n].free_start):  # free: test_free_start
        method = METHODS[name]
        table = coefficients(name, make_grid(sigmas))
        levels = sigmas[1:-1].tolist()
        lipschitz = [1 / s if table.prediction == "noise" else 1.0 for s in levels]
        if method.interpolation == "grid":
            variables = map(power_variable, grid_exponents(make_grid(sigmas), method.history + 1))
        else:
            variables = [method.interpolation] * len(levels)
        for n, (step, variable) in enumerate(zip(table.steps[:-1], variables, strict=False)):
            full = interpolation_weights(
                [*[sigmas[n - j].item() for j in range(len(step.weights))], sigmas[n + 1].item()],
                sigmas[n].item(), sigmas[n + 1].item(), table.prediction, variable,
            )  # fmt: skip
            contracts = abs(full[-1]) * lipschitz[n] < 1
            assert bool(step.corrector) == (method.corrector and contracts), (name, n)
            assert (step.linearisation is not None) == (
                bool(step.corrector) and table.prediction == "noise"
            )
    # EDM grid, NFE 10 (sigma 80, 42, ..., 0.47, 0.117, 0.020, 0.002, 0): the last steps, long
    # in lambda (h = 1.4 .. 2.3), stay uncorrected; at NFE 5 (h >= 1.9 after the first) all do
    corrected = [bool(s.corrector) for s in coefficients("res_pc4_sigma", make_grid(sigmas)).steps]
    assert corrected == [True] * 6 + [False] * 4
    grid = make_grid(sigmas_for_nfe(5, "res_pc4_sigma"))
    assert not any(s.corrector for s in coefficients("res_pc4_sigma", grid).steps)


def test_bad_input():
    x = torch.zeros(2, 3, dtype=torch.float64)
    sigmas = get_sigmas_karras(5, 0.01, 10.0)
    model = GaussianProblem().denoiser
    with pytest.raises(TableauError, match="values must be an integer in \\[1, 4\\]"):
        sample_res_pc4_sigma(model, x, sigmas, values=5)
    with pytest.raises(TableauError, match="values"):
        sample_res_pc2_lambda(model, x, sigmas, values=0)
    with pytest.raises(TableauError, match="no parameter"):
        sample_res_pc4_logsigma(model, x, sigmas, max_order=2)
    with pytest.raises(ResError, match="sde"):
        sample_res_pc4_sigma(model, x, sigmas, eta=1.0, noise_type="sde")
    with pytest.raises(ResError):
        sample_res_pc4_sigma(model, x, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(TypeError, match="sample_erk"):
        sample_res_pc4_sigma(model, x, sigmas, tableau="res_2m")
    with pytest.raises(NFEBudgetError):
        sigmas_for_nfe(0, "res_pc4_sigma")


def test_auto_runs_the_table_method_on_the_callers_sigmas(counting):
    problem = GaussianProblem(mu=0.2, s=0.5)
    x = 80 * torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for steps in (6, 15, 30):
        sigmas = torch.cat([torch.linspace(80.0, 0.01, steps), torch.zeros(1)])
        model = counting(problem.denoiser)
        got = sample(model, x, sigmas, method="auto", disable=True)
        # the table's methods start free from sigma_1 >= 10: one evaluation fewer than steps
        assert model.calls == steps - 1 == budget_of(sigmas) == nfe("auto", sigmas)
        assert nfe("auto", sigmas_for_nfe(steps, "auto")) == steps
        expected = sample(problem.denoiser, x, sigmas, method=recommend(steps - 1), disable=True)
        assert torch.equal(got, expected)
    img2img = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0])  # below FREE_START_SIGMA: evaluated
    model = counting(problem.denoiser)
    sample(model, x, img2img, method="auto", disable=True)
    assert model.calls == budget_of(img2img) == len(img2img) - 1 == nfe("auto", img2img)
    assert [recommend(n) for n in (1, 10, 11, 15, 16, 1000)] == [
        "res_pc3_free", "res_pc3_free", "res_ab3_free", "res_ab3_free", "res_pc4_free",
        "res_pc4_free",
    ]  # fmt: skip
    assert torch.equal(sample(problem.denoiser, x, [80.0], method="auto"), x)


def test_auto_bad_input():
    x = torch.zeros(2, 3, dtype=torch.float64)
    model = GaussianProblem().denoiser
    with pytest.raises(SigmasError):
        sample(model, x, torch.tensor([1.0, 2.0, 0.0]), method="auto")
    for bad in (3.0, torch.tensor(3.0), torch.zeros(2, 2), "80 0"):
        with pytest.raises(SigmasError):
            sample(model, x, bad, method="auto")
    with pytest.raises(NFEBudgetError):
        recommend(0)
    with pytest.raises(NFEBudgetError):
        recommend(2.5)
