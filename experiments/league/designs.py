"""The designed methods' league: every entrant at every league NFE on the five exact testbeds.

The quick league (``python -m experiments.league --quick``) has four budgets on three testbeds;
the designs and ``method="auto"``'s table (``res_torch.recommend``) are judged here on all nine
budgets (:data:`experiments.league.run.NFES`) and every exact testbed, at the quick batch
sizes. :func:`ratio_table` gives, per res entrant and NFE, the geometric mean over the
testbeds of its defect divided by the best peer's in the cell (< 1: better than every peer).

Run: ``python -m experiments.league.designs [--out DIR] [--testbeds NAME ...]`` (writes
``DIR/league_designs.csv``, or ``league_designs_<names>.csv`` for other testbeds, with the
runner's columns, and prints the ratio table; under a minute on 2 CPU cores with the
references cached, for the exact testbeds and for the trained ``digits`` network alike).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.league.entrants import ENTRANTS
from experiments.league.run import NFES, LeagueConfig, run_league
from experiments.league.testbeds import TESTBEDS, get_testbed

__all__ = ["exact_config", "main", "ratio_table"]


def exact_config(testbeds: Sequence[str] | None = None) -> LeagueConfig:
    """Every entrant, every league NFE, on ``testbeds`` (default: every exact one) at their
    quick batch sizes."""
    if testbeds is None:
        testbeds = [n for n in TESTBEDS if get_testbed(n).kind == "exact"]
    return LeagueConfig(
        tuple((n, get_testbed(n).quick_batch) for n in testbeds), tuple(ENTRANTS), NFES
    )


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--testbeds", nargs="+", choices=TESTBEDS, help="default: the exact ones")
    args = parser.parse_args(argv)
    config = exact_config(args.testbeds)
    rows = run_league(config, torch.device("cpu"), cache_dir=args.out / "cache")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "league_designs" + "".join(f"_{n}" for n in args.testbeds or ())
    with (args.out / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = ratio_table(rows)
    print(f"{'res entrant':18s}" + "".join(f"{n:>7d}" for n in NFES))
    for entrant, by_nfe in table.items():
        print(f"{entrant:18s}" + "".join(f"{by_nfe[n]:7.2f}" for n in NFES))


if __name__ == "__main__":
    main()
