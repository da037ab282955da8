"""Bad input to the public API: a library error (or ``TypeError``) with a short message, never a
silent wrong answer. Each test fails without the fix it names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import res_torch as rt
from res_torch.adapters import (
    DiscreteEpsDenoiser,
    DiscreteSchedule,
    DiscreteVDenoiser,
    EDMDenoiser,
    FlowDenoiser,
    denoised_from_output,
    edm_preconditioning,
)
from res_torch.errors import (
    AdapterError,
    ModelOutputError,
    NFEBudgetError,
    NoiseError,
    ScheduleError,
    SigmasError,
)
from res_torch.grid import validate_sigmas
from res_torch.nfe import sigmas_for_nfe
from res_torch.noise import sde_step_noise
from res_torch.recommend import budget_of
from res_torch.schedules import alphas_cumprod_from_betas

X = torch.ones(2, 3)
SIGMAS = rt.get_sigmas_karras(4, 0.1, 10.0)
ALPHAS_CUMPROD = alphas_cumprod_from_betas()


def zero(x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
    return torch.zeros_like(x)


def row(x: torch.Tensor, *args) -> torch.Tensor:
    """A network whose output has one row: it would broadcast over the batch."""
    return torch.zeros_like(x[:1])


ADAPTERS = [
    lambda net: EDMDenoiser(net),
    lambda net: DiscreteEpsDenoiser(net, ALPHAS_CUMPROD),
    lambda net: DiscreteVDenoiser(net, ALPHAS_CUMPROD),
    lambda net: FlowDenoiser(net),
]


@pytest.mark.parametrize("make", ADAPTERS)
def test_an_adapter_refuses_a_network_output_that_would_broadcast(make):
    with pytest.raises(ModelOutputError, match=r"network returned shape \(1, 3\)"):
        make(row)(X, 1.0)
    with pytest.raises(ModelOutputError, match="network returned NoneType"):
        make(lambda x, t: None)(X, 1.0)


def test_a_sampler_over_a_broadcasting_network_is_an_error_not_a_sample():
    with pytest.raises(ModelOutputError, match="network returned"):
        rt.sample(EDMDenoiser(row), X, SIGMAS, disable=True)


def test_denoised_from_output_refuses_an_output_of_another_shape_or_an_integer_one():
    with pytest.raises(ModelOutputError, match="shape"):
        denoised_from_output("epsilon", torch.zeros(1, 3), X, 1.0)
    with pytest.raises(ModelOutputError, match="int64"):
        denoised_from_output("sample", torch.zeros(2, 3, dtype=torch.long), X, 1.0)


@pytest.mark.parametrize("make", ADAPTERS)
def test_an_adapter_refuses_an_integer_sample(make):
    # an int64 x truncated sigma = 0.5 to 0 and returned an integer "denoised" tensor
    with pytest.raises(TypeError, match="floating-point"):
        make(lambda x, t: torch.zeros_like(x))(torch.ones(2, 3, dtype=torch.long), 0.5)


@pytest.mark.parametrize("sigma", [True, torch.tensor([True, True]), "1", None])
def test_an_adapter_refuses_a_sigma_that_is_no_noise_level(sigma):
    with pytest.raises(TypeError, match="sigma must"):
        EDMDenoiser(lambda x, c: x)(X, sigma)


@pytest.mark.parametrize("make", ADAPTERS)
def test_an_adapter_needs_a_callable_network(make):
    with pytest.raises(TypeError, match="net must be callable"):
        make(3)


def test_sigma_to_t_refuses_an_infinite_noise_level():
    with pytest.raises(AdapterError, match="finite"):
        DiscreteSchedule(ALPHAS_CUMPROD).sigma_to_t(torch.tensor([math.inf]))


def test_edm_preconditioning_takes_a_number():
    c_skip, c_out, c_in, c_noise = edm_preconditioning(0.5, 0.5)
    torch.testing.assert_close(c_skip, torch.tensor(0.5))


def test_s_tmax_is_a_number_as_s_tmin_is():
    def run(s_tmax):
        generator = torch.Generator().manual_seed(0)
        return rt.sample(zero, X, SIGMAS[:-1], s_churn=1.0, s_tmax=s_tmax, generator=generator,
                         disable=True)  # fmt: skip

    torch.testing.assert_close(run(torch.tensor(5.0)), run(5.0))
    torch.testing.assert_close(run(np.float64(math.inf)), run(math.inf))
    with pytest.raises(NoiseError, match="s_tmax"):
        run(math.nan)


def test_an_option_tensor_changed_in_place_is_not_served_a_stale_plan():
    def run(eta):
        generator = torch.Generator().manual_seed(0)
        return rt.sample(zero, X, SIGMAS[:-1], eta=eta, generator=generator, disable=True)

    eta = torch.tensor(0.0)
    run(eta)
    eta.fill_(1.0)  # the same tensor object, another value
    torch.testing.assert_close(run(eta), run(1.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_train_timesteps": 10**9}, "num_train_timesteps"),  # not 8 GB and half a minute
        ({"num_train_timesteps": 1.5}, "num_train_timesteps"),
        ({"num_train_timesteps": 0}, "num_train_timesteps"),
        ({"beta_start": -1.0}, "beta_start"),
        ({"beta_start": -1.0, "beta_schedule": "scaled_linear"}, "beta_start"),
        ({"beta_end": 1.5}, "beta_end"),
        ({"beta_start": math.nan}, "beta_start"),
        ({"trained_betas": [[0.1, 0.2]]}, "1-d"),
        ({"trained_betas": []}, "1-d"),
        ({"trained_betas": "x"}, "trained_betas"),
        ({"trained_betas": [0.5, 1.5]}, r"\[0, 1\]"),
        ({"trained_betas": [0.5, math.nan]}, r"\[0, 1\]"),
    ],
)
def test_alphas_cumprod_from_betas_checks_its_arguments(kwargs, message):
    with pytest.raises(ScheduleError, match=message):
        alphas_cumprod_from_betas(**kwargs)


def test_a_zero_terminal_snr_beta_is_still_accepted():
    assert alphas_cumprod_from_betas(trained_betas=[0.5, 1.0])[-1].item() == 0.0


@pytest.mark.parametrize("method", ["auto", "res_pc3_free"])
def test_the_largest_budget_of_a_free_start_method_names_the_step_limit(method):
    with pytest.raises(NFEBudgetError, match="MAX_STEPS"):
        sigmas_for_nfe(100_000, method)


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [([], "at least 1"), ([1.0, 2.0], "decreasing"), ([math.nan, 0.0], "finite"), ("ab", "1-d")],
)
def test_budget_of_checks_the_schedule(sigmas, message):
    with pytest.raises(SigmasError, match=message):
        budget_of(sigmas)


@pytest.mark.parametrize("sigmas", [[True, False], np.array([True, False])])
def test_boolean_sigmas_are_refused_in_any_container(sigmas):
    with pytest.raises(SigmasError, match="booleans"):
        validate_sigmas(sigmas)


def test_a_sparse_schedule_is_a_sigmas_error():
    with pytest.raises(SigmasError, match="dense"):
        rt.sample(zero, X, torch.tensor([2.0, 1.0, 0.0]).to_sparse(), disable=True)


def test_sde_step_noise_checks_eta():
    with pytest.raises(NoiseError, match="eta"):
        sde_step_noise(torch.tensor([1.0]), torch.tensor([1.0]), -1.0)
