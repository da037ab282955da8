"""Sampling problems: the denoisers the paper's experiments run on, with their feature spaces.

A :class:`SamplingProblem` bundles an EDM denoiser ``D(x, sigma)`` (variance-exploding convention,
MATH.md section 1), the shape of one sample, a feature map and the data set that the Fréchet
distance of :func:`experiments.diffusion.scoring.frechet_to_data` compares samples against:

* ``"gmm"`` (exact): the closed-form denoiser of a random 4-component Gaussian mixture in
  ``R^16`` (:class:`experiments.problems.gaussian_mixture.GaussianMixture`, seed 0); raw
  coordinates as features; 5000 draws from the mixture as data;
* ``"digits_exact"`` (exact): the empirical denoiser of the digits training set
  (:class:`experiments.problems.digits.EmpiricalDenoiser`, the exact posterior mean of that
  finite distribution); digits-classifier features; the training set as data (its ODE maps noise
  onto training images, so its Fréchet distance only says how close a sampler gets to them);
* ``"digits"`` (trained): the EDM network ``experiments/checkpoints/edm_digits.pt``; features of
  the fixed digits classifier of :mod:`experiments.frechet` ("Fréchet Digits Distance",
  FDD); the 1437 training digits as data;
* ``"patches32"`` (trained): the EDM network on 32x32 photo patches; the fixed random-conv
  features of :mod:`experiments.frechet` (FRCD); 5000 training crops as data.

States are float64; the exact denoisers compute in float64, the trained networks in float32 (7x
faster on a CPU). The converged references (:func:`experiments.diffusion.scoring.reference_batch`)
and the samplers call the same function, and its float32 round-off (relative 1e-7) lies far
below the defects measured (and below the reference's convergence bound).

The registry :mod:`experiments.problems` builds them by name (:data:`SAMPLING_PROBLEMS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from experiments.problems.base import ProblemError

__all__ = ["SAMPLING_PROBLEMS", "SamplingProblem", "sampling_problem"]

SAMPLING_PROBLEMS: tuple[str, ...] = ("gmm", "digits_exact", "digits", "patches32")
GMM_DIM, GMM_COMPONENTS, GMM_SEED = 16, 4, 0
GMM_REFERENCE_SIZE = 5000
PATCHES_REFERENCE_SIZE = 5000  # held-in crops the Fréchet distance compares against


@dataclass(frozen=True)
class SamplingProblem:
    """A denoiser with everything the experiments need to score samples from it."""

    name: str
    kind: str  # "exact" or "trained"
    shape: tuple[int, ...]
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    features: Callable[[torch.Tensor], torch.Tensor]
    data: Callable[[], torch.Tensor]
    device: torch.device


def _float32_network(model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``D(x, sigma)`` of a float32 network for inputs of any floating dtype: evaluated in
    float32 without gradients, returned in the dtype of ``x``."""

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, **kwargs: object) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(torch.float32), sigma.to(torch.float32), **kwargs).to(x.dtype)

    return denoiser


def _image_features(model: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``images -> (N, d)`` float64 features of :mod:`experiments.frechet`'s network for
    ``model`` (digits: the digits classifier; patches32: the fixed random-conv network)."""
    from experiments.frechet import default_feature_extractor, extract_features

    extractor = default_feature_extractor(model)
    return lambda x: extract_features(extractor, x.to(torch.float32))


def sampling_problem(name: str, device: torch.device) -> SamplingProblem:
    """The sampling problem ``name`` (one of :data:`SAMPLING_PROBLEMS`) on ``device``."""
    if name == "gmm":
        from experiments.problems.gaussian_mixture import GaussianMixture

        mixture = GaussianMixture.random(
            GMM_DIM, GMM_COMPONENTS, torch.Generator().manual_seed(GMM_SEED)
        )
        data = mixture.sample(GMM_REFERENCE_SIZE, torch.Generator().manual_seed(GMM_SEED + 1))
        return SamplingProblem(
            name,
            "exact",
            (GMM_DIM,),
            mixture.denoiser,
            lambda x: x.flatten(1).to(torch.float64),
            lambda: data.to(device),
            device,
        )
    from experiments.models.load import bundled_dataset

    if name == "digits_exact":
        from experiments.problems.digits import EmpiricalDenoiser

        train = bundled_dataset("digits", "train").to(device, torch.float64)
        return SamplingProblem(
            name,
            "exact",
            (1, 8, 8),
            EmpiricalDenoiser(train),
            _image_features("digits"),
            lambda: train,
            device,
        )
    if name in ("digits", "patches32"):
        from experiments.models.load import load_denoiser

        model = load_denoiser(name, device=device)
        return SamplingProblem(
            name,
            "trained",
            (1, 8, 8) if name == "digits" else (3, 32, 32),
            _float32_network(model),
            _image_features(name),
            lambda: bundled_dataset(name, "train", PATCHES_REFERENCE_SIZE).to(device),
            device,
        )
    raise ProblemError(f"unknown sampling problem {name!r}; known: {', '.join(SAMPLING_PROBLEMS)}")
