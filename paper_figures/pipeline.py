"""The figure pipeline: experiments -> cached tables -> figures + CSV -> RESULTS.md + README.

:data:`EXPERIMENTS` is the registry: one :class:`Experiment` per experiment, with its
configuration class (``quick()``/``full()``), its runner ``run(config, device) -> rows``, the
function that draws its figures from the rows and, optionally, the function that renders its
README block from the rows (:mod:`paper_figures.tables`). :func:`run_pipeline` runs them in
order with a tqdm bar, caching each table by configuration and device type, and writes
``<name>.csv``, the figures and RESULTS.md; :mod:`paper_figures.readme` puts the README blocks
between their markers in README.md (the full run does so at the end; a test fails when
README.md and the committed tables disagree).

Adding an experiment (as the sampler league, ``"league"``, was added):

1. a module ``experiments/.../NAME.py`` with a frozen config dataclass (``quick()``,
   ``full()``) and ``run(config, device) -> list[dict]`` (one dict per table row);
2. one entry ``"NAME": Experiment(Config, run, draw, readme)`` in :data:`EXPERIMENTS`, with
   ``draw(rows, out_dir, command) -> [(png name, caption)]`` (``lambda *_: []`` for no figure;
   ``out_dir=None``: the captions only, nothing drawn) and ``readme(rows) -> Markdown`` (or
   ``None`` for no README block); ``on_device=False`` for a runner that ignores the device,
   ``uses_cache=True`` for one that takes a cache folder (:class:`Experiment`);
3. for a README block, the two marker lines of :func:`paper_figures.readme.begin_marker` /
   ``end_marker`` in README.md where the table belongs; ``python -m paper_figures.readme``
   fills them from ``paper_figures/output/NAME.csv``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    StoredFileError,
    cached_rows,
    cached_table,
    check_columns,
    read_csv,
    resolve_device,
    warn_if_stale,
    write_csv,
)
from experiments.league.run import LeagueConfig, run_league_experiment
from paper_figures import plots, tables
from paper_figures.summary import (
    compare_res_to_dpmpp,
    league_cells,
    league_markdown,
    results_markdown,
)

__all__ = ["EXPERIMENTS", "Columns", "Experiment", "check_table", "read_table", "run_pipeline"]

Rows = list[dict[str, Any]]
Figures = list[tuple[str, str]]


@dataclass(frozen=True)
class Columns:
    """Columns that the rows of a table read back must have before they are drawn: ``text``
    (any value) and ``numbers`` (real numbers: not empty, not text, not NaN)."""

    text: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    """An experiment of the pipeline: settings class, runner ``run(config, device) -> rows``,
    figure maker ``draw(rows, out_dir, command) -> [(png name, caption)]`` (``out_dir=None``:
    the captions only, nothing drawn) and README block renderer ``readme(rows) -> Markdown``
    (None: no block). ``on_device``: ``run`` computes on the device it is given, so its cached
    table is keyed by that device's type (False: it computes on the CPU whatever the device,
    and is keyed as a CPU table). ``uses_cache``: ``run`` is called as ``run(config, device,
    cache_dir)``, ``cache_dir`` the pipeline's ``out/cache``, where it keeps results worth
    reusing between runs (the league's references). ``columns``: what :func:`check_table`
    checks of a table read back from disk, per value of its ``table`` column (``None``: every
    row)."""

    config_class: Any
    run: Callable[..., Rows]
    draw: Callable[[Rows, Path | None, str], Figures]
    readme: Callable[[Rows], str] | None = None
    on_device: bool = True
    uses_cache: bool = False
    columns: Mapping[str | None, Columns] = field(default_factory=dict)


def _draw_defect(rows: Rows, out: Path | None, command: str) -> Figures:
    if out is not None:
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


def _draw_quality(rows: Rows, out: Path | None, command: str) -> Figures:
    if out is not None:
        plots.plot_metric_vs_nfe(
            rows, "frechet", "Fréchet distance to data", out / "quality_vs_nfe.png"
        )
    return [
        (
            "quality_vs_nfe.png",
            "Sample quality against NFE: Fréchet distance in a fixed feature space (digits: the "
            "trained digits classifier, 'Fréchet Digits Distance'; patches: fixed random-conv "
            f"features) against the training data; black line{_reference_problems(rows)}: the "
            "same noise through the converged ODE solver (its Fréchet distance is not 0: "
            f"finite samples). Made by `{command}`; table quality.csv.",
        )
    ]


def _reference_problems(rows: Rows) -> str:
    names = list(dict.fromkeys(r["problem"] for r in rows if r["method"] == "reference"))
    return f" ({', '.join(names)} only)" if names else " (not computed in this run)"


def _draw_schedule(rows: Rows, out: Path | None, command: str) -> Figures:
    if out is not None:
        plots.plot_schedule_robustness(rows, out / "schedule_robustness.png")
    return [
        (
            "schedule_robustness.png",
            "Defect against the Karras schedule exponent rho at fixed NFE (rho = 1: uniform in "
            "sigma; grey line: EDM's rho = 7; right of the dotted line, at 'exp.': the "
            "exponential schedule, the limit rho -> infinity). Made by "
            f"`{command}`; table schedule_robustness.csv.",
        )
    ]


def _draw_stochastic(rows: Rows, out: Path | None, command: str) -> Figures:
    if out is not None:
        plots.plot_stochastic(rows, out / "stochastic.png")
    return [
        (
            "stochastic.png",
            "Stochastic sampling with EDM churn (Algorithm 2): Fréchet distance against NFE "
            "for EDM's Heun, DPM-Solver++(2S) and RES-2S steps, at fixed S_churn. Made by "
            f"`{command}`; table stochastic.csv.",
        )
    ]


def _draw_residuals(rows: Rows, out: Path | None, command: str) -> Figures:
    if out is not None:
        psi = [r for r in rows if r["table"] == "psi"]
        plots.plot_psi_residuals(psi, out / "psi_residuals.png")
        plots.plot_c2_sweep([r for r in rows if r["table"] == "c2_sweep"], out / "c2_sweep.png")
    return [
        (
            "psi_residuals.png",
            "Order-condition residuals |psi_j(h)| of the exported tableaux against step size h, "
            "one panel per condition: DPM-Solver++'s psi_2 (the same function for 2S at every "
            "c2 and for 2M) follows the dotted h/12 line at small h; RES has psi_2 = 0 "
            "identically (listed under the panels). Made by "
            f"`{command}`; table residuals.csv (table = psi).",
        ),
        (
            "c2_sweep.png",
            "Defect of the 2-stage single-step methods against their node c2 at fixed NFE. Made by "
            f"`{command}`; table residuals.csv (table = c2_sweep).",
        ),
    ]


def _draw_convergence(rows: Rows, out: Path | None, command: str) -> Figures:
    if out is not None:
        plots.plot_convergence(rows, out / "convergence.png")
    return [
        (
            "convergence.png",
            "Convergence of the global error with step size on the convergence problems "
            "(experiments.convergence.study); under each panel the measured order of every "
            "method and the order expected there (classical for L = -1, stiff for the PDE). "
            "Made by "
            f"`{command}`; table convergence.csv.",
        )
    ]


def _draw_league(rows: Rows, out: Path | None, command: str) -> Figures:
    league = [r for r in rows if r["table"] == "league"]
    if out is not None:
        plots.plot_league(league, league_cells(league), out / "league.png")
    figures = [
        (
            "league.png",
            "The sampler league: defect against NFE of every entrant on each testbed (EDM "
            "Karras grid rho = 7, sigma 80 -> 0.002 -> 0; res entrants thin blue, peers thin "
            "grey dashed; thick: the best res entrant and the best peer per NFE); last panel: "
            "their ratio per cell, with the target 0.8 (exact testbeds) and 1. Made by "
            f"`{command}`; table league.csv (table = league), `docs/league.md`.",
        )
    ]
    mechanism = [r for r in rows if r["table"] == "mechanism"]
    if mechanism:
        if out is not None:
            plots.plot_mechanism(mechanism, out / "league_mechanism.png")
        figures.append(
            (
                "league_mechanism.png",
                "Why methods win or lose: the step-scaled k-th Taylor term |Y^(k)| du^k / k! "
                "of the extrapolated quantity (D in lambda: res / DPM-Solver++; eps in sigma: "
                "iPNDM; eps in log sigma: DEIS) per sigma band along exact trajectories, du "
                "the NFE-10 Karras step. Made by "
                f"`{command}`; table league.csv (table = mechanism).",
            )
        )
    return figures


_METHODS = ("problem", "kind", "method")

EXPERIMENTS: dict[str, Experiment] = {
    "defect": Experiment(
        DefectConfig,
        run_defect,
        _draw_defect,
        tables.defect_block,
        columns={None: Columns(_METHODS, ("nfe", "defect", "reference_error"))},
    ),
    "quality": Experiment(
        QualityConfig,
        run_quality,
        _draw_quality,
        tables.quality_block,
        columns={None: Columns(_METHODS, ("nfe", "frechet"))},
    ),
    "schedule_robustness": Experiment(
        ScheduleConfig,
        run_schedule_robustness,
        _draw_schedule,
        tables.schedule_block,
        columns={None: Columns(_METHODS, ("nfe", "nfe_requested", "rho_swept", "defect"))},
    ),
    "stochastic": Experiment(
        StochasticConfig,
        run_stochastic,
        _draw_stochastic,
        tables.stochastic_block,
        columns={None: Columns(_METHODS, ("nfe", "s_churn", "frechet"))},
    ),
    "residuals": Experiment(
        ResidualsConfig,
        run_residuals,
        _draw_residuals,
        tables.residuals_block,
        columns={
            None: Columns(("table", "method", "c2")),
            "psi": Columns(("condition",), ("h", "residual")),
            "c2_sweep": Columns(("problem", "kind"), ("c2", "nfe", "defect")),
        },
    ),
    "convergence": Experiment(
        ConvergenceConfig,
        run_convergence_table,
        _draw_convergence,
        tables.convergence_block,
        on_device=False,
        columns={
            None: Columns(("table", "problem", "method")),
            "errors": Columns(numbers=("n_steps", "h", "error")),
            "slopes": Columns(("regime", "measured_order"), ("stiff_order", "classical_order")),
        },
    ),
    "league": Experiment(
        LeagueConfig,
        run_league_experiment,
        _draw_league,
        tables.league_block,
        uses_cache=True,
        columns={
            None: Columns(("table", "testbed")),
            "league": Columns(
                ("kind", "entrant", "family"), ("nfe", "nfe_spent", "defect", "reference_error")
            ),
            "mechanism": Columns(("quantity", "band"), ("k", "norm", "step_scaled")),
        },
    ),
}


def check_table(name: str, rows: Rows, path: Path) -> Rows:
    """``rows``, read back from ``path``, after :func:`check_columns` of the columns experiment
    ``name`` draws (:attr:`Experiment.columns`): a :class:`ResultFileError` naming the file for
    a table of another experiment, a missing column or a cell that is not a number."""
    for kind, columns in EXPERIMENTS[name].columns.items():
        mine = rows if kind is None else [r for r in rows if r["table"] == kind]
        check_columns(mine, path, columns.text, columns.numbers)
    return rows


def read_table(name: str, path: Path) -> Rows:
    """Experiment ``name``'s table at ``path``, read (:func:`read_csv`) and checked
    (:func:`check_table`)."""
    return check_table(name, read_csv(path), path)


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


def _runner(experiment: Experiment, device: torch.device, cache: Path) -> Callable[[Any], Rows]:
    """``config -> rows`` of ``experiment`` on ``device`` (given ``cache`` if it uses one)."""
    if experiment.uses_cache:
        return lambda config: experiment.run(config, device, cache)
    return lambda config: experiment.run(config, device)


def run_pipeline(
    out: Path,
    *,
    quick: bool,
    device: str | None,
    force: bool,
    command: str,
    only: Sequence[str] | None = None,
    configs: Mapping[str, Any] | None = None,
    redraw: bool = False,
) -> dict[str, str]:
    """Run (or load) every experiment (or those in ``only``), write ``<name>.csv``, figures and
    ``RESULTS.md`` under ``out``. ``configs`` replaces the quick/full preset of the experiments
    it names. Tables are cached in ``out/cache`` by configuration and by the type of ``device``
    (resolved by :func:`resolve_device`) for the experiments that compute on it; the experiments
    not in ``only`` keep their figures in RESULTS.md, redrawn from their cached tables, if any.
    ``redraw`` runs nothing: RESULTS.md is written from every ``<name>.csv`` table already in
    ``out`` and the figures of the experiments in ``only`` (default: all) are redrawn from
    theirs; the other experiments' figures are listed in RESULTS.md as they are, not redrawn.
    Returns ``{experiment: error message}`` for the experiments that failed."""
    resolved = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    names = list(EXPERIMENTS) if only is None else list(only)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    cache = out / "cache"
    results: dict[str, Rows] = {}
    figures: Figures = []
    failures: dict[str, str] = {}
    for name in tqdm(list(EXPERIMENTS), desc="paper figures"):
        experiment = EXPERIMENTS[name]
        try:
            if redraw:
                if (out / f"{name}.csv").exists():
                    rows = read_table(name, out / f"{name}.csv")
                    figures += experiment.draw(rows, out if name in names else None, command)
                    results[name] = rows
                continue
            if configs is not None and name in configs:
                config = configs[name]
            else:
                preset = experiment.config_class
                config = preset.quick() if quick else preset.full()
            table_device = resolved.type if experiment.on_device else "cpu"
            table = cached_table(name, config, cache, table_device)
            if name not in names:  # not asked for: keep its cached results in RESULTS.md, if any
                if table.exists():
                    warn_if_stale(name, table)
                    rows = read_table(name, table)
                    figures += experiment.draw(rows, out, command)
                    results[name] = rows
                continue
            start = time.perf_counter()
            compute = _runner(experiment, resolved, cache)
            rows, cached = cached_rows(
                name, config, compute, cache, device=table_device, force=force
            )
            if cached:
                check_table(name, rows, table)
            seconds = time.perf_counter() - start
            status = "cached" if cached else f"computed in {seconds:.0f} s"
            tqdm.write(f"{name}: {status} ({len(rows)} rows)")
            write_csv(rows, out / f"{name}.csv")
            figures += experiment.draw(rows, out, command)
            results[name] = rows
        except StoredFileError as err:  # a damaged file: its message names it and what to do
            failures[name] = str(err)
        except Exception as err:  # noqa: BLE001 - reported in RESULTS.md and the exit status
            traceback.print_exc()
            failures[name] = f"{type(err).__name__}: {err}"
    defect_cmp = compare_res_to_dpmpp(results.get("defect", []), "defect")
    quality_cmp = compare_res_to_dpmpp(results.get("quality", []), "frechet")
    if defect_cmp or quality_cmp:
        write_csv([*defect_cmp, *quality_cmp], out / "res_vs_dpmpp.csv")
    notes = [f"experiment `{n}` failed: {m}" for n, m in failures.items()]
    notes += _reference_notes(results.get("defect", []))
    sections = [league_markdown(results["league"])] if "league" in results else []
    (out / "RESULTS.md").write_text(
        results_markdown(defect_cmp, quality_cmp, figures, command, notes, sections)
    )
    return failures
