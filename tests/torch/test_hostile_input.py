"""Inputs a black-box review found slipping through: each now gets a library error up front
(or, for a one-level schedule, checks before the documented no-op)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import res_torch as rt
from res_torch.errors import (
    AdapterError,
    NoiseError,
    NonFiniteSampleError,
    ResError,
    SampleError,
    ScheduleError,
    SchedulerError,
    SigmasError,
    TableauError,
)


def zero(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


X = torch.randn(2, 3)


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        ([[80.0, 1.0, 0.0]], "1-d"),
        ("5", "1-d tensor of noise levels"),
        (torch.tensor([math.nan]), "finite"),
        ([-1.0], "positive"),
    ],
)
def test_a_one_level_schedule_is_checked_before_it_returns_x(sigmas, message):
    with pytest.raises(SigmasError, match=message):
        rt.sample(zero, X, sigmas, method="res_2m")


def test_a_one_level_schedule_checks_the_model_and_still_returns_x():
    with pytest.raises(TypeError, match="model must be callable"):
        rt.sample_res_2s(42, X, [1.0])
    assert rt.sample(zero, X, [1.0]) is X
    assert rt.sample(zero, X, [1.0], method="auto") is X


@pytest.mark.parametrize("method", ["res_2m", "res_pc3_grid", "res_pc2_lambda", "res_pc4_grid"])
@pytest.mark.parametrize("levels", [[1e300, 1.0, 0.0], [1.0, 1e-300, 0.0]])
def test_noise_levels_whose_squares_overflow_are_refused(method, levels):
    sigmas = torch.tensor(levels, dtype=torch.float64)
    with pytest.raises(SigmasError, match="must lie in"):
        rt.sample(zero, X.double(), sigmas, method=method)


def test_the_widest_accepted_levels_run():
    from res_torch.grid import SIGMA_MAX

    sigmas = torch.tensor([SIGMA_MAX, 1.0, 1 / SIGMA_MAX, 0.0], dtype=torch.float64)
    for method in ("res_2m", "res_pc3_grid", "res_pc4_grid", "res_pc2_lambda"):
        out = rt.sample(zero, X.double(), sigmas, method=method, disable=True)
        assert torch.isfinite(out).all()


def test_adaptive_refuses_a_non_finite_final_denoising_call():
    _, info = rt.sample_res_adaptive(zero, X, 0.01, 80.0, disable=True, return_info=True)
    calls = []

    def nan_at_the_end(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.full_like(x, math.nan if len(calls) == info["nfe"] else 0.0)

    with pytest.raises(NonFiniteSampleError, match="final denoising"):
        rt.sample_res_adaptive(nan_at_the_end, X, 0.01, 80.0, disable=True)


def test_adaptive_checks_callback_and_empty_inputs_up_front():
    calls = []

    def counted(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.zeros_like(x)

    with pytest.raises(TypeError, match="callback must be callable"):
        rt.sample_res_adaptive(counted, X, 0.01, 80.0, callback=3, disable=True)
    with pytest.raises(SampleError, match="must hold values"):
        rt.sample_res_adaptive(counted, X[:0], 0.01, 80.0, disable=True)
    assert not calls


diffusers = pytest.importorskip("diffusers")
from res_torch.diffusers import RESMultistepScheduler, RESSinglestepScheduler  # noqa: E402


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_train_timesteps": 2.5}, "num_train_timesteps must be an integer"),
        ({"num_train_timesteps": "1000"}, "num_train_timesteps must be an integer"),
        ({"num_train_timesteps": -5}, "num_train_timesteps must lie in \\[2, "),
        ({"trained_betas": [0.1, 0.2]}, "trained_betas has 2 values"),
        ({"eta": "lots"}, "eta must be a real number"),
        ({"eta": None}, "eta must be a real number"),
        ({"lambda_min_clipped": "a"}, "lambda_min_clipped must be a real number"),
        ({"dynamic_thresholding_ratio": "a"}, "dynamic_thresholding_ratio must be a real"),
        ({"sample_max_value": "a"}, "sample_max_value must be a real number"),
        ({"tableau_parameters": [1, 2]}, "tableau_parameters must map"),
        ({"tableau": 5}, "tableau must be a method name, a path or a res-tableau document"),
        ({"steps_offset": 1.5}, "steps_offset must be an integer"),
        ({"steps_offset": 5000}, "steps_offset must lie in"),
        ({"steps_offset": -1}, "steps_offset must lie in"),
        ({"prediction_type": "flow_prediction", "shift": math.nan}, "shift must be a real"),
        ({"prediction_type": "flow_prediction", "shift": 0.0}, "shift must lie in"),
        ({"prediction_type": "flow_prediction", "shift": 1e300}, "shift must lie in"),
        ({"prediction_type": "flow_prediction", "shift_terminal": 1.0}, "shift_terminal"),
    ],
)
@pytest.mark.parametrize("scheduler", [RESMultistepScheduler, RESSinglestepScheduler])
def test_bad_config_values_are_scheduler_errors(scheduler, config, message):
    with pytest.raises(SchedulerError, match=message):
        scheduler(**config)


def test_a_tampered_saved_config_is_a_scheduler_error(tmp_path):
    import json

    RESMultistepScheduler().save_pretrained(tmp_path)
    path = tmp_path / "scheduler_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "eta": "lots"}))
    with pytest.raises(SchedulerError, match="eta must be a real number"):
        RESMultistepScheduler.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inference_steps": True}, "num_inference_steps must be an integer"),
        ({"num_inference_steps": 1001}, "num_inference_steps must be an integer in \\[1, "),
        ({"num_inference_steps": 10**9}, "num_inference_steps must be an integer in \\[1, "),
        ({"sigmas": "abc"}, "sigmas must be a 1-d list of numbers"),
        ({"sigmas": [[5.0, 1.0]]}, "sigmas must be a non-empty 1-d list"),
        ({"timesteps": [999, math.nan]}, "timesteps must be finite"),
    ],
)
def test_bad_set_timesteps_arguments_are_scheduler_errors(kwargs, message):
    with pytest.raises(SchedulerError, match=message):
        RESMultistepScheduler().set_timesteps(**kwargs)


def test_clipping_every_timestep_is_refused():
    scheduler = RESMultistepScheduler(lambda_min_clipped=100.0)
    with pytest.raises(SchedulerError, match="clips every timestep"):
        scheduler.set_timesteps(6)


@pytest.mark.parametrize("mu", [math.nan, math.inf, 1e300, "a"])
def test_a_bad_dynamic_shift_is_refused(mu):
    scheduler = RESMultistepScheduler(prediction_type="flow_prediction", use_dynamic_shifting=True)
    with pytest.raises(SchedulerError, match="mu must be a real number"):
        scheduler.set_timesteps(6, mu=mu)


@pytest.mark.parametrize("index", [99, -1, "1", True])
def test_set_begin_index_is_checked(index):
    scheduler = RESMultistepScheduler()
    scheduler.set_timesteps(5)
    with pytest.raises(SchedulerError, match="begin_index must"):
        scheduler.set_begin_index(index)


def _started(scheduler_class=RESMultistepScheduler):
    scheduler = scheduler_class()
    scheduler.set_timesteps(4)
    sample = torch.randn(1, 3)
    out = scheduler.step(torch.zeros_like(sample), scheduler.timesteps[0], sample).prev_sample
    return scheduler, out


@pytest.mark.parametrize(
    ("output", "sample", "message"),
    [
        ([0.0, 0.0, 0.0], torch.randn(1, 3), "model_output must be a floating-point tensor"),
        (torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.int64), "sample must be a floating"),
        (torch.zeros(1, 3, device="meta"), torch.zeros(1, 3), "model_output is on meta"),
        (torch.zeros(1, 3), [0.0, 0.0, 0.0], "sample must be a floating-point tensor"),
    ],
)
def test_step_refuses_what_is_not_a_floating_tensor_on_the_samples_device(output, sample, message):
    scheduler = RESMultistepScheduler()
    scheduler.set_timesteps(4)
    with pytest.raises(SchedulerError, match=message):
        scheduler.step(output, scheduler.timesteps[0], sample)


def test_step_refuses_a_batch_that_changes_mid_run():
    scheduler, out = _started()
    grown = torch.cat([out, out])
    with pytest.raises(SchedulerError, match="the run's earlier steps"):
        scheduler.step(torch.zeros_like(grown), scheduler.timesteps[1], grown)


def test_a_non_finite_last_step_is_an_error():
    scheduler = RESMultistepScheduler()
    scheduler.set_timesteps(3)
    sample = torch.randn(1, 3)
    for k, t in enumerate(scheduler.timesteps):
        output = torch.full_like(sample, math.nan if k == len(scheduler.timesteps) - 1 else 0.0)
        if k < len(scheduler.timesteps) - 1:
            sample = scheduler.step(output, t, sample).prev_sample
        else:
            with pytest.raises(NonFiniteSampleError, match="after the last step"):
                scheduler.step(output, t, sample)


SIGMAS = torch.tensor([10.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: rt.sample_res_2s(zero, X, SIGMAS, eta="1"), NoiseError, "eta must be a finite"),
        (lambda: rt.sample_res_2s(zero, X, SIGMAS, eta=-1.0), NoiseError, "eta must be finite"),
        (lambda: rt.sample_res_2s(zero, X, SIGMAS, s_noise=None), NoiseError, "s_noise must"),
        (
            lambda: rt.sample_res_2s(zero, X, SIGMAS, s_churn=1.0, s_tmin=2.0, s_tmax=1.0),
            NoiseError,
            "s_tmax must be a number >= s_tmin",
        ),
        (
            lambda: rt.sample_res_2s(
                zero,
                X,
                SIGMAS,
                eta=1.0,
                generator=torch.Generator(),
                noise_sampler=lambda s, t: torch.zeros_like(X),
            ),  # fmt: skip
            NoiseError,
            "either generator= or noise_sampler=",
        ),
        (lambda: rt.sample_res_2s(zero, torch.tensor(1.0), SIGMAS), SampleError, "batch"),
        (lambda: rt.sample_res_2s(zero, X, SIGMAS, c2="x"), TableauError, "c2 must be a number"),
        (lambda: rt.sigmas_for_nfe(10, "res_2s", schedule="bogus"), ScheduleError, "bogus"),
        (lambda: rt.EDMDenoiser(zero, sigma_data=-1.0), AdapterError, "sigma_data"),
    ],
)
def test_input_errors_are_res_errors(call, error, message):
    """errors.py's contract: ``except ResError`` catches every bad value."""
    with pytest.raises(error, match=message):
        call()
    assert issubclass(error, ResError)


