"""diffusers config keys of the RES schedulers: DPM-Solver's keys honoured as DPM-Solver does
(compared with ``DPMSolverMultistepScheduler`` itself on an exact Gaussian denoiser), ignored
keys warned about, float32 steps for half inputs, every step count, shape checks."""

import inspect
import math
import warnings

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from res_torch.coefficients import coefficients  # noqa: E402
from res_torch.diffusers import (  # noqa: E402
    _IGNORED,
    _NO_EFFECT,
    RESMultistepScheduler,
    RESSinglestepScheduler,
    _threshold,
)
from res_torch.errors import IgnoredConfigWarning, SchedulerError  # noqa: E402
from res_torch.grid import make_grid  # noqa: E402

SCHEDULERS = [RESMultistepScheduler, RESSinglestepScheduler]
ABAR = diffusers.DDPMScheduler().alphas_cumprod.double()
LOG_SIGMAS = np.log(np.sqrt((1 - ABAR.numpy()) / ABAR.numpy()))
MU, S = 0.3, 0.5  # the data: every entry N(MU, S^2), independent


def gaussian_eps(sample: torch.Tensor, timestep) -> torch.Tensor:
    """The exact eps-prediction network of the Gaussian data, at a (fractional) DDPM timestep,
    computed in float64 and returned in the sample's dtype (as a half-precision network would)."""
    sigma = float(np.exp(np.interp(float(timestep), np.arange(1000), LOG_SIGMAS)))
    alpha, s_vp = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)
    x = sample.double()
    x0 = MU + alpha * S**2 * (x - alpha * MU) / (alpha**2 * S**2 + s_vp**2)
    return ((x - alpha * x0) / s_vp).to(sample.dtype)


def loop(scheduler, noise: torch.Tensor, steps: int, generator=None, network=gaussian_eps):
    scheduler.set_timesteps(steps)
    x = noise
    for t in scheduler.timesteps:
        kwargs = {} if generator is None else {"generator": generator}
        x = scheduler.step(network(x, t), t, x, **kwargs).prev_sample
    return x


def saved(scheduler) -> dict:
    """``scheduler.config`` as a saved ``scheduler_config.json`` has it: every key explicit."""
    return {k: v for k, v in scheduler.config.items() if k != "_use_default_values"}


def quiet(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredConfigWarning)
        return make()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


NOISE = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- DPM-Solver's keys, honoured
@pytest.mark.parametrize(
    "options, tableau, steps, flip, changes",
    [
        ({"final_sigmas_type": "sigma_min"}, "dpmpp_2m", 6, {"lower_order_final": False}, True),
        ({"final_sigmas_type": "sigma_min"}, "dpmpp_2m", 16, {"lower_order_final": False}, False),
        ({"final_sigmas_type": "sigma_min", "lower_order_final": False}, "dpmpp_2m", 6,
         {"lower_order_final": True}, True),
        ({"final_sigmas_type": "sigma_min", "lower_order_final": False, "euler_at_final": True},
         "dpmpp_2m", 16, {"euler_at_final": False}, True),
        ({"solver_order": 3, "final_sigmas_type": "sigma_min"}, "dpmpp_3m", 6,
         {"lower_order_final": False}, True),
        ({"solver_order": 3, "final_sigmas_type": "sigma_min"}, "dpmpp_3m", 16,
         {"lower_order_final": False}, False),
        ({"solver_order": 3}, "dpmpp_3m", 8, {"lower_order_final": False}, True),
        ({"thresholding": True, "sample_max_value": 1.2}, "dpmpp_2m", 8, {"thresholding": False},
         True),
    ],
)  # fmt: skip
def test_dpm_solver_config_runs_as_dpm_solver(options, tableau, steps, flip, changes):
    """RES with DPM-Solver++'s own tableaux follows DPMSolverMultistepScheduler step for step
    (float32, as it computes) under its saved config: lower_order_final (the last two steps at
    lower order below 15 steps, not from 15 on), euler_at_final, thresholding, solver_order 3;
    flipping the key changes the result exactly when DPM-Solver's rule says it does."""
    dpm = diffusers.DPMSolverMultistepScheduler(**options)
    ours = quiet(lambda: RESMultistepScheduler.from_config(saved(dpm), tableau=tableau))
    expected = loop(dpm, NOISE, steps)
    result = loop(ours, NOISE, steps)
    assert ours.ve_sigmas.numel() - 1 == steps
    assert relative(result, expected) < 2e-5
    flipped = quiet(lambda: RESMultistepScheduler.from_config(saved(dpm), tableau=tableau, **flip))
    assert (relative(loop(flipped, NOISE, steps), expected) > 1e-4) == changes


