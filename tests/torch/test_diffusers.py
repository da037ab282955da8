"""The RES diffusers schedulers: equal to res_torch's samplers in a real diffusers loop, exact on
single-point data for every prediction type, and compatible with diffusers' configs."""

import copy
import dataclasses
import importlib
import math
import sys

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import res_torch  # noqa: E402
from res_torch.adapters import DiscreteEpsDenoiser, DiscreteVDenoiser, FlowDenoiser  # noqa: E402
from res_torch.diffusers import (  # noqa: E402
    RESMultistepScheduler,
    RESSinglestepScheduler,
    _sigmas_dtype,
    alphas_cumprod_from_betas,
)
from res_torch.errors import SchedulerError  # noqa: E402
from res_torch.methods import cached_tableau  # noqa: E402

SCHEDULERS = [RESMultistepScheduler, RESSinglestepScheduler]


def _as_scheduled(scheduler_class, tableau):
    """The tableau a scheduler runs: the multistep one replaces a multi-stage single-step
    start-up method by DDIM (one network call per step); a new name keeps the samplers' plan
    cache apart from the tableau's own."""
    table = cached_tableau(tableau)
    if scheduler_class is not RESMultistepScheduler or not table.is_multistep:
        return tableau
    single_stage = [cached_tableau(name) for name in table.startup]
    startup = tuple(t.name if t.is_multistep or t.stages == 1 else "ddim" for t in single_stage)
    return dataclasses.replace(table, name=f"{table.name}_one_call_start", startup=startup)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


@pytest.fixture(scope="module")
def unet64(unet):
    """The same network in float64, so that two implementations can be compared to 1e-10."""
    return copy.deepcopy(unet).double()


def _diffusers_loop(scheduler, unet, noise):
    """The standard diffusers denoising loop (as in DDPMPipeline / StableDiffusionPipeline)."""
    x = noise * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(model_output, t, x).prev_sample
    return x


@pytest.mark.parametrize(
    "scheduler_class, sampler",
    [(RESMultistepScheduler, "sample_res_2m"), (RESSinglestepScheduler, "sample_res_2s")],
)
def test_scheduler_in_a_diffusers_loop_equals_res_torch_sampler(unet64, scheduler_class, sampler):
    unet = unet64
    ddpm = diffusers.DDPMScheduler(clip_sample=False)
    scheduler = scheduler_class.from_config(ddpm.config, use_karras_sigmas=True)
    scheduler.set_timesteps(6)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = _diffusers_loop(scheduler, unet, noise)

    model = DiscreteEpsDenoiser(lambda x, t: unet(x, t).sample, ddpm.alphas_cumprod)
    sigmas = scheduler.ve_sigmas
    x_ve = noise * math.sqrt(1 + float(sigmas[0]) ** 2)  # the VP sample in VE scale
    with torch.no_grad():
        expected = getattr(res_torch, sampler)(model, x_ve, sigmas, disable=True)
    scale = expected.abs().max()
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-10)
    assert scheduler.step_index == len(scheduler.timesteps)


