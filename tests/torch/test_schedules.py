"""Noise schedules: formulas, shapes, monotonicity, errors."""

from __future__ import annotations

import math

import pytest
import torch

from res_torch import (
    ScheduleError,
    get_sigmas_exponential,
    get_sigmas_flow,
    get_sigmas_karras,
    get_sigmas_polyexponential,
    get_sigmas_uniform,
    get_sigmas_vp,
)
from res_torch.grid import validate_sigmas


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
    [
        get_sigmas_karras,
        get_sigmas_exponential,
        get_sigmas_uniform,
        get_sigmas_polyexponential,
        get_sigmas_flow,
    ],
)
@pytest.mark.parametrize("n", [1, 2, 10])
def test_schedules_are_valid_sampling_grids(schedule, n):
    sigmas = schedule(n, 0.002, 80.0)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float64 and sigmas[-1] == 0
    validate_sigmas(sigmas)
    assert sigmas[0].item() == pytest.approx(80.0)
    assert schedule(n, 0.002, 80.0, dtype=torch.float32).dtype == torch.float32


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
    ],
)
def test_bad_schedule_parameters_are_rejected(call, message):
    with pytest.raises(ScheduleError, match=message):
        call()