def test_sde_dpm_solver_pp_is_the_sde_with_eta_1_and_draws_noise_as_dpm_solver():
    dpm = diffusers.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")
    ours = quiet(lambda: RESMultistepScheduler.from_config(saved(dpm), tableau="dpmpp_2m"))
    assert ours.eta == 1.0
    expected = loop(dpm, NOISE, 8, torch.Generator().manual_seed(3))
    result = loop(ours, NOISE, 8, torch.Generator().manual_seed(3))
    assert relative(result, expected) < 2e-5
    assert relative(loop(ours, NOISE, 8, torch.Generator().manual_seed(4)), expected) > 1e-2
    generator = torch.Generator().manual_seed(3)  # the same draws, handed in as variance_noise
    ours.set_timesteps(8)
    x = NOISE
    for t in ours.timesteps:
        noise = torch.randn(x.shape, generator=generator)
        x = ours.step(gaussian_eps(x, t), t, x, variance_noise=noise).prev_sample
    torch.testing.assert_close(x, result, rtol=0, atol=0)
    assert RESMultistepScheduler(algorithm_type="sde-dpmsolver++", eta=0.5).eta == 0.5
    assert RESMultistepScheduler(algorithm_type="dpmsolver++").eta == 0.0
    with pytest.raises(SchedulerError, match="SDE"):
        RESMultistepScheduler(algorithm_type="sde-dpmsolver++", tableau="ipndm")


@pytest.mark.parametrize("algorithm, eta", [("dpmsolver", 0.0), ("sde-dpmsolver", 1.0)])
def test_noise_prediction_algorithms_warn_and_run_in_the_data_form(algorithm, eta):
    with pytest.warns(IgnoredConfigWarning, match=f"algorithm_type='{algorithm}'.*data"):
        scheduler = RESMultistepScheduler(algorithm_type=algorithm)
    assert scheduler.eta == eta
    with pytest.raises(SchedulerError, match="algorithm_type"):
        RESMultistepScheduler(algorithm_type="unipc")


@pytest.mark.parametrize(
    "scheduler_class, order, name",
    [
        (RESMultistepScheduler, 1, "ddim"),
        (RESMultistepScheduler, 2, "res_2m"),
        (RESMultistepScheduler, 3, "res_3m"),
        (RESSinglestepScheduler, 1, "ddim"),
        (RESSinglestepScheduler, 2, "res_2s"),
        (RESSinglestepScheduler, 3, "res_3s"),
    ],
)
def test_solver_order_picks_the_res_method_of_that_order(scheduler_class, order, name):
    config = saved(diffusers.DPMSolverMultistepScheduler(solver_order=order))
    scheduler = quiet(lambda: scheduler_class.from_config(config))
    assert scheduler.method.name == name
    loop(scheduler, NOISE, 5)  # runs


def test_solver_order_conflicts_and_bad_values():
    quiet(lambda: RESMultistepScheduler(solver_order=3, tableau="dpmpp_3m"))  # agrees: silent
    quiet(lambda: RESSinglestepScheduler(solver_order=2, tableau="dpmpp_2s"))
    with pytest.warns(IgnoredConfigWarning, match="tableau='res_3m' wins over solver_order=2"):
        RESMultistepScheduler(solver_order=2, tableau="res_3m")
    with pytest.raises(SchedulerError, match="solver_order"):
        RESMultistepScheduler(solver_order=4)


