"""The corrector of the general step (UniC-style, no extra evaluation), shown with a family
declared entirely in this file: AB2 predictor + trapezoidal (AM2) corrector on ``eps`` in
``sigma`` in PEC mode (Hairer, Nørsett & Wanner, Solving ODEs I, III.1): ``x^p = x_n + sum_j
w_j eps_{n-j}`` (variable-step AB2), ``eps_new = eps(x^p, sigma_{n+1})``, ``x_{n+1} = x_n +
dt/2 (eps_n + eps_new)``, and ``eps_new`` is the next step's value (not re-evaluated)."""

from __future__ import annotations

import math

import pytest
import torch

from res_torch import METHODS, Method, get_sigmas_karras, nfe, sample
from res_torch.coefficients import BUILDERS, StepCoefficients, adams_weights, coefficients
from res_torch.errors import TableauError
from res_torch.grid import StepGrid, make_grid
from res_torch.noise import NoiseOptions, default_noise_sampler
from res_torch.reference import sample_reference
from res_torch.samplers import sample_method

PEC = Method(
    "ab2_am2", "pec", "AB2 predictor, trapezoidal corrector, PEC", order=2, history=1,
    variable="sigma", prediction="noise", noise_types=("ancestral",),
)  # fmt: skip


def pec_builder(method: Method, grid: StepGrid, params: dict, _: bool):
    sigma_hat, sigma_to = grid.sigma_hat.tolist(), grid.sigma_to.tolist()
    quiet = [float(s) == 0.0 for s in grid.step_noise]
    churn = [float(c) > 0.0 for c in grid.churn_noise]
    steps = []
    for n, denoising in enumerate(grid.denoising):
        if denoising:
            steps.append(StepCoefficients(sigmas=(sigma_hat[n],), denoising=True))
            continue
        k = min(n + 1, 2)
        weights = adams_weights("ipndm_v", [sigma_hat[n - j] for j in range(k)], sigma_to[n])
        dt = sigma_to[n] - sigma_hat[n]
        following = n + 1 < grid.steps and not grid.denoising[n + 1]
        corrected = following and quiet[n] and not churn[n + 1]
        corrector = (dt / 2, *([0.0] * (k - 1)), dt / 2) if corrected else ()
        steps.append(
            StepCoefficients(
                sigmas=(sigma_hat[n],), decay=1.0, weights=tuple(weights), corrector=corrector
            )
        )
    return steps, [method.name] * grid.steps


@pytest.fixture
def pec(monkeypatch):
    monkeypatch.setitem(BUILDERS, "pec", pec_builder)
    monkeypatch.setitem(METHODS, "ab2_am2", PEC)
    return PEC


def nonlinear_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.view(-1, *([1] * (x.ndim - 1)))
    return 0.3 + 0.49 / (0.49 + s**2) * (x - 0.3) + 0.1 * torch.tanh(x / (1 + s))


@pytest.mark.parametrize(
    "options",
    [{}, {"s_churn": 3.0, "s_tmin": 0.05, "s_tmax": 5.0}, {"eta": 0.5}],
    ids=["ode", "churn", "eta"],
)
def test_fast_loop_equals_the_reference_loop_with_a_corrector(pec, options, counting):
    sigmas = get_sigmas_karras(9, 0.01, 60.0)
    x = 60 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = counting(nonlinear_denoiser)
    noise = NoiseOptions(**options, generator=torch.Generator().manual_seed(1))
    fast = sample_method(pec, model, x, sigmas, disable=True, noise=noise)
    by_name = sample(
        nonlinear_denoiser, x, sigmas, method="ab2_am2", disable=True,
        generator=torch.Generator().manual_seed(1), **options,
    )  # fmt: skip
    assert torch.equal(by_name, fast)
    assert model.calls == nfe(pec, sigmas) == 9  # one evaluation per step: the corrector reuses it
    grid = make_grid(sigmas, **options)
    table = coefficients(pec, grid)
    corrected = [bool(step.corrector) for step in table.steps]
    assert not corrected[-1] and not corrected[-2]  # none before the final denoising step
    assert any(corrected) == ("eta" not in options)  # none where noise follows the step
    expected = sample_reference(
        nonlinear_denoiser,
        x,
        grid,
        table,
        default_noise_sampler(x, torch.Generator().manual_seed(1)),
    )
    assert (fast - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_the_corrector_changes_the_result_and_keeps_order_two(pec, gaussian):
    x0 = torch.tensor([[12.5, -5.0]], dtype=torch.float64)
    errors, predictor_only = [], []
    for steps in (16, 32, 64):
        sigmas = torch.exp(torch.linspace(math.log(5.0), math.log(0.5), steps + 1)).double()
        exact = gaussian.exact(x0, 5.0, 0.5)
        out = sample_method(pec, gaussian.denoiser, x0, sigmas, disable=True)
        errors.append((out - exact).abs().max().item())
        ab2 = sample_method("ipndm_v", gaussian.denoiser, x0, sigmas, disable=True, max_order=2)
        predictor_only.append((ab2 - exact).abs().max().item())
    assert 1.8 < math.log2(errors[1] / errors[2]) < 2.3
    assert errors[2] < predictor_only[2] / 2  # the trapezoidal corrector is the more accurate


def test_a_corrector_before_added_noise_is_refused(monkeypatch):
    def bad(method, grid, params, one_evaluation):
        steps, names = pec_builder(method, make_grid(grid.sigma.tolist() + [0.0]), params, False)
        return steps[: grid.steps], names[: grid.steps]

    monkeypatch.setitem(BUILDERS, "pec", bad)
    grid = make_grid(get_sigmas_karras(5, 0.01, 60.0), eta=1.0)
    with pytest.raises(TableauError, match="corrector"):
        coefficients(PEC, grid)


def test_the_diffusers_scheduler_runs_the_corrector_as_the_sampler(pec):
    diffusers = pytest.importorskip("diffusers")
    from res_torch.adapters import DiscreteEpsDenoiser
    from res_torch.diffusers import RESMultistepScheduler

    def net(x, t):
        return 0.5 * torch.tanh(x) + 0.1 * x

    ddpm = diffusers.DDPMScheduler()
    scheduler = RESMultistepScheduler.from_config(ddpm.config, tableau="ab2_am2")
    scheduler.set_timesteps(7)
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = noise
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, t), t, x).prev_sample
    model = DiscreteEpsDenoiser(net, ddpm.alphas_cumprod)
    x_ve = noise * math.sqrt(1 + float(scheduler.sigmas[0]) ** 2)
    expected = sample_method(pec, model, x_ve, scheduler.sigmas, disable=True)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-10 * expected.abs().max().item())
