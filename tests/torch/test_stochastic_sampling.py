"""Stochastic sampling: EDM churn (paper's Algorithm 2) and ancestral (eta) steps."""

from __future__ import annotations

import math

import pytest
import torch

import res_torch
from res_torch import (
    ancestral_step,
    churn_gamma,
    get_sigmas_karras,
    make_grid,
    sample,
    sample_res_2s,
)
from res_torch.coefficients import coefficients as method_coefficients
from res_torch.coefficients import noise_free_values


class ListNoise:
    """A noise sampler that hands out pre-drawn tensors in order (and records the calls)."""

    def __init__(self, shape, count, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.noise = [torch.randn(shape, generator=generator, dtype=torch.float64)
                      for _ in range(count)]  # fmt: skip
        self.calls = 0

    def __call__(self, sigma, sigma_next):
        self.calls += 1
        return self.noise[self.calls - 1]


def test_churn_gamma_follows_algorithm_2():
    sigmas = torch.tensor([80.0, 10.0, 1.0, 0.1, 0.0], dtype=torch.float64)
    gamma = churn_gamma(sigmas, s_churn=2.0, s_tmin=0.5, s_tmax=20.0)
    assert torch.equal(gamma, torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64).clamp(
        max=math.sqrt(2) - 1) * torch.tensor([0, 1, 1, 0]))  # fmt: skip
    assert churn_gamma(sigmas, s_churn=0.4).tolist() == [0.1, 0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="s_churn"):
        churn_gamma(sigmas, s_churn=-1.0)
    with pytest.raises(ValueError, match="s_tmax"):
        churn_gamma(sigmas, s_churn=1.0, s_tmin=2.0, s_tmax=1.0)


def test_ancestral_step_is_k_diffusions():
    sigma_from, sigma_to = torch.tensor(2.0), torch.tensor(1.0)
    down, up = ancestral_step(sigma_from, sigma_to, eta=1.0)
    expected_up = math.sqrt(1.0 * (4.0 - 1.0) / 4.0)
    assert up.item() == pytest.approx(expected_up)
    assert down.item() == pytest.approx(math.sqrt(1.0 - expected_up**2))
    down, up = ancestral_step(sigma_from, sigma_to, eta=0.0)
    assert (down.item(), up.item()) == (1.0, 0.0)
    with pytest.raises(ValueError, match="eta"):
        ancestral_step(sigma_from, sigma_to, eta=-0.1)


def test_churned_step_is_the_ode_step_from_sigma_hat(gaussian):
    x = torch.tensor([[1.5], [-2.0]], dtype=torch.float64)
    noise = ListNoise(x.shape, 1)
    s0, s1, s_noise = 2.0, 0.8, 1.003
    out = sample_res_2s(
        gaussian.denoiser,
        x,
        torch.tensor([s0, s1], dtype=torch.float64),
        s_churn=1.0,
        s_noise=s_noise,
        noise_sampler=noise,
        disable=True,
    )
    sigma_hat = s0 * (1 + min(1.0, math.sqrt(2) - 1))
    x_hat = x + math.sqrt(sigma_hat**2 - s0**2) * s_noise * noise.noise[0]
    ode = sample_res_2s(gaussian.denoiser, x_hat, torch.tensor([sigma_hat, s1],
                        dtype=torch.float64), disable=True)  # fmt: skip
    assert torch.allclose(out, ode, rtol=1e-14, atol=1e-14)


def k_diffusion_heun_churn(model, x, sigmas, s_churn, s_tmin, s_tmax, s_noise, noise):
    """k-diffusion ``sample_heun`` (EDM Algorithm 2), transcribed, with injected noise."""
    for i in range(len(sigmas) - 1):
        inside = s_tmin <= sigmas[i] <= s_tmax
        gamma = min(s_churn / (len(sigmas) - 1), 2**0.5 - 1) if inside else 0.0
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0:
            x = x + noise(None, None) * s_noise * (sigma_hat**2 - sigmas[i] ** 2) ** 0.5
        d = (x - model(x, sigma_hat.view(1))) / sigma_hat
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - model(x2, sigmas[i + 1].view(1))) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def test_heun_with_churn_matches_edm_algorithm_2(gaussian):
    sigmas = get_sigmas_karras(8, 0.002, 80.0)
    x = 80 * torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    options = dict(s_churn=10.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.007)
    out = sample(gaussian.denoiser, x, sigmas, method="heun", noise_sampler=ListNoise(x.shape, 8),
                 disable=True, **options)  # fmt: skip
    expected = k_diffusion_heun_churn(gaussian.denoiser, x, sigmas, noise=ListNoise(x.shape, 8),
                                      **options)  # fmt: skip
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def k_diffusion_euler_ancestral(model, x, sigmas, eta, noise):
    """k-diffusion ``sample_euler_ancestral``, transcribed, with injected noise."""
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i].view(1))
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = x + (x - denoised) / sigmas[i] * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(None, None) * up
    return x