def test_lower_order_final_lowers_only_the_last_two_steps_of_short_runs():
    ours = RESMultistepScheduler(tableau="res_3m", lower_order_final=True)
    ours.set_timesteps(8)
    table = ours._run[2]
    assert table.methods[:-1] == ("ddim", "res_2m", "res_3m", "res_3m", "res_3m", "res_3m",
                                  "res_2m")  # fmt: skip
    assert table.steps[-1].denoising  # the last step, to sigma = 0, is D (order 1) anyway
    ours.set_timesteps(15)
    assert ours._run[2].methods[-2] == "res_3m"
    ours = RESMultistepScheduler(
        tableau="res_3m", lower_order_final=True, final_sigmas_type="sigma_min"
    )
    ours.set_timesteps(8)
    assert ours._run[2].methods[-3:] == ("res_3m", "res_2m", "ddim")
    single = RESSinglestepScheduler(tableau="res_3s", lower_order_final=True)
    single.set_timesteps(4)
    assert single._run[2].methods == ("res_3s", "res_3s", "res_2s", "res_3s")
    assert len(single.timesteps) == 3 + 3 + 2 + 1
    adams = RESMultistepScheduler(tableau="ipndm", lower_order_final=True)
    adams.set_timesteps(6)
    reference = coefficients("ipndm", make_grid(adams.ve_sigmas), {"max_order": 2})
    assert adams._run[2].steps[4] == reference.steps[4]
    for designed in ("res_pc4_logsigma", "res_pc2_lambda"):  # the lagrange family: values=
        ours = RESMultistepScheduler(
            tableau=designed, lower_order_final=True, euler_at_final=True,
            final_sigmas_type="sigma_min",
        )  # fmt: skip
        ours.set_timesteps(6)
        for step, values in ((-1, 1), (-2, 2)):  # the last step 1 value, the one before 2
            reference = coefficients(designed, make_grid(ours.ve_sigmas), {"values": values})
            assert ours._run[2].steps[step] == reference.steps[step]


def test_thresholding_is_diffusers_threshold_sample():
    dpm = diffusers.DPMSolverMultistepScheduler(
        thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5
    )
    x = 1.4 * torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(1))
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        assert torch.equal(_threshold(x.to(dtype), 0.9, 1.5), dpm._threshold_sample(x.to(dtype)))
    with pytest.raises(SchedulerError, match="dynamic_thresholding_ratio"):
        RESMultistepScheduler(thresholding=True, dynamic_thresholding_ratio=1.5)


def test_variance_type_learned_uses_the_mean_channels():
    ours = RESMultistepScheduler(variance_type="learned_range")
    plain = RESMultistepScheduler()

    def with_variance(x, t):
        return torch.cat([gaussian_eps(x, t), torch.full_like(x, 7.0)], dim=1)

    torch.testing.assert_close(
        loop(ours, NOISE, 5, network=with_variance), loop(plain, NOISE, 5), rtol=0, atol=0
    )
    ours.set_timesteps(3)
    with pytest.raises(SchedulerError, match="twice the sample's channels"):
        ours.step(NOISE, ours.timesteps[0], NOISE)


