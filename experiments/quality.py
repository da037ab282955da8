"""Experiment 2 of the paper: sample quality against NFE.

Quality is the Fréchet distance ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^{1/2})`` between
Gaussians fitted to features of generated and of held-out real samples (Heusel et al. 2017),
in a fixed feature space per problem (:mod:`experiments.paper_problems`): the penultimate layer
of the trained digits classifier for the digits problems ("Fréchet Digits Distance", not
ImageNet FID), the feature space of :mod:`experiments.frechet` for the photo patches, raw
coordinates for the Gaussian mixture. Each problem also gets a row ``method = "reference"``:
the same noise through the converged ODE solver, the quality every sampler tends to as NFE grows.

Run: ``python -m experiments.quality [--quick] [--device cuda] [--out DIR]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.compared_methods import (
    DETERMINISTIC_METHODS,
    attainable_budgets,
    get_method,
    run_method,
)
from experiments.experiment_runner import experiment_main
from experiments.paper_problems import frechet_to_data, get_problem, reference_batch

__all__ = ["QualityConfig", "main", "run_quality"]

NAME = "quality"


@dataclass(frozen=True)
class QualityConfig:
    """Problems, methods, NFE budgets and the number of generated samples per point."""

    problems: tuple[str, ...]
    methods: tuple[str, ...]
    nfes: tuple[int, ...]
    samples: int
    seed: int = 1
    reference_rtol: float = 1e-5

    @classmethod
    def quick(cls) -> QualityConfig:
        return cls(("digits",), DETERMINISTIC_METHODS, (5, 9, 15), samples=128)

    @classmethod
    def full(cls) -> QualityConfig:
        return cls(
            ("gmm", "digits", "patches32"),
            DETERMINISTIC_METHODS,
            (5, 7, 9, 12, 15, 20, 30, 50),
            samples=1000,
        )


def run_quality(config: QualityConfig, device: torch.device) -> list[dict[str, Any]]:
    """Rows ``{problem, method, nfe, frechet}``, plus the converged-reference row per problem."""
    for name in config.methods:
        get_method(name)
    rows: list[dict[str, Any]] = []
    for problem_name in tqdm(config.problems, desc="quality vs NFE"):
        problem = get_problem(problem_name, device)
        reference = reference_batch(
            problem, batch=config.samples, seed=config.seed, rtol=config.reference_rtol
        )
        base = {"problem": problem_name, "kind": problem.kind, "samples": config.samples}
        rows.append(
            {
                **base,
                "method": "reference",
                "nfe": 0,
                "frechet": frechet_to_data(problem, reference.x),
            }
        )
        for name in config.methods:
            for nfe in attainable_budgets(name, config.nfes):
                out = run_method(name, problem.denoiser, reference.noise, nfe)
                rows.append(
                    {**base, "method": name, "nfe": nfe, "frechet": frechet_to_data(problem, out)}
                )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(NAME, QualityConfig, run_quality, argv, description=__doc__)


if __name__ == "__main__":
    main()
