"""Noise schedules: formulas, shapes, monotonicity, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from res_torch import (
    ScheduleError,
    get_sigmas_discrete,
    get_sigmas_exponential,
    get_sigmas_flow,
    get_sigmas_karras,
    get_sigmas_polyexponential,
    get_sigmas_uniform,
    get_sigmas_vp,
)
from res_torch.grid import validate_sigmas
from res_torch.schedules import (
    DISCRETE_SPACINGS,
    MAX_STEPS,
    alphas_cumprod_from_betas,
    discrete_timesteps,
)

SD_ALPHAS_CUMPROD = alphas_cumprod_from_betas(1000, 0.00085, 0.012, "scaled_linear")
SD_SIGMAS = ((1 - SD_ALPHAS_CUMPROD) / SD_ALPHAS_CUMPROD).sqrt()
RANGED = [
    get_sigmas_karras,
    get_sigmas_exponential,
    get_sigmas_uniform,
    get_sigmas_polyexponential,
    get_sigmas_flow,
]
"""The schedules that take ``sigma_min`` and ``sigma_max``."""


def test_karras_follows_the_edm_formula():
    n, rho = 7, 7.0
    sigmas = get_sigmas_karras(n, 0.002, 80.0, rho)
    expected = [
        (80.0 ** (1 / rho) + i / (n - 1) * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
        for i in range(n)
    ]
    assert torch.allclose(sigmas, torch.tensor([*expected, 0.0], dtype=torch.float64), rtol=1e-14)


def test_exponential_is_uniform_in_log_sigma():
    sigmas = get_sigmas_exponential(9, 0.01, 50.0)
    steps = torch.diff(torch.log(sigmas[:-1]))
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-12)
    assert sigmas[0].item() == pytest.approx(50.0) and sigmas[-2].item() == pytest.approx(0.01)


def test_uniform_is_uniform_in_sigma():
    sigmas = get_sigmas_uniform(5, 0.5, 4.5)
    assert sigmas.tolist() == [4.5, 3.5, 2.5, 1.5, 0.5, 0.0]


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_is_uniform_in_unshifted_flow_time(shift):
    sigmas = get_sigmas_flow(7, 0.002, 80.0, shift=shift)[:-1]
    t = sigmas / (1 + sigmas)  # flow time, x_t = (1 - t) x_0 + t eps, rescaled to VE
    tau = t / (shift - (shift - 1) * t)  # inverse of the shift t = s tau / (1 + (s - 1) tau)
    steps = torch.diff(tau)
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-12)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-1].item() == pytest.approx(0.002)


def test_polyexponential_with_rho_one_is_exponential():
    assert torch.allclose(
        get_sigmas_polyexponential(6, 0.002, 80.0, rho=1.0), get_sigmas_exponential(6, 0.002, 80.0)
    )


def test_vp_follows_the_vp_sde():
    sigmas = get_sigmas_vp(4, beta_d=19.9, beta_min=0.1, eps_s=1e-3)
    t = torch.linspace(1, 1e-3, 4, dtype=torch.float64)
    expected = torch.sqrt(torch.exp(19.9 * t**2 / 2 + 0.1 * t) - 1)
    assert torch.allclose(sigmas[:-1], expected, rtol=1e-13)


@pytest.mark.parametrize(
    "schedule",
    RANGED,
)
@pytest.mark.parametrize("n", [1, 2, 10])
def test_schedules_are_valid_sampling_grids(schedule, n):
    sigmas = schedule(n, 0.002, 80.0)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float64 and sigmas[-1] == 0
    validate_sigmas(sigmas)
    assert sigmas[0].item() == pytest.approx(80.0)
    assert schedule(n, 0.002, 80.0, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize(
    "schedule",
    [*RANGED, get_sigmas_vp, get_sigmas_discrete],
)
def test_numpy_integer_n_is_the_same_grid(schedule):
    # a step count read from a config or an array: NumPy integers are integers (as elsewhere)
    assert torch.equal(schedule(np.int64(6)), schedule(6))
    for bad in (np.float64(6), 0, MAX_STEPS + 1):
        with pytest.raises(ScheduleError, match=r"integer in \[1, "):
            schedule(bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_sigmas_karras(0), "n"),
        (lambda: get_sigmas_karras(2.5), "n"),
        (lambda: get_sigmas_karras(5, 1.0, 0.5), "sigma_min < sigma_max"),
        (lambda: get_sigmas_exponential(5, 0.0, 1.0), "sigma_min"),
        (lambda: get_sigmas_uniform(5, 0.1, math.inf), "sigma_max"),
        (lambda: get_sigmas_karras(5, rho=0.0), "rho"),
        (lambda: get_sigmas_polyexponential(5, rho=-1.0), "rho"),
        (lambda: get_sigmas_vp(5, eps_s=1.5), "eps_s"),
        (lambda: get_sigmas_flow(5, shift=0.0), "shift"),
        (lambda: get_sigmas_vp(5, beta_d=-1.0), "beta_d"),
        (lambda: get_sigmas_discrete(5, spacing="karras"), "spacing"),
        (lambda: get_sigmas_discrete(1500, spacing="trailing"), "at most 1000 distinct"),
        (lambda: get_sigmas_discrete(1000, spacing="leading"), "1 distinct timesteps, not n=1000"),
        (lambda: get_sigmas_discrete(5, alphas_cumprod=torch.tensor([0.9, 1.0])), "inside"),
        (lambda: get_sigmas_discrete(5, alphas_cumprod=torch.tensor([0.5, 0.9])), "decreasing"),
        (lambda: discrete_timesteps(5, 1), "num_train_timesteps"),
        (lambda: discrete_timesteps(5, 1000, "leading", steps_offset=-1), "steps_offset"),
        (lambda: discrete_timesteps(5, 1000, "linspace", unclipped=0), "unclipped"),
        (lambda: get_sigmas_discrete(5, "trailing", steps_offset=1), "'leading' timesteps only"),
        (lambda: get_sigmas_discrete(1, "leading", steps_offset=999), "past T - 1"),
        (lambda: get_sigmas_discrete(2000, "simple"), "at most 1000 distinct"),
        (lambda: get_sigmas_discrete(5, alphas_cumprod="abc"), "alphas_cumprod"),
        (lambda: get_sigmas_karras(5, dtype=torch.int64), "floating-point"),
        (lambda: get_sigmas_vp(5, dtype=torch.int32), "floating-point"),
        (lambda: get_sigmas_discrete(5, dtype=torch.bool), "floating-point"),
        (lambda: discrete_timesteps(5, 1000, "normal", unclipped=500), "diffusers' spacings"),
        (lambda: discrete_timesteps(10, 1000, "trailing", unclipped=500), "5 distinct"),
    ],
)
def test_bad_schedule_parameters_are_rejected(call, message):
    with pytest.raises(ScheduleError, match=message):
        call()


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("n", [1, 7, 20, 50, 61, 500])
def test_discrete_spacings_are_those_of_diffusers(spacing, n):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0,
        final_sigmas_type="zero",
    )  # fmt: skip
    scheduler.set_timesteps(n)
    offset = 1 if spacing == "leading" else 0
    ours = discrete_timesteps(n, 1000, spacing, steps_offset=offset)
    raw = discrete_timesteps(n, 1000, spacing, steps_offset=offset, raw=True)
    assert raw.tolist() == scheduler.timesteps.clip(0).tolist()  # its sigmas clamp t too
    if len(raw) > n:  # DPM-Solver's float arange overshoots: n + 1 "trailing" timesteps
        assert spacing == "trailing" and n == 61 and scheduler.timesteps[-1] == -1
        scheduler.timesteps, scheduler.sigmas = raw[:n], scheduler.sigmas[[*range(n), -1]]
    assert ours.tolist() == scheduler.timesteps.tolist()
    sigmas = get_sigmas_discrete(n, spacing, steps_offset=offset)
    assert torch.allclose(sigmas, scheduler.sigmas.to(torch.float64), rtol=1e-5, atol=0)


@pytest.mark.parametrize("n", [1, 3, 8, 30, 999])
def test_comfyui_spacings_follow_its_scheduler_loops(n):
    """ComfyUI's ``simple_scheduler`` and ``sgm_uniform`` (``normal_scheduler(sgm=True)``),
    transcribed from ``comfy/samplers.py`` over a table of 1000 levels."""
    step = len(SD_SIGMAS) / n
    simple = [float(SD_SIGMAS[-(1 + int(x * step))]) for x in range(n)] + [0.0]
    assert get_sigmas_discrete(n, "simple").tolist() == pytest.approx(simple, rel=1e-13)
    sgm = [float(t) for t in torch.linspace(999, 0, n + 1, dtype=torch.float64)[:-1]]
    assert discrete_timesteps(n, 1000, "sgm_uniform").tolist() == pytest.approx(sgm, abs=1e-9)


def test_normal_spacing_interpolates_log_sigma_between_training_levels():
    """k-diffusion's ``DiscreteSchedule.get_sigmas``: ``t = linspace(T - 1, 0, n)``, ``log
    sigma`` linear between the integer timesteps."""
    sigmas = get_sigmas_discrete(4)
    t = [999.0, 666.0, 333.0, 0.0]
    assert discrete_timesteps(4).tolist() == t
    expected = [float(SD_SIGMAS[int(x)]) for x in t]
    assert sigmas[:-1].tolist() == pytest.approx(expected, rel=1e-13)
    halfway = get_sigmas_discrete(3)[1]  # t = 499.5
    assert halfway.item() == pytest.approx(math.sqrt(SD_SIGMAS[499] * SD_SIGMAS[500]), rel=1e-13)


@pytest.mark.parametrize("spacing", DISCRETE_SPACINGS)
@pytest.mark.parametrize("n", [1, 2, 25])
def test_discrete_schedules_are_valid_sampling_grids(spacing, n):
    sigmas = get_sigmas_discrete(n, spacing, dtype=torch.float32)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float32 and sigmas[-1] == 0
    validate_sigmas(sigmas)
    assert sigmas[0] <= SD_SIGMAS[-1] * (1 + 1e-6) and sigmas[-2] >= SD_SIGMAS[0] * (1 - 1e-6)