def test_a_tableau_file_with_a_repeated_key_is_refused(tmp_path):
    from importlib import resources

    text = (resources.files("res_torch") / "tableaux" / "res_2s.json").read_text()
    repeated = text.replace('"name": "res_2s"', '"name": "res_2s", "name": "other"', 1)
    assert repeated != text
    (tmp_path / "twice.json").write_text(repeated)
    with pytest.raises(TableauError, match="appear twice"):
        rt.load_tableau(str(tmp_path / "twice.json"))


def test_edm_preconditioning_needs_a_finite_sigma_data():
    with pytest.raises(AdapterError, match="sigma_data"):
        rt.EDMDenoiser(zero, sigma_data=math.inf)


def test_auto_names_the_method_it_chose_when_the_options_do_not_fit():
    with pytest.raises(NoiseError, match="method='auto' chose .* for 10 evaluations"):
        rt.sample(zero, X, rt.get_sigmas_karras(10, 0.002, 80.0), method="auto", eta=1.0,
                  noise_type="sde")  # fmt: skip


def test_thresholding_an_empty_batch_returns_it():
    scheduler = RESMultistepScheduler(thresholding=True)
    scheduler.set_timesteps(3)
    empty = torch.zeros(0, 3)
    out = scheduler.step(torch.zeros_like(empty), scheduler.timesteps[0], empty).prev_sample
    assert out.shape == (0, 3)


