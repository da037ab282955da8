"""The calling contract of diffusers' schedulers, at its edges: ``set_timesteps`` refuses a bad
``device`` before it changes anything and reads tensors wherever they live, ``add_noise`` /
``scale_noise`` check what they are given, and an EDM model's config is refused."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from res_torch.diffusers import RESMultistepScheduler, RESSinglestepScheduler  # noqa: E402
from res_torch.errors import SchedulerError  # noqa: E402

SCHEDULERS = [RESMultistepScheduler, RESSinglestepScheduler]


def flow_scheduler(scheduler_class):
    return scheduler_class.from_config(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config)


@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
@pytest.mark.parametrize("device", ["no_such_device", 3.5])
def test_a_bad_device_is_refused_and_the_previous_schedule_stays(scheduler_class, device):
    scheduler = scheduler_class(prediction_type="sample")
    scheduler.set_timesteps(10)
    before = (scheduler.timesteps.clone(), scheduler.sigmas.clone(), scheduler.num_inference_steps)
    with pytest.raises(SchedulerError, match="cannot hold tensors") as caught:
        scheduler.set_timesteps(5, device=device)
    assert len(str(caught.value)) < 150
    assert torch.equal(scheduler.timesteps, before[0]) and torch.equal(scheduler.sigmas, before[1])
    assert scheduler.num_inference_steps == before[2]
    x = torch.ones(1, 2)  # the old schedule still runs to its end: D = 0 there
    for t in scheduler.timesteps:
        x = scheduler.step(torch.zeros_like(x), t, x).prev_sample
    assert torch.equal(x, torch.zeros_like(x))


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("key", ["sigmas", "timesteps"])
def test_tensor_sigmas_and_timesteps_are_read_even_when_they_require_grad(flow, key):
    """Pipelines build custom grids as tensors (possibly on the GPU, or from a tensor that
    requires grad); NumPy cannot read those, so they are moved to the host first."""
    values = {
        (False, "sigmas"): [14.6, 3.0, 0.5],
        (False, "timesteps"): [999.0, 600.0, 100.0],
        (True, "sigmas"): [1.0, 0.6, 0.2],
        (True, "timesteps"): [1000.0, 600.0, 200.0],
    }[flow, key]
    make = flow_scheduler if flow else lambda cls: cls()
    plain, tensor = make(RESMultistepScheduler), make(RESMultistepScheduler)
    plain.set_timesteps(**{key: values})
    tensor.set_timesteps(**{key: torch.tensor(values, requires_grad=True)})
    assert torch.equal(plain.timesteps, tensor.timesteps)
    assert not tensor.timesteps.requires_grad


def test_a_meta_tensor_grid_is_a_scheduler_error():
    with pytest.raises(SchedulerError, match="meta device has no values"):
        RESMultistepScheduler().set_timesteps(sigmas=torch.ones(3, device="meta"))


@pytest.mark.parametrize("flow", [False, True])
def test_add_noise_takes_one_timestep_or_one_per_sample_and_broadcast_noise(flow):
    scheduler = flow_scheduler(RESMultistepScheduler) if flow else RESMultistepScheduler()
    x0, noise = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    each = scheduler.add_noise(x0, noise, torch.tensor([500.0] * 3))
    assert torch.equal(scheduler.add_noise(x0, noise, torch.tensor(500.0)), each)
    assert torch.equal(scheduler.add_noise(x0, noise, 500), each)
    shared = scheduler.add_noise(x0, noise[:1], torch.tensor([500.0]))  # noise broadcasts
    assert torch.equal(shared, scheduler.add_noise(x0, noise[:1].expand_as(x0), 500))


X = torch.zeros(2, 3)
WIDE = torch.zeros(64, 3)


@pytest.mark.parametrize(
    "x0, noise, timesteps, message",
    [
        (X, X, [500.0, 400.0, 300.0], "got 3 timesteps for a batch of 2"),
        (X[:1], X, [500.0], r"noise has shape \(2, 3\), the samples \(1, 3\)"),
        (X, X[:, :2], [500.0], r"noise has shape \(2, 2\)"),
        (X.long(), X, [500.0], "original_samples must be a floating"),
        (X, [0.0, 0.0], [500.0], "noise must be a floating-point tensor"),
        (X[0, 0], X[0, 0], [500.0], "must have a batch dimension"),
        (WIDE, WIDE, [2000.0] * 64, r"\[0, 999\], got \[2000, .* \(58 more\)\]"),
        (X, X, torch.ones(1, device="meta"), "meta device has no values"),
        (X, X, ["a"], "timesteps must be numbers"),
    ],
)
def test_bad_add_noise_inputs_are_scheduler_errors(x0, noise, timesteps, message):
    """Without the checks: a RuntimeError from torch, a result wider than the samples, an
    integer sample rounded to 0, or (out of range) an AdapterError listing all 64 timesteps."""
    scheduler = RESMultistepScheduler()
    with pytest.raises(SchedulerError, match=message) as caught:
        scheduler.add_noise(x0, noise, timesteps)
    assert len(str(caught.value)) < 150


def test_scale_noise_checks_its_inputs_as_add_noise():
    scheduler = flow_scheduler(RESMultistepScheduler)
    with pytest.raises(SchedulerError, match="got 3 timesteps for a batch of 2"):
        scheduler.scale_noise(torch.zeros(2, 3), torch.tensor([900.0] * 3), torch.zeros(2, 3))
    with pytest.raises(SchedulerError, match=r"flow timesteps must lie in \[0, 1000\]"):
        scheduler.scale_noise(torch.zeros(2, 3), torch.tensor([1500.0]), torch.zeros(2, 3))


@pytest.mark.parametrize(
    "source", [diffusers.EDMEulerScheduler, diffusers.EDMDPMSolverMultistepScheduler]
)
@pytest.mark.parametrize("scheduler_class", SCHEDULERS)
@pytest.mark.parametrize("as_saved", [False, True])
def test_an_edm_models_config_is_refused(source, scheduler_class, as_saved):
    """An EDM-preconditioned network (Playground v2.5's EDMDPMSolver config) is neither a DDPM
    nor a flow model: run on a beta schedule it gives noise, so the swap is refused, both from a
    scheduler built in code (its keys are defaults) and from a saved config."""
    config = dict(source().config)
    if as_saved:
        config.pop("_use_default_values", None)
    with pytest.raises(SchedulerError, match=r"EDM-preconditioned model's \(sigma_data=0.5"):
        scheduler_class.from_config(config)
    with pytest.raises(SchedulerError, match="EDMDenoiser"):
        scheduler_class.from_config(RESMultistepScheduler().config, sigma_data=1.0)
