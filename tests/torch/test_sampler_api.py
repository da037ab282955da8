"""Sampler interface: hand formulas, reference loops, NFE counts, dtypes, devices, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from res_torch import (
    SAMPLERS,
    NoiseError,
    NonFiniteSampleError,
    SigmasError,
    TableauError,
    UnknownMethodError,
    UnknownParameterError,
    available_tableaux,
    get_sigmas_karras,
    nfe,
    sample,
    sample_dpmpp_2m,
    sample_erk,
    sample_heun,
    sample_res_2m,
    sample_res_2s,
)
from res_torch.samplers import cached_tableau

ALL_METHODS = sorted(set(SAMPLERS) | set(available_tableaux()))


def paper_phi1(h: float) -> float:
    return -math.expm1(-h) / h


def paper_phi2(h: float) -> float:
    return (1 - paper_phi1(h)) / h


def test_res_2s_one_step_matches_the_hand_formula(gaussian):
    x = torch.tensor([[1.7], [-4.0]], dtype=torch.float64)
    s0, s1, c2 = 3.0, 1.1, 0.4
    out = sample_res_2s(
        gaussian.denoiser, x, torch.tensor([s0, s1], dtype=torch.float64), c2=c2, disable=True
    )
    h = math.log(s0 / s1)
    d1 = gaussian.denoiser(x, torch.tensor([s0], dtype=torch.float64))
    u = math.exp(-c2 * h) * x + h * c2 * paper_phi1(c2 * h) * d1
    d2 = gaussian.denoiser(u, torch.tensor([s0 * math.exp(-c2 * h)], dtype=torch.float64))
    b2 = paper_phi2(h) / c2
    expected = math.exp(-h) * x + h * ((paper_phi1(h) - b2) * d1 + b2 * d2)
    assert torch.allclose(out, expected, rtol=1e-14, atol=1e-14)


def test_res_2m_matches_the_hand_formula_with_a_variable_step_ratio(gaussian):
    x = torch.tensor([[2.0], [0.5]], dtype=torch.float64)
    sigmas = torch.tensor([5.0, 2.0, 0.3], dtype=torch.float64)
    out = sample_res_2m(gaussian.denoiser, x, sigmas, disable=True)
    h0, h1 = math.log(5.0 / 2.0), math.log(2.0 / 0.3)
    d0 = gaussian.denoiser(x, torch.tensor([5.0], dtype=torch.float64))
    x1 = math.exp(-h0) * x + h0 * paper_phi1(h0) * d0  # start-up: DDIM
    d1 = gaussian.denoiser(x1, torch.tensor([2.0], dtype=torch.float64))
    r = h0 / h1
    p1, p2 = paper_phi1(h1), paper_phi2(h1)
    expected = math.exp(-h1) * x1 + h1 * ((p1 + p2 / r) * d1 - (p2 / r) * d0)
    assert torch.allclose(out, expected, rtol=1e-14, atol=1e-14)


def k_diffusion_dpmpp_2m(model, x, sigmas):
    """k-diffusion's ``sample_dpmpp_2m`` loop, transcribed."""
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i].view(1))
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (sigmas[i + 1] / sigmas[i]) * x - torch.expm1(-h) * denoised
        else:
            r = (t - (-sigmas[i - 1].log())) / h
            mixed = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (sigmas[i + 1] / sigmas[i]) * x - torch.expm1(-h) * mixed
        old = denoised
    return x


def test_dpmpp_2m_matches_k_diffusion(gaussian):
    sigmas = get_sigmas_karras(12, 0.002, 80.0)
    x = 80 * torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = sample_dpmpp_2m(gaussian.denoiser, x, sigmas, disable=True)
    assert torch.allclose(out, k_diffusion_dpmpp_2m(gaussian.denoiser, x, sigmas), rtol=1e-12)


def edm_heun(model, x, sigmas):
    """EDM Algorithm 1 (k-diffusion ``sample_heun`` without churn), transcribed."""
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i].view(1))
        d = (x - denoised) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - model(x2, sigmas[i + 1].view(1))) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def test_heun_matches_edm_algorithm_1(gaussian):
    sigmas = get_sigmas_karras(8, 0.002, 80.0)
    x = 80 * torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = sample_heun(gaussian.denoiser, x, sigmas, disable=True)
    assert torch.allclose(out, edm_heun(gaussian.denoiser, x, sigmas), rtol=1e-12, atol=1e-12)