def test_lambda_min_clipped_and_flow_sigmas_give_dpm_solver_grids():
    options = {"beta_schedule": "squaredcos_cap_v2", "lambda_min_clipped": -5.1}
    dpm = diffusers.DPMSolverMultistepScheduler(**options)
    dpm.set_timesteps(10)
    ours = quiet(lambda: RESMultistepScheduler.from_config(saved(dpm)))
    ours.set_timesteps(10)
    torch.testing.assert_close(ours.ve_sigmas.float(), dpm.sigmas, rtol=1e-5, atol=0)
    assert float(dpm.sigmas[0]) < float(ours.schedule.sigma_max) / 10  # the clip acts
    flow = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0}
    dpm = diffusers.DPMSolverMultistepScheduler(**flow)
    dpm.set_timesteps(10)
    ours = quiet(lambda: RESMultistepScheduler.from_config(saved(dpm)))
    ours.set_timesteps(10)
    torch.testing.assert_close(ours.sigmas.float(), dpm.sigmas, rtol=1e-6,
                               atol=1e-7)  # fmt: skip
    dpm = diffusers.DPMSolverMultistepScheduler(**flow, use_dynamic_shifting=True)
    ours = quiet(lambda: RESMultistepScheduler.from_config(saved(dpm)))
    dpm.set_timesteps(7, mu=0.7)
    ours.set_timesteps(7, mu=0.7)
    torch.testing.assert_close(ours.sigmas.float(), dpm.sigmas, rtol=1e-6,
                               atol=1e-7)  # fmt: skip


# ---------------------------------------------------------------- every other key: warned
@pytest.mark.parametrize(
    "source",
    [
        diffusers.DPMSolverMultistepScheduler,
        diffusers.DPMSolverSinglestepScheduler,
        diffusers.FlowMatchEulerDiscreteScheduler,
        diffusers.EulerDiscreteScheduler,
        diffusers.UniPCMultistepScheduler,
        diffusers.DEISMultistepScheduler,
        diffusers.PNDMScheduler,
    ],
)
@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_default_configs_load_silently_and_every_key_is_honoured_or_listed(source, scheduler_class):
    quiet(lambda: scheduler_class.from_config(saved(source())))
    honoured = set(inspect.signature(scheduler_class.__init__).parameters)
    keys = set(inspect.signature(source.__init__).parameters) - {"self", "kwargs"}
    assert keys - honoured - set(_IGNORED) - set(_NO_EFFECT) == set()


IGNORED_VALUES = {
    "solver_type": "heun",
    "clip_sample": True,
    "stochastic_sampling": True,
    "interpolation_type": "log_linear",
    "timestep_type": "continuous",
    "predict_x0": False,
    "disable_corrector": [0],
    "solver_p": "something",
}


@pytest.mark.parametrize("key", sorted(_IGNORED))
@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_each_ignored_key_is_warned_about_by_name(scheduler_class, key):
    config = saved(diffusers.DPMSolverMultistepScheduler())
    with pytest.warns(IgnoredConfigWarning, match=f"{key}=") as caught:
        scheduler_class.from_config({**config, key: IGNORED_VALUES[key], "made_up_key": 1})
    assert len(caught) == 1  # once, naming both
    assert "made_up_key=1" in str(caught[0].message)
    assert len(str(caught[0].message)) < 300
    for neutral in _IGNORED[key][0]:
        quiet(lambda: scheduler_class.from_config({**config, key: neutral}))  # noqa: B023


def test_honoured_keys_round_trip(tmp_path):
    scheduler = RESSinglestepScheduler(
        solver_order=3, algorithm_type="sde-dpmsolver++", lower_order_final=True,
        thresholding=True, sample_max_value=2.0, variance_type="learned",
    )  # fmt: skip
    scheduler.save_config(tmp_path)
    again = quiet(lambda: RESSinglestepScheduler.from_pretrained(tmp_path))
    assert again.method.name == "res_3s" and again.eta == 1.0
    assert again.config.sample_max_value == 2.0 and again.config.variance_type == "learned"


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_a_tableau_file_is_saved_as_its_content(scheduler_class, tmp_path):
    """``save_pretrained`` of a scheduler made from a tableau path writes the tableau itself:
    the saved config loads and samples identically after the file is gone; a tampered
    document is refused as a tableau file would be."""
    import json
    import shutil
    from importlib import resources

    from res_torch.errors import TableauError

    name = "res_2m" if scheduler_class is RESMultistepScheduler else "res_3s"
    path = tmp_path / "own" / "mine.json"
    path.parent.mkdir()
    shutil.copy(resources.files("res_torch") / "tableaux" / f"{name}.json", path)
    scheduler = scheduler_class(tableau=str(path))
    expected = loop(scheduler_class(tableau=name), NOISE.double(), 8)
    scheduler.save_pretrained(tmp_path / "saved")
    shutil.rmtree(path.parent)
    again = quiet(lambda: scheduler_class.from_pretrained(tmp_path / "saved"))
    assert again.method.name == name and isinstance(again.config.tableau, dict)
    torch.testing.assert_close(loop(again, NOISE.double(), 8), expected, rtol=0, atol=0)
    saved_config = tmp_path / "saved" / "scheduler_config.json"
    config = json.loads(saved_config.read_text())
    config["tableau"]["c_float"][-1] += 0.25
    saved_config.write_text(json.dumps(config))
    with pytest.raises(TableauError, match="scheduler config 'tableau'"):
        scheduler_class.from_pretrained(tmp_path / "saved")