def test_euler_with_eta_matches_k_diffusion_euler_ancestral(gaussian):
    sigmas = get_sigmas_karras(8, 0.002, 80.0)
    x = 80 * torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    out = sample(gaussian.denoiser, x, sigmas, method="euler", eta=0.8,
                 noise_sampler=ListNoise(x.shape, 8), disable=True)  # fmt: skip
    expected = k_diffusion_euler_ancestral(gaussian.denoiser, x, sigmas, 0.8, ListNoise(x.shape, 8))
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def k_diffusion_dpmpp_2m_sde(model, x, sigmas, eta, s_noise, noise):
    """k-diffusion ``sample_dpmpp_2m_sde`` (midpoint), transcribed, with injected noise."""
    old, h_last, h = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i].view(1))
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = sigmas[i].log() - sigmas[i + 1].log()
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x - (-h - eta_h).expm1() * denoised
            if old is not None:
                r = h_last / h
                x = x - 0.5 * (-h - eta_h).expm1() * (1 / r) * (denoised - old)
            spread = (-(-2 * eta_h).expm1()).sqrt()
            x = x + noise(None, None) * sigmas[i + 1] * spread * s_noise
        old, h_last = denoised, h
    return x


def test_dpmpp_2m_sde_form_matches_k_diffusion(gaussian):
    sigmas = get_sigmas_karras(9, 0.002, 80.0)
    x = 80 * torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    out = sample(gaussian.denoiser, x, sigmas, method="dpmpp_2m", eta=0.6, s_noise=1.01,
                 noise_type="sde", noise_sampler=ListNoise(x.shape, 9), disable=True)  # fmt: skip
    expected = k_diffusion_dpmpp_2m_sde(gaussian.denoiser, x, sigmas, 0.6, 1.01,
                                        ListNoise(x.shape, 9))  # fmt: skip
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_sde_form_is_not_offered_for_steps_in_sigma(gaussian):
    with pytest.raises(ValueError, match="ancestral"):
        sample(gaussian.denoiser, torch.ones(1, 2), torch.tensor([2.0, 0.0]), method="heun",
               eta=1.0, noise_type="sde")  # fmt: skip
    with pytest.raises(ValueError, match="noise_type"):
        sample(gaussian.denoiser, torch.ones(1, 2), torch.tensor([2.0, 0.0]), eta=1.0,
               noise_type="langevin")  # fmt: skip


def test_multistep_history_nodes_use_the_evaluated_lambdas_with_eta():
    sigmas = torch.tensor([4.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    grid = make_grid(sigmas, eta=0.7)
    table = method_coefficients("res_2m", grid)
    down, _ = ancestral_step(sigmas[1], sigmas[2], 0.7)
    h = math.log(2.0 / down.item())  # step 1 goes from sigma_1 = 2 to sigma_down
    c2 = (-math.log(4.0) + math.log(2.0)) / h  # previous evaluation at sigma_0 = 4
    phi2 = (1 - (-math.expm1(-h) / h)) / h
    assert table.steps[1].weights[1] == pytest.approx(h * phi2 / c2, rel=1e-13)


@pytest.mark.parametrize(
    ("method", "options"),
    [("res_2s", {"s_churn": 20.0}), ("res_2m", {"eta": 1.0}), ("heun", {"s_churn": 5.0})],
)
def test_same_seed_same_samples(gaussian, method, options):
    sigmas = get_sigmas_karras(6, 0.002, 80.0)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)) * 80

    def run(seed):
        return sample(gaussian.denoiser, x, sigmas, method=method, disable=True,
                      generator=torch.Generator().manual_seed(seed), **options)  # fmt: skip

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_deterministic_runs_draw_no_noise(gaussian):
    def forbidden(sigma, sigma_next):
        raise AssertionError("noise drawn in a deterministic run")

    sample(gaussian.denoiser, torch.ones(1, 2), get_sigmas_karras(4, 0.002, 80.0),
           method="res_2s", noise_sampler=forbidden, disable=True)  # fmt: skip


