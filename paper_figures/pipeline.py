"""The figure pipeline: experiments -> cached tables -> figures + CSV -> RESULTS.md.

:data:`EXPERIMENTS` lists, per experiment, its configuration class (``quick()``/``full()``), its
runner ``run(config, device) -> rows`` and the function that draws its figures from the rows.
:func:`run_pipeline` runs them in order with a tqdm bar, caching each table by configuration.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.convergence.table import ConvergenceConfig, run_convergence_table
from experiments.diffusion.defect import DefectConfig, run_defect
from experiments.diffusion.quality import QualityConfig, run_quality
from experiments.diffusion.residuals import ResidualsConfig, run_residuals
from experiments.diffusion.schedule_robustness import ScheduleConfig, run_schedule_robustness
from experiments.diffusion.stochastic import StochasticConfig, run_stochastic
from experiments.experiment_runner import (
    cached_rows,
    cached_table,
    read_csv,
    resolve_device,
    write_csv,
)
from paper_figures import plots
from paper_figures.summary import compare_res_to_dpmpp, results_markdown

__all__ = ["EXPERIMENTS", "Experiment", "run_pipeline"]

Rows = list[dict[str, Any]]
Figures = list[tuple[str, str]]


@dataclass(frozen=True)
class Experiment:
    """An experiment of the pipeline: settings class, runner, and figure maker
    ``draw(rows, out_dir, command) -> [(png name, caption)]``."""

    config_class: Any
    run: Callable[[Any, torch.device], Rows]
    draw: Callable[[Rows, Path, str], Figures]


def _draw_defect(rows: Rows, out: Path, command: str) -> Figures:
    plots.plot_metric_vs_nfe(
        rows, "defect", "defect (mean L2 to converged ODE solution)", out / "defect_vs_nfe.png"
    )
    return [
        (
            "defect_vs_nfe.png",
            "Numerical defect against NFE (EDM rho=7 schedule, sigma 80 -> 0.002 -> 0) on the "
            f"exact-denoiser problems and the trained networks. Made by `{command}`; table "
            "defect.csv.",
        )
    ]


def _draw_quality(rows: Rows, out: Path, command: str) -> Figures:
    plots.plot_metric_vs_nfe(
        rows, "frechet", "Fréchet distance to data", out / "quality_vs_nfe.png"
    )
    return [
        (
            "quality_vs_nfe.png",
            "Sample quality against NFE: Fréchet distance in a fixed feature space (digits: the "
            "trained digits classifier, 'Fréchet Digits Distance'; patches: fixed random-conv "
            "features) against the training data; black line, where computed: the same noise "
            f"through the converged ODE solver. Made by `{command}`; table quality.csv.",
        )
    ]


def _draw_schedule(rows: Rows, out: Path, command: str) -> Figures:
    plots.plot_schedule_robustness(rows, out / "schedule_robustness.png")
    return [
        (
            "schedule_robustness.png",
            "Defect against the Karras schedule exponent rho at fixed NFE (rho = 1: uniform in "
            "sigma; right edge: exponential schedule; vertical line: EDM's rho = 7). Made by "
            f"`{command}`; table schedule_robustness.csv.",
        )
    ]


def _draw_stochastic(rows: Rows, out: Path, command: str) -> Figures:
    plots.plot_stochastic(rows, out / "stochastic.png")
    return [
        (
            "stochastic.png",
            "Stochastic sampling with EDM churn (Algorithm 2): Fréchet distance against NFE "
            "for EDM's Heun, DPM-Solver++(2S) and RES-2S steps, at fixed S_churn. Made by "
            f"`{command}`; table stochastic.csv.",
        )
    ]


def _draw_residuals(rows: Rows, out: Path, command: str) -> Figures:
    plots.plot_psi_residuals([r for r in rows if r["table"] == "psi"], out / "psi_residuals.png")
    plots.plot_c2_sweep([r for r in rows if r["table"] == "c2_sweep"], out / "c2_sweep.png")
    return [
        (
            "psi_residuals.png",
            "Order-condition residuals |psi_j(h)| of the exported tableaux against step size h: "
            "DPM-Solver++ has psi_2 = h/12 + O(h^2), RES has psi_2 = 0 identically. Made by "
            f"`{command}`; table residuals.csv (table = psi).",
        ),
        (
            "c2_sweep.png",
            "Defect of the 2-stage single-step methods against their node c2 at fixed NFE. Made by "
            f"`{command}`; table residuals.csv (table = c2_sweep).",
        ),
    ]


def _draw_convergence(rows: Rows, out: Path, command: str) -> Figures:
    plots.plot_convergence(rows, out / "convergence.png")
    return [
        (
            "convergence.png",
            "Convergence of the global error with step count on the convergence test "
            "problems (experiments.convergence.study), observed orders in the table. Made by "
            f"`{command}`; table convergence.csv.",
        )
    ]


EXPERIMENTS: dict[str, Experiment] = {
    "defect": Experiment(DefectConfig, run_defect, _draw_defect),
    "quality": Experiment(QualityConfig, run_quality, _draw_quality),
    "schedule_robustness": Experiment(ScheduleConfig, run_schedule_robustness, _draw_schedule),
    "stochastic": Experiment(StochasticConfig, run_stochastic, _draw_stochastic),
    "residuals": Experiment(ResidualsConfig, run_residuals, _draw_residuals),
    "convergence": Experiment(ConvergenceConfig, run_convergence_table, _draw_convergence),
}


def _reference_notes(rows: Rows) -> list[str]:
    """Per problem: the largest error estimate of the converged references against the
    smallest defect measured (the defects are only meaningful well above the former)."""
    notes = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        mine = [r for r in rows if r["problem"] == problem]
        worst = max(r["reference_error"] for r in mine)
        smallest = min(r["defect"] for r in mine)
        notes.append(
            f"{problem}: reference solutions converged to {worst:.2g} (max norm, DOP853 at two "
            f"tolerances); smallest defect measured {smallest:.2g} (mean L2)."
        )
    return notes


def run_pipeline(
    out: Path,
    *,
    quick: bool,
    device: str | None,
    force: bool,
    command: str,
    only: Sequence[str] | None = None,
    configs: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Run (or load) every experiment (or those in ``only``), write ``<name>.csv``, figures and
    ``RESULTS.md`` under ``out``. ``configs`` replaces the quick/full preset of the experiments
    it names. Returns ``{experiment: error message}`` for the experiments that failed."""
    resolved = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    names = list(EXPERIMENTS) if only is None else list(only)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    tables: dict[str, Rows] = {}
    figures: Figures = []
    failures: dict[str, str] = {}
    for name in tqdm(list(EXPERIMENTS), desc="paper figures"):
        experiment = EXPERIMENTS[name]
        if configs is not None and name in configs:
            config = configs[name]
        else:
            config = experiment.config_class.quick() if quick else experiment.config_class.full()
        if name not in names:  # not asked for: keep its cached results in RESULTS.md, if any
            table = cached_table(name, config, out / "cache")
            if table.exists():
                tables[name] = read_csv(table)
                figures += experiment.draw(tables[name], out, command)
            continue
        try:
            rows, cached = cached_rows(
                name, config, lambda c, e=experiment: e.run(c, resolved), out / "cache", force=force
            )
            tqdm.write(f"{name}: {'cached' if cached else 'computed'} ({len(rows)} rows)")
            write_csv(rows, out / f"{name}.csv")
            figures += experiment.draw(rows, out, command)
            tables[name] = rows
        except Exception as err:  # noqa: BLE001 - reported in RESULTS.md and the exit status
            traceback.print_exc()
            failures[name] = f"{type(err).__name__}: {err}"
    defect_cmp = compare_res_to_dpmpp(tables.get("defect", []), "defect")
    quality_cmp = compare_res_to_dpmpp(tables.get("quality", []), "frechet")
    if defect_cmp or quality_cmp:
        write_csv([*defect_cmp, *quality_cmp], out / "res_vs_dpmpp.csv")
    notes = [f"experiment `{n}` failed: {m}" for n, m in failures.items()]
    notes += _reference_notes(tables.get("defect", []))
    (out / "RESULTS.md").write_text(
        results_markdown(defect_cmp, quality_cmp, figures, command, notes)
    )
    return failures
