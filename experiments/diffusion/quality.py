"""Experiment 2 of the paper: sample quality against NFE.

Quality is the Fréchet distance ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^{1/2})`` between
Gaussians fitted to features of generated samples and of the problem's data set (Heusel et al.
2017; :func:`experiments.problems.sampling.frechet_to_data`), in a fixed feature space per problem:
the penultimate layer of the trained digits classifier for digits ("Fréchet Digits Distance",
not ImageNet FID), the fixed random-conv features of :mod:`experiments.frechet` for the photo
patches, raw coordinates for the Gaussian mixture. Each problem also gets a row
``method = "reference"``: the same noise through the converged ODE solver, the value every
sampler tends to as NFE grows (with few samples the Fréchet distance is biased upwards; the
bias is the same for every method, which all start from the same noise).

Run: ``python -m experiments.diffusion.quality [--quick] [--device cuda] [--out DIR]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.diffusion.methods import (
    DETERMINISTIC_METHODS,
    attainable_budgets,
    get_method,
    run_method,
)
from experiments.diffusion.scoring import frechet_to_data, reference_batch
from experiments.experiment_runner import experiment_main
from experiments.problems import get_problem

__all__ = ["QualityConfig", "main", "run_quality"]

NAME = "quality"


@dataclass(frozen=True)
class QualityConfig:
    """Problems with the number of samples generated per point, methods and NFE budgets.

    ``reference_problems`` get a ``method = "reference"`` row: the same noise through the
    converged ODE solver (cheap on the exact denoisers; on the trained networks its DOP853 solve
    costs thousands of evaluations, so they are left out). It only needs to be accurate far
    below the Fréchet distances, hence a looser tolerance and bound than in the defect
    experiment."""

    problems: tuple[tuple[str, int], ...]
    methods: tuple[str, ...]
    nfes: tuple[int, ...]
    seed: int = 1
    reference_problems: tuple[str, ...] = ("gmm",)
    reference_rtol: float = 1e-5
    reference_bound: float = 1e-2

    @classmethod
    def quick(cls) -> QualityConfig:
        return cls((("gmm", 500), ("digits", 128)), DETERMINISTIC_METHODS, (5, 9))

    @classmethod
    def full(cls) -> QualityConfig:
        return cls(
            (("gmm", 2000), ("digits", 512), ("patches32", 64)),
            DETERMINISTIC_METHODS,
            (5, 9, 15, 25),
        )


def run_quality(config: QualityConfig, device: torch.device) -> list[dict[str, Any]]:
    """Rows ``{problem, method, nfe, frechet}``, plus the converged-reference row of each
    problem in ``config.reference_problems`` (one progress step per row)."""
    for name in config.methods:
        get_method(name)
    rows: list[dict[str, Any]] = []
    cells = sum(len(attainable_budgets(name, config.nfes)) for name in config.methods)
    references = sum(name in config.reference_problems for name, _ in config.problems)
    bar = tqdm(total=len(config.problems) * cells + references, desc="quality vs NFE")
    for problem_name, samples in config.problems:
        bar.set_postfix_str(problem_name)
        problem = get_problem(problem_name, device)
        base = {"problem": problem_name, "kind": problem.kind, "samples": samples}
        generator = torch.Generator().manual_seed(config.seed)
        noise = torch.randn((samples, *problem.shape), generator=generator, dtype=torch.float64)
        noise = noise.to(problem.device)
        if problem_name in config.reference_problems:
            reference = reference_batch(
                problem,
                batch=samples,
                seed=config.seed,
                rtol=config.reference_rtol,
                bound=config.reference_bound,
            )
            frechet = frechet_to_data(problem, reference.x)
            rows.append({**base, "method": "reference", "nfe": 0, "frechet": frechet})
            bar.update()
        for name in config.methods:
            for nfe in attainable_budgets(name, config.nfes):
                out = run_method(name, problem.denoiser, noise, nfe)
                rows.append(
                    {**base, "method": name, "nfe": nfe, "frechet": frechet_to_data(problem, out)}
                )
                bar.update()
    bar.close()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(
        NAME, QualityConfig, run_quality, argv, description=__doc__, module=__spec__.name
    )


if __name__ == "__main__":
    main()