CHURN = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0}


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("res_2s", CHURN),
        ("heun", CHURN),
        ("res_2s", {"eta": 1.0}),
        ("res_2m", {"eta": 1.0, "noise_type": "sde"}),
        ("res_3m", {"eta": 1.0, "noise_type": "sde"}),
    ],
)
def test_stochastic_samplers_sample_the_gaussian_data_distribution(gaussian, method, options):
    # exact denoiser of N(mu, s^2): the samples must follow N(mu, s^2) up to sampling error
    # (4 standard errors); the discretisation error is below that at 160 steps
    n = 20000
    sigmas = get_sigmas_karras(160, 0.002, 80.0)
    generator = torch.Generator().manual_seed(8)
    x = 80 * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    out = sample(gaussian.denoiser, x, sigmas, method=method, generator=generator, disable=True,
                 **options)  # fmt: skip
    assert out.mean().item() == pytest.approx(gaussian.mu, abs=4 * gaussian.s / math.sqrt(n))
    assert out.std().item() == pytest.approx(gaussian.s, abs=4 * gaussian.s / math.sqrt(2 * n))


NOISE_FORM_MULTISTEP = ["ipndm", "ipndm_v", "deis", "res_pc4_grid", "res_pc3_rho7"]
EVERY_STEP_CHURN = {"s_churn": 40.0}


def test_noise_free_values_restart_where_noise_enters():
    sigmas = get_sigmas_karras(8, 0.01, 50.0)  # 50, 22.4, 9.3, 3.5, 1.2, 0.35, 0.09, 0.01
    assert noise_free_values(make_grid(sigmas)) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert noise_free_values(make_grid(sigmas, eta=1.0)) == [1] * 8
    assert noise_free_values(make_grid(sigmas, eta=1.0, s_noise=0.0)) == [1, 2, 3, 4, 5, 6, 7, 8]
    churned = make_grid(sigmas, s_churn=8.0, s_tmin=1.0, s_tmax=20.0)  # churn at 1 <= sigma <= 20
    assert noise_free_values(churned) == [1, 2, 1, 1, 1, 2, 3, 4]
    both = make_grid(sigmas, s_churn=8.0, s_tmin=1.0, s_tmax=20.0, eta=0.5)
    assert noise_free_values(both) == [1] * 8


@pytest.mark.parametrize("method", ["res_2m", "res_pc2_lambda"])
def test_data_form_multistep_keeps_its_history_across_noise(method):
    """D is reused across ancestral noise and churn (as k-diffusion's DPM-Solver++(2M) SDE and
    ComfyUI's res_multistep_ancestral do): two values on every step after the first."""
    sigmas = get_sigmas_karras(8, 0.01, 50.0)
    for options in ({"eta": 1.0}, EVERY_STEP_CHURN):
        table = method_coefficients(method, make_grid(sigmas, **options))
        used = [sum(w != 0 for w in step.weights) for step in table.steps[1:-1]]
        assert used == [2] * len(used), (options, used)


@pytest.mark.parametrize("method", NOISE_FORM_MULTISTEP)
@pytest.mark.parametrize("options", [{"eta": 1.0}, EVERY_STEP_CHURN], ids=["eta", "churn"])
def test_noise_form_multistep_steps_are_euler_where_noise_enters_every_step(method, options):
    """A stored eps = (x - D)/sigma holds the state it was evaluated at; with noise entering
    every step no stored value is reused: every step is Euler's, ``x' = x + (sigma_to -
    sigma_hat) eps``."""
    grid = make_grid(get_sigmas_karras(10, 0.002, 80.0), **options)
    table = method_coefficients(method, grid)
    assert table.prediction == "noise"
    hat, to = grid.sigma_hat.tolist(), grid.sigma_to.tolist()
    for n, step in enumerate(table.steps[:-1]):
        assert step.weights[0] == pytest.approx(to[n] - hat[n], rel=1e-13)
        assert all(w == 0 for w in step.weights[1:]) and not step.corrector


