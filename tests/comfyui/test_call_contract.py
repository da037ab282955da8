"""The KSampler call contract: what ComfyUI passes a sampler function and what it expects."""

from __future__ import annotations

import pytest
import torch

import res_torch


def karras(steps: int) -> torch.Tensor:
    return res_torch.get_sigmas_karras(steps, 0.03, 14.6)


def run(comfy, gaussian, noise, name, sigmas, flow=False, **kwargs):
    ms = (comfy.model_sampling.ModelSamplingFlow(3.0) if flow
          else comfy.model_sampling.ModelSamplingVE())  # fmt: skip
    guider = comfy.guider(ms, gaussian.flow if flow else gaussian.ve)
    sampler = kwargs.pop("sampler", None) or comfy.samplers.sampler_object(name)
    latent = kwargs.pop("latent_image", torch.zeros_like(noise))
    out = guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, **kwargs)
    return out, guider


def test_model_gets_comfys_extra_args_unchanged(comfy, gaussian, noise):
    """``model(x, sigma * s_in, **extra_args)`` with ``model_options``, ``seed`` and
    ``denoise_mask`` (KSamplerX0Inpaint's signature)."""
    out, guider = run(comfy, gaussian, noise, "res_torch_res_3s", karras(4), seed=123)
    assert len(guider.calls) == 3 * 3 + 1  # three stages per step, the last step 1 NFE
    for call in guider.calls:
        assert call["model_options"] is guider.model_options
        assert call["seed"] == 123
        assert call["sigma"].shape == (noise.shape[0],)
        assert call["x"].shape == noise.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["res_torch_res_2s", "res_torch_res_3m", "res_torch_euler"])
def test_callback_gets_step_denoised_x_and_total(comfy, gaussian, noise, name):
    """``callback(i, denoised, x, total_steps)`` once per step, as the preview expects."""
    seen = []
    sigmas = karras(5)
    run(comfy, gaussian, noise, name, sigmas, callback=lambda *a: seen.append(a))
    assert [a[0] for a in seen] == list(range(5))
    assert {a[3] for a in seen} == {5}
    for i, denoised, x, _ in seen:
        torch.testing.assert_close(denoised, gaussian.ve(x, sigmas[i] * torch.ones(2)))


@pytest.mark.parametrize("flow", [False, True])
def test_denoise_mask_keeps_the_unmasked_latent(comfy, gaussian, noise, flow):
    """Inpainting: where ``denoise_mask`` is 0 the result is the latent image, elsewhere not."""
    ms = comfy.model_sampling.ModelSamplingFlow(3.0)
    sigmas = ms.sigma(torch.linspace(1, 0, 9, dtype=torch.float64)) if flow else karras(8)
    image = torch.full_like(noise, -0.4)
    mask = torch.ones_like(noise)
    mask[..., :2] = 0
    out, _ = run(comfy, gaussian, noise, "res_torch_res_2m", sigmas, flow=flow,
                 latent_image=image, denoise_mask=mask)  # fmt: skip
    torch.testing.assert_close(out[..., :2], image[..., :2], rtol=0, atol=1e-12)
    assert (out[..., 2:] - image[..., 2:]).abs().min() > 1e-6


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("method", ["res_2s", "krogstad"])
def test_split_sigmas_runs_compose(comfy, gaussian, noise, flow, method):
    """SplitSigmas at step 3 (``sigmas[:4]``, ``sigmas[3:]``), the second run without new
    noise on the first run's latent, equals the whole run (single-step methods carry no
    history across the split)."""
    ms = comfy.model_sampling.ModelSamplingFlow(3.0)
    sigmas = ms.sigma(torch.linspace(0.97, 0, 9, dtype=torch.float64)) if flow else karras(8)
    name = f"res_torch_{method}"
    whole, _ = run(comfy, gaussian, noise, name, sigmas, flow=flow)
    first, _ = run(comfy, gaussian, noise, name, sigmas[:4], flow=flow)
    second, _ = run(comfy, gaussian, torch.zeros_like(noise), name, sigmas[3:], flow=flow,
                    latent_image=first)  # fmt: skip
    torch.testing.assert_close(second, whole, rtol=0, atol=1e-10)
    assert (first - whole).abs().max() > 1e-3  # the first half stops at a noisy sigma


@pytest.mark.parametrize("flow", [False, True])
def test_stochastic_runs_draw_from_extra_args_seed(comfy, gaussian, noise, flow):
    """ComfyUI passes the seed in ``extra_args["seed"]``: same seed, same sample, whatever the
    global RNG; another seed, another sample."""
    ms = comfy.model_sampling.ModelSamplingFlow(3.0)
    sigmas = ms.sigma(torch.linspace(1, 0, 9, dtype=torch.float64)) if flow else karras(8)
    sampler = comfy.samplers.KSAMPLER(comfy.pack.sampler.comfy_sampler("res_2m"),
                                      extra_options=dict(eta=1.0, noise_type="sde"))  # fmt: skip
    outs = []
    for global_seed, seed in [(0, 7), (1, 7), (0, 8)]:
        torch.manual_seed(global_seed)
        out, _ = run(comfy, gaussian, noise, None, sigmas, flow=flow, sampler=sampler, seed=seed)
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert (outs[0] - outs[2]).abs().max() > 1e-3


