"""Model adapters turn eps / v / flow / raw-EDM networks into exact VE denoisers.

The synthetic networks below know the truth: for data concentrated at one point ``x0`` the ideal
denoiser is ``D(x, sigma) = x0``, and each ideal network (eps, v, velocity, EDM's F) is computed
analytically *from the network's own inputs* (its scaled state and timestep), so an adapter that
scales the state, maps sigma to the timestep, or recombines the output wrongly misses ``x0``.
"""

import math

import numpy as np
import pytest
import torch

from res_torch.adapters import (
    DiscreteEpsDenoiser,
    DiscreteSchedule,
    DiscreteVDenoiser,
    EDMDenoiser,
    FlowDenoiser,
    _result_dtype,
    edm_preconditioning,
)
from res_torch.schedules import alphas_cumprod_from_betas

BATCH = 3


def _alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def _abar_at(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``abar`` at fractional timesteps: log sigma interpolated linearly (NumPy, independent)."""
    log_sigmas = np.log(np.sqrt((1 - alphas_cumprod.numpy()) / alphas_cumprod.numpy()))
    log_sigma = np.interp(t.double().cpu().numpy(), np.arange(len(log_sigmas)), log_sigmas)
    return torch.as_tensor(1 / (1 + np.exp(2 * log_sigma)), dtype=t.dtype)


def _per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like)


X0 = torch.tensor([0.7, -1.2, 0.3, 2.0], dtype=torch.float64).reshape(1, 4)
SIGMAS = [0.05, 0.37, 1.0, 4.2, 30.0]


def _noisy(sigma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    eps = torch.randn(BATCH, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (X0 + sigma * eps).to(dtype)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_eps_adapter_is_exact_for_the_ideal_eps_network(sigma):
    alphas_cumprod = _alphas_cumprod()
    calls = []

    def ideal_eps(x_vp, t):
        calls.append(t)
        abar = _per_item(_abar_at(t, alphas_cumprod), x_vp)
        return (x_vp - abar.sqrt() * X0) / (1 - abar).sqrt()

    model = DiscreteEpsDenoiser(ideal_eps, alphas_cumprod)
    x = _noisy(sigma)
    denoised = model(x, sigma * x.new_ones(BATCH))
    torch.testing.assert_close(denoised, X0.expand_as(x), rtol=1e-9, atol=1e-9 * (1 + sigma))
    assert calls[0].shape == (BATCH,)
    assert 0 < float(calls[0][0]) < 999  # a fractional timestep inside the schedule


@pytest.mark.parametrize("sigma", SIGMAS)
def test_v_adapter_is_exact_for_the_ideal_v_network(sigma):
    alphas_cumprod = _alphas_cumprod()

    def ideal_v(x_vp, t):
        abar = _per_item(_abar_at(t, alphas_cumprod), x_vp)
        alpha, s = abar.sqrt(), (1 - abar).sqrt()
        eps = (x_vp - alpha * X0) / s
        return alpha * eps - s * X0

    model = DiscreteVDenoiser(ideal_v, alphas_cumprod)
    x = _noisy(sigma)
    torch.testing.assert_close(
        model(x, torch.tensor(sigma)), X0.expand_as(x), rtol=1e-9, atol=1e-9 * (1 + sigma)
    )


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("timestep_scale", [1.0, 1000.0])
def test_flow_adapter_is_exact_for_the_ideal_velocity(sigma, timestep_scale):
    def ideal_velocity(x_t, t):
        t = _per_item(t / timestep_scale, x_t)
        eps = (x_t - (1 - t) * X0) / t
        return eps - X0

    model = FlowDenoiser(ideal_velocity, timestep_scale=timestep_scale)
    x = _noisy(sigma)
    torch.testing.assert_close(
        model(x, sigma * x.new_ones(BATCH)), X0.expand_as(x), rtol=1e-9, atol=1e-9 * (1 + sigma)
    )


@pytest.mark.parametrize("sigma", SIGMAS)
def test_edm_adapter_is_exact_for_the_ideal_raw_network(sigma):
    sigma_data = 0.5

    def ideal_raw(x_in, c_noise):
        s = _per_item(torch.exp(4 * c_noise), x_in)  # c_noise = log(sigma)/4
        x = x_in * (s**2 + sigma_data**2).sqrt()  # undo c_in
        c_skip = sigma_data**2 / (s**2 + sigma_data**2)
        c_out = s * sigma_data / (s**2 + sigma_data**2).sqrt()
        return (X0 - c_skip * x) / c_out

    model = EDMDenoiser(ideal_raw, sigma_data)
    x = _noisy(sigma)
    torch.testing.assert_close(
        model(x, sigma * x.new_ones(BATCH)), X0.expand_as(x), rtol=1e-9, atol=1e-9 * (1 + sigma)
    )


@pytest.mark.parametrize("sigma", SIGMAS)
def test_adapters_are_exact_for_standard_gaussian_data(sigma):
    """For data ~ N(0, I) the ideal denoiser is ``x/(1 + sigma^2)``. The ideal networks are linear
    in their input (eps: ``s x_vp``, v: ``0``, flow velocity: ``(2t - 1) x_t/((1-t)^2 + t^2)``,
    with ``x_vp = alpha x_0 + s eps`` of unit variance), so a wrongly scaled input shows."""
    alphas_cumprod = _alphas_cumprod()

    def eps(x_vp, t):
        return (1 - _per_item(_abar_at(t, alphas_cumprod), x_vp)).sqrt() * x_vp

    def velocity(x_t, t):
        t = _per_item(t, x_t)
        return (2 * t - 1) * x_t / ((1 - t) ** 2 + t**2)

    x = _noisy(sigma)
    expected = x / (1 + sigma**2)
    for model in (
        DiscreteEpsDenoiser(eps, alphas_cumprod),
        DiscreteVDenoiser(lambda x_vp, t: torch.zeros_like(x_vp), alphas_cumprod),
        FlowDenoiser(velocity),
    ):
        torch.testing.assert_close(model(x, sigma), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_adapters_form_their_scalings_in_float32_for_half_precision_samples(dtype):
    """At sigma = 300 (inside a cosine schedule's range, sigma_max 2e4) ``sigma^2`` overflows
    float16: the scalings are formed in float32, so D of standard Gaussian data stays
    ``x/(1 + sigma^2)`` (it was 0) and comes back in the sample's dtype."""
    alphas_cumprod = alphas_cumprod_from_betas(1000, beta_schedule="squaredcos_cap_v2")
    sigma = 300.0

    def eps(x_vp, t):
        return (1 - _per_item(_abar_at(t.double(), alphas_cumprod), x_vp)).sqrt() * x_vp

    x = _noisy(sigma, dtype)
    expected = x.double() / (1 + sigma**2)  # about 0.003; x itself is about 300
    # D = x - sigma eps cancels two numbers of size 300 whose half-precision ulp is 0.25: the
    # eps form keeps only that absolute accuracy (before, eps(0) = 0 gave D = x)
    for model, atol in (
        (DiscreteEpsDenoiser(eps, alphas_cumprod), 4 * sigma * 2.0**-8),
        (DiscreteVDenoiser(lambda x_vp, t: torch.zeros_like(x_vp), alphas_cumprod), 1e-5),
        (EDMDenoiser(lambda x_in, c_noise: torch.zeros_like(x_in), sigma_data=1.0), 1e-5),
    ):
        out = model(x, torch.full((BATCH,), sigma, dtype=dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), expected, rtol=0.02, atol=atol)


def test_edm_with_zero_network_is_the_gaussian_posterior_mean():
    """For data ~ N(0, sd^2) the ideal denoiser is ``sd^2/(sigma^2 + sd^2) x``: F = 0 (EDM B.6)."""
    model = EDMDenoiser(lambda x_in, c_noise: torch.zeros_like(x_in), sigma_data=0.5)
    x = _noisy(2.0)
    torch.testing.assert_close(model(x, 2.0), 0.25 / (4.0 + 0.25) * x)


def test_edm_preconditioning_coefficients_at_sigma_equal_sigma_data():
    c_skip, c_out, c_in, c_noise = edm_preconditioning(torch.tensor(0.5), 0.5)
    torch.testing.assert_close(c_skip, torch.tensor(0.5))
    torch.testing.assert_close(c_out, torch.tensor(0.5 / math.sqrt(2)))
    torch.testing.assert_close(c_in, torch.tensor(1 / math.sqrt(0.5)))
    torch.testing.assert_close(c_noise, torch.tensor(math.log(0.5) / 4))


def test_discrete_schedule_sigmas_match_the_ddpm_definition():
    alphas_cumprod = _alphas_cumprod()
    schedule = DiscreteSchedule(alphas_cumprod)
    t = torch.tensor([0.0, 1.0, 500.0, 999.0], dtype=torch.float64)
    expected = ((1 - alphas_cumprod[[0, 1, 500, 999]]) / alphas_cumprod[[0, 1, 500, 999]]).sqrt()
    torch.testing.assert_close(schedule.t_to_sigma(t), expected)
    assert schedule.sigma_min == pytest.approx(float(expected[0]))
    assert schedule.sigma_max == pytest.approx(float(expected[-1]))


def test_discrete_schedule_get_sigmas_is_k_diffusions():
    """k-diffusion's ``DiscreteSchedule.get_sigmas``: every level (flipped) for ``n = None``,
    else ``t = linspace(T - 1, 0, n)`` with ``log sigma`` interpolated, then 0."""
    alphas_cumprod = _alphas_cumprod()
    schedule = DiscreteSchedule(alphas_cumprod)
    full = schedule.get_sigmas()
    torch.testing.assert_close(full[:-1], schedule.sigmas.flip(0), rtol=1e-14, atol=0)
    t = np.linspace(999, 0, 7)
    log_sigmas = np.log(np.sqrt((1 - alphas_cumprod.numpy()) / alphas_cumprod.numpy()))
    expected = torch.as_tensor(np.exp(np.interp(t, np.arange(1000), log_sigmas)))
    sigmas = schedule.get_sigmas(7)
    assert sigmas[-1] == 0 and sigmas.shape == (8,)
    torch.testing.assert_close(sigmas[:-1], expected, rtol=1e-13, atol=0)


def test_sigma_t_round_trips():
    schedule = DiscreteSchedule(_alphas_cumprod())
    t = torch.rand(200, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 999
    torch.testing.assert_close(schedule.sigma_to_t(schedule.t_to_sigma(t)), t)
    log_sigma = torch.linspace(math.log(schedule.sigma_min), math.log(schedule.sigma_max), 77)
    sigma = log_sigma.double().exp()
    torch.testing.assert_close(schedule.t_to_sigma(schedule.sigma_to_t(sigma)), sigma)
    # integer timesteps map to integers exactly; quantize rounds to the nearest in log sigma
    k = torch.arange(0, 1000, 37, dtype=torch.float64)
    torch.testing.assert_close(schedule.sigma_to_t(schedule.t_to_sigma(k)), k)
    q = schedule.sigma_to_t(schedule.t_to_sigma(k[:-1] + 0.3), quantize=True)
    torch.testing.assert_close(q, k[:-1])
    # outside the schedule's range: clamped to the end timesteps
    outside = torch.tensor([schedule.sigma_min / 2, schedule.sigma_max * 2], dtype=torch.float64)
    torch.testing.assert_close(schedule.sigma_to_t(outside), torch.tensor([0.0, 999.0]).double())


def test_integer_timesteps_convert_to_float64_but_float32_on_mps():
    schedule = DiscreteSchedule(_alphas_cumprod())
    k = torch.arange(0, 1000, 111)
    assert schedule.t_to_sigma(k).dtype == torch.float64
    torch.testing.assert_close(schedule.t_to_sigma(k), schedule.t_to_sigma(k.double()))
    assert _result_dtype(torch.empty(2, dtype=torch.int64, device="meta")) == torch.float64
    assert _result_dtype(torch.empty(2, dtype=torch.float16)) == torch.float16
    if torch.backends.mps.is_available():  # Apple's mps has no float64
        on_mps = k.to("mps")
        assert schedule.t_to_sigma(on_mps).dtype == torch.float32
        assert schedule.sigma_to_t(schedule.t_to_sigma(on_mps)).device.type == "mps"


def test_flow_sigma_t_round_trip():
    t = torch.linspace(0, 0.999, 50, dtype=torch.float64)
    torch.testing.assert_close(FlowDenoiser.sigma_to_t(FlowDenoiser.t_to_sigma(t)), t)


def test_quantized_eps_adapter_calls_the_network_at_integer_timesteps():
    seen = []
    model = DiscreteEpsDenoiser(
        lambda x, t: seen.append(t) or torch.zeros_like(x), _alphas_cumprod(), quantize=True
    )
    model(_noisy(1.3), 1.3)
    assert torch.equal(seen[0], seen[0].round())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adapters_keep_the_input_dtype_and_work_after_module_casts(dtype):
    model = DiscreteEpsDenoiser(lambda x, t: torch.zeros_like(x), _alphas_cumprod()).to(dtype)
    x = _noisy(1.0, dtype)
    out = model(x, torch.tensor([1.0] * BATCH, dtype=dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out, x)  # eps = 0 gives D = x
    assert model.sigma_to_t(torch.tensor(1.0, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize(
    "alphas_cumprod, message",
    [
        (torch.tensor([0.9, 0.95, 0.5]), "decreasing"),
        (torch.tensor([1.0, 0.5, 0.1]), r"\(0, 1\)"),
        (torch.tensor([0.9, 0.5, 0.0]), r"\(0, 1\)"),
        (torch.tensor([[0.9, 0.5]]), "1-d"),
        (torch.tensor([0.5]), "2 to 100000 entries"),
        (torch.tensor([0.9, 1e-320], dtype=torch.float64), "not finite"),
        (["a", "b"], "tensor of numbers"),
    ],
)
def test_bad_alphas_cumprod_is_rejected(alphas_cumprod, message):
    with pytest.raises(ValueError, match=message):
        DiscreteEpsDenoiser(lambda x, t: x, alphas_cumprod)


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("inf"), float("nan")])
@pytest.mark.parametrize(
    "make",
    [
        lambda: DiscreteEpsDenoiser(lambda x, t: x, _alphas_cumprod()),
        lambda: DiscreteVDenoiser(lambda x, t: x, _alphas_cumprod()),
        lambda: FlowDenoiser(lambda x, t: x),
        lambda: EDMDenoiser(lambda x, c: x),
    ],
)
def test_non_positive_sigma_is_rejected(make, sigma):
    with pytest.raises(ValueError, match="sigma must be positive"):
        make()(_noisy(1.0), torch.full((BATCH,), sigma, dtype=torch.float64))


def test_wrong_shapes_are_rejected():
    model = FlowDenoiser(lambda x, t: x)
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        model(_noisy(1.0), torch.ones(BATCH + 1))
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        model(_noisy(1.0), torch.ones(BATCH, 1))
    with pytest.raises(ValueError, match="batch dimension"):
        model(torch.tensor(1.0), 1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([1.0, 2.0], 1.0)


def test_bad_conversion_arguments_are_rejected():
    schedule = DiscreteSchedule(_alphas_cumprod())
    with pytest.raises(ValueError, match="positive"):
        schedule.sigma_to_t(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        schedule.t_to_sigma(torch.tensor([1000.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FlowDenoiser.t_to_sigma(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        FlowDenoiser.sigma_to_t(torch.tensor([-0.1]))
    with pytest.raises(ValueError, match="sigma_data"):
        EDMDenoiser(lambda x, c: x, sigma_data=0.0)
    with pytest.raises(ValueError, match="timestep_scale"):
        FlowDenoiser(lambda x, t: x, timestep_scale=-1.0)


@pytest.mark.parametrize("quantize", [False, True])
def test_adapters_in_a_sampler_loop_need_no_host_device_synchronisation(quantize):
    # on the meta device every read of a tensor's values fails, as a sync would cost on a GPU
    from res_torch import get_sigmas_karras, sample

    def net(x, t):
        return 0.1 * x

    adapters = [
        EDMDenoiser(net),
        DiscreteEpsDenoiser(net, _alphas_cumprod(), quantize=quantize).to("meta"),
        DiscreteVDenoiser(net, _alphas_cumprod(), quantize=quantize).to("meta"),
        FlowDenoiser(net, timestep_scale=1000.0),
    ]
    x = torch.empty(2, 4, device="meta")
    for model in adapters:
        out = sample(model, x, get_sigmas_karras(5, 0.03, 14.0), method="res_2m", disable=True,
                     check_finite=False)  # fmt: skip
        assert out.device.type == "meta" and out.shape == x.shape