@pytest.mark.parametrize(
    "scheduler_class, tableau",
    [
        (RESMultistepScheduler, "res_2m"),
        (RESMultistepScheduler, "res_3m"),
        (RESSinglestepScheduler, "res_2s"),
        (RESSinglestepScheduler, "res_3s"),
    ],
)
def test_sde_scheduler_equals_res_torch_sde_sampler_with_the_same_noise(
    unet64, scheduler_class, tableau
):
    unet = unet64
    ddpm = diffusers.DDPMScheduler(clip_sample=False)
    scheduler = scheduler_class.from_config(
        ddpm.config, tableau=tableau, use_karras_sigmas=True, eta=0.7, s_noise=0.9
    )
    scheduler.set_timesteps(6)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    x = noise
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(model_output, t, x, generator=generator).prev_sample

    model = DiscreteEpsDenoiser(lambda x, t: unet(x, t).sample, ddpm.alphas_cumprod)
    x_ve = noise * math.sqrt(1 + float(scheduler.ve_sigmas[0]) ** 2)
    with torch.no_grad():
        expected = res_torch.sample_erk(
            model, x_ve, scheduler.ve_sigmas, disable=True,
            tableau=_as_scheduled(scheduler_class, tableau), eta=0.7, s_noise=0.9,
            noise_type="sde", generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
    deterministic = scheduler_class.from_config(
        ddpm.config, tableau=tableau, use_karras_sigmas=True
    )
    deterministic.set_timesteps(6)
    scale = expected.abs().max()
    torch.testing.assert_close(x / scale, expected / scale, rtol=0, atol=1e-10)
    assert (x - _diffusers_loop(deterministic, unet, noise)).abs().max() > 1e-2 * scale


@pytest.mark.parametrize(
    "scheduler_class, tableau, parameters",
    [
        (RESMultistepScheduler, "res_3m", {}),
        (RESMultistepScheduler, "dpmpp_2m", {}),
        (RESSinglestepScheduler, "res_3s", {}),
        (RESSinglestepScheduler, "res_2s", {"c2": 1.0}),
        (RESSinglestepScheduler, "krogstad", {}),
    ],
)
def test_any_tableau_with_v_prediction_equals_sample_erk(
    unet64, scheduler_class, tableau, parameters
):
    unet = unet64
    ddpm = diffusers.DDPMScheduler(prediction_type="v_prediction", clip_sample=False)
    scheduler = scheduler_class.from_config(
        ddpm.config, tableau=tableau, tableau_parameters=parameters
    )
    scheduler.set_timesteps(5)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    result = _diffusers_loop(scheduler, unet, noise)

    model = DiscreteVDenoiser(lambda x, t: unet(x, t).sample, ddpm.alphas_cumprod)
    x_ve = noise * math.sqrt(1 + float(scheduler.ve_sigmas[0]) ** 2)
    with torch.no_grad():
        expected = res_torch.sample_erk(
            model, x_ve, scheduler.ve_sigmas, disable=True,
            tableau=_as_scheduled(scheduler_class, tableau), **parameters,
        )  # fmt: skip
    scale = expected.abs().max()
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-10)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_flow_matching_loop_equals_sample_erk_on_the_flow_adapter(unet64, scheduler_class):
    unet = unet64
    flow_match = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    scheduler = scheduler_class.from_config(flow_match.config)
    scheduler.set_timesteps(5, mu=0.5)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    result = _diffusers_loop(scheduler, unet, noise)

    model = FlowDenoiser(lambda x_t, t: unet(x_t, t).sample, timestep_scale=1000)
    x_ve = noise * (1 + float(scheduler.ve_sigmas[0]))  # x_t / (1 - t)
    with torch.no_grad():
        expected = res_torch.sample_erk(
            model, x_ve, scheduler.ve_sigmas, disable=True, tableau=scheduler.tableau.name
        )
    scale = expected.abs().max()
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-10)


# ---------------------------------------------------------------- exact on single-point data
X0 = torch.tensor([0.8, -0.4, 1.5, 0.1]).reshape(1, 4)
DDPM_ABAR = alphas_cumprod_from_betas()  # DDPMScheduler's default linear schedule


def _ve_sigma(timestep: torch.Tensor, flow: bool) -> float:
    """Noise level of a network timestep, computed independently of the scheduler."""
    if flow:
        t = float(timestep) / 1000
        return t / (1 - t)
    log_sigmas = np.log(np.sqrt((1 - DDPM_ABAR.numpy()) / DDPM_ABAR.numpy()))
    return float(np.exp(np.interp(float(timestep), np.arange(1000), log_sigmas)))


def _ideal_network(prediction_type: str):
    """The exact network output for data concentrated at X0, from (sample, timestep)."""

    def network(sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        flow = prediction_type == "flow_prediction"
        sigma = _ve_sigma(timestep, flow)
        if flow:
            t = sigma / (1 + sigma)
            eps = (sample - (1 - t) * X0) / t
            return eps - X0
        alpha, s = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)
        eps = (sample - alpha * X0) / s
        return {"epsilon": eps, "v_prediction": alpha * eps - s * X0, "sample": X0 + 0 * eps}[
            prediction_type
        ]

    return network


