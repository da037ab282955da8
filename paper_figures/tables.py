"""The README's result blocks: each experiment's table rendered as Markdown from its rows.

Every function takes the rows of one experiment's CSV (as :func:`experiments.experiment_runner.
read_csv` returns them) and returns a Markdown block; the pipeline's registry
(:data:`paper_figures.pipeline.EXPERIMENTS`) names each experiment's renderer and
:mod:`paper_figures.readme` writes the blocks into README.md between markers. Numbers are
printed as measured (3 significant digits, slopes 2 decimals); nothing here is typed in by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from experiments.diffusion.methods import METHODS
from paper_figures.summary import (
    LEAGUE_TARGETS,
    PAIRS,
    PAPER_NFE,
    compare_res_to_dpmpp,
    league_cells,
)

__all__ = [
    "convergence_block",
    "defect_block",
    "league_block",
    "quality_block",
    "residuals_block",
    "schedule_block",
    "stochastic_block",
]

Rows = Sequence[dict[str, Any]]

PDE = "stiff matrix L (parabolic PDE)"
TOL = 0.3  # the convergence study's tolerance on a fitted slope


def _label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method


def _unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def _g(value: float | None) -> str:
    """3 significant digits, ``—`` for a missing value.

    >>> [_g(0.33761), _g(1234.5), _g(None)]
    ['0.338', '1.23e+03', '—']
    """
    return "—" if value is None else f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _range(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"


def convergence_block(rows: Rows) -> str:
    """Measured slopes per method: on the stiff PDE and, as a range, on the diffusion-type
    problems (scalar ``L = -1``), beside the stiff and classical orders of the tableau files;
    how many fits agree with the prediction; RES-2M against DPM-Solver++(2M) at the finest
    step count of each diffusion-type problem."""
    slopes = [r for r in rows if r["table"] == "slopes"]
    pde = {r["method"]: r for r in slopes if r["regime"] == PDE}
    pde_name = next((r["problem"] for r in slopes if r["regime"] == PDE), None)
    scalar = [r for r in slopes if r["regime"] != PDE]
    scalar_problems = _unique(r["problem"] for r in scalar)
    methods = sorted(
        _unique(r["method"] for r in slopes),
        key=lambda m: (next(r["classical_order"] for r in slopes if r["method"] == m), m),
    )
    table = []
    for method in methods:
        mine = [r for r in slopes if r["method"] == method]
        measured = [r["measured_order"] for r in scalar if r["method"] == method]
        measured = [m for m in measured if m is not None]
        on_pde = pde.get(method, {}).get("measured_order")
        table.append(
            [
                f"`{method}`",
                str(mine[0]["stiff_order"]),
                str(mine[0]["classical_order"]),
                "—" if on_pde is None else f"{on_pde:.2f}",
                _range(measured) if measured else "—",
            ]
        )
    header = [
        "method",
        "stiff order",
        "classical order",
        f"slope on `{pde_name}` (stiff PDE)",
        f"slopes on the {len(scalar_problems)} diffusion-type problems",
    ]
    unfitted = sum(r["measured_order"] is None for r in scalar)
    agree_scalar = sum(bool(r["agrees"]) for r in scalar)
    agree_pde = sum(bool(r["agrees"]) for r in pde.values())
    lines = [
        f"Measured slopes (least squares over the finest step sizes; diffusion-type problems: "
        f"{', '.join(f'`{p}`' for p in scalar_problems)}):",
        "",
        *_table(header, table),
        "",
        f"Fits within 0.3 of the classical order on the diffusion-type problems: {agree_scalar} "
        f"of {len(scalar)} ({unfitted} without a fit: too few errors above the round-off "
        f"floor); at least the stiff order − 0.3 on the stiff PDE: {agree_pde} of {len(pde)}.",
    ]
    reduced = [r for r in pde.values() if r["classical_order"] > r["stiff_order"]]
    measured_pde = [r for r in reduced if r["measured_order"] is not None]
    short = [r["method"] for r in measured_pde if r["measured_order"] < r["classical_order"] - TOL]
    reach = [r["method"] for r in measured_pde if r["method"] not in short]
    if reduced:
        lines += [
            "",
            "On the stiff PDE, of the methods whose stiff order is below their classical order: "
            f"classical order not reached (slope below classical − {TOL:g}): "
            f"{', '.join(f'`{m}`' for m in sorted(short)) or 'none'}; classical order reached "
            f"on this problem: {', '.join(f'`{m}`' for m in sorted(reach)) or 'none'}.",
        ]
    errors = [r for r in rows if r["table"] == "errors" and r["problem"] in scalar_problems]
    pairs = []
    for problem in scalar_problems:
        counts = [r["n_steps"] for r in errors if r["problem"] == problem]
        if not counts:
            continue
        finest = max(counts)
        at = {
            r["method"]: r["error"]
            for r in errors
            if r["problem"] == problem and r["n_steps"] == finest
        }
        if "res_2m" in at and "dpmpp_2m" in at:
            pairs.append(f"`{problem}` ({finest} steps) {_g(at['res_2m'])} vs {_g(at['dpmpp_2m'])}")
    if pairs:
        lines += [
            "",
            "RES-2M vs DPM-Solver++(2M), error at the finest step count: " + "; ".join(pairs) + ".",
        ]
    return "\n".join(lines)


def _res_vs_dpmpp_block(rows: Rows, metric: str, what: str) -> str:
    comparisons = compare_res_to_dpmpp(rows, metric)
    kinds = {c["problem"]: c["kind"] for c in comparisons}
    problems = sorted(
        _unique(c["problem"] for c in comparisons), key=lambda p: kinds[p] != "trained"
    )
    table, wins = [], dict.fromkeys(PAIRS, 0)
    for problem in problems:
        cells = [f"{problem} ({kinds[problem]})"]
        for pair in PAIRS:
            mine = [c for c in comparisons if c["problem"] == problem and c["res"] == pair[0]]
            at9 = [c for c in mine if c["nfe"] == PAPER_NFE]
            better = sum(c["change_pct"] < 0 for c in mine)
            if not at9 or math.isnan(at9[0]["change_pct"]):
                cells.append(f"n/a ({better}/{len(mine)})")
                continue
            change = at9[0]["change_pct"]
            text = f"{change:+.1f} %".replace("-", "−")
            wins[pair] += change < 0
            cells.append(f"**{text}**" if change < 0 else text)
            cells[-1] += f" (better at {better}/{len(mine)} NFEs)"
        table.append(cells)
    header = ["problem", *(f"{_label(r)} vs {_label(d)}" for r, d in PAIRS)]
    summary = "; ".join(
        f"{_label(r)} lower than {_label(d)} on {wins[(r, d)]} of {len(problems)} problems"
        for r, d in PAIRS
    )
    return "\n".join(
        [
            f"Change of the {what} of RES against DPM-Solver++ at NFE = {PAPER_NFE}, "
            "100 (RES − DPM++)/DPM++, negative (bold) = RES better; in brackets the NFE budgets "
            "at which RES is better:",
            "",
            *_table(header, table),
            "",
            f"At NFE = {PAPER_NFE}: {summary}.",
        ]
    )


def defect_block(rows: Rows) -> str:
    """RES against DPM-Solver++ in defect (mean L2 to the converged ODE solution)."""
    return _res_vs_dpmpp_block(rows, "defect", "defect")


def quality_block(rows: Rows) -> str:
    """RES against DPM-Solver++ in Fréchet distance to the data, with the converged ODE's own
    distance where it was computed."""
    text = _res_vs_dpmpp_block(rows, "frechet", "Fréchet distance")
    references = [r for r in rows if r["method"] == "reference"]
    if references:
        text += (
            "\nFréchet distance of the converged ODE solution from the same noise: "
            + "; ".join(f"{r['problem']} {_g(r['frechet'])}" for r in references)
            + "."
        )
    return text


def schedule_block(rows: Rows) -> str:
    """Defect of DDIM, DPM-Solver++(2S) and RES-2S against the Karras ``rho`` and the
    exponential schedule, per problem and NFE."""
    methods = [m for m in ("ddim", "dpmpp_2s", "res_2s") if any(r["method"] == m for r in rows)]
    rhos = sorted(_unique(r["rho_swept"] for r in rows))
    header = [
        "problem, NFE",
        "method",
        *(("exp." if math.isinf(x) else f"ρ = {x:g}") for x in rhos),
    ]
    table = []
    for problem, nfe in _unique((r["problem"], r["nfe_requested"]) for r in rows):
        for method in methods:
            value = {
                r["rho_swept"]: r["defect"]
                for r in rows
                if (r["problem"], r["nfe_requested"], r["method"]) == (problem, nfe, method)
            }
            table.append([f"{problem}, {nfe}", _label(method), *(_g(value.get(x)) for x in rhos)])
    return "\n".join(
        [
            "Defect (mean L2) against the schedule: Karras ρ (ρ = 1 is uniform in σ, 7 is EDM's) "
            "and the exponential schedule (exp.):",
            "",
            *_table(header, table),
        ]
    )


def stochastic_block(rows: Rows) -> str:
    """Fréchet distance at the paper's NFE for each churn setting and method."""
    methods = _unique(r["method"] for r in rows)
    table = []
    for problem, churn in _unique((r["problem"], r["s_churn"]) for r in rows):
        value = {
            r["method"]: r["frechet"]
            for r in rows
            if (r["problem"], r["s_churn"], r["nfe"]) == (problem, churn, PAPER_NFE)
        }
        table.append([problem, f"{churn:g}", *(_g(value.get(m)) for m in methods)])
    return "\n".join(
        [
            f"Fréchet distance at NFE = {PAPER_NFE} with EDM churn:",
            "",
            *_table(["problem", "S_churn", *map(_label, methods)], table),
        ]
    )


