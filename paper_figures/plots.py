"""Figures of the paper's experiments, drawn from their result tables (lists of row dicts).

Every function takes the rows an ``experiments`` runner produced, writes one PNG and returns its
path; the caption (with the command that made the figure) is written into RESULTS.md by
:mod:`paper_figures.summary`. Colours and line styles are fixed per method: RES solid, the
DPM-Solver++ baseline of the same structure dashed in a matching hue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.diffusion.methods import METHODS  # noqa: E402

__all__ = [
    "plot_c2_sweep",
    "plot_convergence",
    "plot_metric_vs_nfe",
    "plot_psi_residuals",
    "plot_schedule_robustness",
    "plot_stochastic",
]

Rows = Sequence[dict[str, Any]]

STYLE: dict[str, dict[str, Any]] = {
    "ddim": {"color": "0.5", "linestyle": ":", "marker": "."},
    "dpmpp_2s": {"color": "tab:blue", "linestyle": "--", "marker": "s"},
    "res_2s": {"color": "tab:blue", "linestyle": "-", "marker": "o"},
    "dpmpp_2m": {"color": "tab:red", "linestyle": "--", "marker": "s"},
    "res_2m": {"color": "tab:red", "linestyle": "-", "marker": "o"},
    "res_3s": {"color": "tab:green", "linestyle": "-", "marker": "^"},
    "heun": {"color": "tab:purple", "linestyle": "-.", "marker": "d"},
    "unipc": {"color": "tab:orange", "linestyle": "-.", "marker": "x"},
}


CONDITION_LINES = {"psi_1": ":", "psi_2": "-", "psi_3": "--"}


NFE_TICKS = (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200)


def _nfe_axis(ax, rows: Rows) -> None:
    """Log NFE axis with round tick labels spanning the budgets that were run."""
    budgets = [r["nfe"] for r in rows if r["nfe"] > 0]
    ticks = [t for t in NFE_TICKS if min(budgets) <= t <= max(budgets)] or sorted(set(budgets))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(t) for t in ticks]))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _finite_positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _panels(count: int, width: float = 4.2, height: float = 3.4):
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _line(ax, rows: Rows, x: str, y: str, method: str, suffix: str = "") -> None:
    points = sorted((r[x], r[y]) for r in rows if r["method"] == method and _finite_positive(r[y]))
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=_label(method) + suffix, **STYLE.get(method, {}))


def plot_metric_vs_nfe(rows: Rows, metric: str, ylabel: str, path: Path) -> Path:
    """One log-log panel per problem: ``metric`` against NFE for every method; a ``reference``
    row (``method == "reference"``) is drawn as a horizontal line."""
    problems = _unique(r["problem"] for r in rows)
    fig, axes = _panels(len(problems))
    for ax, problem in zip(axes, problems, strict=False):
        mine = [r for r in rows if r["problem"] == problem]
        for method in _unique(r["method"] for r in mine):
            if method == "reference":
                ref = [r[metric] for r in mine if r["method"] == method]
                ax.axhline(ref[0], color="k", linewidth=0.8, label="converged ODE solution")
            else:
                _line(ax, mine, "nfe", metric, method)
        _nfe_axis(ax, mine)
        ax.set(
            yscale="log",
            xlabel="NFE",
            ylabel=ylabel,
            title=f"{problem} ({mine[0]['kind']})",
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_schedule_robustness(rows: Rows, path: Path) -> Path:
    """One panel per (problem, requested NFE): defect against Karras ``rho`` (log axis;
    ``rho = 1`` is uniform in sigma; the exponential schedule, ``rho = inf``, is drawn at the
    right edge). A method that spent a smaller budget (RES-3S: 7 for 9) says so in the legend."""
    keys = _unique((r["problem"], r["nfe_requested"]) for r in rows)
    fig, axes = _panels(len(keys))
    finite = [r["rho_swept"] for r in rows if math.isfinite(r["rho_swept"])]
    at_inf = 2 * max(finite) if finite else 1.0
    for ax, (problem, requested) in zip(axes, keys, strict=False):
        mine = [
            {**r, "rho_plot": r["rho_swept"] if math.isfinite(r["rho_swept"]) else at_inf}
            for r in rows
            if r["problem"] == problem and r["nfe_requested"] == requested
        ]
        for method in _unique(r["method"] for r in mine):
            spent = {r["nfe"] for r in mine if r["method"] == method}
            label = f" (NFE {min(spent)})" if spent != {requested} else ""
            _line(ax, mine, "rho_plot", "defect", method, label)
        ax.axvline(7.0, color="k", linewidth=0.6, alpha=0.5)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="Karras rho (right edge: exponential)",
            ylabel="defect (mean L2)",
            title=f"{problem}, NFE {requested}",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, path)


def plot_stochastic(rows: Rows, path: Path) -> Path:
    """One panel per (problem, S_churn): Fréchet distance against NFE."""
    keys = _unique((r["problem"], r["s_churn"]) for r in rows)
    fig, axes = _panels(len(keys))
    for ax, (problem, churn) in zip(axes, keys, strict=False):
        mine = [r for r in rows if r["problem"] == problem and r["s_churn"] == churn]
        for method in _unique(r["method"] for r in mine):
            _line(ax, mine, "nfe", "frechet", method)
        _nfe_axis(ax, mine)
        ax.set(
            yscale="log",
            xlabel="NFE",
            ylabel="Fréchet distance",
            title=f"{problem}, S_churn = {churn:g}",
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_psi_residuals(rows: Rows, path: Path) -> Path:
    """``|psi_j(h)|`` against step size ``h``, one line per (method, c2, j); identically-zero
    residuals (below 1e-14 everywhere) are listed in the legend instead of drawn."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    zero = []
    for key in _unique((r["method"], r["c2"], r["condition"]) for r in rows):
        mine = sorted(
            (r["h"], abs(r["residual"]))
            for r in rows
            if (r["method"], r["c2"], r["condition"]) == key
        )
        name = f"{_label(key[0])}, c2={key[1]:g}: |{key[2]}|"
        if max(v for _, v in mine) < 1e-14:
            zero.append(name)
            continue
        xs, ys = zip(*mine, strict=True)
        ax.plot(
            xs,
            ys,
            label=name,
            color=STYLE.get(key[0], {}).get("color"),
            linestyle=CONDITION_LINES.get(key[2], "-"),
            marker=STYLE.get(key[0], {}).get("marker"),
            markevery=8,
            markersize=4,
        )
    for name in zero:
        ax.plot([], [], " ", label=f"{name} = 0 identically")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="step size h",
        ylabel="|residual|",
        title="order-condition residuals",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)


