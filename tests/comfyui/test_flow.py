"""Flow (CONST) models: the pack steps them in the VE form, as ComfyUI's own exponential
samplers do (half-log-SNR), with ComfyUI's offset of a first ``t = 1``."""

from __future__ import annotations

import math

import pytest
import torch

import res_torch

FIRST = 1e-4  # ComfyUI's offset_first_sigma_for_snr percent


def flow_schedule(ms, steps: int, start: float = 1.0, end: float = 0.0) -> torch.Tensor:
    """ComfyUI's "simple"-like flow schedule: shifted times from ``start`` to ``end``."""
    return ms.sigma(torch.linspace(start, end, steps + 1, dtype=torch.float64))


def ve_equivalent(method, gaussian, x_t, times, first=None, **options):
    """The res_torch run on the VE denoiser: ``y = x / (1 - t)``, ``sigma = t / (1 - t)``."""
    times = times.clone()
    if first is not None:
        times[0] = first
    sigmas = times / (1 - times)
    y = res_torch.sample(gaussian.ve, x_t / (1 - times[0]), sigmas, method=method, disable=True,
                         **options)  # fmt: skip
    return y * (1 - times[-1])


@pytest.mark.parametrize("method", ["res_2s", "res_3s", "res_2m", "res_3m", "dpmpp_3m",
                                    "krogstad", "ddim", "auto"])  # fmt: skip
def test_flow_run_equals_the_ve_equivalent_run(comfy, gaussian, noise, method):
    """From pure noise (``t_0 = 1``, moved to ``percent_to_sigma(1e-4)``) to ``t = 0``."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 10)
    assert times[0] == 1.0
    sampler = comfy.samplers.sampler_object(f"res_torch_{method}")
    out = comfy.guider(ms, gaussian.flow).sample(
        noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
    )
    expected = ve_equivalent(method, gaussian, noise, times, first=ms.percent_to_sigma(FIRST))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("steps", [2, 4, 8])
def test_euler_and_heun_step_flow_models_in_flow_time(comfy, gaussian, noise, method, steps):
    """As ComfyUI's euler and heun: the flow times are the sigmas of the ODE ``dx/dt = (x -
    D)/t``, from ``t_0 = 1`` itself. Heun in the VE form would start at sigma 3e4 (the offset)
    and miss the endpoint by up to 70x the Euler error at 2 steps."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, steps)
    sampler = comfy.samplers.sampler_object(f"res_torch_{method}")
    out = comfy.guider(ms, gaussian.flow).sample(
        noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
    )
    in_t = res_torch.sample(gaussian.flow, noise, times, method=method, disable=True)
    torch.testing.assert_close(out, in_t, rtol=0, atol=1e-12)
    if method == "euler":  # the same step in either form
        expected = ve_equivalent("euler", gaussian, noise, times, first=ms.percent_to_sigma(FIRST))
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-3 * steps**-1)


def test_stochastic_heun_on_a_flow_model_is_refused(comfy, gaussian, noise):
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    sampler = comfy.samplers.KSAMPLER(
        comfy.pack.sampler.comfy_sampler("heun"), extra_options={"eta": 1.0}
    )
    with pytest.raises(res_torch.NoiseError, match="heun on a flow model"):
        comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, flow_schedule(ms, 4), disable_pbar=True
        )


