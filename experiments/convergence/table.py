"""Experiment 6: the convergence slopes of :mod:`experiments.convergence.study` as one table.

Runs the convergence study (:func:`experiments.convergence.study.run_convergence`: every
shipped tableau on every test problem, error against uniform step size, least-squares order
over the asymptotic range, compared with the classical/stiff order the theory predicts) and
flattens its results into rows: ``table = "errors"`` rows ``{problem, method, n_steps, h,
evaluations, error}`` and ``table = "slopes"`` rows (one per problem and method, the runner's
own summary). This module adds no numerics of its own.

Run alone: ``python -m experiments.convergence.table [--quick]`` (this table, as the figure run
computes it) or ``python -m experiments.convergence [--quick]`` (the study's own full sweep,
tables and plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from experiments.experiment_runner import experiment_main

__all__ = ["ConvergenceConfig", "run_convergence_table"]


@dataclass(frozen=True)
class ConvergenceConfig:
    """Whether to use the runner's quick step counts; which problems (None: all). The full
    figure run uses the quick step counts on every problem (about a minute); run
    ``python -m experiments.convergence`` itself for its full sweep."""

    quick: bool
    problems: tuple[str, ...] | None = None

    @classmethod
    def quick(cls) -> ConvergenceConfig:
        return cls(quick=True, problems=("manufactured_sine",))

    @classmethod
    def full(cls) -> ConvergenceConfig:
        return cls(quick=True, problems=None)


def run_convergence_table(config: ConvergenceConfig, device: torch.device) -> list[dict[str, Any]]:
    """Error rows and slope rows of :func:`experiments.convergence.study.run_convergence` (the study
    runs on the CPU in float64 whatever ``device`` is: it is cheap and needs no accelerator)."""
    from experiments.convergence.study import run_convergence

    results = run_convergence(config.problems, None, config.quick, out=None)
    rows: list[dict[str, Any]] = []
    for r in results:
        for n, h, evaluations, error in zip(r.n_steps, r.h, r.evaluations, r.errors, strict=True):
            rows.append(
                {
                    "table": "errors",
                    "problem": r.problem,
                    "method": r.method,
                    "n_steps": n,
                    "h": h,
                    "evaluations": evaluations,
                    "error": error,
                }
            )
    rows += [{"table": "slopes", **r.summary()} for r in results]
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(
        "convergence_table",
        ConvergenceConfig,
        run_convergence_table,
        argv,
        description=__doc__,
        module=__spec__.name,
    )


if __name__ == "__main__":
    main()
