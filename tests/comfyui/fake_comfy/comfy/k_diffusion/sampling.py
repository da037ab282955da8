"""Stand-in for ``comfy.k_diffusion.sampling``: the module ``ksampler(name)`` looks up
``sample_<name>`` in. One stock sampler, so registration can be seen not to replace it."""

import torch


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """ComfyUI's stock Euler (Karras et al. Alg. 2 without churn)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i],
                      "denoised": denoised})  # fmt: skip
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x