def test_stochastic_flow_run_equals_the_ve_equivalent_run(comfy, gaussian, noise):
    """SDE noise and churn in the same draws; ``s_tmin``/``s_tmax`` are flow times."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 12)
    options = dict(eta=0.7, noise_type="sde", s_noise=0.9, s_churn=2.0)

    def draws():
        gen = torch.Generator().manual_seed(5)
        return lambda s, s_next: torch.randn(noise.shape, generator=gen, dtype=noise.dtype)

    sampler = comfy.samplers.KSAMPLER(
        comfy.pack.sampler.comfy_sampler("res_2m"),
        extra_options=dict(options, s_tmin=0.2, s_tmax=0.8, noise_sampler=draws()),
    )
    out = comfy.guider(ms, gaussian.flow).sample(
        noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
    )
    expected = ve_equivalent(
        "res_2m", gaussian, noise, times, first=ms.percent_to_sigma(FIRST),
        s_tmin=0.2 / 0.8, s_tmax=0.8 / 0.2, noise_sampler=draws(), **options,
    )  # fmt: skip
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    churned = ((times > 0.2) & (times < 0.8)).sum()
    assert 0 < churned < len(times) - 1  # the bounds select some steps, not all


def test_an_infinite_flow_time_s_tmax_is_no_upper_bound(comfy, gaussian, noise):
    """k-diffusion's default ``s_tmax = inf`` churns wherever ``s_tmin`` allows, as no bound."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 8)

    def run(**bounds):
        draws = torch.Generator().manual_seed(3)
        sampler = comfy.samplers.KSAMPLER(
            comfy.pack.sampler.comfy_sampler("res_2s"),
            extra_options=dict(s_churn=2.0, s_tmin=0.3, generator=draws, **bounds),
        )
        return comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
        )

    torch.testing.assert_close(run(s_tmax=math.inf), run(), rtol=0, atol=0)
    assert not torch.equal(run(s_tmax=0.5), run())  # the bound is applied when finite


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_flow_run_is_stepped_in_float32(comfy, gaussian, noise, dtype):
    """From t = 1 the VE state is 3e4 x (past float16's range): the run is done in float32 and
    returned in the input's dtype, close to the float64 run."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 10).to(torch.float32)
    sampler = comfy.samplers.sampler_object("res_torch_res_2m")
    guider = comfy.guider(ms, gaussian.flow)
    half = guider.sample(noise.to(dtype), torch.zeros_like(noise, dtype=dtype), sampler, times,
                         disable_pbar=True)  # fmt: skip
    full = guider.sample(noise, torch.zeros_like(noise), sampler, times.double(),
                         disable_pbar=True)  # fmt: skip
    assert half.dtype == dtype
    torch.testing.assert_close(half.double(), full, rtol=0, atol=2e-2)


def test_img2img_flow_run_starts_at_its_own_time(comfy, gaussian, noise):
    """denoise < 1: ``x = t_0 noise + (1 - t_0) latent`` (CONST noise scaling), no offset."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 8, start=0.6)
    image = torch.full_like(noise, 0.5)
    sampler = comfy.samplers.sampler_object("res_torch_res_2s")
    out = comfy.guider(ms, gaussian.flow).sample(noise, image, sampler, times, disable_pbar=True)
    x_t = times[0] * noise + (1 - times[0]) * image
    torch.testing.assert_close(out, ve_equivalent("res_2s", gaussian, x_t, times), rtol=0,
                               atol=1e-12)  # fmt: skip


def test_flow_model_is_called_in_flow_time_and_state(comfy, gaussian, noise):
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    guider = comfy.guider(ms, gaussian.flow)
    sampler = comfy.samplers.sampler_object("res_torch_res_2m")
    guider.sample(noise, torch.zeros_like(noise), sampler, flow_schedule(ms, 6), disable_pbar=True)
    first = guider.calls[0]
    assert first["sigma"].shape == (noise.shape[0],)
    torch.testing.assert_close(first["sigma"], torch.full((2,), ms.percent_to_sigma(FIRST),
                                                          dtype=torch.float64))  # fmt: skip
    torch.testing.assert_close(first["x"], noise, rtol=1e-12, atol=1e-12)  # pure noise at t_0
    assert all(0 < float(c["sigma"].max()) < 1 for c in guider.calls)