@pytest.mark.parametrize("flow", [False, True])
def test_single_sigma_returns_x_unchanged(comfy, gaussian, noise, flow):
    """``len(sigmas) == 1``: nothing to do; ComfyUI's and k-diffusion's samplers return x."""
    ms = (comfy.model_sampling.ModelSamplingFlow(3.0) if flow
          else comfy.model_sampling.ModelSamplingVE())  # fmt: skip
    guider = comfy.guider(ms, gaussian.flow if flow else gaussian.ve)
    model = comfy.samplers.KSamplerX0Inpaint(guider, None)
    sigmas = torch.tensor([1.0 if flow else 14.6], dtype=torch.float64)
    out = comfy.pack.sampler.comfy_sampler("res_2m")(
        model, noise, sigmas, extra_args={"denoise_mask": None}, disable=True
    )  # fmt: skip
    torch.testing.assert_close(out, noise, rtol=0, atol=0)
    assert guider.calls == []


def test_injected_noise_is_not_the_initial_noise_on_the_cpu(comfy, gaussian):
    """ComfyUI draws the initial noise on the CPU from the seed (``comfy/sample.py``
    ``prepare_noise``) and its ``default_noise_sampler`` seeds ``seed + 1`` there, so that the
    injected noise is not the initial noise again. ``res_torch_euler`` with ``eta = 1`` equals
    ComfyUI's ``euler_ancestral`` (transcribed) with that noise."""
    seed = 11
    noise = torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)  # fmt: skip
    sigmas = karras(6)
    sampler = comfy.samplers.KSAMPLER(comfy.pack.sampler.comfy_sampler("euler"),
                                      extra_options={"eta": 1.0})  # fmt: skip
    out, _ = run(comfy, gaussian, noise, None, sigmas, sampler=sampler, seed=seed)

    draws = torch.Generator().manual_seed(seed + 1)
    x = noise * (1 + sigmas[0] ** 2).sqrt()  # EPS noise_scaling at the model's sigma_max
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        denoised = gaussian.ve(x, sigma * torch.ones(2, dtype=torch.float64))
        sigma_up = min(sigma_next, (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        x = x + (x - denoised) / sigma * (sigma_down - sigma)
        if sigma_next > 0:
            x = x + torch.randn(x.shape, generator=draws, dtype=x.dtype) * sigma_up
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize(
    ("sigmas", "message"),
    [(torch.tensor(0.5), r"got shape \(\)"), (torch.tensor([[0.5, 0.0]]), r"got shape \(1, 2\)"),
     (torch.tensor([]), r"got shape \(0,\)")],
)  # fmt: skip
def test_sigmas_that_are_no_schedule_raise_sigmas_error(comfy, gaussian, noise, flow, sigmas,
                                                        message):  # fmt: skip
    """A 0-d, 2-d or empty ``sigmas`` reaching the function (ComfyUI's guider returns the latent
    for an empty one itself) is a ``SigmasError`` on every model kind, not ``len()``'s
    ``TypeError``."""
    ms = (comfy.model_sampling.ModelSamplingFlow(3.0) if flow
          else comfy.model_sampling.ModelSamplingVE())  # fmt: skip
    guider = comfy.guider(ms, gaussian.flow if flow else gaussian.ve)
    model = comfy.samplers.KSamplerX0Inpaint(guider, None)
    with pytest.raises(res_torch.SigmasError, match=message):
        comfy.pack.sampler.comfy_sampler("res_2s")(
            model, noise, sigmas, extra_args={"denoise_mask": None}, disable=True
        )


@pytest.mark.parametrize("flow", [False, True])
def test_sampling_records_no_autograd_graph(comfy, gaussian, noise, flow):
    """As ComfyUI's ``@torch.no_grad()`` samplers: a run with autograd on (outside ComfyUI's
    ``inference_mode``) keeps no graph of the model's calls."""
    weight = torch.ones((), dtype=torch.float64, requires_grad=True)
    ms = (
        comfy.model_sampling.ModelSamplingFlow(3.0)
        if flow
        else comfy.model_sampling.ModelSamplingVE()
    )
    apply = gaussian.flow if flow else gaussian.ve
    guider = comfy.guider(ms, lambda x, sigma: weight * apply(x, sigma))
    sigmas = ms.sigma(torch.linspace(1, 0, 5, dtype=torch.float64)) if flow else karras(4)
    with torch.enable_grad():
        out = guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object(
            "res_torch_res_2m"), sigmas, disable_pbar=True)  # fmt: skip
    assert not out.requires_grad
