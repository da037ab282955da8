"""The designed methods' league: every entrant at every league NFE on the five exact testbeds.

The quick league (``python -m experiments.league --quick``) has four budgets on three testbeds;
the designs and ``method="auto"``'s table (``res_torch.recommend``) are judged here on all nine
budgets (:data:`experiments.league.run.NFES`) and every exact testbed, at the quick batch
sizes. :func:`ratio_table` gives, per res entrant and NFE, the geometric mean over the
testbeds of its defect divided by the best peer's in the cell (< 1: better than every peer).

Run: ``python -m experiments.league.designs [--out DIR] [--testbeds NAME ...] [--schedule
GRID [--rho RHO]] [--data-scale K]`` (writes ``DIR/league_designs.csv``, or
``league_designs_<names>_<grid>_x<K>.csv`` for other testbeds, grids and data scales,
``<grid>`` as ``flow``, ``vp``, ``discrete`` or ``karras_rho3``, with the runner's columns,
and prints the ratio table; about a minute on 2 CPU cores with the
references cached in ``DIR/cache``, for the exact testbeds and for the trained ``digits``
network alike).
``--doc`` rewrites the generated block of ``docs/designed_methods.md`` and the README's
summary of it from the committed CSVs (:data:`DOC_RUNS`) and draws them
(``docs/designs_league.png``, :func:`plot_runs`) instead.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.experiment_runner import positive_real, read_csv, writable_folder, write_csv
from experiments.generated_blocks import replace_block
from experiments.league.entrants import ENTRANTS
from experiments.league.run import NFES, LeagueConfig, cell_summary, run_league
from experiments.league.testbeds import TESTBEDS, get_testbed
from res_torch import get_sigmas_karras
from res_torch.errors import ResError

__all__ = [
    "DOC_RUNS",
    "GRIDS",
    "best_res_ratios",
    "doc_block",
    "exact_config",
    "main",
    "plot_runs",
    "ratio_table",
    "read_run",
    "summary_block",
    "update_doc",
]

GRIDS: tuple[str, ...] = ("karras", "exponential", "flow", "uniform", "vp", "discrete")
"""The schedules (``res_torch.nfe.SCHEDULES``) of a designs run: from sigma 80 to 0.002, the
VP and discrete (Stable Diffusion's ``normal``) grids over their own ranges
(:func:`experiments.league.run.schedule_range`)."""


def exact_config(
    testbeds: Sequence[str] | None = None,
    schedule: str = "karras",
    rho: float = 7.0,
    data_scale: float = 1.0,
) -> LeagueConfig:
    """Every entrant, every league NFE, on ``testbeds`` (default: every exact one) at their
    quick batch sizes, on the ``schedule`` grid (default: the EDM Karras grid, ``rho`` 7), the
    data multiplied by ``data_scale``."""
    if testbeds is None:
        testbeds = [n for n in TESTBEDS if get_testbed(n).kind == "exact"]
    return LeagueConfig(
        tuple((n, get_testbed(n).quick_batch) for n in testbeds), tuple(ENTRANTS), NFES,
        rho=rho, schedule=schedule, data_scale=data_scale,
    )  # fmt: skip


def ratio_table(rows: Sequence[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """``{res entrant: {nfe: geometric mean over testbeds of defect / best peer's defect}}``."""
    best: dict[tuple[str, int], float] = {}
    for row in rows:
        if row["family"] == "peer":
            key = (row["testbed"], int(row["nfe"]))
            best[key] = min(best.get(key, math.inf), float(row["defect"]))
    logs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["family"] == "res":
            nfe = int(row["nfe"])
            ratio = float(row["defect"]) / best[(row["testbed"], nfe)]
            logs[row["entrant"]][nfe].append(math.log(ratio))
    return {
        entrant: {nfe: math.exp(sum(v) / len(v)) for nfe, v in sorted(by_nfe.items())}
        for entrant, by_nfe in logs.items()
    }


ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "designed_methods.md"
README = ROOT / "README.md"
FIGURE = ROOT / "docs" / "designs_league.png"
DOC_RUNS: dict[str, str] = {
    "league_designs.csv": "exact testbeds, EDM Karras grid rho = 7",
    "league_designs_karras_rho3.csv": "exact testbeds, Karras grid rho = 3",
    "league_designs_exponential.csv": "exact testbeds, exponential grid (uniform in log sigma)",
    "league_designs_flow.csv": "exact testbeds, flow grid shift 3 (uniform in sigma/(sigma + 3))",
    "league_designs_vp.csv": "exact testbeds, VP grid (uniform in VP time, sigma 152 -> 0.0105)",
    "league_designs_discrete.csv": (
        "exact testbeds, Stable Diffusion's discrete grid (uniform in timestep, sigma 14.6 -> "
        "0.0292)"
    ),
    "league_designs_digits.csv": "trained digits network, EDM Karras grid rho = 7",
    "league_designs_x4.csv": "exact testbeds with their data scaled 4x, EDM Karras grid rho = 7",
    "league_designs_x10.csv": (
        "exact testbeds with their data scaled 10x, EDM Karras grid rho = 7"
    ),
}
"""The committed designs runs (``benchmarks/results/``) of the doc's generated block."""
_BEGIN = "<!-- generated: designs (python -m experiments.league.designs --doc) -->"
_END = "<!-- end generated: designs -->"
_SUMMARY_BEGIN = "<!-- generated: designs summary (python -m experiments.league.designs --doc) -->"
_SUMMARY_END = "<!-- end generated: designs summary -->"


def _cells(rows: Sequence[dict[str, Any]]) -> tuple[int, int, int]:
    """``(cells, res at most 0.8x the best peer, res better than the best peer)``."""
    ratios = [cell["ratio"] for cell in cell_summary(rows)]
    return len(ratios), sum(r <= 0.8 for r in ratios), sum(r < 1 for r in ratios)


def read_run(path: Path) -> list[dict[str, Any]]:
    """The rows of a committed designs run, ``nfe`` and ``defect`` as numbers."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python -m experiments.league.designs")
    return [
        {**row, "nfe": int(row["nfe"]), "defect": float(row["defect"])} for row in read_csv(path)
    ]


def doc_block(results: Path = RESULTS) -> str:
    """The Markdown of the doc's generated block: per committed run, the :func:`ratio_table`
    of every res entrant and the count of cells the best res entrant wins."""
    parts = []
    for name, title in DOC_RUNS.items():
        rows = read_run(results / name)
        table = ratio_table(rows)
        nfes = sorted({int(r["nfe"]) for r in rows})
        cells, target, wins = _cells(rows)
        parts += [
            f"**{title}** (`benchmarks/results/{name}`): best res entrant <= 0.8x the best peer "
            f"in {target} of {cells} cells, better than it in {wins}.",
            "",
            "| res entrant | " + " | ".join(map(str, nfes)) + " |",
            "|---|" + "---|" * len(nfes),
            *(
                f"| {e} | " + " | ".join(f"{by[n]:.2f}" for n in nfes) + " |"
                for e, by in table.items()
            ),
            "",
        ]
    return "\n".join(parts).strip()


def summary_block(results: Path = RESULTS) -> str:
    """The README's lines: per committed run, how many cells the best res entrant wins."""
    lines = []
    for name, title in DOC_RUNS.items():
        cells, target, wins = _cells(read_run(results / name))
        lines.append(
            f"* {title}: best res entrant <= 0.8x the best peer in {target} of {cells} cells, "
            f"better than it in {wins}"
        )
    return "\n".join(lines)


def best_res_ratios(rows: Sequence[dict[str, Any]]) -> dict[int, float]:
    """``{nfe: geometric mean over testbeds of best res defect / best peer defect}``: the
    envelope of the res entrants, chosen per cell (the league's per-cell ratio)."""
    logs: dict[int, list[float]] = defaultdict(list)
    for cell in cell_summary(rows):
        logs[int(cell["nfe"])].append(math.log(cell["ratio"]))
    return {nfe: math.exp(sum(v) / len(v)) for nfe, v in sorted(logs.items())}


def plot_runs(png: Path = FIGURE, results: Path = RESULTS) -> None:
    """Draw one panel per committed run: each res entrant's :func:`ratio_table` line against
    NFE (the designed ``res_pc*`` methods thick), the per-cell best res entrant
    (:func:`best_res_ratios`, black) and the target 0.8 and parity 1 (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 4
    shape = (math.ceil((len(DOC_RUNS) + 1) / columns), columns)  # + 1: the legend's panel
    fig, grid = plt.subplots(*shape, figsize=(4.6 * shape[1], 4.2 * shape[0]), sharey=True)
    axes = list(grid.flat)
    colours = plt.get_cmap("tab10")
    for ax, (name, title) in zip(axes, DOC_RUNS.items(), strict=False):  # spare: legend
        rows = read_run(results / name)
        for i, (entrant, by_nfe) in enumerate(ratio_table(rows).items()):
            designed = entrant.startswith("res_pc")
            ax.plot(
                list(by_nfe), list(by_nfe.values()), marker="o" if designed else None,
                lw=2 if designed else 1, alpha=1 if designed else 0.5, color=colours(i),
                label=entrant,
            )  # fmt: skip
        envelope = best_res_ratios(rows)
        ax.plot(list(envelope), list(envelope.values()), "k-", lw=2.5, label="best res per cell")
        for level in (0.8, 1.0):
            ax.axhline(level, color="grey", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="NFE", title=title.replace(", ", ",\n", 1))
        ax.set_xticks(NFES, [str(n) for n in NFES])
        ax.set_xticks([], minor=True)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel("defect / best peer's (geo. mean over testbeds)")
    for ax in axes[len(DOC_RUNS) :]:
        ax.axis("off")
    axes[-1].legend(*axes[0].get_legend_handles_labels(), loc="center")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _rewrite(path: Path, begin: str, end: str, body: str) -> bool:
    """Replace the generated block between ``begin`` and ``end`` of the file ``path`` by
    ``body``; whether the file changed (``ValueError`` without the markers)."""
    text = path.read_text()
    try:
        new = replace_block(text, begin, end, body)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    path.write_text(new)
    return new != text


def update_doc(doc: Path = DOC, results: Path = RESULTS, readme: Path = README) -> bool:
    """Rewrite the generated block of ``doc`` (:func:`doc_block`) and the summary block of
    ``readme`` (:func:`summary_block`); whether either changed."""
    changed = _rewrite(doc, _BEGIN, _END, doc_block(results))
    return _rewrite(readme, _SUMMARY_BEGIN, _SUMMARY_END, summary_block(results)) or changed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.league.designs", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help=f"output folder (default results/; --doc reads {RESULTS}, the committed runs)",
    )
    parser.add_argument("--testbeds", nargs="+", choices=TESTBEDS, help="default: the exact ones")
    parser.add_argument("--schedule", choices=GRIDS, default="karras")
    parser.add_argument("--rho", type=positive_real, default=7.0, help="karras only (default 7)")
    parser.add_argument(
        "--data-scale", type=positive_real, default=1.0,
        help="multiply every testbed's data by this (default 1; robustness of the free step)",
    )  # fmt: skip
    parser.add_argument("--doc", action="store_true", help=f"rewrite {DOC.name}'s block only")
    args = parser.parse_args(argv)
    if args.schedule != "karras" and args.rho != 7.0:
        parser.error(f"--rho is a Karras parameter; the {args.schedule} grid has none")
    if args.doc:
        print(f"{DOC.name}, {README.name}: {'updated' if update_doc() else 'unchanged'}")
        plot_runs()
        print(f"{FIGURE}: drawn")
        return
    writable_folder(parser, args.out)
    try:
        get_sigmas_karras(NFES[0], 0.002, 80.0, rho=args.rho)
    except ResError as err:  # a rho too large for a grid in float64
        parser.error(f"--rho {args.rho:g}: {err}")
    config = exact_config(args.testbeds, args.schedule, args.rho, args.data_scale)
    rows = run_league(config, torch.device("cpu"), cache_dir=args.out / "cache")
    name = "league_designs" + "".join(f"_{n}" for n in args.testbeds or ())
    if (args.schedule, args.rho) != ("karras", 7.0):
        name += f"_{args.schedule}" + (f"_rho{args.rho:g}" if args.schedule == "karras" else "")
    if args.data_scale != 1.0:
        name += f"_x{args.data_scale:g}"
    write_csv(rows, args.out / f"{name}.csv")
    table = ratio_table(rows)
    print(f"{'res entrant':18s}" + "".join(f"{n:>7d}" for n in NFES))
    for entrant, by_nfe in table.items():
        print(f"{entrant:18s}" + "".join(f"{by_nfe[n]:7.2f}" for n in NFES))


if __name__ == "__main__":
    main()