def test_callback_sees_flow_time_and_state(comfy, gaussian, noise):
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 5, start=0.9)
    seen = []
    model = comfy.samplers.KSamplerX0Inpaint(comfy.guider(ms, gaussian.flow), times)
    comfy.pack.sampler.comfy_sampler("res_2s")(
        model, 0.9 * noise, times, extra_args={"denoise_mask": None}, callback=seen.append,
        disable=True,
    )  # fmt: skip
    assert [info["i"] for info in seen] == list(range(5))
    torch.testing.assert_close(seen[0]["x"], 0.9 * noise)
    for info in seen:
        torch.testing.assert_close(float(info["sigma"]), float(times[info["i"]]))
        torch.testing.assert_close(info["denoised"], gaussian.flow(info["x"], info["sigma"]
                                                                   * torch.ones(2)))  # fmt: skip


@pytest.mark.parametrize(("method", "order"), [("res_2s", 2), ("res_2m", 2), ("res_3s", 3),
                                               ("krogstad", 4)])  # fmt: skip
def test_flow_runs_converge_at_the_methods_order(comfy, gaussian, noise, method, order):
    """From t = 0.95 to t = 0.05 (no final denoise step) against the exact ODE solution.
    Measured orders (32 -> 64 steps): res_2s 2.04, res_2m 2.14, res_3s 2.90, krogstad 4.36."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    errors = []
    for steps in (32, 64):
        times = torch.linspace(0.95, 0.05, steps + 1, dtype=torch.float64)
        sampler = comfy.samplers.sampler_object(f"res_torch_{method}")
        x0 = 0.95 * noise
        out = comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
        )  # KSAMPLER returns x / (1 - t_N) (CONST inverse noise scaling): y at sigma_N
        exact = gaussian.ode_ve(x0 / 0.05, 0.95 / 0.05, 0.05 / 0.95)
        errors.append(float((out - exact).abs().max()))
    assert math.log2(errors[0] / errors[1]) > order - 0.3


def test_stochastic_flow_sampling_gives_the_data_distribution(comfy, gaussian):
    """RES-2M SDE (eta = 1), 64 steps from pure noise, 20000 samples of N(0.3, 0.7^2): mean
    0.297, std 0.730 (discretisation bias of 64 steps) through the pack; the same run with
    ``t`` passed as sigma (no conversion) gives mean 0.616, std 1.122."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    times = flow_schedule(ms, 64)
    start = torch.randn((20000, 1), generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)  # fmt: skip
    options = dict(eta=1.0, noise_type="sde")
    sampler = comfy.samplers.KSAMPLER(
        comfy.pack.sampler.comfy_sampler("res_2m"),
        extra_options=dict(options, generator=torch.Generator().manual_seed(2)),
    )
    out = comfy.guider(ms, gaussian.flow).sample(
        start, torch.zeros_like(start), sampler, times, disable_pbar=True
    )
    assert abs(float(out.mean()) - gaussian.mu) < 0.02  # 4 standard errors of the mean
    assert abs(float(out.std()) - gaussian.s) < 0.05
    unconverted = times.clone()
    unconverted[0] = ms.percent_to_sigma(FIRST)
    naive = res_torch.sample(gaussian.flow, start, unconverted, method="res_2m", disable=True,
                             generator=torch.Generator().manual_seed(2), **options)  # fmt: skip
    assert abs(float(naive.mean()) - gaussian.mu) > 0.2  # the test tells the two apart


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (
            {"s_churn": 1.0, "s_tmin": -1.0},
            res_torch.NoiseError,
            "s_tmin must be finite and >= 0, got -1",
        ),
        ({"s_churn": 1.0, "s_tmin": 2.0}, res_torch.NoiseError, "flow time and must be < 1, got 2"),
        ({"s_churn": 1.0, "s_tmin": 0.8, "s_tmax": 0.3}, res_torch.NoiseError, "flow times"),
    ],
)
def test_flow_run_errors_speak_in_flow_times(comfy, gaussian, noise, extra, error, message):
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    sampler = comfy.samplers.KSAMPLER(
        comfy.pack.sampler.comfy_sampler("res_2s"), extra_options=extra
    )
    with pytest.raises(error, match=message):
        comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, flow_schedule(ms, 6), disable_pbar=True
        )


