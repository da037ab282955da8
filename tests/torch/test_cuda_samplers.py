"""The samplers on a CUDA device give the CPU results (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from res_torch import get_sigmas_karras, phi, sample

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("method", ["ddim", "heun", "res_2s", "res_3s", "res_2m", "res_3m",
                                    "dpmpp_2m", "hochbruck_ostermann4", "res_pc3_free",
                                    "res_ab3_free", "auto"])  # fmt: skip
def test_cuda_matches_cpu(gaussian, method):
    sigmas = get_sigmas_karras(10, 0.002, 80.0)
    x = 80 * torch.randn(
        4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    cpu = sample(gaussian.denoiser, x, sigmas, method=method, disable=True)
    gpu = sample(gaussian.denoiser, x.cuda(), sigmas.cuda(), method=method, disable=True)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-12, atol=1e-12)


def test_cuda_stochastic_runs_are_reproducible(gaussian):
    sigmas = get_sigmas_karras(10, 0.002, 80.0, device="cuda")
    x = 80 * torch.randn(4, 3, 8, 8, device="cuda")

    def run(seed):
        generator = torch.Generator(device="cuda").manual_seed(seed)
        return sample(gaussian.denoiser, x, sigmas, method="res_2m", eta=1.0, noise_type="sde",
                      generator=generator, disable=True)  # fmt: skip

    assert torch.equal(run(3), run(3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_is_finite(gaussian, dtype):
    x = 80 * torch.randn(4, 3, 8, 8, device="cuda", dtype=dtype)
    out = sample(gaussian.denoiser, x, get_sigmas_karras(10, 0.002, 80.0), method="res_2s",
                 disable=True)  # fmt: skip
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_cuda_phi_matches_cpu():
    """Within the sum of the two devices' float64 errors (each at most 7 ulp, res_torch.phi's
    docstring: CUDA's exp is another implementation than the CPU's)."""
    z = torch.linspace(-1000, 700, 10001, dtype=torch.float64)
    for k in range(6):
        assert torch.allclose(phi(k, z.cuda()).cpu(), phi(k, z), rtol=16 * 2.0**-52, atol=1e-300)


@pytest.mark.parametrize("method", ["res_2s", "res_2m", "res_3m", "heun", "res_pc4_free"])
def test_cuda_loop_never_synchronises(gaussian, method):
    # CUDA's sync debug mode turns every host-device synchronisation into an error; the first
    # call moves the coefficient tables to the device (a host-to-device copy), the second
    # finds them cached, so it must run without any synchronisation at all
    from res_torch.adapters import EDMDenoiser

    model = EDMDenoiser(lambda x_in, c_noise: 0.1 * x_in)
    sigmas = get_sigmas_karras(10, 0.002, 80.0)
    x = 80 * torch.randn(4, 3, 8, 8, device="cuda")
    options = dict(method=method, disable=True, check_finite=False)
    sample(model, x, sigmas, **options)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = sample(model, x, sigmas, **options)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda"


def test_cuda_model_output_on_another_device_is_refused(gaussian):
    from res_torch.errors import ModelOutputError

    x = torch.ones(2, 3, device="cuda")
    with pytest.raises(ModelOutputError, match="expected cuda"):
        sample(lambda x, s: x.cpu(), x, get_sigmas_karras(4, 0.002, 80.0), method="res_2m",
               disable=True)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_cuda_near_repeated_sigmas_match_the_cpu(gaussian, dtype):
    sigmas = get_sigmas_karras(10, 0.002, 80.0).tolist()
    sigmas = torch.tensor(sigmas[:4] + [sigmas[3] * (1 - 1e-6)] + sigmas[4:], dtype=torch.float64)
    x = 80 * torch.randn(4, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = sample(gaussian.denoiser, x, sigmas, method="res_3m", disable=True)
    gpu = sample(gaussian.denoiser, x.to("cuda", dtype), sigmas, method="res_3m", disable=True)
    tolerance = 32 * torch.finfo(dtype).eps * reference.abs().max().item()
    assert (gpu.double().cpu() - reference).abs().max().item() <= tolerance