def test_a_tableau_with_start_up_files_beside_it_keeps_its_path(tmp_path):
    """A multistep file whose start-up method is a file in its folder is referenced by path
    (its document alone would resolve the start-up name to the shipped tableau), and
    ``lower_order_final`` takes that start-up file's steps."""
    import json
    from importlib import resources

    shipped = resources.files("res_torch") / "tableaux"
    data = json.loads((shipped / "res_3m.json").read_text())
    data["name"], data["startup"] = "mine", ["res_2s", "my_2m"]
    (tmp_path / "mine.json").write_text(json.dumps(data))
    start = json.loads((shipped / "res_2m.json").read_text())
    start["name"] = "my_2m"
    (tmp_path / "my_2m.json").write_text(json.dumps(start))
    scheduler = RESMultistepScheduler(tableau=str(tmp_path / "mine.json"), lower_order_final=True)
    assert scheduler.config.tableau == str(tmp_path / "mine.json")
    expected = RESMultistepScheduler(tableau="res_3m", lower_order_final=True)
    torch.testing.assert_close(
        loop(scheduler, NOISE.double(), 8), loop(expected, NOISE.double(), 8), rtol=0, atol=0
    )


# ---------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("steps", [10, 50])
def test_half_precision_error_is_no_worse_than_dpm_solvers(dtype, steps):
    """Both schedulers step in float32 and round the sample to ``dtype`` once per step, so their
    rounding errors (each measured against its own float64 run, which removes the
    discretisation error) are of the same size; 1.2 leaves room for their different rounding
    patterns. Stepping in the half dtype (the code before) gave ratios 1.5-1.8 here."""
    noise = torch.randn(4, 2048, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for make in (diffusers.DPMSolverMultistepScheduler, RESMultistepScheduler):
        reference = loop(make(), noise, steps)
        half = loop(make(), noise.to(dtype), steps)
        assert half.dtype == dtype
        errors.append(float((half.double() - reference).pow(2).mean().sqrt()))
    assert errors[1] <= 1.2 * errors[0]


# ---------------------------------------------------------------- step counts and shapes
def _counterpart_grid(config, n):
    """The counterpart's grid for ``n`` steps, repeated levels once: DPM-Solver's VE sigmas, or
    FlowMatchEuler's flow times with t = 1 handled as the RES schedulers do (docs/diffusers.md)."""
    if "shift" in config:
        flow = diffusers.FlowMatchEulerDiscreteScheduler.from_config(config)
        flow.set_timesteps(n)
        t = flow.sigmas.double().numpy()
        return t[1:] if t.size > 2 and t[1] >= 0.999 else np.r_[min(t[0], 0.999), t[1:]]
    dpm = diffusers.DPMSolverMultistepScheduler.from_config(config)
    dpm.set_timesteps(n)
    levels = dpm.sigmas.double().numpy()
    return levels[np.r_[True, levels[1:] != levels[:-1]]]


CONFIGS = {
    "ddpm_linspace": {},
    "ddpm_leading": {"timestep_spacing": "leading", "steps_offset": 1},
    "ddpm_trailing": {"timestep_spacing": "trailing"},
    "sd3_flow": saved(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_step_count_1_to_1000_gives_the_counterparts_grid(name):
    """Issue 11: the SD3 config (shift 3) failed from 334 steps (t = 1 and its neighbours all
    capped to one time), DDPM configs at 1000 (repeated rounded timesteps)."""
    config = CONFIGS[name]
    schedulers = [quiet(lambda c=c: c.from_config(config)) for c in SCHEDULERS]
    for n in range(1, 1001):
        expected = _counterpart_grid(config, n)
        for scheduler in schedulers:
            levels = scheduler._noise_levels(n, None, None, None)
            if "shift" in config:  # compare flow times: FlowMatch's are float32
                levels = levels / (1 + levels)
                np.testing.assert_allclose(levels, expected, rtol=0, atol=2e-7, err_msg=str(n))
            else:
                np.testing.assert_allclose(levels, expected, rtol=2e-6, err_msg=str(n))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("n", [1, 2, 333, 334, 1000])
def test_long_runs_are_accepted_and_stay_exact(name, n):
    """Full runs at the counts that failed (>= 334 on SD3 flow, 1000 on DDPM) on single-point
    data, where every method is exact."""
    x0 = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    flow = name == "sd3_flow"

    def point(x, t):
        if flow:
            tt = float(t) / 1000
            return (x - (1 - tt) * x0) / tt - x0
        sigma = float(np.exp(np.interp(float(t), np.arange(1000), LOG_SIGMAS)))
        alpha, s_vp = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)
        return (x - alpha * x0) / s_vp

    scheduler = quiet(lambda: RESMultistepScheduler.from_config(CONFIGS[name]))
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = loop(scheduler, noise, n, network=point)
    torch.testing.assert_close(result, x0.expand_as(result), rtol=0, atol=1e-9)


def test_errors_are_short():
    scheduler = RESMultistepScheduler()
    with pytest.raises(SchedulerError) as info:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 2.0, 1000))
    assert len(str(info.value)) < 200
    with pytest.raises(SchedulerError) as info:
        scheduler.set_timesteps(sigmas=-np.ones(1000))
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_a_wrongly_shaped_model_output_is_refused(scheduler_class):
    scheduler = scheduler_class()
    scheduler.set_timesteps(4)
    x = torch.zeros(2, 3, 4, 4)
    for wrong in (torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 4, 1), torch.zeros(3, 4, 4)):
        with pytest.raises(SchedulerError, match="model_output has shape"):
            scheduler.step(wrong, scheduler.timesteps[0], x)
    assert scheduler.step_index is None or scheduler.step_index == 0