def test_a_seed_outside_the_generators_range_is_a_noise_error():
    def seeded(x: torch.Tensor, sigma: torch.Tensor, seed: int) -> torch.Tensor:
        return torch.zeros_like(x)  # ComfyUI passes the seed on to the model too

    with pytest.raises(NoiseError, match=r"seed'\] must be an integer in"):
        rt.sample_res_2s(seeded, X, SIGMAS, eta=1.0, extra_args={"seed": 2**70})
    rt.sample_res_2s(seeded, X, SIGMAS, eta=1.0, extra_args={"seed": 2**64 - 1}, disable=True)


def test_a_one_element_tensor_is_a_parameter_value_everywhere():
    c2 = torch.tensor(0.4)
    assert torch.equal(
        rt.sample_res_2s(zero, X, SIGMAS, c2=c2, disable=True),
        rt.sample_res_2s(zero, X, SIGMAS, c2=0.4, disable=True),
    )
    assert rt.load_tableau("res_2s").parameter_values(c2=c2) == {"c2": pytest.approx(0.4)}


# A second review (session 12): each case below slipped through before.


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rt.get_sigmas_karras(10**9), r"integer in \[1, 100000\]"),
        (lambda: rt.sigmas_for_nfe(10**9, "res_2m"), r"nfe must be an integer in \[1, "),
        (lambda: rt.get_sigmas_karras(5, 0.1, 1e300), "no valid grid"),
        (lambda: rt.get_sigmas_karras(3, 0.1, 1e6, dtype=torch.float16), "no valid grid"),
        (lambda: rt.get_sigmas_exponential(3, 0.1, 1e100, dtype=torch.float32), "no valid grid"),
        (lambda: rt.get_sigmas_flow(5, shift=1e-300), "no valid grid"),
        (lambda: rt.get_sigmas_vp(5, beta_d=1e4), "no valid grid"),
        (lambda: rt.get_sigmas_vp(5, eps_s=1e-300), "no valid grid"),
        (lambda: rt.get_sigmas_polyexponential(5, rho=1e6), "no valid grid"),
        (lambda: rt.get_sigmas_karras(60_000, dtype=torch.float16), "no valid grid"),
        (lambda: rt.get_sigmas_karras(5, rho=1e-3), "too small"),
        (lambda: rt.get_sigmas_karras(3, "0.1", 80.0), "sigma_min must be a finite real"),
        (lambda: rt.get_sigmas_vp(3, eps_s="a"), "eps_s must be a finite real"),
        (lambda: rt.get_sigmas_karras(3, device="foo"), "device"),
        (lambda: rt.get_sigmas_discrete(5, alphas_cumprod=[0.9, 1e-320]), "not finite"),
        (lambda: rt.sigmas_for_nfe(10, "res_2m", foo=1), r"no option\(s\) \['foo'\]"),
        (lambda: rt.churn_gamma(torch.tensor([1.0]), 1.0), "at least 2 levels"),
        (lambda: rt.ancestral_step(torch.tensor(1.0), torch.tensor(2.0)), "sigma_to <="),
        (lambda: rt.ancestral_step(0.0, 0.0), "sigma_from > 0"),
        (lambda: rt.nfe("no_such_method", [1.0]), "unknown method"),
        (lambda: rt.nfe("res_2m", [math.nan]), "finite"),
        (lambda: rt.EDMDenoiser(zero, sigma_data="a"), "sigma_data"),
        (lambda: rt.FlowDenoiser(zero, timestep_scale=math.inf), "timestep_scale"),
        (lambda: rt.FlowDenoiser.sigma_to_t(torch.tensor([math.inf])), "finite"),
    ],
)
def test_second_review_cases_are_library_errors(call, message):
    with pytest.raises(ResError, match=message):
        call()