def test_euler_equals_ddim(gaussian):
    sigmas = get_sigmas_karras(10, 0.002, 80.0)
    x = 80 * torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    euler = sample(gaussian.denoiser, x[:, None], sigmas, method="euler", disable=True)
    ddim = sample(gaussian.denoiser, x[:, None], sigmas, method="ddim", disable=True)
    assert torch.allclose(euler, ddim, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_model_calls_equal_the_nfe_count(gaussian, counting, method):
    sigmas = get_sigmas_karras(6, 0.002, 80.0)
    model = counting(gaussian.denoiser)
    sample(model, torch.ones(2, 3, dtype=torch.float64), sigmas, method=method, disable=True)
    assert model.calls == nfe(method, sigmas)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_last_step_to_zero_returns_the_denoiser_output(gaussian, method):
    sigmas = get_sigmas_karras(5, 0.002, 80.0)
    seen = []
    out = sample(
        gaussian.denoiser,
        torch.full((2, 3), 7.0, dtype=torch.float64),
        sigmas,
        method=method,
        disable=True,
        callback=seen.append,
    )
    assert [info["i"] for info in seen] == list(range(5))
    assert set(seen[-1]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
    assert torch.equal(out, seen[-1]["denoised"])


def test_extra_args_reach_the_model(gaussian):
    received = []

    def model(x, sigma, *, cond):
        received.append(cond)
        return gaussian.denoiser(x, sigma)

    sample(model, torch.ones(1, 2), torch.tensor([2.0, 1.0, 0.0]), method="res_2m",
           extra_args={"cond": "c"}, disable=True)  # fmt: skip
    assert received == ["c", "c"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["ddim", "heun", "res_2s", "res_3s", "res_2m", "res_3m"])
def test_half_precision_stays_finite_and_close_to_float64(gaussian, dtype, method):
    sigmas = get_sigmas_karras(10, 0.002, 80.0)
    x = 80 * torch.randn(4, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    reference = sample(gaussian.denoiser, x, sigmas, method=method, disable=True)
    out = sample(gaussian.denoiser, x.to(dtype), sigmas, method=method, disable=True)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    # each of the ~20 updates rounds to the dtype: allow 32 units of rounding of the output scale
    tolerance = 32 * torch.finfo(dtype).eps * reference.abs().max().item()
    assert (out.double() - reference).abs().max().item() <= tolerance


def test_runs_without_host_device_synchronisation_on_the_meta_device():
    # every data-dependent Python branch or .item() fails on meta tensors
    x = torch.empty(2, 3, 8, 8, device="meta")
    sigmas = get_sigmas_karras(6, 0.002, 80.0)
    for method in ("res_2s", "res_2m", "heun", "res_3m", "hochbruck_ostermann4"):
        out = sample(lambda x, s: x * 0.5, x, sigmas, method=method, disable=True,
                     check_finite=False)  # fmt: skip
        assert out.device.type == "meta" and out.shape == x.shape
    out = sample(lambda x, s: x * 0.5, x, sigmas, method="res_2s", s_churn=1.0, eta=0.5,
                 disable=True, check_finite=False)  # fmt: skip
    assert out.device.type == "meta"


def test_sample_erk_accepts_a_tableau_object_and_parameters(gaussian):
    sigmas = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
    x = torch.ones(2, 1, dtype=torch.float64)
    by_object = sample_erk(gaussian.denoiser, x, sigmas, tableau=cached_tableau("res_2s"),
                           c2=0.75, disable=True)  # fmt: skip
    by_name = sample(gaussian.denoiser, x, sigmas, method="res_2s", c2=0.75, disable=True)
    assert torch.equal(by_object, by_name)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sigmas",
    [
        torch.tensor([1.0, 2.0, 0.0]),
        torch.tensor([2.0, 2.0, 0.0]),
        torch.tensor([2.0, float("nan"), 0.0]),
        torch.tensor([float("inf"), 1.0]),
        torch.tensor([2.0, 0.0, 0.0]),
        torch.tensor([2.0, -1.0]),
        torch.ones(2, 2),
    ],
)
def test_invalid_sigmas_are_rejected(gaussian, sigmas):
    with pytest.raises(SigmasError):
        sample(gaussian.denoiser, torch.ones(1, 2), sigmas, method="res_2s", disable=True)


@pytest.mark.parametrize("c2", [0.0, -0.5, 1.5, float("nan")])
def test_c2_outside_its_interval_is_rejected(gaussian, c2):
    with pytest.raises(TableauError, match="c2"):
        sample_res_2s(gaussian.denoiser, torch.ones(1, 2), torch.tensor([2.0, 0.0]), c2=c2)


def test_history_nodes_cannot_be_set_by_hand(gaussian):
    with pytest.raises(TableauError, match="history"):
        sample(gaussian.denoiser, torch.ones(1, 2), torch.tensor([2.0, 1.0, 0.0]),
               method="res_2m", c2=-1.0)  # fmt: skip


def test_unknown_method_and_parameter_are_rejected(gaussian):
    with pytest.raises(UnknownMethodError, match="unknown sampling method 'res_9s'"):
        sample(gaussian.denoiser, torch.ones(1, 2), torch.tensor([2.0, 0.0]), method="res_9s")
    with pytest.raises(TableauError, match="no parameter"):
        sample(gaussian.denoiser, torch.ones(1, 2), torch.tensor([2.0, 0.0]), method="ddim",
               c2=0.5)  # fmt: skip


@pytest.mark.parametrize("method", ["res_2m", "res_2s", "heun", "ipndm", "res_pc3_grid"])
def test_misspelt_keyword_is_a_type_error(gaussian, method):
    """As Python (and k-diffusion's samplers) for an unexpected keyword: a TypeError, which is
    also the library's UnknownParameterError (a TableauError)."""
    sigmas = get_sigmas_karras(4, 0.002, 80.0)
    for caught in (TypeError, UnknownParameterError, TableauError):
        with pytest.raises(caught, match="s_chrun"):
            sample(gaussian.denoiser, torch.ones(1, 2), sigmas, method=method, s_chrun=1.0)


def test_model_returning_nan_is_detected(gaussian):
    def broken(x, sigma):
        return torch.where(sigma.view(-1, 1) < 1, torch.nan, gaussian.denoiser(x, sigma))

    with pytest.raises(NonFiniteSampleError, match="NaN"):
        sample(broken, torch.ones(1, 2), get_sigmas_karras(5, 0.002, 80.0), method="res_2s",
               disable=True)  # fmt: skip
    out = sample(broken, torch.ones(1, 2), get_sigmas_karras(5, 0.002, 80.0), method="res_2s",
                 disable=True, check_finite=False)  # fmt: skip
    assert torch.isnan(out).all()


def test_wrong_shapes_and_types_are_rejected(gaussian):
    sigmas = torch.tensor([2.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        sample(lambda x, s: x[:, :1], torch.ones(2, 3), sigmas, disable=True)
    with pytest.raises(ValueError, match="batch dimension"):
        sample(gaussian.denoiser, torch.tensor(1.0), sigmas, disable=True)
    with pytest.raises(TypeError, match="floating-point"):
        sample(gaussian.denoiser, torch.ones(2, 3, dtype=torch.int64), sigmas, disable=True)
    with pytest.raises(TypeError, match="callable"):
        sample("model", torch.ones(2, 3), sigmas, disable=True)
    with pytest.raises(TypeError, match="extra_args"):
        sample(gaussian.denoiser, torch.ones(2, 3), sigmas, extra_args=[1], disable=True)
    with pytest.raises(TypeError, match="method"):
        sample(gaussian.denoiser, torch.ones(2, 3), sigmas, method=3)


@pytest.mark.parametrize("method", ["res_2s", "res_3s", "res_2m", "res_3m", "heun"])
@pytest.mark.parametrize(
    "model",
    [lambda x, s: x, lambda x, s: x.view_as(x), lambda x, s: x.mul_(0.5)],
    ids=["identity", "view", "in-place"],
)
def test_reused_buffers_are_safe_with_models_that_alias_their_input(method, model):
    # without a callback the loop may write into iterates the model has not seen; with one
    # each is fresh
    sigmas = get_sigmas_karras(6, 0.002, 80.0)
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    reused = sample(model, x.clone(), sigmas, method=method, disable=True)
    fresh = sample(model, x.clone(), sigmas, method=method, disable=True, callback=lambda d: None)
    assert torch.equal(reused, fresh)


def test_the_input_sample_is_not_modified(gaussian):
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    before = x.clone()
    sample(gaussian.denoiser, x, get_sigmas_karras(6, 0.002, 80.0), method="res_2m", disable=True)
    assert torch.equal(x, before)


@pytest.mark.parametrize("method", ["res_2s", "res_2m", "heun"])
def test_model_output_in_another_dtype_is_cast_to_the_sample_dtype(gaussian, method):
    # e.g. a network under autocast returns bfloat16 for a float32 sample
    def autocast_like(x, sigma):
        return gaussian.denoiser(x, sigma).to(torch.bfloat16)

    x = 80 * torch.randn(2, 8, generator=torch.Generator().manual_seed(10))
    out = sample(autocast_like, x, get_sigmas_karras(6, 0.002, 80.0), method=method, disable=True)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_cached_coefficients_are_reused_and_keyed_by_everything_that_matters(gaussian):
    from res_torch.samplers import _PLANS

    sigmas = get_sigmas_karras(6, 0.002, 80.0)
    x = torch.ones(1, 2, dtype=torch.float64)
    _PLANS.clear()
    first = sample(gaussian.denoiser, x, sigmas, method="res_2s", c2=0.5, disable=True)
    again = sample(gaussian.denoiser, x, sigmas.tolist(), method="res_2s", c2=0.5, disable=True)
    assert len(_PLANS) == 1 and torch.equal(first, again)
    other_c2 = sample(gaussian.denoiser, x, sigmas, method="res_2s", c2=1.0, disable=True)
    other_sigmas = sample(gaussian.denoiser, x, sigmas * 1.01, method="res_2s", disable=True)
    assert len(_PLANS) == 3
    assert not torch.equal(first, other_c2) and not torch.equal(first, other_sigmas)


@pytest.mark.parametrize(
    "method", [m for m in available_tableaux() if not cached_tableau(m).is_multistep]
)
def test_stepper_coefficients_are_tableau_evaluate_numbers(method):
    from res_torch.coefficients import coefficients
    from res_torch.grid import make_grid

    tableau = cached_tableau(method)
    sigmas = torch.tensor([50.0, 7.0, 1.3, 0.2, 0.0], dtype=torch.float64)
    grid = make_grid(sigmas)
    steps = coefficients(tableau, grid).steps
    h = torch.log1p((sigmas[:3] - sigmas[1:4]) / sigmas[1:4])  # the grid's step in lambda
    c, a, b = tableau.evaluate(h)
    s = tableau.stages
    assert [list(step.weights) for step in steps[:3]] == (h[:, None] * b).tolist()
    stage_decay = torch.exp(-c * h[:, None])[:, 1:].tolist()
    assert [list(step.stage_decay) for step in steps[:3]] == stage_decay
    for n in range(3):
        ha = (h[n] * a[n]).tolist()
        assert [list(row) for row in steps[n].stage_weights] == [ha[i][:i] for i in range(1, s)]
    assert [step.decay for step in steps[:3]] == torch.exp(-h).tolist()
    stage_sigmas = torch.tensor([step.sigmas for step in steps[:3]], dtype=torch.float64)
    assert torch.allclose(stage_sigmas, sigmas[:3, None] * torch.exp(-c * h[:, None]))
    # the last step goes to sigma = 0: the denoiser output, one evaluation
    assert grid.denoising == [False, False, False, True]
    assert steps[3].denoising and steps[3].stages == 1


@pytest.mark.parametrize(
    ("method", "options"),
    [("res_2s", {"s_churn": 10.0}), ("res_2m", {"eta": 1.0}), ("ipndm", {"eta": 0.5})],
)
def test_a_seed_in_extra_args_seeds_the_noise_and_still_reaches_the_model(
    gaussian, method, options
):
    seen = []

    def model(x, sigma, seed=None):
        seen.append(seed)
        return gaussian.denoiser(x, sigma)

    sigmas = get_sigmas_karras(5, 0.01, 40.0)
    x = torch.ones(2, 3, dtype=torch.float64)

    def run(**kwargs):
        return sample(model, x, sigmas, method=method, disable=True, **options, **kwargs)

    first = run(extra_args={"seed": 3})
    assert seen and set(seen) == {3}
    assert torch.equal(first, run(extra_args={"seed": 3}))
    # ComfyUI's default_noise_sampler: seed + 1 on the CPU, where ComfyUI draws the initial
    # noise from the seed itself (the same stream would inject that noise again)
    assert torch.equal(
        first, run(extra_args={"seed": None}, generator=torch.Generator().manual_seed(4))
    )
    assert not torch.equal(first, run(extra_args={"seed": 4}))
    # an explicit generator wins over the seed
    explicit = run(extra_args={"seed": 3}, generator=torch.Generator().manual_seed(9))
    assert torch.equal(explicit, run(generator=torch.Generator().manual_seed(9)))
    with pytest.raises(NoiseError, match="seed"):
        run(extra_args={"seed": "three"})


@pytest.mark.parametrize("method", ["res_2s", "res_3m", "heun", "deis"])
def test_a_single_sigma_returns_x_unchanged_without_evaluations(gaussian, counting, method):
    model = counting(gaussian.denoiser)
    x = torch.randn(2, 3, dtype=torch.float64)
    for sigmas in (torch.tensor([5.0]), [5.0]):
        out = sample(model, x, sigmas, method=method, disable=True)
        assert out is x
    assert model.calls == 0 == nfe(method, torch.tensor([5.0]))


def test_sample_takes_k_diffusion_positional_arguments_and_a_keyword_only_method(gaussian):
    sigmas = get_sigmas_karras(4, 0.01, 40.0)
    x = torch.ones(1, 2, dtype=torch.float64)
    calls = []
    out = sample(gaussian.denoiser, x, sigmas, {}, calls.append, True, method="res_2m")
    assert len(calls) == 4 and torch.equal(
        out, sample_res_2m(gaussian.denoiser, x, sigmas, disable=True)
    )
    with pytest.raises(TypeError, match="keyword-only"):
        sample(gaussian.denoiser, x, sigmas, "res_2m")
    with pytest.raises(TypeError):
        sample(gaussian.denoiser, x, sigmas, {}, None, True, "res_2m")