def _run_on_exact_path(scheduler, prediction_type: str, begin: int = 0) -> None:
    """With ``D = x0`` the probability-flow ODE solution is ``x(sigma) = x0 + sigma/sigma_b (x(
    sigma_b) - x0)``; every RES method (sum b_i = phi_1, sum_j a_ij = c_i phi_1(c_i h)) follows it
    exactly, so every sample the scheduler hands back must lie on it, in the model's scale."""
    network = _ideal_network(prediction_type)
    flow = prediction_type == "flow_prediction"

    def to_ve(sample: torch.Tensor, sigma: float) -> torch.Tensor:
        return sample * (1 + sigma) if flow else sample * math.sqrt(1 + sigma**2)

    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    timesteps = scheduler.timesteps[begin:].tolist()
    sigma_b = _ve_sigma(torch.tensor(timesteps[0]), flow)
    start = to_ve(x, sigma_b)
    for k, t in enumerate(timesteps):
        out = scheduler.step(network(x, torch.tensor(t)), t, x)
        torch.testing.assert_close(out.pred_original_sample, X0.expand_as(x), rtol=1e-4, atol=1e-4)
        x = out.prev_sample
        if k + 1 < len(timesteps):
            sigma = _ve_sigma(torch.tensor(timesteps[k + 1]), flow)
            exact = X0 + sigma / sigma_b * (start - X0)
            torch.testing.assert_close(to_ve(x, sigma), exact, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x, X0.expand_as(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
@pytest.mark.parametrize(
    "prediction_type", ["epsilon", "v_prediction", "sample", "flow_prediction"]
)
@pytest.mark.parametrize("spacing", [{}, {"use_karras_sigmas": True}])
def test_every_network_input_lies_on_the_exact_ode_path(scheduler_class, prediction_type, spacing):
    scheduler = scheduler_class(prediction_type=prediction_type, **spacing)
    scheduler.set_timesteps(5)
    _run_on_exact_path(scheduler, prediction_type)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_a_run_can_start_mid_schedule(scheduler_class):
    """img2img: ``set_begin_index`` (in units of ``timesteps``) restarts the method's history."""
    scheduler = scheduler_class()
    scheduler.set_timesteps(6)
    scheduler.set_begin_index(2)
    _run_on_exact_path(scheduler, "epsilon", begin=2)


def test_ddpm_pipeline_runs_with_a_res_scheduler(unet):
    scheduler = RESMultistepScheduler.from_config(diffusers.DDPMScheduler(clip_sample=False).config)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        batch_size=1,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    scheduler.set_timesteps(4)
    expected = (_diffusers_loop(scheduler, unet, noise) / 2 + 0.5).clamp(0, 1)
    np.testing.assert_allclose(images, expected.permute(0, 2, 3, 1).numpy(), atol=1e-5)


# ---------------------------------------------------------------- configs and schedules
@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_from_ddpm_config_round_trip(scheduler_class, tmp_path):
    ddpm = diffusers.DDPMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction")
    scheduler = scheduler_class.from_config(ddpm.config)
    assert scheduler.config.prediction_type == "v_prediction"
    torch.testing.assert_close(scheduler.alphas_cumprod, ddpm.alphas_cumprod)
    scheduler.save_config(tmp_path)
    again = scheduler_class.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(again.config) == public(scheduler.config)
    # the forward process agrees with DDPM's at the training timesteps
    x0 = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(scheduler.add_noise(x0, noise, t), ddpm.add_noise(x0, noise, t))


def test_from_flow_match_config_with_mu():
    flow_match = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    scheduler = RESMultistepScheduler.from_config(flow_match.config)
    assert scheduler.config.prediction_type == "flow_prediction"
    assert scheduler.config.use_dynamic_shifting
    flow_match.set_timesteps(6, mu=0.8)
    scheduler.set_timesteps(6, mu=0.8)
    flow_t = scheduler.ve_sigmas / (1 + scheduler.ve_sigmas)  # back from VE to flow time
    expected = flow_match.sigmas.double().clone()
    assert expected[0] == 1.0  # the flow schedule starts at t = 1 (sigma = inf) ...
    expected[0] = 1 - 1 / 1000  # ... which the RES scheduler starts at 1 - 1/T
    torch.testing.assert_close(flow_t, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(scheduler.sigmas, flow_t)  # flow times, as FlowMatch's sigmas
    torch.testing.assert_close(scheduler.timesteps, (expected[:-1] * 1000).float())
    # the forward process agrees with FlowMatch's scale_noise (which flow img2img calls)
    x0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(5))
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(6))
    t = flow_match.timesteps[2:3]
    torch.testing.assert_close(
        scheduler.add_noise(x0, noise, t), flow_match.scale_noise(x0, t, noise)
    )
    torch.testing.assert_close(
        scheduler.scale_noise(x0, t, noise), flow_match.scale_noise(x0, t, noise)
    )
    with pytest.raises(ValueError, match="noise"):
        scheduler.scale_noise(x0, t)
    with pytest.raises(ValueError, match="mu"):
        scheduler.set_timesteps(6)


def test_mu_without_dynamic_shifting_is_ignored_by_flow_models_as_by_flow_match():
    """Flux-style pipelines pass ``mu`` whatever the config; FlowMatchEuler ignores it without
    ``use_dynamic_shifting``, and so do the RES schedulers; DDPM models and DPM-Solver's flow
    sigmas refuse it (DPM-Solver asserts)."""
    flow_match = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler = RESMultistepScheduler.from_config(flow_match.config)
    scheduler.set_timesteps(6)
    plain = scheduler.ve_sigmas.clone()
    scheduler.set_timesteps(6, mu=1.1)
    assert torch.equal(scheduler.ve_sigmas, plain)
    flow_match.set_timesteps(6, mu=1.1)
    torch.testing.assert_close(scheduler.sigmas[1:], flow_match.sigmas[1:].double(), rtol=1e-6,
                               atol=0)  # fmt: skip
    for config in ({}, {"prediction_type": "flow_prediction", "use_flow_sigmas": True}):
        with pytest.raises(ValueError, match="use_dynamic_shifting"):
            RESMultistepScheduler(**config).set_timesteps(6, mu=1.1)


def test_sigmas_give_the_level_of_every_listed_call():
    """``sigmas[i]`` is the noise level of the call at ``timesteps[i]`` (HeunDiscrete's layout:
    a stage of a single-step method has its own entry), then the final level."""
    scheduler = RESSinglestepScheduler(tableau="res_2s")
    scheduler.set_timesteps(4)
    assert len(scheduler.sigmas) == len(scheduler.timesteps) + 1 == 2 * 3 + 1 + 1
    grid = scheduler.ve_sigmas
    midpoint = (grid[:-2] * grid[1:-1]).sqrt()  # c2 = 1/2: halfway in lambda
    stages = torch.stack([grid[:-2], midpoint], 1).flatten()
    torch.testing.assert_close(scheduler.sigmas, torch.cat([stages, grid[-2:]]))
    torch.testing.assert_close(scheduler.timesteps, scheduler._timesteps_of(scheduler.sigmas[:-1]))


def test_a_list_of_generators_draws_each_sample_with_its_own():
    """As diffusers' ``randn_tensor``: one generator per sample, in batch order."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))

    def run(generator):
        scheduler = RESMultistepScheduler(eta=1.0)
        scheduler.set_timesteps(4)
        y = x
        for t in scheduler.timesteps:
            y = scheduler.step(torch.zeros_like(y), t, y, generator=generator).prev_sample
        return y

    seeds = [5, 6, 7]
    together = run([torch.Generator().manual_seed(s) for s in seeds])
    for i, seed in enumerate(seeds):
        alone = RESMultistepScheduler(eta=1.0)
        alone.set_timesteps(4)
        y, generator = x[i : i + 1], torch.Generator().manual_seed(seed)
        for t in alone.timesteps:
            y = alone.step(torch.zeros_like(y), t, y, generator=generator).prev_sample
        torch.testing.assert_close(together[i : i + 1], y, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one per sample"):
        run([torch.Generator().manual_seed(1)])


@pytest.mark.parametrize(
    "options",
    [{"shift": 3.0}, {"shift": 3.0, "use_karras_sigmas": True}, {"shift_terminal": 0.1}],
)
def test_static_flow_shift_matches_flow_match_euler(options):
    flow_match = diffusers.FlowMatchEulerDiscreteScheduler(**options)
    flow_match.set_timesteps(5)
    scheduler = RESSinglestepScheduler.from_config(flow_match.config)
    scheduler.set_timesteps(5)
    flow_t = scheduler.ve_sigmas / (1 + scheduler.ve_sigmas)
    expected = flow_match.sigmas.double().clone()
    expected[0] = min(float(expected[0]), 1 - 1 / 1000)
    torch.testing.assert_close(flow_t, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "options",
    [
        {"use_karras_sigmas": True},
        {"use_exponential_sigmas": True},
        {"use_beta_sigmas": True},
        {"timestep_spacing": "linspace"},
        {"timestep_spacing": "leading", "steps_offset": 1},
        {"timestep_spacing": "trailing"},
    ],
)
def test_sigma_spacing_options_match_dpm_solver(options):
    dpm = diffusers.DPMSolverMultistepScheduler(**options)
    dpm.set_timesteps(7)
    scheduler = RESMultistepScheduler.from_config(dpm.config)
    scheduler.set_timesteps(7)
    torch.testing.assert_close(scheduler.ve_sigmas.float(), dpm.sigmas, rtol=1e-5, atol=0)
    # final_sigmas_type="sigma_min": the run ends at the smallest training noise level, without
    # the zero-length last step DPM-Solver keeps when the grid already ends there
    dpm = diffusers.DPMSolverMultistepScheduler(**options, final_sigmas_type="sigma_min")
    dpm.set_timesteps(7)
    expected = dpm.sigmas[:-1] if math.isclose(dpm.sigmas[-2], dpm.sigmas[-1]) else dpm.sigmas
    scheduler = RESMultistepScheduler.from_config(dpm.config)
    scheduler.set_timesteps(7)
    torch.testing.assert_close(scheduler.ve_sigmas.float(), expected, rtol=1e-5, atol=0)
    assert scheduler.num_inference_steps == len(scheduler.timesteps) == len(expected) - 1


@pytest.mark.parametrize(
    ("options", "mu"),
    [({}, None), ({"shift": 3.0}, None), ({"use_dynamic_shifting": True}, 0.8),
     ({"use_dynamic_shifting": True, "time_shift_type": "linear"}, 1.5),
     ({"shift": 3.0, "shift_terminal": 0.1}, None),
     ({"shift": 3.0, "use_karras_sigmas": True}, None),
     ({"use_flow_sigmas": True, "flow_shift": 3.0}, None)],
)  # fmt: skip
@pytest.mark.parametrize("timesteps", [[900, 640, 380, 120], [1000, 800, 550, 300, 90]])
def test_flow_timesteps_give_flow_match_eulers_flow_times(options, mu, timesteps):
    """``set_timesteps(timesteps=...)`` on a flow model: the flow times of
    FlowMatchEulerDiscreteScheduler given the same timesteps (``timesteps / T``, then shifted),
    the same as ``sigmas=timesteps / T``; a time ``t = 1`` starts at ``1 - 1/T``, a final 0
    changes nothing."""
    flow_options = {k: v for k, v in options.items() if k not in ("use_flow_sigmas", "flow_shift")}
    if "flow_shift" in options:
        flow_options["shift"] = options["flow_shift"]
    flow_match = diffusers.FlowMatchEulerDiscreteScheduler(**flow_options)
    flow_match.set_timesteps(timesteps=timesteps, mu=mu)
    scheduler = RESMultistepScheduler(prediction_type="flow_prediction", **options)
    scheduler.set_timesteps(timesteps=timesteps, mu=mu)
    expected = flow_match.sigmas.double().clone()
    expected[0] = min(float(expected[0]), 1 - 1 / 1000)
    torch.testing.assert_close(scheduler.sigmas, expected, rtol=1e-6, atol=1e-7)
    other = RESMultistepScheduler(prediction_type="flow_prediction", **options)
    other.set_timesteps(sigmas=np.array(timesteps) / 1000, mu=mu)
    assert torch.equal(scheduler.sigmas, other.sigmas)
    other.set_timesteps(timesteps=[*timesteps, 0], mu=mu)
    assert torch.equal(scheduler.sigmas, other.sigmas)
    torch.testing.assert_close(scheduler.timesteps, (scheduler.sigmas[:-1] * 1000).float())
    if not options and timesteps[0] < 1000:  # no shift: called at the timesteps as given
        assert scheduler.timesteps.tolist() == timesteps == flow_match.timesteps.tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"timesteps": [1200, 500]}, r"flow timesteps must lie in \(0, 1000\]"),
     ({"timesteps": [500, 0, 100]}, r"flow timesteps must lie in \(0, 1000\]"),
     ({"timesteps": [500, -3]}, r"flow timesteps must lie in \(0, 1000\]"),
     ({"num_inference_steps": 3, "timesteps": [500, 200]}, "got 2 timesteps"),
     ({"timesteps": [500, 200], "sigmas": [0.5, 0.2]}, "either sigmas or timesteps")],
)  # fmt: skip
def test_bad_flow_timesteps_are_scheduler_errors(kwargs, message):
    scheduler = RESMultistepScheduler(prediction_type="flow_prediction")
    with pytest.raises(SchedulerError, match=message):
        scheduler.set_timesteps(**kwargs)


def test_custom_sigmas_are_used_as_given():
    scheduler = RESMultistepScheduler()
    scheduler.set_timesteps(sigmas=[14.6, 3.0, 0.5, 0.0])
    torch.testing.assert_close(scheduler.ve_sigmas, torch.tensor([14.6, 3.0, 0.5, 0.0]).double())
    assert scheduler.num_inference_steps == 3
    scheduler.set_timesteps(timesteps=[999, 500, 10])
    ddpm_sigmas = ((1 - DDPM_ABAR) / DDPM_ABAR).sqrt()
    torch.testing.assert_close(scheduler.ve_sigmas[:-1], ddpm_sigmas[[999, 500, 10]])
    assert scheduler.timesteps.tolist() == [999.0, 500.0, 10.0]


def test_single_step_stages_are_interleaved_in_timesteps():
    scheduler = RESSinglestepScheduler(tableau_parameters={"c2": 0.5})
    scheduler.set_timesteps(4)
    assert scheduler.order == 2
    assert len(scheduler.timesteps) == 2 * 3 + 1  # last step to sigma = 0 has one stage
    sigmas = scheduler.ve_sigmas
    # stage 2 of step n sits at sigma_n e^{-h/2} = sqrt(sigma_n sigma_{n+1}) (c2 = 1/2)
    stage_sigma = torch.sqrt(sigmas[:3] * sigmas[1:4])
    expected = scheduler.schedule.sigma_to_t(stage_sigma).float()
    torch.testing.assert_close(scheduler.timesteps[1:6:2], expected)
    assert scheduler.timesteps[0::2].tolist() == [999.0, 749.0, 500.0, 250.0]


# ---------------------------------------------------------------- bad input
def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="prediction_type"):
        RESMultistepScheduler(prediction_type="noise")
    with pytest.raises(ValueError, match="single-step"):
        RESMultistepScheduler(tableau="res_2s")
    with pytest.raises(ValueError, match="multistep"):
        RESSinglestepScheduler(tableau="res_2m")
    with pytest.raises(ValueError, match="history"):
        RESMultistepScheduler(tableau_parameters={"c2": -1.0})
    with pytest.raises(ValueError, match="c2"):
        RESSinglestepScheduler(tableau_parameters={"c2": 2.0})
    with pytest.raises(ValueError, match="at most one"):
        RESMultistepScheduler(use_karras_sigmas=True, use_exponential_sigmas=True)
    with pytest.raises(ValueError, match="rescale_betas_zero_snr"):
        RESMultistepScheduler(rescale_betas_zero_snr=True)
    with pytest.raises(ValueError, match="beta_schedule"):
        RESMultistepScheduler(beta_schedule="quadratic")
    with pytest.raises(ValueError, match="eta"):
        RESSinglestepScheduler(eta=-0.5)
    with pytest.raises(ValueError, match="s_noise"):
        RESMultistepScheduler(s_noise=float("nan"))


def test_bad_calls_are_rejected():
    scheduler = RESSinglestepScheduler()
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 999, x)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps()
    with pytest.raises(ValueError, match="mu"):
        scheduler.set_timesteps(4, mu=0.5)
    with pytest.raises(ValueError, match="decrease strictly"):
        scheduler.set_timesteps(sigmas=[1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="positive"):
        scheduler.set_timesteps(sigmas=[1.0, -2.0])
    scheduler.set_timesteps(2)
    with pytest.raises(ValueError, match="not the start of a step"):
        scheduler.step(x, 123.0, x)
    scheduler.set_timesteps(1)
    scheduler.step(x, scheduler.timesteps[0], x)
    with pytest.raises(ValueError, match="all steps are done"):
        scheduler.step(x, scheduler.timesteps[0], x)


def test_missing_diffusers_gives_a_helpful_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    for name in [m for m in sys.modules if m.startswith("diffusers.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "res_torch.diffusers")
    with pytest.raises(ImportError, match=r"pip install 'res-torch\[diffusers\]'"):
        importlib.import_module("res_torch.diffusers")


def test_res_3m_makes_one_call_per_step_and_follows_the_exact_path():
    """The multistep scheduler starts res_3m with DDIM, RES-2M (one call per step), where
    ``sample_res_3m`` takes a RES-2S first step."""
    scheduler = RESMultistepScheduler(tableau="res_3m")
    scheduler.set_timesteps(5)
    assert len(scheduler.timesteps) == 5
    assert scheduler._run[2].methods[:3] == ("ddim", "res_2m", "res_3m")
    assert torch.equal(scheduler.sigmas, scheduler.ve_sigmas)  # one level per call
    _run_on_exact_path(scheduler, "epsilon")
    assert scheduler.step_index == len(scheduler.timesteps)


@pytest.mark.parametrize("begin", [1, 2, 4])
def test_res_3m_starts_mid_schedule_with_one_evaluation_start_up(unet64, begin):
    """img2img with res_3m: from step ``begin`` the run restarts with DDIM, RES-2M, as the
    reference loop on ``ve_sigmas[begin:]`` with ``one_evaluation_startup`` does; and it stays
    on the exact ODE path."""
    from res_torch.coefficients import coefficients
    from res_torch.grid import make_grid
    from res_torch.reference import sample_reference

    unet = unet64
    ddpm = diffusers.DDPMScheduler(clip_sample=False)
    scheduler = RESMultistepScheduler.from_config(ddpm.config, tableau="res_3m")
    scheduler.set_timesteps(6)
    scheduler.set_begin_index(begin)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = noise
    with torch.no_grad():
        for t in scheduler.timesteps[begin:]:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    assert scheduler.step_index == len(scheduler.timesteps)

    grid = make_grid(scheduler.ve_sigmas[begin:])
    table = coefficients("res_3m", grid, one_evaluation_startup=True)
    assert table.methods[:2] == ("ddim", "res_2m")
    model = DiscreteEpsDenoiser(lambda x, t: unet(x, t).sample, ddpm.alphas_cumprod)
    x_ve = noise * math.sqrt(1 + float(scheduler.ve_sigmas[begin]) ** 2)
    with torch.no_grad():
        expected = sample_reference(model, x_ve, grid, table)
    scale = expected.abs().max()
    torch.testing.assert_close(x / scale, expected / scale, rtol=0, atol=1e-10)

    exact = RESMultistepScheduler(tableau="res_3m")
    exact.set_timesteps(6)
    exact.set_begin_index(begin)
    _run_on_exact_path(exact, "epsilon", begin=begin)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
@pytest.mark.parametrize("strength", [0.3, 0.75, 0.9, 1.0])
def test_img2img_slicing_starts_where_dpm_solver_starts(scheduler_class, strength):
    """The img2img pipelines' ``get_timesteps``: ``t_start = n - int(n strength)``, the loop over
    ``timesteps[t_start * order:]`` after ``set_begin_index(t_start * order)``. Every method
    starts at DPM-Solver's timestep of that strength and calls the network once per listed
    timestep."""
    n = 10
    t_start = n - min(int(n * strength), n)
    dpm = diffusers.DPMSolverMultistepScheduler(solver_order=3)
    dpm.set_timesteps(n)
    orders = {RESMultistepScheduler: 3, RESSinglestepScheduler: 2}
    scheduler = scheduler_class(solver_order=orders[scheduler_class])
    scheduler.set_timesteps(n)
    begin = t_start * scheduler.order
    scheduler.set_begin_index(begin)
    listed = scheduler.timesteps[begin:]
    assert float(listed[0]) == pytest.approx(float(dpm.timesteps[t_start * dpm.order]), abs=1e-3)
    x = torch.randn(1, 3, generator=torch.Generator().manual_seed(1))
    for t in listed:
        x = scheduler.step(torch.zeros_like(x), t, x).prev_sample
    assert scheduler.step_index == len(scheduler.timesteps)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
def test_img2img_at_strength_0_runs_no_step_as_dpm_solver(scheduler_class):
    """Strength 0: ``t_start = n``; diffusers' schedulers accept ``set_begin_index(t_start *
    order)`` (``len(timesteps)`` for DPM-Solver, beyond it for a single-step method) and the
    loop over ``timesteps[t_start * order:]`` makes no call. A ``step`` there is a
    SchedulerError (diffusers': an IndexError); a larger index is refused at once."""
    n = 6
    for other in (diffusers.DPMSolverMultistepScheduler(), diffusers.UniPCMultistepScheduler(),
                  diffusers.FlowMatchEulerDiscreteScheduler()):  # fmt: skip
        other.set_timesteps(n)
        other.set_begin_index(n * other.order)
        assert len(other.timesteps[n * other.order :]) == 0
    scheduler = scheduler_class()
    scheduler.set_timesteps(n)
    begin = n * scheduler.order
    scheduler.set_begin_index(begin)
    assert scheduler.begin_index == begin >= len(scheduler.timesteps)
    assert len(scheduler.timesteps[begin:]) == 0
    x = torch.zeros(1, 3)
    with pytest.raises(SchedulerError, match="past the last of the"):
        scheduler.step(x, scheduler.timesteps[-1], x)
    largest = scheduler.order * len(scheduler.timesteps)  # retrieve_timesteps with sigmas
    scheduler.set_begin_index(largest)
    with pytest.raises(SchedulerError, match=rf"begin_index must be in \[0, {largest}\]"):
        scheduler.set_begin_index(largest + 1)
    with pytest.raises(SchedulerError, match="begin_index must be >= 0"):
        scheduler_class().set_begin_index(-1)


def test_strength_0_is_accepted_when_the_flow_run_has_a_step_fewer():
    """SD3 (``shift=3``) from 334 steps on: the run starts at the schedule's second time, one
    step fewer than asked; img2img's ``t_start * order`` counts the steps asked for."""
    scheduler = RESMultistepScheduler(prediction_type="flow_prediction", shift=3.0)
    scheduler.set_timesteps(400)
    assert len(scheduler.timesteps) == 399
    scheduler.set_begin_index(400)
    with pytest.raises(SchedulerError, match="past the last"):
        scheduler.step(torch.zeros(1, 3), scheduler.timesteps[-1], torch.zeros(1, 3))


def test_a_mid_stage_begin_index_is_refused():
    scheduler = RESSinglestepScheduler(tableau="res_2s")
    scheduler.set_timesteps(6)
    scheduler.set_begin_index(1)  # the second res_2s stage of step 0
    x = torch.randn(1, 3, generator=torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match="not a step start"):
        scheduler.step(torch.zeros_like(x), scheduler.timesteps[1], x)


@pytest.mark.parametrize(  # the designed methods: linearised history, PEC, the grid's variable
    ("method", "karras"),
    [("ipndm", True), ("ipndm_v", True), ("deis", True), ("res_pc3_rho7", True),
     ("res_pc2_lambda", True), ("res_pc4_grid", False)],
)  # fmt: skip
def test_sigma_multistep_methods_run_in_the_scheduler_as_in_the_sampler(unet64, method, karras):
    unet = unet64
    ddpm = diffusers.DDPMScheduler(clip_sample=False)
    scheduler = RESMultistepScheduler.from_config(
        ddpm.config, tableau=method, use_karras_sigmas=karras
    )
    scheduler.set_timesteps(7)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = _diffusers_loop(scheduler, unet, noise)
    model = DiscreteEpsDenoiser(lambda x, t: unet(x, t).sample, ddpm.alphas_cumprod)
    x_ve = noise * math.sqrt(1 + float(scheduler.ve_sigmas[0]) ** 2)
    with torch.no_grad():
        expected = res_torch.sample(model, x_ve, scheduler.ve_sigmas, disable=True, method=method)
    scale = expected.abs().max()
    torch.testing.assert_close(result / scale, expected / scale, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="SDE"):
        RESMultistepScheduler(tableau=method, eta=0.5)


@pytest.mark.parametrize(
    ("device", "dtype"),
    [("mps", torch.float32), ("mps:0", torch.float32), (torch.device("mps"), torch.float32),
     ("cpu", torch.float64), ("cuda", torch.float64), ("cuda:1", torch.float64),
     (None, torch.float64)],
)  # fmt: skip
def test_sigmas_are_float32_only_for_mps_which_has_no_float64(device, dtype):
    assert _sigmas_dtype(device) is dtype


def test_sigmas_stay_float64_on_the_host():
    scheduler = RESMultistepScheduler(prediction_type="flow_prediction")
    scheduler.set_timesteps(5, device="cpu")
    assert scheduler.sigmas.dtype == scheduler.ve_sigmas.dtype == torch.float64
    assert scheduler.timesteps.dtype == torch.float32


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="needs Apple's mps device")
@pytest.mark.parametrize("prediction_type", ["epsilon", "flow_prediction"])
def test_a_run_on_mps_uses_no_float64(prediction_type):
    """What a pipeline does on mps: ``set_timesteps(device="mps")``, ``sigmas`` moved to the
    latents' device (LTX), ``add_noise`` at device timesteps (img2img), ``step``."""
    scheduler = RESMultistepScheduler(prediction_type=prediction_type)
    scheduler.set_timesteps(4, device="mps")
    assert scheduler.sigmas.to("mps").dtype == torch.float32
    x0 = torch.ones(2, 3, device="mps")
    x = scheduler.add_noise(x0, torch.zeros_like(x0), scheduler.timesteps[:1].repeat(2))
    for t in scheduler.timesteps:
        x = scheduler.step(torch.zeros_like(x), t, x).prev_sample
    assert x.device.type == "mps"


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_from_betas_equals_diffusers_and_lives_in_schedules(beta_schedule):
    from res_torch import schedules

    assert alphas_cumprod_from_betas is schedules.alphas_cumprod_from_betas
    ddpm = diffusers.DDPMScheduler(beta_schedule=beta_schedule)
    ours = alphas_cumprod_from_betas(beta_schedule=beta_schedule)
    assert torch.equal(ours.to(torch.float32), ddpm.alphas_cumprod)
    with pytest.raises(res_torch.ResError, match="beta_schedule"):
        alphas_cumprod_from_betas(beta_schedule="quadratic")