def plot_c2_sweep(rows: Rows, path: Path) -> Path:
    """One panel per (problem, NFE): defect against the node ``c2`` of the 2-stage methods."""
    keys = _unique((r["problem"], r["nfe"]) for r in rows)
    fig, axes = _panels(len(keys))
    for ax, (problem, nfe) in zip(axes, keys, strict=False):
        mine = [r for r in rows if r["problem"] == problem and r["nfe"] == nfe]
        for method in _unique(r["method"] for r in mine):
            _line(ax, mine, "c2", "defect", method)
        ax.set(yscale="log", xlabel="c2", ylabel="defect (mean L2)", title=f"{problem}, NFE {nfe}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_convergence(rows: Rows, path: Path) -> Path:
    """One log-log panel per problem: error against step size ``h`` for every method
    (``table == "errors"`` rows), labelled with the measured and the expected order
    (``table == "slopes"`` rows of :mod:`experiments.convergence.table`)."""
    errors = [r for r in rows if r["table"] == "errors"]
    slopes = {(r["problem"], r["method"]): r for r in rows if r["table"] == "slopes"}
    problems = _unique(r["problem"] for r in errors)
    fig, axes = _panels(len(problems), width=6.0, height=5.0)
    colours = plt.get_cmap("tab20")
    for ax, problem in zip(axes, problems, strict=False):
        mine = [r for r in errors if r["problem"] == problem]
        for index, method in enumerate(_unique(r["method"] for r in mine)):
            points = sorted(
                (r["h"], r["error"])
                for r in mine
                if r["method"] == method and _finite_positive(r["error"])
            )
            if not points:
                continue
            fit = slopes.get((problem, method), {})
            measured = fit.get("measured_order")
            label = f"{method}: {'--' if measured is None else f'{measured:.2f}'}"
            label += f" (exp. {fit.get('expected')})"
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, color=colours(index % 20), label=label)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="step size h",
            ylabel="error at final time",
            title=f"{problem} (legend: measured order, expected)",
        )
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=5, loc="lower right", ncol=2)
    return _save(fig, path)
