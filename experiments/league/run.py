"""The league runner: defect against NFE of every entrant on every testbed, in one run.

For each testbed, a converged reference batch (:mod:`experiments.league.references`, cached on
disk), and for each requested budget ``NFE`` and entrant: the configuration's grid (the EDM
Karras grid by default, over :func:`schedule_range`) on which the entrant spends the largest
budget ``<= NFE`` it can spend exactly (2-stage single-step methods spend odd budgets), the
sample from ``sigma_max * noise``, and its defect, the batch mean of the
L2 distance to the reference (as :mod:`experiments.defect`). Every denoiser call is counted
(:class:`CountingDenoiser`) and asserted equal to the budget. Rows: ``testbed, kind, entrant,
family, nfe, nfe_spent, defect, reference_error``; :func:`cell_summary` gives per cell
(testbed, NFE) the best res method, the best peer and their ratio;
:func:`run_league_experiment` adds the derivative norms and denoiser gains of
:mod:`experiments.league.mechanisms` (the figure pipeline's ``league`` table).

Run: ``python -m experiments.league [--quick] [--device D] [--out DIR]`` (writes
``DIR/league.csv``, keeps the references in ``DIR/cache`` and prints the cell table).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.league.entrants import ENTRANTS, get_entrant
from experiments.league.references import SIGMA_MAX, SIGMA_MIN, league_reference
from experiments.league.testbeds import TESTBEDS, get_testbed, scaled_testbed

__all__ = [
    "NFES",
    "BudgetError",
    "CountingDenoiser",
    "LeagueConfig",
    "cell_summary",
    "league_grid",
    "run_league",
    "run_league_experiment",
    "schedule_range",
]

NFES: tuple[int, ...] = (5, 6, 8, 10, 12, 15, 20, 30, 50)


class BudgetError(AssertionError):
    """An entrant called the denoiser another number of times than its budget."""


class CountingDenoiser:
    """Wraps a denoiser and counts its calls (each call: one network evaluation of the batch)."""

    def __init__(self, denoiser: Callable[..., torch.Tensor]) -> None:
        self.denoiser = denoiser
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma, **kwargs)


@dataclass(frozen=True)
class LeagueConfig:
    """Testbeds with batch sizes, entrants and budgets of one league run, and the exact testbeds
    (with their batch) on which :mod:`experiments.league.mechanisms` measures derivatives;
    ``data_scale`` multiplies every testbed's data (:func:`scaled_testbed`)."""

    testbeds: tuple[tuple[str, int], ...]
    entrants: tuple[str, ...]
    nfes: tuple[int, ...] = NFES
    seed: int = 0
    rho: float = 7.0
    schedule: str = "karras"
    mechanism_testbeds: tuple[str, ...] = ()
    mechanism_batch: int = 8
    data_scale: float = 1.0

    @classmethod
    def quick(cls) -> LeagueConfig:
        names = ("gmm", "gmm_sharp", "kernel_digits")
        return cls(
            tuple((n, get_testbed(n).quick_batch) for n in names),
            tuple(ENTRANTS),
            (5, 10, 20, 50),
            mechanism_testbeds=("gmm", "gmm_sharp"),
        )

    @classmethod
    def full(cls) -> LeagueConfig:
        exact = tuple(n for n in TESTBEDS if get_testbed(n).kind == "exact")
        return cls(
            tuple((n, get_testbed(n).batch) for n in TESTBEDS),
            tuple(ENTRANTS),
            mechanism_testbeds=exact,
        )


def schedule_range(schedule: str) -> tuple[float, float]:
    """``(sigma_max, sigma_min)`` of the league's grids on ``schedule``: the EDM range 80 ->
    0.002 for a :data:`res_torch.nfe.SCHEDULES` name that takes a range, the grid's own ends for
    the others (``vp``: about 152 -> 0.0105; ``discrete``, Stable Diffusion's training levels:
    14.6 -> 0.0292)."""
    from res_torch.nfe import SCHEDULES, has_range

    if has_range(schedule):
        return SIGMA_MAX, SIGMA_MIN
    ends = SCHEDULES[schedule](2)
    return float(ends[0]), float(ends[1])


def league_grid(
    grid_method: str, nfe: int, rho: float = 7.0, schedule: str = "karras"
) -> tuple[torch.Tensor, int]:
    """``(sigmas, spent)``: the grid (``schedule``, a :data:`res_torch.nfe.SCHEDULES` name, over
    :func:`schedule_range`, then 0; ``rho`` for ``karras``) on which ``grid_method``'s NFE rule
    spends the largest budget ``spent <= nfe`` exactly; ``ValueError`` if not even one step
    fits."""
    from res_torch import NFEBudgetError, sigmas_for_nfe
    from res_torch.nfe import has_range

    sigma_max, sigma_min = schedule_range(schedule)
    ends = {"sigma_min": sigma_min, "sigma_max": sigma_max} if has_range(schedule) else {}
    for budget in range(nfe, 1, -1):
        try:
            sigmas = sigmas_for_nfe(
                budget, grid_method, schedule, rho=rho if schedule == "karras" else None, **ends
            )
        except NFEBudgetError:
            continue
        if len(sigmas) >= 3:
            return sigmas, budget
    raise ValueError(f"NFE {nfe} is too small for {grid_method}")


