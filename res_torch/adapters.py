"""Adapters that present a network as a denoiser ``model(x, sigma) -> D(x, sigma)``.

(Provisional: only the EDM preconditioning coefficients so far.)
"""

from __future__ import annotations

import torch

__all__ = ["edm_preconditioning"]


def edm_preconditioning(
    sigma: torch.Tensor, sigma_data: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` (Karras et al. 2022, Table 1).

    ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with
    ``c_skip = sd^2/(sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
    ``c_in = 1/sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma)/4``.
    """
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), total.rsqrt(), sigma.log() / 4
