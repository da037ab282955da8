"""The free first step of ``res_pc3_free`` / ``res_pc4_free``: where it applies (the gate
``FREE_START_SIGMA``, ODE runs only), what it costs, what it computes, and that everything else
is the evaluated method's run. Its coefficients against the SymPy derivation:
``tests/theory/test_multistep_design.py``."""

from __future__ import annotations

import math

import pytest
import torch

from res_torch import (
    FREE_START_SIGMA,
    METHODS,
    NFEBudgetError,
    SchedulerError,
    get_sigmas_karras,
    nfe,
    sample,
    sigmas_for_nfe,
)
from res_torch.coefficients import coefficients
from res_torch.grid import make_grid
from res_torch.reference import sample_reference

from .conftest import GaussianProblem

FREE = {
    "res_pc3_free": "res_pc3_grid",
    "res_pc4_free": "res_pc4_grid",
    "res_ab3_free": "res_ab3_grid",
}


def _noise(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", FREE)
def test_a_run_from_pure_noise_spends_one_evaluation_fewer(name, counting):
    assert len(sigmas_for_nfe(3, name)) == 4  # EDM grid, 3 evaluations: sigma_1 = 2.5, evaluated
    for budget in (5, 10, 20):
        sigmas = sigmas_for_nfe(budget, name)
        assert len(sigmas) == budget + 2 and sigmas[1] >= FREE_START_SIGMA
        model = counting(GaussianProblem().denoiser)
        sample(model, 80 * _noise(4, 3), sigmas, method=name, disable=True)
        assert model.calls == budget == nfe(name, sigmas)
    # Stable Diffusion's discrete grid at 5 evaluations reaches sigma_1 = 5.1 with the extra
    # step: below the gate, so the grid keeps the evaluated method's length
    discrete = sigmas_for_nfe(5, name, schedule="discrete")
    assert len(discrete) == 6 and nfe(name, discrete) == 5


@pytest.mark.parametrize("name", FREE)
def test_below_the_gate_or_with_noise_the_run_is_the_evaluated_methods(name, counting):
    evaluated = FREE[name]
    x = _noise(4, 3)
    problem = GaussianProblem()
    img2img = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0])
    got = sample(problem.denoiser, x * 3, img2img, method=name, disable=True)
    assert torch.equal(got, sample(problem.denoiser, x * 3, img2img, method=evaluated))
    sigmas = get_sigmas_karras(8, 0.01, 80.0)
    for options in ({"eta": 0.5}, {"s_churn": 2.0}):
        runs = [
            sample(problem.denoiser, 80 * x, sigmas, method=m, disable=True,
                   generator=torch.Generator().manual_seed(1), **options)
            for m in (name, evaluated)
        ]  # fmt: skip
        assert torch.equal(*runs), options
    # the gate is on the second level: just below it the first step is evaluated
    below = torch.tensor([80.0, FREE_START_SIGMA * (1 - 1e-9), 1.0, 0.0], dtype=torch.float64)
    assert nfe(name, below) == 3 and not coefficients(name, make_grid(below)).steps[0].guessed
    at = torch.tensor([80.0, FREE_START_SIGMA, 1.0, 0.0])
    assert nfe(name, at) == 2 and coefficients(name, make_grid(at)).steps[0].guessed