@pytest.mark.parametrize(
    "scheduler_class, tableau",
    [(RESMultistepScheduler, "res_3m"), (RESSinglestepScheduler, "res_3s")],
)
def test_lowered_final_steps_survive_a_mid_schedule_start(scheduler_class, tableau):
    """img2img with lower_order_final: the restarted run lowers the same (global) last steps, so
    its evaluations match ``timesteps``; on single-point data every step stays exact."""
    x0 = torch.tensor([[0.5, -0.25]], dtype=torch.float64)

    def point(x, t):
        sigma = float(np.exp(np.interp(float(t), np.arange(1000), LOG_SIGMAS)))
        alpha, s_vp = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)
        return (x - alpha * x0) / s_vp

    scheduler = scheduler_class(
        tableau=tableau, lower_order_final=True, final_sigmas_type="sigma_min"
    )
    scheduler.set_timesteps(6)
    starts = [k for k, (_, i) in enumerate(scheduler._stages) if i == 0]
    scheduler.set_begin_index(starts[2])
    alpha_end = 1 / math.sqrt(1 + float(scheduler.ve_sigmas[-1]) ** 2)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for t in scheduler.timesteps[starts[2] :]:
        x = scheduler.step(point(x, t), t, x).prev_sample
    assert scheduler.step_index == len(scheduler.timesteps)
    assert scheduler._run[2].methods[-1] == "ddim"
    sigma_b = float(scheduler.ve_sigmas[2])
    expected_ve = x0 + float(scheduler.ve_sigmas[-1]) / sigma_b * (
        torch.randn(3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        * math.sqrt(1 + sigma_b**2)
        - x0
    )
    torch.testing.assert_close(x, alpha_end * expected_ve, rtol=0, atol=1e-9)


def test_flow_sigmas_with_a_linear_time_shift_are_refused_as_dpm_solver_does():
    ours = RESMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, use_dynamic_shifting=True,
        time_shift_type="linear",
    )  # fmt: skip
    with pytest.raises(SchedulerError, match="time_shift_type='exponential'"):
        ours.set_timesteps(4, mu=0.7)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_numpy_integer_config_values_give_the_same_grid(spacing):
    plain = RESMultistepScheduler(timestep_spacing=spacing, steps_offset=1)
    numpy_ints = RESMultistepScheduler(
        num_train_timesteps=np.int64(1000), timestep_spacing=spacing, steps_offset=np.int64(1)
    )
    plain.set_timesteps(61)
    numpy_ints.set_timesteps(61)
    assert torch.equal(plain.ve_sigmas, numpy_ints.ve_sigmas)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