def test_flow_times_that_repeat_are_reported_as_flow_times(comfy, gaussian, noise):
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    sampler = comfy.samplers.sampler_object("res_torch_res_2s")
    times = torch.tensor([1.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    with pytest.raises(res_torch.SigmasError, match=r"sigmas\[0\] = sigmas\[1\] = 1.0"):
        comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
        )


def test_a_second_flow_time_above_the_offset_first_one_is_named_in_flow_times(
    comfy, gaussian, noise
):
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    sampler = comfy.samplers.sampler_object("res_torch_res_2s")
    times = torch.tensor([1.0, 0.99999, 0.5, 0.0], dtype=torch.float64)
    with pytest.raises(res_torch.SigmasError, match="moved to 0.9999.* not above the second"):
        comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, times, disable_pbar=True
        )


@pytest.mark.parametrize("method", ["res_2s", "heun"])
def test_a_first_flow_time_above_one_is_refused(comfy, gaussian, noise, method):
    """A VE model's sigmas on a flow model (t_0 = 14.6, x = 14.6 eps by CONST noise scaling)
    are no flow schedule: taking x as the state at t ~ 1 gave std 5 on data of std 0.7 (Heun
    in t: 4.5). A t_0 a few float32 ulps above 1 (a shifted schedule's rounding) is t = 1."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    sampler = comfy.samplers.sampler_object(f"res_torch_{method}")
    guider = comfy.guider(ms, gaussian.flow)
    latent = torch.zeros_like(noise)
    with pytest.raises(res_torch.SigmasError, match=r"flow times must be <= 1.*t_0 = 14.6"):
        guider.sample(noise, latent, sampler, torch.tensor([14.6, 0.5, 0.0]), disable_pbar=True)
    times = flow_schedule(ms, 6)
    rounded = times.clone()
    rounded[0] = 1 + 2 * torch.finfo(torch.float32).eps
    torch.testing.assert_close(
        guider.sample(noise, latent, sampler, rounded, disable_pbar=True),
        guider.sample(noise, latent, sampler, times, disable_pbar=True), rtol=0, atol=1e-6,
    )  # fmt: skip


def test_an_integer_latent_on_a_flow_model_is_a_type_error(comfy, gaussian):
    """As on any other model: not an int tensor of zeros (the VE conversion divides, which casts
    to float, and the result was cast back)."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    model = comfy.samplers.KSamplerX0Inpaint(comfy.guider(ms, gaussian.flow), None)
    x = torch.ones((2, 3), dtype=torch.int64)
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype torch.int64"):
        comfy.pack.sampler.comfy_sampler("res_2s")(
            model, x, flow_schedule(ms, 4), extra_args={"denoise_mask": None}, disable=True
        )


@pytest.mark.parametrize(
    ("option", "message"),
    [({"eta": -1.0}, "eta must be finite and >= 0"), ({"eta": math.nan}, "eta must be a finite"),
     ({"s_churn": -1.0}, "s_churn must be finite and >= 0")],
)  # fmt: skip
def test_heun_on_a_flow_model_names_an_invalid_noise_option(
    comfy, gaussian, noise, option, message
):
    """An invalid ``eta``/``s_churn`` is named as such, not refused as noise heun cannot add."""
    ms = comfy.model_sampling.ModelSamplingFlow(shift=3.0)
    sampler = comfy.samplers.KSAMPLER(comfy.pack.sampler.comfy_sampler("heun"),
                                      extra_options=option)  # fmt: skip
    with pytest.raises(res_torch.NoiseError, match=message):
        comfy.guider(ms, gaussian.flow).sample(
            noise, torch.zeros_like(noise), sampler, flow_schedule(ms, 4), disable_pbar=True
        )
