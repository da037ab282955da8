"""Shared test problems for the sampler tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch


@dataclass(frozen=True)
class GaussianProblem:
    """Data ``N(mu, s^2)`` per coordinate: the exact denoiser is
    ``D(x, sigma) = mu + s^2/(s^2 + sigma^2) (x - mu)`` and the probability-flow ODE
    ``dx/dsigma = (x - D)/sigma`` has the solution ``x(sigma) = mu + (x_0 - mu)
    sqrt((s^2 + sigma^2)/(s^2 + sigma_0^2))``."""

    mu: float = 0.3
    s: float = 0.7

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.view(-1, *([1] * (x.ndim - 1)))
        return self.mu + self.s**2 / (self.s**2 + sigma**2) * (x - self.mu)

    def exact(self, x0: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        ratio = math.sqrt((self.s**2 + sigma_to**2) / (self.s**2 + sigma_from**2))
        return self.mu + (x0 - self.mu) * ratio


@pytest.fixture
def gaussian() -> GaussianProblem:
    return GaussianProblem()


class CountingModel:
    """Wraps a denoiser and counts its calls."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma)


@pytest.fixture
def counting():
    return CountingModel