@pytest.mark.parametrize("name", FREE)
def test_the_free_step_is_exact_for_a_constant_denoiser(name):
    """``x_1 = r x_0 + (1 - r) D_1``: for ``D = c`` the ODE's solution, and the later steps
    are exact too (``eps`` is then linear in ``sigma`` along the trajectory)."""
    c = torch.tensor([0.25, -1.5, 3.0], dtype=torch.float64)
    x0 = 80 * _noise(2, 3)
    sigmas = torch.tensor([80.0, 30.0, 7.0, 0.5])
    got = sample(lambda x, s: c.expand_as(x), x0, sigmas, method=name, disable=True)
    r = 0.5 / 80.0
    torch.testing.assert_close(got, r * x0 + (1 - r) * c, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", FREE)
def test_fast_loop_equals_the_reference_loop(name):
    problem = GaussianProblem(mu=-0.2, s=0.6)
    sigmas = sigmas_for_nfe(7, name)
    grid = make_grid(sigmas)
    x = 80 * _noise(3, 5)
    table = coefficients(name, grid)
    assert table.steps[0].guessed and not any(step.guessed for step in table.steps[1:])
    fast = sample(problem.denoiser, x, sigmas, method=name, disable=True)
    torch.testing.assert_close(fast, sample_reference(problem.denoiser, x, grid, table))


@pytest.mark.parametrize("name", FREE)
def test_accuracy_and_order_on_the_gaussian_ode(name):
    """The free step's local error on the closed-form Gaussian trajectory is O(h^2) (the
    denoiser's variation over the step; measured constant 6e-3 from sigma 80 for data N(0.3,
    0.7^2)): once per run, so the global order is 2, seen only on fine grids (measured slopes
    2.8-2.9 at 40-160 steps from 80 to 1, where the other steps' O(h^3) still dominate). At
    equal evaluations the free run, one step more, is the more accurate on the geometric mean
    over the league's budgets."""
    problem = GaussianProblem(mu=0.3, s=0.7)
    x0 = 80 * torch.linspace(-2, 2, 7, dtype=torch.float64)[:, None]
    errors = []
    for h in (0.1, 0.05, 0.025):
        sigma_1 = 80 * math.exp(-h)
        levels = torch.tensor([80.0, sigma_1, 1.0], dtype=torch.float64)
        step = coefficients(name, make_grid(levels)).steps[0]
        guess = x0 / 80.0  # eps with D = 0
        predicted = step.decay * x0 + step.weights[0] * guess
        new = (predicted - problem.denoiser(predicted, torch.full((7,), sigma_1))) / sigma_1
        x1 = step.decay * x0 + step.corrector[0] * guess + step.corrector[1] * new
        errors.append(float((x1 - problem.exact(x0, 80.0, sigma_1)).abs().max()))
    slope = math.log2(errors[-2] / errors[-1])
    assert slope == pytest.approx(2, abs=0.1), (errors, slope)
    ratios = []
    for budget in (5, 6, 8, 10, 12, 15, 20):
        free, evaluated = (
            sample(problem.denoiser, x0, sigmas_for_nfe(budget, m), method=m, disable=True)
            for m in (name, FREE[name])
        )
        exact = problem.denoiser(problem.exact(x0, 80.0, 0.002), torch.full((7,), 0.002))
        ratios.append(float((free - exact).norm() / (evaluated - exact).norm()))
    # single budgets swing both ways (measured: 0.27-1.41 for res_pc3_free, 0.33-10 for
    # res_pc4_free at NFE 10, where res_pc4_grid's error happens to cancel); on the geometric
    # mean over the budgets the free step wins (measured 0.70 and 0.81)
    assert math.exp(sum(map(math.log, ratios)) / len(ratios)) < 1, ratios


def test_the_callback_sees_the_free_step_before_it_with_the_guess():
    """As at every step, the callback comes before the update, with the step's first value:
    at the free step the guess ``D = 0``; a change it makes to ``x`` enters the step as it
    would an evaluated one's (``x_1 = r x' + (1 - r) D(r x', sigma_1)``)."""
    seen = []
    problem = GaussianProblem()
    sigmas = torch.tensor([80.0, 30.0], dtype=torch.float64)
    sigmas = torch.cat([sigmas, sigmas_for_nfe(5, "res_pc3_grid")[2:]])
    x, delta = 80 * _noise(2, 2), torch.full((2, 2), 0.5, dtype=torch.float64)

    def callback(info):
        seen.append((info["i"], info["sigma"], info["denoised"].clone()))
        if info["i"] == 0:
            info["x"].add_(delta)

    first = x.clone()
    sample(problem.denoiser, first, sigmas, method="res_pc3_free", callback=callback,
           disable=True)  # fmt: skip
    assert [i for i, _, _ in seen] == list(range(len(sigmas) - 1))
    assert seen[0][1] == sigmas[0] and not seen[0][2].any()
    edited, r = x + delta, 30.0 / 80.0
    d1 = problem.denoiser(r * edited, torch.full((2,), 30.0, dtype=torch.float64))
    torch.testing.assert_close(seen[1][2], d1)  # the second step's value: D(r x', sigma_1)


def test_noise_options_without_drawn_noise_still_evaluate_the_first_step(counting):
    """``eta`` with ``s_noise = 0`` draws nothing but keeps eta's steps (to ``sigma_down``), and
    churn with ``s_noise = 0`` raises ``sigma_hat``: not ODE runs, so the first step is evaluated,
    and ``auto`` counts it."""
    sigmas = torch.tensor([30.0, 10.0, 0.2, 0.0], dtype=torch.float64)
    for options in ({"eta": 0.5, "s_noise": 0.0}, {"s_churn": 3.0, "s_noise": 0.0}):
        for method in ("res_pc3_free", "auto"):
            model = counting(GaussianProblem().denoiser)
            sample(model, 30 * _noise(2, 3), sigmas, method=method, disable=True, **options)
            assert model.calls == 3, (method, options)
    model = counting(GaussianProblem().denoiser)  # churn outside every level: an ODE run
    sample(model, 30 * _noise(2, 3), sigmas, method="auto", s_churn=3.0, s_tmin=50.0,
           disable=True)  # fmt: skip
    assert model.calls == 2


def test_a_budget_neither_grid_spends_is_an_error():
    """The ``leading`` discrete spacing moves the grid's second level with the step count: at
    NFE 37 the longer grid does not start free and the shorter one does."""
    with pytest.raises(NFEBudgetError, match="NFE 37"):
        sigmas_for_nfe(37, "res_pc3_free", schedule="discrete", spacing="leading")
    for budget in (36, 38):
        levels = sigmas_for_nfe(budget, "res_pc3_free", schedule="discrete", spacing="leading")
        assert nfe("res_pc3_free", levels) == budget


def test_the_free_methods_are_descriptors_of_the_grid_methods():
    for free, evaluated in FREE.items():
        a, b = METHODS[free], METHODS[evaluated]
        assert a.free_start and not b.free_start
        assert (a.history, a.interpolation, a.corrector, a.prediction) == (
            b.history, b.interpolation, b.corrector, b.prediction,
        )  # fmt: skip


def test_diffusers_refuses_a_free_start_method():
    pytest.importorskip("diffusers")
    from res_torch.diffusers import RESMultistepScheduler

    with pytest.raises(SchedulerError, match="res_pc3_grid"):
        RESMultistepScheduler(tableau="res_pc3_free")


def test_auto_counts_the_budget_of_the_run_it_makes(counting):
    """``auto``'s budget is what its method spends: one fewer than the steps in an ODE run from
    pure noise, every step with eta (the free step is then not taken)."""
    sigmas = get_sigmas_karras(9, 0.002, 80.0)
    for options, spent in (({}, 8), ({"eta": 1.0}, 9), ({"s_churn": 5.0}, 9)):
        model = counting(GaussianProblem().denoiser)
        sample(model, 80 * _noise(2, 3), sigmas, method="auto", disable=True,
               generator=torch.Generator().manual_seed(0), **options)  # fmt: skip
        assert model.calls == spent, options


@pytest.mark.parametrize("name", FREE)
def test_every_corrector_of_a_free_run_contracts(name):
    """The free step's corrector (weight ``d r`` on ``Y_1``, Lipschitz bound ``1/sigma_1``:
    ``1 - r``) and the later steps' (the ``_grid`` rule) all have ``|v_new| / sigma_to < 1``."""
    for budget in (5, 10, 30):
        sigmas = sigmas_for_nfe(budget, name)
        table = coefficients(name, make_grid(sigmas))
        for n, step in enumerate(table.steps):
            if step.corrector:
                assert abs(step.corrector[-1]) / float(sigmas[n + 1]) < 1, (budget, n)
        r = float(sigmas[1] / sigmas[0])
        assert abs(table.steps[0].corrector[-1]) / float(sigmas[1]) == pytest.approx(1 - r)