def seeded_zero(x: torch.Tensor, sigma: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.zeros_like(x)  # ComfyUI passes the seed on to the model too


def test_numpy_integers_are_integers_everywhere():
    steps = np.int64(10)
    assert torch.equal(rt.sigmas_for_nfe(steps, "res_2m"), rt.sigmas_for_nfe(10, "res_2m"))
    assert rt.recommend(steps) == rt.recommend(10)
    scheduler = RESMultistepScheduler()
    scheduler.set_timesteps(np.int64(4))
    assert len(scheduler.timesteps) == 4

    def run(seed):
        return rt.sample_res_2m(seeded_zero, X, SIGMAS, eta=1.0, extra_args={"seed": seed},
                                disable=True)  # fmt: skip

    assert torch.equal(run(np.int64(3)), run(3))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"use_karras_sigmas": "false"}, "use_karras_sigmas must be true or false"),
        ({"thresholding": "false"}, "thresholding must be true or false"),
        ({"trained_betas": 5}, "trained_betas"),
        ({"trained_betas": ["a"] * 1000}, "trained_betas"),
        ({"num_train_timesteps": 10**9}, "num_train_timesteps must lie in"),
    ],
)
def test_second_review_config_values_are_scheduler_errors(config, message):
    with pytest.raises(SchedulerError, match=message):
        RESMultistepScheduler(**config)


