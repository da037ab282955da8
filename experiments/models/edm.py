"""EDM-preconditioned denoiser and the EDM training loss (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", Table 1 and Sec. 5).

``D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))`` with the
coefficients of ``res_torch.adapters.edm_preconditioning``. Training draws
``ln sigma ~ N(P_mean, P_std^2)`` and minimises ``lambda(sigma) ||D(x + sigma n, sigma) - x||^2``
with ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``, which makes the
effective target of ``F`` unit-variance at every ``sigma``.
"""

from __future__ import annotations

import torch
from torch import nn

from experiments.models.unet import UNet, UNetConfig
from res_torch.adapters import edm_preconditioning

__all__ = ["P_MEAN", "P_STD", "EDMDenoiser", "edm_loss"]

P_MEAN = -1.2
P_STD = 1.2


class EDMDenoiser(nn.Module):
    """``forward(x, sigma) -> D(x, sigma)`` in the k-diffusion convention (``sigma`` of shape
    ``(batch,)`` or a scalar tensor, broadcast over the batch)."""

    def __init__(self, config: UNetConfig, sigma_data: float) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.config = config
        self.sigma_data = float(sigma_data)
        self.net = UNet(config)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape[0] != x.shape[0]:
            raise ValueError(f"sigma has {sigma.shape[0]} entries for a batch of {x.shape[0]}")
        if bool((sigma <= 0).any()):
            raise ValueError("sigma must be positive (the step to sigma = 0 is D itself)")
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
        view = (-1,) + (1,) * (x.ndim - 1)
        f = self.net(c_in.view(view) * x, c_noise)
        return c_skip.view(view) * x + c_out.view(view) * f


def edm_loss(denoiser: EDMDenoiser, x: torch.Tensor, generator: torch.Generator | None = None):
    """Mean over the batch of ``lambda(sigma) ||D(x + sigma n, sigma) - x||^2 / dim`` with
    ``ln sigma ~ N(P_MEAN, P_STD^2)`` (EDM, Karras et al. 2022, Eq. 8 and Table 1)."""
    rnd = torch.randn(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    sigma = (P_MEAN + P_STD * rnd).exp()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    sd = denoiser.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    error = (denoiser(x + sigma.view(-1, 1, 1, 1) * noise, sigma) - x) ** 2
    return (weight * error.flatten(1).mean(1)).mean()