def _node_label(row: dict[str, Any]) -> str:
    """A residual row's method, with its node ``c2`` for a single-step method."""
    method = row["method"]
    if method in METHODS and not METHODS[method].single_step or not math.isfinite(row["c2"]):
        return _label(method)
    return f"{_label(method)} (c2 = {row['c2']:g})"


def residuals_block(rows: Rows) -> str:
    """``psi_2(h)/h`` of DPM-Solver++ at the smallest ``h`` against ``1/12``; the largest
    ``|psi_2|`` of the RES tableaux; the best node ``c2`` of the 2-stage methods."""
    psi2 = [r for r in rows if r["table"] == "psi" and r["condition"] == "psi_2"]
    lines = []
    if psi2:
        h = min(r["h"] for r in psi2)
        dpm = [r for r in psi2 if r["h"] == h and r["method"].startswith("dpmpp")]
        res = [r for r in psi2 if r["method"].startswith("res")]
        parts = [f"{_node_label(r)} {r['residual'] / h:.5f}" for r in dpm]
        largest = max(abs(r["residual"]) for r in res)
        lines.append(
            f"psi_2(h)/h at h = {h:g}: {', '.join(parts)} (1/12 = {1 / 12:.5f}); largest "
            f"|psi_2| of {', '.join(_unique(_node_label(r) for r in res))} over "
            f"h in [{h:g}, {max(r['h'] for r in psi2):g}]: {largest:.3g}."
        )
    sweep = [r for r in rows if r["table"] == "c2_sweep"]
    best = []
    for problem, nfe, method in _unique((r["problem"], r["nfe"], r["method"]) for r in sweep):
        mine = [r for r in sweep if (r["problem"], r["nfe"], r["method"]) == (problem, nfe, method)]
        top = min(mine, key=lambda r: r["defect"])
        best.append(
            f"{_label(method)} on {problem} (NFE {nfe}): c2 = {top['c2']:g} ({_g(top['defect'])})"
        )
    if best:
        lines.append("Smallest defect over c2: " + "; ".join(best) + ".")
    return "\n\n".join(lines)


