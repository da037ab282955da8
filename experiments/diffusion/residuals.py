"""Experiment 5 of the paper: order-condition residuals, and the effect of the node ``c2``.

Residuals (Hochbruck & Ostermann 2005; MATH.md section 3), for the diffusion case ``Z = -h``::

    psi_j(h) = phi_j(-h) - sum_i b_i(h) c_i^{j-1} / (j-1)!

evaluated in float64 from the exported tableaux (``res_torch.load_tableau``), i.e. from the very
numbers the samplers use. RES enforces ``psi_1 = psi_2 = 0`` identically in ``h``; DPM-Solver++
(2S) has ``b_2 = phi_1(h)/(2 c2)``, so ``psi_2 = phi_2 - phi_1/2 = h/12 + O(h^2)`` (paper sign)
whatever ``c2`` is. For a multistep tableau the history node is set to its equal-step value.

The second table is the defect (:mod:`experiments.diffusion.defect`) of the 2-stage single-step
methods
as a function of ``c2`` at fixed NFE.

Run: ``python -m experiments.diffusion.residuals [--quick] [--device cuda] [--out DIR]`` (writes
``residuals.csv`` with both tables stacked; ``table`` says which).
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

__all__ = ["ResidualsConfig", "c2_sweep_rows", "main", "psi_residual_rows", "run_residuals"]

NAME = "residuals"

C2_METHODS = ("dpmpp_2s", "res_2s")  # the 2-stage single-step methods of the c2 sweep


@dataclass(frozen=True)
class ResidualsConfig:
    """Tableaux and step sizes of the residual table; problems, NFEs and ``c2`` of the sweep."""

    tableaux: tuple[tuple[str, float | None], ...]
    conditions: tuple[int, ...]
    h_min: float
    h_max: float
    h_points: int
    problems: tuple[tuple[str, int], ...]
    nfes: tuple[int, ...]
    c2s: tuple[float, ...]
    seed: int = 0
    reference_rtol: float = 1e-6
    reference_bound: float = 1e-3

    @classmethod
    def quick(cls) -> ResidualsConfig:
        return cls(
            (("dpmpp_2s", 0.5), ("res_2s", 0.5), ("dpmpp_2m", None), ("res_2m", None)),
            (2, 3),
            1e-2,
            10.0,
            25,
            (("gmm", 32),),
            (9,),
            (0.2, 0.5, 1.0),
            reference_rtol=1e-5,
        )

    @classmethod
    def full(cls) -> ResidualsConfig:
        return cls(
            (
                ("dpmpp_2s", 0.5),
                ("dpmpp_2s", 1.0),
                ("res_2s", 0.5),
                ("res_2s", 1.0),
                ("dpmpp_2m", None),
                ("res_2m", None),
                ("res_3s", None),
            ),
            (1, 2, 3),
            1e-3,
            20.0,
            60,
            (("gmm", 128), ("digits", 32)),
            (9,),
            (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        )


def psi_residual_rows(
    tableaux: Sequence[tuple[str, float | None]], conditions: Sequence[int], h: torch.Tensor
) -> list[dict[str, Any]]:
    """Rows ``{method, c2, condition, h, residual}`` of ``psi_j(h)`` for each tableau
    ``(name, c2)`` (``c2 = None``: the tableau's defaults) and ``j`` in ``conditions``."""
    from res_torch import load_tableau, phi

    h = torch.as_tensor(h, dtype=torch.float64)
    rows = []
    for name, c2 in tableaux:
        tableau = load_tableau(name)
        values = {} if c2 is None else {"c2": c2}
        c, _, b = tableau.evaluate(h, values)
        shown_c2 = c2 if c2 is not None else float(c[0, 1]) if tableau.stages > 1 else math.nan
        for j in conditions:
            if j < 1:
                raise ValueError(f"order-condition index j must be >= 1, got {j}")
            psi = phi(j, -h) - (b * c ** (j - 1)).sum(-1) / math.factorial(j - 1)
            rows += [
                {
                    "table": "psi",
                    "method": name,
                    "c2": shown_c2,
                    "condition": f"psi_{j}",
                    "h": float(hk),
                    "residual": float(pk),
                }
                for hk, pk in zip(h, psi, strict=True)
            ]
    return rows


def c2_sweep_rows(config: ResidualsConfig, device: torch.device) -> list[dict[str, Any]]:
    """Defect rows of ``res_2s`` and ``dpmpp_2s`` for every ``c2``, problem and NFE."""
    rows: list[dict[str, Any]] = []
    grid = [(p, b, c2) for p, b in config.problems for c2 in config.c2s]
    bar = tqdm(total=len(grid) * defect_steps(C2_METHODS, config.nfes), desc="defect vs c2")
    for problem, batch, c2 in grid:
        bar.set_postfix_str(f"{problem}, c2 {c2:g}")
        rows += defect_rows(
            problem,
            C2_METHODS,
            config.nfes,
            batch=batch,
            seed=config.seed,
            device=device,
            reference_rtol=config.reference_rtol,
            reference_bound=config.reference_bound,
            options={"c2": c2},
            extra_columns={"table": "c2_sweep", "c2": c2},
            progress=bar,
        )
    bar.close()
    return rows


def run_residuals(config: ResidualsConfig, device: torch.device) -> list[dict[str, Any]]:
    """The psi table followed by the ``c2`` sweep."""
    h = torch.logspace(
        math.log10(config.h_min), math.log10(config.h_max), config.h_points, dtype=torch.float64
    )
    return psi_residual_rows(config.tableaux, config.conditions, h) + c2_sweep_rows(config, device)


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(
        NAME, ResidualsConfig, run_residuals, argv, description=__doc__, module=__spec__.name
    )


if __name__ == "__main__":
    main()
