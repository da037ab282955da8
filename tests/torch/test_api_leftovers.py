"""Leftovers of the API hardening: flags that must be bools, short adapter messages, custom
diffusers timesteps with a respacing option, an empty schedule. Each test fails without the fix
it names."""

from __future__ import annotations

import pytest
import torch

import res_torch as rt
from res_torch.adapters import DiscreteSchedule, FlowDenoiser
from res_torch.errors import AdapterError, SigmasError
from res_torch.grid import validate_sigmas
from res_torch.methods import method_of
from res_torch.samplers import ODE, planned
from res_torch.schedules import alphas_cumprod_from_betas
from res_torch.steppers import run

X = torch.ones(2, 3)
SIGMAS = rt.get_sigmas_karras(4, 0.1, 10.0)
RESPACING = ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas"]


def zero(x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
    return torch.zeros_like(x)


def nan(x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
    return torch.full_like(x, float("nan"))


# check_finite and disable are bools (disable also None) -------------------------------------


@pytest.mark.parametrize("value", [None, "no", 0, 1, torch.tensor(True)])
@pytest.mark.parametrize(
    "sampler",
    [rt.sample_res_2s, rt.sample, lambda *a, **k: rt.sample_erk(*a, tableau="res_3s", **k)],
)
def test_check_finite_must_be_a_bool(sampler, value):
    # before: None returned the NaN sample unchecked, "no" ran the check
    with pytest.raises(TypeError, match=r"^check_finite must be True or False, got .{1,40}$"):
        sampler(nan, X, SIGMAS, disable=True, check_finite=value)


@pytest.mark.parametrize("value", ["yes", 0, 1.0, torch.tensor(False)])
def test_disable_must_be_a_bool_or_none(value):
    with pytest.raises(TypeError, match=r"^disable must be True, False or None, got .{1,40}$"):
        rt.sample_res_2s(zero, X, SIGMAS, disable=value)


def test_the_flags_are_checked_for_a_run_of_no_step_and_by_the_loop_itself():
    with pytest.raises(TypeError, match="check_finite"):
        rt.sample_res_2s(zero, X, SIGMAS[:1], check_finite=None)
    grid, table = planned(method_of("res_2s"), {}, SIGMAS, ODE)
    with pytest.raises(TypeError, match="disable"):
        run(zero, X, SIGMAS, grid, table, disable="off")


@pytest.mark.parametrize("disable", [None, True, False])
def test_bool_flags_and_disable_none_still_run(disable):
    out = rt.sample_res_2s(nan, X, SIGMAS, disable=disable, check_finite=False)
    assert out.isnan().all()
    with pytest.raises(rt.NonFiniteSampleError):
        rt.sample_res_2s(nan, X, SIGMAS, disable=disable, check_finite=True)


# DiscreteSchedule / FlowDenoiser: short messages, booleans refused ---------------------------


def test_t_to_sigma_names_the_count_and_the_first_offending_timesteps():
    schedule = DiscreteSchedule(alphas_cumprod_from_betas())
    t = torch.arange(100_000.0)  # before: every value in the message
    expected = r"99000 of 100000 are not, the first 6: \[1000\.0, "
    with pytest.raises(AdapterError, match=expected) as caught:
        schedule.t_to_sigma(t)
    assert len(str(caught.value)) < 150
    with pytest.raises(AdapterError, match=r"1 of 3 is not: \[-1\.0\]"):
        schedule.t_to_sigma(torch.tensor([-1.0, 5.0, 7.0]))


def test_sigma_and_flow_conversions_have_short_messages():
    schedule = DiscreteSchedule(alphas_cumprod_from_betas())
    values = -torch.ones(50_000)
    for convert in (schedule.sigma_to_t, FlowDenoiser.sigma_to_t, FlowDenoiser.t_to_sigma):
        with pytest.raises(AdapterError, match="50000 of 50000 are not, the first 6") as caught:
            convert(values)
        assert len(str(caught.value)) < 150


@pytest.mark.parametrize("t", [True, torch.tensor([True, False])])
def test_boolean_timesteps_are_refused(t):
    # before: True was taken as timestep 1 (and the flow conversion failed inside torch)
    with pytest.raises(TypeError, match="timesteps must be real numbers, got dtype torch.bool"):
        DiscreteSchedule(alphas_cumprod_from_betas()).t_to_sigma(t)
    with pytest.raises(TypeError, match="flow time t must be real numbers"):
        FlowDenoiser.t_to_sigma(t)


# diffusers: custom timesteps with a respacing option ----------------------------------------


@pytest.mark.parametrize("option", RESPACING)
def test_custom_timesteps_with_a_respacing_option_are_refused_as_diffusers_does(option):
    diffusers = pytest.importorskip("diffusers")
    from res_torch.diffusers import RESMultistepScheduler, RESSinglestepScheduler
    from res_torch.errors import SchedulerError

    timesteps = [999, 600, 300, 50]
    with pytest.raises(ValueError, match="Cannot"):  # the behaviour matched
        diffusers.DPMSolverMultistepScheduler(**{option: True}).set_timesteps(timesteps=timesteps)
    for scheduler_class in (RESMultistepScheduler, RESSinglestepScheduler):
        scheduler = scheduler_class(**{option: True})
        scheduler.set_timesteps(6)
        before = scheduler.timesteps.clone()
        # before: the option was ignored and the timesteps run as given
        with pytest.raises(SchedulerError, match=rf"^set_timesteps\(timesteps=\.\.\.\) cannot "
                           rf"be used with {option}=True$"):  # fmt: skip
            scheduler.set_timesteps(timesteps=timesteps)
        assert torch.equal(scheduler.timesteps, before)  # the previous schedule stays


def test_custom_sigmas_and_flow_timesteps_with_a_respacing_option_still_run():
    diffusers = pytest.importorskip("diffusers")
    from res_torch.diffusers import RESMultistepScheduler

    scheduler = RESMultistepScheduler(use_karras_sigmas=True)
    scheduler.set_timesteps(sigmas=[10.0, 3.0, 1.0, 0.1])  # used as given, as Euler does
    torch.testing.assert_close(
        scheduler.ve_sigmas, torch.tensor([10.0, 3.0, 1.0, 0.1, 0.0], dtype=torch.float64)
    )
    flow = diffusers.FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True).config
    flow_scheduler = RESMultistepScheduler.from_config(flow)
    flow_scheduler.set_timesteps(timesteps=[900.0, 600.0, 300.0])  # respaced, as FlowMatch does
    assert flow_scheduler.num_inference_steps >= 3


# validate_sigmas: an empty schedule -------------------------------------------------------


@pytest.mark.parametrize("min_entries", [0, -1])
def test_an_empty_schedule_is_refused_whatever_min_entries(min_entries):
    # before: IndexError (the last entry of no entries)
    with pytest.raises(SigmasError, match=r"at least 1 noise level\(s\), got shape \(0,\)"):
        validate_sigmas([], min_entries=min_entries)
    assert validate_sigmas([0.5], min_entries=min_entries).tolist() == [0.5]


def test_auto_on_a_single_level_checks_its_options_as_every_sampler():
    """``method="auto"`` with one noise level runs no step and returns ``x``, after the same
    checks as the samplers (flags, ``x``)."""
    x = torch.zeros(2, 3, dtype=torch.float64)
    model = lambda x, sigma: x  # noqa: E731
    assert torch.equal(rt.sample(model, x, [80.0], method="auto"), x)
    with pytest.raises(TypeError, match="check_finite"):
        rt.sample(model, x, [80.0], method="auto", check_finite=None)
    with pytest.raises(TypeError, match="floating-point"):
        rt.sample(model, x.long(), [80.0], method="auto")


def test_the_adaptive_sampler_checks_its_flags():
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="disable"):
        rt.sample_res_adaptive(lambda x, s: x, x, 0.01, 1.0, disable="no")
    with pytest.raises(TypeError, match="return_info"):
        rt.sample_res_adaptive(lambda x, s: x, x, 0.01, 1.0, return_info=None)


def test_a_non_finite_schedule_message_stays_short():
    schedule = [float("nan")] * 100_000 + [0.0]
    with pytest.raises(SigmasError, match="100000 of 100001") as info:
        validate_sigmas(schedule)
    assert len(str(info.value)) < 150