def league_block(rows: Rows) -> str:
    """The league per cell: ratio best res / best peer (defect) per testbed and NFE, bold where
    issue 10's target is met (:data:`paper_figures.summary.LEAGUE_TARGETS`), with the number of
    cells met and the entrants that are best most often."""
    cells = league_cells(rows)
    testbeds = _unique(c["testbed"] for c in cells)
    nfes = sorted(_unique(c["nfe"] for c in cells))
    table = []
    for testbed in testbeds:
        mine = {c["nfe"]: c for c in cells if c["testbed"] == testbed}
        row = [f"{testbed} ({next(iter(mine.values()))['kind']})"]
        for nfe in nfes:
            cell = mine.get(nfe)
            text = "—" if cell is None else f"{cell['ratio']:.2f}"
            row.append(f"**{text}**" if cell is not None and cell["met"] else text)
        table.append(row)

    def most_often(key: str) -> str:
        counts: dict[str, int] = {}
        for c in cells:
            counts[c[key]] = counts.get(c[key], 0) + 1
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:3]
        return ", ".join(f"{name} ({count})" for name, count in ranked)

    met = sum(c["met"] for c in cells)
    targets = ", ".join(f"{kind} {value:g}" for kind, value in LEAGUE_TARGETS.items())
    return "\n".join(
        [
            "Ratio of the defects best res entrant / best peer per testbed and NFE (below 1: "
            f"res wins; bold: the target is met — {targets}):",
            "",
            *_table(["testbed", *(f"NFE {n}" for n in nfes)], table),
            "",
            f"Target met in {met} of {len(cells)} cells. Best res entrant most often: "
            f"{most_often('best_res')}; best peer most often: {most_often('best_peer')} "
            f"(in brackets: in how many of the {len(cells)} cells). Per-cell names and defects: "
            "`paper_figures/output/RESULTS.md`.",
        ]
    )