@pytest.mark.parametrize("method", NOISE_FORM_MULTISTEP)
def test_noise_form_multistep_with_churn_samples_the_gaussian_as_euler_does(gaussian, method):
    """EDM churn on 160 steps: the samples' spread is Euler's (first order in the noise; the
    reused stale values made iPNDM-v and the designs diverge, std 1e63 at 160 steps)."""
    n, sigmas = 4000, get_sigmas_karras(160, 0.002, 80.0)
    x = 80 * torch.randn(n, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    runs = {
        m: sample(gaussian.denoiser, x, sigmas, method=m, disable=True,
                  generator=torch.Generator().manual_seed(4), **EVERY_STEP_CHURN).std().item()
        for m in (method, "euler")
    }  # fmt: skip
    assert runs[method] == pytest.approx(runs["euler"], rel=1e-9)
    assert runs[method] == pytest.approx(gaussian.s, rel=0.1)


def test_bad_noise_options_are_rejected(gaussian):
    sigmas = get_sigmas_karras(4, 0.002, 80.0)
    x = torch.ones(1, 2)
    with pytest.raises(ValueError, match="not both"):
        sample(gaussian.denoiser, x, sigmas, eta=1.0, generator=torch.Generator(),
               noise_sampler=lambda s, t: torch.zeros(1, 2))  # fmt: skip
    with pytest.raises(TypeError, match="Generator"):
        sample(gaussian.denoiser, x, sigmas, eta=1.0, generator=0)
    with pytest.raises(ValueError, match="s_noise"):
        sample(gaussian.denoiser, x, sigmas, s_churn=1.0, s_noise=-1.0)
    with pytest.raises(ValueError, match="eta"):
        sample(gaussian.denoiser, x, sigmas, eta=float("nan"))


@pytest.mark.parametrize("method", ["res_2s", "res_2m", "heun"])
def test_churn_and_step_noise_are_drawn_over_disjoint_intervals(method):
    """An interval-keyed noise sampler (like a Brownian tree) must not see the same interval
    twice in one step, or churn and ancestral noise would be the same draw."""
    calls = []

    def recording(sigma, sigma_next):
        calls.append((round(float(sigma), 9), round(float(sigma_next), 9)))
        return torch.randn(2, 3)

    sigmas = res_torch.get_sigmas_karras(4, 0.1, 10.0, dtype=torch.float64)
    res_torch.sample(
        lambda x, s: 0.5 * x, torch.randn(2, 3, dtype=torch.float64) * 10, sigmas,
        method=method, s_churn=1.0, eta=1.0, noise_sampler=recording, disable=True,
    )  # fmt: skip
    assert calls and len(set(calls)) == len(calls), calls


def test_eta_defaults_to_the_sde_form_for_the_multistep_tableaux(gaussian):
    """Without ``noise_type`` the exponential multistep tableaux take the SDE form, whose
    stored values stay consistent across the injected noise; ancestral noise over-disperses
    their samples at coarse steps (the reason for the default), every other method keeps
    k-diffusion's ancestral step."""
    tableaux = ["res_2m", "res_3m", "dpmpp_2m", "dpmpp_3m"]
    assert {res_torch.method_of(m).default_noise_type for m in tableaux} == {"sde"}
    others = ["res_2s", "res_3s", "ddim", "euler", "heun", "ipndm", "deis", "res_pc3_grid"]
    assert {res_torch.method_of(m).default_noise_type for m in others} == {"ancestral"}
    sigmas = get_sigmas_karras(10, 0.03, 14.6)
    x = 14.6 * torch.randn(20000, 1, generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)  # fmt: skip

    def run(method, **options):
        return sample(gaussian.denoiser, x, sigmas, method=method, eta=1.0, disable=True,
                      generator=torch.Generator().manual_seed(1), **options)  # fmt: skip

    for method in ("res_2m", "res_3m"):
        default, ancestral = run(method), run(method, noise_type="ancestral")
        assert torch.equal(default, run(method, noise_type="sde"))
        assert abs(default.std() - gaussian.s) < 0.5 * abs(ancestral.std() - gaussian.s)
    assert torch.equal(run("res_2s"), run("res_2s", noise_type="ancestral"))
    # res_pc2_lambda (ancestral only) reuses D across the noise and, its corrector off where
    # noise enters, takes RES-2M's ancestral steps: it shares their spread (docstring of
    # InterpolatedMethod)
    biased = run("res_2m", noise_type="ancestral")
    torch.testing.assert_close(run("res_pc2_lambda"), biased, rtol=1e-12, atol=1e-12)
    assert biased.std() > 2 * gaussian.s
