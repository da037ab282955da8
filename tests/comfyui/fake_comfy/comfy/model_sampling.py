"""Stand-in for ``comfy.model_sampling``: the prediction types' noise scaling and the
``percent_to_sigma`` of a VE (eps) and a flow (CONST) model."""

import math

import torch


class EPS:
    """VE noise levels: ``x = x_0 + sigma eps``."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        scale = torch.sqrt(1.0 + sigma**2.0) if max_denoise else sigma
        return noise * scale + latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class CONST:
    """Rectified flow: ``x = (1 - t) x_0 + t eps`` with ``t`` in place of sigma."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - sigma)


class ModelSamplingVE(EPS):
    def __init__(self, sigma_min=0.03, sigma_max=14.6):
        self.sigma_min, self.sigma_max = torch.tensor(sigma_min), torch.tensor(sigma_max)

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        log_min, log_max = math.log(self.sigma_min), math.log(self.sigma_max)
        return math.exp(log_max + percent * (log_min - log_max))


class ModelSamplingFlow(CONST):
    """Shifted flow times ``shift t / (1 + (shift - 1) t)`` (SD3's ``shift``)."""

    def __init__(self, shift=1.0):
        self.shift = shift
        self.sigma_min, self.sigma_max = torch.tensor(self.sigma(1e-3)), torch.tensor(1.0)

    def sigma(self, t):
        return self.shift * t / (1 + (self.shift - 1) * t)

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return self.sigma(1.0 - percent)
