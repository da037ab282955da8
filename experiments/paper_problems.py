"""The denoisers the paper's experiments run on, with their references and feature spaces.

A :class:`Problem` bundles an EDM denoiser ``D(x, sigma)`` (variance-exploding convention,
MATH.md section 1), the shape of one sample, a feature map and the data set that the Fréchet
distance of :func:`frechet_to_data` compares samples against:

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

:func:`reference_batch` draws seeded noise and solves the probability-flow ODE from it with the
high-accuracy solver of :mod:`experiments.reference` (``sigma_max = 80 -> sigma_min = 0.002``,
then ``x = D(x, sigma_min)``), asserting that the solution is converged. States are float64; the
exact denoisers compute in float64, the trained networks in float32 (7x faster on a CPU). The
reference and the samplers call the same function, and its float32 round-off (relative 1e-7)
lies far below the defects measured (and below the reference's convergence bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

from experiments.compared_methods import SIGMA_MAX, SIGMA_MIN

__all__ = [
    "PROBLEMS",
    "Problem",
    "ProblemError",
    "frechet_to_data",
    "get_problem",
    "mean_l2",
    "reference_batch",
]

PROBLEMS: tuple[str, ...] = ("gmm", "digits_exact", "digits", "patches32")
GMM_DIM, GMM_COMPONENTS, GMM_SEED = 16, 4, 0
GMM_REFERENCE_SIZE = 5000
PATCHES_REFERENCE_SIZE = 5000  # held-in crops the Fréchet distance compares against


class ProblemError(ValueError):
    """Unknown problem name, or a reference solution that did not converge."""


@dataclass(frozen=True)
class Problem:
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


def _build(name: str, device: torch.device) -> Problem:
    if name == "gmm":
        from experiments.problems.gaussian_mixture import GaussianMixture

        mixture = GaussianMixture.random(
            GMM_DIM, GMM_COMPONENTS, torch.Generator().manual_seed(GMM_SEED)
        )
        data = mixture.sample(GMM_REFERENCE_SIZE, torch.Generator().manual_seed(GMM_SEED + 1))
        return Problem(
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
        return Problem(
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
        return Problem(
            name,
            "trained",
            (1, 8, 8) if name == "digits" else (3, 32, 32),
            _float32_network(model),
            _image_features(name),
            lambda: bundled_dataset(name, "train", PATCHES_REFERENCE_SIZE).to(device),
            device,
        )
    raise ProblemError(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")


@cache
def _cached(name: str, device: str) -> Problem:
    return _build(name, torch.device(device))


def get_problem(name: str, device: torch.device | str = "cpu") -> Problem:
    """The :class:`Problem` called ``name`` on ``device`` (built once per process)."""
    if name not in PROBLEMS:
        raise ProblemError(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    return _cached(name, str(torch.device(device)))


def mean_l2(x: torch.Tensor, y: torch.Tensor) -> float:
    """``mean_n |x_n - y_n|_2`` over the batch dimension (the paper's defect)."""
    return float((x - y).flatten(1).double().norm(dim=1).mean())


@dataclass(frozen=True)
class ReferenceBatch:
    """Seeded standard-normal ``noise``, the converged solution ``x`` from ``sigma_max * noise``
    (final denoising step included), and the reference's max-norm ``error_estimate``."""

    noise: torch.Tensor
    x: torch.Tensor
    error_estimate: float


_REFERENCES: dict[tuple[str, str, int, int, float, float], ReferenceBatch] = {}


def reference_batch(
    problem: Problem, *, batch: int, seed: int, rtol: float = 1e-7, bound: float = 1e-4
) -> ReferenceBatch:
    """The :class:`ReferenceBatch` of ``batch`` samples for ``seed``.

    The ODE from ``sigma_max`` to ``sigma_min`` is solved by
    :func:`experiments.reference.converged_reference` (DOP853 in lambda at ``rtol = atol`` and
    10 times tighter; it raises unless the two agree to ``bound`` in max norm), then
    ``x = D(x, sigma_min)``. Solved once per process for each set of arguments.
    """
    if batch < 1:
        raise ProblemError(f"batch must be positive, got {batch}")
    key = (problem.name, str(problem.device), batch, seed, rtol, bound)
    if key not in _REFERENCES:
        from experiments.reference import converged_reference

        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((batch, *problem.shape), generator=generator, dtype=torch.float64)
        noise = noise.to(problem.device)
        solved = converged_reference(
            problem.denoiser,
            noise * SIGMA_MAX,
            SIGMA_MAX,
            SIGMA_MIN,
            rtol=rtol,
            atol=rtol,
            refinement=10.0,
            bound=bound,
        )
        final = problem.denoiser(solved.x, solved.x.new_full((batch,), SIGMA_MIN))
        _REFERENCES[key] = ReferenceBatch(noise, final, solved.error_estimate)
    return _REFERENCES[key]


_DATA_FEATURES: dict[tuple[str, str], torch.Tensor] = {}


def frechet_to_data(problem: Problem, samples: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of the features of ``samples`` and of the
    problem's data set (:func:`experiments.frechet.frechet_distance_of_features`)."""
    from experiments.frechet import frechet_distance_of_features

    key = (problem.name, str(problem.device))
    if key not in _DATA_FEATURES:
        _DATA_FEATURES[key] = problem.features(problem.data()).cpu()
    return frechet_distance_of_features(problem.features(samples).cpu(), _DATA_FEATURES[key])