def test_a_steps_offset_that_would_shorten_a_diffusers_run_is_refused():
    scheduler = RESMultistepScheduler(timestep_spacing="leading", steps_offset=500)
    with pytest.raises(ScheduleError, match="steps_offset=500 moves timesteps past T"):
        scheduler.set_timesteps(10)
    sd15 = RESMultistepScheduler(timestep_spacing="leading", steps_offset=1)  # SD 1.5's config
    sd15.set_timesteps(10)
    assert len(sd15.timesteps) == 10


def test_a_bad_timestep_in_step_is_a_scheduler_error():
    scheduler = RESMultistepScheduler()
    scheduler.set_timesteps(4)
    with pytest.raises(SchedulerError, match="timestep must be a number"):
        scheduler.step(torch.zeros(1, 3), "a", torch.zeros(1, 3))


def test_noise_levels_beyond_the_samples_dtype_are_refused():
    sigmas = torch.tensor([1e6, 100.0, 1.0, 0.0], dtype=torch.float64)
    with pytest.raises(SigmasError, match="round to 0 or inf in x's dtype torch.float16"):
        rt.sample(zero, X.half(), sigmas, method="euler", disable=True)
    rt.sample(zero, X.float(), sigmas, method="euler", disable=True)
    subnormal = torch.tensor([1.0, 1e-5, 0.0])  # float16 holds 1e-5 as a subnormal
    assert rt.sample(zero, X.half(), subnormal, method="euler", disable=True).dtype == torch.half


def test_a_refused_option_stays_refused_after_a_cached_run():
    rt.sample(zero, X, SIGMAS, eta=1.0, disable=True)
    with pytest.raises(NoiseError, match="eta must be a finite real number"):
        rt.sample(zero, X, SIGMAS, eta=True, disable=True)


def test_a_one_level_schedule_still_checks_the_sample():
    with pytest.raises(TypeError, match="floating-point"):
        rt.sample(zero, X.long(), [1.0])


def test_many_keys_in_a_tableau_file_are_refused_promptly(tmp_path):
    # the duplicate-key check was quadratic: about a minute for this (valid-size) file
    import time

    path = tmp_path / "keys.json"
    path.write_text("{" + ",".join(f'"{i}":0' for i in range(80_000)) + "}")
    start = time.perf_counter()
    with pytest.raises(TableauError):
        rt.load_tableau(path)
    assert time.perf_counter() - start < 20  # a hang guard, not a timing: linear takes 0.1 s
