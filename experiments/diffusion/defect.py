"""Experiment 1 of the paper: numerical defect against NFE.

The defect of a sampler on a problem is the mean over a batch of the L2 distance
``|x_N - x(0)|`` between its output and a converged high-accuracy solution of the same
probability-flow ODE from the same noise (Zhang, Song & Chen 2023, Sec. 5 "numerical defects"):
both go from ``sigma_max = 80`` to ``sigma_min = 0.002`` and then take the final denoising step
``x = D(x, sigma_min)``. The reference is ``experiments.reference``'s DOP853 solver in
``lambda = -log sigma``, whose convergence is asserted (:mod:`experiments.problems.sampling`).

Run: ``python -m experiments.diffusion.defect [--quick] [--device cuda] [--out DIR]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
from experiments.diffusion.scoring import mean_l2, reference_batch
from experiments.experiment_runner import experiment_main
from experiments.problems import get_problem

__all__ = ["DefectConfig", "defect_rows", "defect_steps", "main", "run_defect"]

NAME = "defect"


@dataclass(frozen=True)
class DefectConfig:
    """Problems with their batch sizes, methods and NFE budgets of the defect experiment."""

    problems: tuple[tuple[str, int], ...]
    methods: tuple[str, ...]
    nfes: tuple[int, ...]
    seed: int = 0
    schedule: str = "karras"
    rho: float = 7.0
    reference_rtol: float = 1e-6
    reference_bound: float = 1e-3

    @classmethod
    def quick(cls) -> DefectConfig:
        return cls(
            (("gmm", 32), ("digits", 16)),
            DETERMINISTIC_METHODS,
            (5, 9, 15, 25),
            reference_rtol=1e-5,
            reference_bound=1e-2,
        )

    @classmethod
    def full(cls) -> DefectConfig:
        return cls(
            (("gmm", 128), ("digits_exact", 32), ("digits", 32), ("patches32", 8)),
            DETERMINISTIC_METHODS,
            (5, 7, 9, 12, 15, 20, 30, 50),
        )


REFERENCE_STEPS = 40  # progress steps of one reference solve (the longest single task)


def defect_steps(methods: Sequence[str], nfes: Sequence[int]) -> int:
    """Progress steps of one :func:`defect_rows` call: :data:`REFERENCE_STEPS` for its
    reference batch and one per (method, budget) cell."""
    return REFERENCE_STEPS + sum(len(attainable_budgets(name, nfes)) for name in methods)


def _advance(progress: tqdm | None, steps: int) -> Callable[[float], None] | None:
    """A ``fraction -> None`` callback moving ``progress`` through ``steps`` steps."""
    if progress is None:
        return None
    done = [0]

    def report(fraction: float) -> None:
        target = min(steps, math.floor(fraction * steps))
        if target > done[0]:
            progress.update(target - done[0])
            done[0] = target

    return report


def defect_rows(
    problem_name: str,
    methods: Sequence[str],
    nfes: Sequence[int],
    *,
    batch: int,
    seed: int,
    device: torch.device,
    schedule: str = "karras",
    rho: float = 7.0,
    reference_rtol: float = 1e-6,
    reference_bound: float = 1e-3,
    options: dict[str, Any] | None = None,
    extra_columns: dict[str, Any] | None = None,
    progress: tqdm | None = None,
) -> list[dict[str, Any]]:
    """Defect rows ``{problem, method, nfe, defect, ...}`` of ``methods x nfes`` on one problem.

    Each requested budget is rounded down to one the method spends exactly
    (:func:`experiments.diffusion.methods.attainable_budgets`); budgets too small are skipped.
    ``options`` go to every sampler (e.g. ``c2``); ``extra_columns`` are copied into each row.
    ``progress`` advances during the reference solve and once per cell (:func:`defect_steps`
    steps in all).
    """
    for name in methods:
        get_method(name)
    problem = get_problem(problem_name, device)
    reference = reference_batch(
        problem,
        batch=batch,
        seed=seed,
        rtol=reference_rtol,
        bound=reference_bound,
        progress=_advance(progress, REFERENCE_STEPS),
    )
    rows = []
    for name in methods:
        for nfe, requested in attainable_budgets(name, nfes).items():
            out = run_method(
                name,
                problem.denoiser,
                reference.noise,
                nfe,
                schedule=schedule,
                rho=rho,
                **(options or {}),
            )
            rows.append(
                {
                    "problem": problem_name,
                    "kind": problem.kind,
                    "method": name,
                    "nfe": nfe,
                    "nfe_requested": requested,
                    "schedule": schedule,
                    "rho": rho,
                    **(extra_columns or {}),
                    "defect": mean_l2(out, reference.x),
                    "reference_error": reference.error_estimate,
                }
            )
            if progress is not None:
                progress.update()
    return rows


def run_defect(config: DefectConfig, device: torch.device) -> list[dict[str, Any]]:
    """All rows of the experiment (one progress step per reference batch and per cell)."""
    rows: list[dict[str, Any]] = []
    total = len(config.problems) * defect_steps(config.methods, config.nfes)
    bar = tqdm(total=total, desc="defect vs NFE")
    for problem, batch in config.problems:
        bar.set_postfix_str(problem)
        rows += defect_rows(
            problem,
            config.methods,
            config.nfes,
            batch=batch,
            seed=config.seed,
            device=device,
            schedule=config.schedule,
            rho=config.rho,
            reference_rtol=config.reference_rtol,
            reference_bound=config.reference_bound,
            progress=bar,
        )
    bar.close()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(NAME, DefectConfig, run_defect, argv, description=__doc__, module=__spec__.name)


if __name__ == "__main__":
    main()