@pytest.mark.parametrize("tableau", [None, "res_3m", "res_pc4_grid"])
def test_a_saved_config_loads_in_dpm_solver_unipc_and_deis(scheduler_class, tableau, tmp_path):
    """The saved ``solver_order`` is a number (the order of the method run, at most 3), not
    ``null``: diffusers does not save which keys were defaults, so a ``null`` reached
    DPM-Solver's ``[None] * solver_order`` on a swap after ``save_pretrained``."""
    if scheduler_class is RESSinglestepScheduler and tableau is not None:
        tableau = "res_3s" if tableau == "res_3m" else None
    scheduler = scheduler_class(tableau=tableau)
    scheduler.save_pretrained(tmp_path)
    for other in (diffusers.DPMSolverMultistepScheduler, diffusers.DPMSolverSinglestepScheduler,
                  diffusers.UniPCMultistepScheduler, diffusers.DEISMultistepScheduler):  # fmt: skip
        assert other.from_pretrained(tmp_path).config.solver_order in (1, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredConfigWarning)  # the saved order agrees
        again = scheduler_class.from_pretrained(tmp_path)
    assert again.method.name == scheduler.method.name


@pytest.mark.parametrize(
    "other", [diffusers.DPMSolverMultistepScheduler, diffusers.UniPCMultistepScheduler]
)
def test_a_flow_config_swaps_into_dpm_solver_and_unipc_with_their_flow_sigmas(other):
    """docs/diffusers.md's swap recipe. DPM-Solver and UniPC read no ``shift``: a RES flow
    config loads there as flow prediction on the DDPM beta grid, FlowMatch's own config as
    epsilon prediction on it; with ``use_flow_sigmas=True`` and ``flow_shift`` both load as
    their flow grid, the one a RES config with those keys loads as unchanged."""
    flow_match = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    res = RESMultistepScheduler.from_config(flow_match.config)
    reference = other(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    reference.set_timesteps(8)
    for config, prediction in ((res.config, "flow_prediction"), (flow_match.config, "epsilon")):
        plain = other.from_config(config)
        plain.set_timesteps(8)
        assert plain.config.prediction_type == prediction
        assert not plain.config.use_flow_sigmas and plain.sigmas[0] > 100  # VE levels
        swapped = other.from_config(
            config, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        )
        swapped.set_timesteps(8)
        assert torch.equal(swapped.sigmas, reference.sigmas)
    res_flow = RESMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    loaded = other.from_config(res_flow.config)
    loaded.set_timesteps(8)
    assert torch.equal(loaded.sigmas, reference.sigmas)
