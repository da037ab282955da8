"""Experiment 3 of the paper: robustness of the samplers to the time schedule.

The defect of :mod:`experiments.diffusion.defect` at fixed NFE budgets, on grids that depart
from EDM's
``rho = 7`` schedule ``sigma_i = (sigma_max^{1/rho} + i/(N-1)(sigma_min^{1/rho} -
sigma_max^{1/rho}))^rho``: a sweep of ``rho`` (``rho = 1`` is uniform in sigma, the paper's
"suboptimal" schedule) and the exponential schedule (uniform in ``lambda = -log sigma``, the
``rho -> infinity`` limit; reported with ``rho = inf``). The paper reports that RES degrades
less than DPM-Solver++ when the schedule is poor (Zhang, Song & Chen 2023, Sec. 5).

Run: ``python -m experiments.diffusion.schedule_robustness [--quick] [--device cuda] [--out DIR]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.diffusion.defect import defect_rows, defect_steps
from experiments.experiment_runner import experiment_main

__all__ = ["ScheduleConfig", "main", "run_schedule_robustness"]

NAME = "schedule_robustness"

COMPARED = ("ddim", "dpmpp_2s", "res_2s", "dpmpp_2m", "res_2m", "res_3s", "heun", "unipc")


@dataclass(frozen=True)
class ScheduleConfig:
    """Problems with batch sizes, methods, budgets and Karras ``rho`` values (``inf``: the
    exponential schedule)."""

    problems: tuple[tuple[str, int], ...]
    methods: tuple[str, ...]
    nfes: tuple[int, ...]
    rhos: tuple[float, ...]
    seed: int = 0
    reference_rtol: float = 1e-6
    reference_bound: float = 1e-3

    @classmethod
    def quick(cls) -> ScheduleConfig:
        return cls((("gmm", 32),), COMPARED, (9,), (1.0, 7.0, math.inf), reference_rtol=1e-5)

    @classmethod
    def full(cls) -> ScheduleConfig:
        return cls(
            (("gmm", 128), ("digits", 32)),
            COMPARED,
            (9, 15),
            (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, math.inf),
        )


def run_schedule_robustness(config: ScheduleConfig, device: torch.device) -> list[dict[str, Any]]:
    """Defect rows for every problem, method, NFE and schedule of ``config``."""
    rows: list[dict[str, Any]] = []
    grid = [(p, b, r) for p, b in config.problems for r in config.rhos]
    bar = tqdm(
        total=len(grid) * defect_steps(config.methods, config.nfes), desc="schedule robustness"
    )
    for problem, batch, rho in grid:
        bar.set_postfix_str(f"{problem}, rho {rho:g}")
        schedule = "exponential" if math.isinf(rho) else "karras"
        rows += defect_rows(
            problem,
            config.methods,
            config.nfes,
            batch=batch,
            seed=config.seed,
            device=device,
            schedule=schedule,
            rho=rho if schedule == "karras" else 7.0,
            reference_rtol=config.reference_rtol,
            reference_bound=config.reference_bound,
            extra_columns={"rho_swept": rho},
            progress=bar,
        )
    bar.close()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(
        NAME,
        ScheduleConfig,
        run_schedule_robustness,
        argv,
        description=__doc__,
        module=__spec__.name,
    )


if __name__ == "__main__":
    main()
