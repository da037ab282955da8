"""The denoisers the paper's experiments run on, with their references and feature spaces.

A :class:`Problem` bundles an EDM denoiser ``D(x, sigma)`` (variance-exploding convention,
MATH.md section 1), the shape of one sample, a feature map for the Fréchet distance, and a source
of real data to compare against:

* ``"gmm"`` (exact): the closed-form denoiser of a random 4-component Gaussian mixture in
  ``R^16`` (:class:`experiments.problems.gaussian_mixture.GaussianMixture`, seed 0), raw
  coordinates as features, real data drawn from the mixture;
* ``"digits_exact"`` (exact): the empirical denoiser of the digits training set
  (:class:`experiments.problems.digits.EmpiricalDenoiser`, the exact posterior mean of that
  finite distribution), digits-classifier features, held-out digits;
* ``"digits"`` (trained): the EDM network ``experiments/checkpoints/edm_digits.pt``; features of
  the fixed digits classifier of :mod:`experiments.frechet` ("Fréchet Digits Distance"); real
  data the held-out digits;
* ``"patches32"`` (trained): the EDM network on 32x32 photo patches, the patch feature space of
  :mod:`experiments.frechet`, held-out patches.

:func:`reference_batch` draws seeded noise and solves the probability-flow ODE from it with the
high-accuracy solver of :mod:`experiments.reference` (``sigma_max = 80 -> sigma_min = 0.002``,
then ``x = D(x, sigma_min)``), asserting that the solution is converged. Every denoiser runs in
float64 (the trained networks are converted), so the reference and the samplers integrate the
same function and the defect measures discretisation error, not float32 round-off.
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
    real_samples: Callable[[int], torch.Tensor]


def _no_grad(model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def denoiser(x: torch.Tensor, sigma: torch.Tensor, **kwargs: object) -> torch.Tensor:
        with torch.no_grad():
            return model(x, sigma, **kwargs)

    return denoiser


def _build(name: str, device: torch.device) -> Problem:
    if name == "gmm":
        from experiments.problems.gaussian_mixture import GaussianMixture

        mixture = GaussianMixture.random(
            GMM_DIM, GMM_COMPONENTS, torch.Generator().manual_seed(GMM_SEED)
        )
        return Problem(
            name,
            "exact",
            (GMM_DIM,),
            mixture.denoiser,
            lambda x: x.flatten(1),
            lambda n: mixture.sample(n, torch.Generator().manual_seed(GMM_SEED + 1)).to(device),
        )
    if name == "digits_exact":
        from experiments.frechet import digits_features
        from experiments.models.data import digits
        from experiments.problems.digits import EmpiricalDenoiser

        model = EmpiricalDenoiser(digits("train").to(device, torch.float64))
        return Problem(
            name,
            "exact",
            (1, 8, 8),
            model,
            digits_features,
            lambda n: digits("test")[:n].to(device, torch.float64),
        )
    if name in ("digits", "patches32"):
        from experiments.frechet import digits_features, patch_features
        from experiments.models.data import digits, image_patches
        from experiments.models.load import load_denoiser

        model = load_denoiser(name, device=device).double().eval()
        if name == "digits":
            return Problem(
                name,
                "trained",
                (1, 8, 8),
                _no_grad(model),
                digits_features,
                lambda n: digits("test")[:n].to(device, torch.float64),
            )
        return Problem(
            name,
            "trained",
            (3, 32, 32),
            _no_grad(model),
            patch_features,
            lambda n: image_patches(n, "test").to(device, torch.float64),
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
    device = problem.real_samples(1).device
    key = (problem.name, str(device), batch, seed, rtol, bound)
    if key not in _REFERENCES:
        from experiments.reference import converged_reference

        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((batch, *problem.shape), generator=generator, dtype=torch.float64)
        noise = noise.to(device)
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


def frechet_to_data(problem: Problem, samples: torch.Tensor) -> float:
    """Fréchet distance between ``samples`` and as many real samples, in the problem's features."""
    from experiments.frechet import frechet_distance

    real = problem.real_samples(samples.shape[0])
    return float(frechet_distance(problem.features(samples), problem.features(real.to(samples))))