def run_league(
    config: LeagueConfig, device: torch.device, cache_dir: Path | None
) -> list[dict[str, Any]]:
    """All rows (module docstring); the references are kept in ``cache_dir`` (``None``: solved
    afresh, not kept); the progress bar advances per (testbed, NFE) cell."""
    rows: list[dict[str, Any]] = []
    cells = len(config.testbeds) * len(config.nfes)
    sigma_max, sigma_min = schedule_range(config.schedule)
    with tqdm(total=cells, desc="league") as progress:
        for name, batch in config.testbeds:
            testbed = scaled_testbed(get_testbed(name, device), config.data_scale)
            progress.set_postfix_str(f"{name}: reference")
            reference = league_reference(
                testbed, batch=batch, seed=config.seed, cache_dir=cache_dir,
                sigma_max=sigma_max, sigma_min=sigma_min,
            )  # fmt: skip
            noise = reference.noise.to(device)
            for nfe in config.nfes:
                progress.set_postfix_str(f"{name} NFE {nfe}")
                for entrant_name in config.entrants:
                    entrant = get_entrant(entrant_name)
                    sigmas, spent = league_grid(
                        entrant.grid_method, nfe, config.rho, config.schedule
                    )
                    sigmas = sigmas.to(device=device, dtype=torch.float64)
                    counter = CountingDenoiser(testbed.denoiser)
                    out = entrant.run(counter, noise * sigmas[0], sigmas)
                    if counter.calls != spent:
                        raise BudgetError(
                            f"{entrant_name} at NFE {spent} called the denoiser "
                            f"{counter.calls} times"
                        )
                    defect = float((out - reference.x.to(out)).flatten(1).norm(dim=1).mean())
                    rows.append(
                        {
                            "testbed": testbed.name,
                            "kind": testbed.kind,
                            "entrant": entrant_name,
                            "family": entrant.family,
                            "nfe": nfe,
                            "nfe_spent": spent,
                            "defect": defect if math.isfinite(defect) else float("inf"),
                            "reference_error": reference.error_estimate,
                        }
                    )
                progress.update()
    return rows


def cell_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (testbed, NFE): best res method and best peer with defects and ``ratio`` (res/peer)."""
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        cell = cells.setdefault(
            (row["testbed"], row["nfe"]),
            {"testbed": row["testbed"], "kind": row["kind"], "nfe": row["nfe"]},
        )
        key = "res" if row["family"] == "res" else "peer"
        if row["defect"] < cell.get(f"best_{key}_defect", math.inf):
            cell[f"best_{key}"] = row["entrant"]
            cell[f"best_{key}_defect"] = row["defect"]
    for cell in cells.values():
        cell["ratio"] = cell["best_res_defect"] / cell["best_peer_defect"]
    return list(cells.values())


def run_league_experiment(
    config: LeagueConfig, device: torch.device, cache_dir: Path | None
) -> list[dict[str, Any]]:
    """The figure pipeline's league table: the league rows (``table = "league"``, references kept
    in ``cache_dir`` as by :func:`run_league`) followed by,
    on ``config.mechanism_testbeds``, the derivative norms of
    :func:`experiments.league.mechanisms.derivative_norms` (``table = "mechanism"``) and the
    denoiser gains of :func:`experiments.league.mechanisms.denoiser_gain` (``table = "gain"``);
    both computed on the CPU, in float64."""
    from experiments.league.mechanisms import denoiser_gain, derivative_norms

    rows = [{"table": "league", **row} for row in run_league(config, device, cache_dir)]
    measures = {"mechanism": derivative_norms, "gain": denoiser_gain}
    for name in tqdm(config.mechanism_testbeds, desc="league mechanisms"):
        for table, measure in measures.items():
            rows += [
                {"table": table, **row}
                for row in measure(name, batch=config.mechanism_batch, seed=config.seed)
            ]
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    from experiments.experiment_runner import experiment_main

    def run(config: LeagueConfig, device: torch.device, cache_dir: Path) -> list[dict[str, Any]]:
        rows = run_league(config, device, cache_dir)
        summary = cell_summary(rows)
        print(
            f"{'testbed':15s} {'nfe':>4s} {'best res':>18s} {'defect':>9s} "
            f"{'best peer':>14s} {'defect':>9s} {'ratio':>6s}"
        )
        for c in summary:
            print(
                f"{c['testbed']:15s} {c['nfe']:4d} {c['best_res']:>18s} "
                f"{c['best_res_defect']:9.3g} {c['best_peer']:>14s} "
                f"{c['best_peer_defect']:9.3g} {c['ratio']:6.2f}"
            )
        return rows

    experiment_main(
        "league",
        LeagueConfig,
        run,
        argv,
        description=__doc__,
        module="experiments.league",
        uses_cache=True,
    )
