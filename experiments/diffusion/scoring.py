"""Scoring samples of a sampling problem: converged references, the defect, the Fréchet distance.

:func:`reference_batch` draws seeded noise and solves the probability-flow ODE from it with the
high-accuracy solver of :mod:`experiments.reference` (``sigma_max = 80 -> sigma_min = 0.002``,
then ``x = D(x, sigma_min)``), asserting that the solution is converged; :func:`mean_l2` is the
paper's defect against it; :func:`frechet_to_data` the Fréchet distance of samples to the
problem's data set in its feature space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from experiments.diffusion.methods import SIGMA_MAX, SIGMA_MIN
from experiments.problems import ProblemError, SamplingProblem

__all__ = ["ReferenceBatch", "frechet_to_data", "mean_l2", "reference_batch"]


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
    problem: SamplingProblem,
    *,
    batch: int,
    seed: int,
    rtol: float = 1e-7,
    bound: float = 1e-4,
    progress: Callable[[float], None] | None = None,
) -> ReferenceBatch:
    """The :class:`ReferenceBatch` of ``batch`` samples for ``seed``.

    The ODE from ``sigma_max`` to ``sigma_min`` is solved by
    :func:`experiments.reference.converged_reference` (DOP853 in lambda at ``rtol = atol`` and
    10 times tighter; it raises unless the two agree to ``bound`` in max norm), then
    ``x = D(x, sigma_min)``. Solved once per process for each set of arguments; ``progress``
    receives the fraction of the solve done (:func:`experiments.reference.converged_reference`;
    1 at once for a batch solved before).
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
            progress=progress,
        )
        final = problem.denoiser(solved.x, solved.x.new_full((batch,), SIGMA_MIN))
        _REFERENCES[key] = ReferenceBatch(noise, final, solved.error_estimate)
    elif progress is not None:
        progress(1.0)
    return _REFERENCES[key]


_DATA_FEATURES: dict[tuple[str, str], torch.Tensor] = {}


def frechet_to_data(problem: SamplingProblem, samples: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of the features of ``samples`` and of the
    problem's data set (:func:`experiments.frechet.frechet_distance_of_features`)."""
    from experiments.frechet import frechet_distance_of_features

    key = (problem.name, str(problem.device))
    if key not in _DATA_FEATURES:
        _DATA_FEATURES[key] = problem.features(problem.data()).cpu()
    return frechet_distance_of_features(problem.features(samples).cpu(), _DATA_FEATURES[key])
