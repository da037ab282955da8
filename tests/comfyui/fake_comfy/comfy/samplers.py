"""Stand-in for ``comfy.samplers``: the sampler lists, ``ksampler``/``sampler_object`` lookup,
``KSAMPLER``, ``KSamplerX0Inpaint`` and a guider that builds ``extra_args`` as ComfyUI does."""

import math

from .k_diffusion import sampling as k_diffusion_sampling

KSAMPLER_NAMES = ["euler", "heun", "dpmpp_2m", "res_multistep"]
SAMPLER_NAMES = KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"]


class Sampler:
    def max_denoise(self, model_wrap, sigmas):
        max_sigma = float(model_wrap.inner_model.model_sampling.sigma_max)
        sigma = float(sigmas[0])
        return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


class KSamplerX0Inpaint:
    """The model a sampler function gets: the guider, with the latent kept where
    ``denoise_mask`` is 0 (``extra_args["denoise_mask"]``)."""

    def __init__(self, model, sigmas):
        self.inner_model = model
        self.sigmas = sigmas

    def __call__(self, x, sigma, denoise_mask, model_options={}, seed=None):  # noqa: B006
        if denoise_mask is not None:
            latent_mask = 1.0 - denoise_mask
            ms = self.inner_model.inner_model.model_sampling
            noised = ms.noise_scaling(sigma.reshape([sigma.shape[0]] + [1] * (x.ndim - 1)),
                                      self.noise, self.latent_image)  # fmt: skip
            x = x * denoise_mask + noised * latent_mask
        out = self.inner_model(x, sigma, model_options=model_options, seed=seed)
        if denoise_mask is not None:
            out = out * denoise_mask + self.latent_image * latent_mask
        return out


class KSAMPLER(Sampler):
    def __init__(self, sampler_function, extra_options={}, inpaint_options={}):  # noqa: B006
        self.sampler_function = sampler_function
        self.extra_options = extra_options
        self.inpaint_options = inpaint_options

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None,
               denoise_mask=None, disable_pbar=False):  # fmt: skip
        extra_args["denoise_mask"] = denoise_mask
        model_k = KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image = latent_image
        model_k.noise = noise
        ms = model_wrap.inner_model.model_sampling
        noise = ms.noise_scaling(sigmas[0], noise, latent_image,
                                 self.max_denoise(model_wrap, sigmas))  # fmt: skip
        k_callback = None
        total_steps = len(sigmas) - 1
        if callback is not None:

            def k_callback(x):
                callback(x["i"], x["denoised"], x["x"], total_steps)

        samples = self.sampler_function(model_k, noise, sigmas, extra_args=extra_args,
                                        callback=k_callback, disable=disable_pbar,
                                        **self.extra_options)  # fmt: skip
        return ms.inverse_noise_scaling(sigmas[-1], samples)


def ksampler(sampler_name, extra_options={}, inpaint_options={}):  # noqa: B006
    sampler_function = getattr(k_diffusion_sampling, f"sample_{sampler_name}")
    return KSAMPLER(sampler_function, extra_options, inpaint_options)


def sampler_object(name):
    return ksampler(name)


class KSampler:
    SAMPLERS = SAMPLER_NAMES


class ModelPatcher:
    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}

    def get_model_object(self, name):
        return getattr(self.model, name)


class BaseModel:
    """``apply(x, sigma)`` is the denoised ``x_0`` in the model's own sigma (``t`` for flow)."""

    def __init__(self, model_sampling, apply):
        self.model_sampling = model_sampling
        self.apply = apply


class CFGGuider:
    """Calls the model as ``guider(x, sigma, model_options=..., seed=...)``; records each call."""

    def __init__(self, model_patcher):
        self.model_patcher = model_patcher
        self.inner_model = model_patcher.model
        self.model_options = model_patcher.model_options
        self.calls = []

    def __call__(self, x, timestep, model_options={}, seed=None):  # noqa: B006
        self.calls.append({"x": x, "sigma": timestep, "model_options": model_options,
                           "seed": seed})  # fmt: skip
        return self.inner_model.apply(x, timestep)

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
               disable_pbar=False, seed=None):  # fmt: skip
        extra_args = {"model_options": self.model_options, "seed": seed}
        return sampler.sample(self, sigmas, extra_args, callback, noise, latent_image,
                              denoise_mask, disable_pbar)  # fmt: skip
