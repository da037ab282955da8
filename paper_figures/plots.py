"""Figures of the paper's experiments, drawn from their result tables (lists of row dicts).

Every function takes the rows an ``experiments`` runner produced, writes one PNG and returns its
path; the caption (with the command that made the figure) is written into RESULTS.md by
:mod:`paper_figures.summary`. Colours and line styles are fixed per method: RES solid, the
DPM-Solver++ baseline of the same structure dashed in a matching hue. Panels are laid out
without empty cells where possible (:func:`panel_shape`), the legend sits outside the panels,
and fonts are at least 8 pt (10 pt for tick labels).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.diffusion.methods import METHODS  # noqa: E402

__all__ = [
    "identical_groups",
    "nfe_ticks",
    "panel_shape",
    "plot_c2_sweep",
    "plot_convergence",
    "plot_league",
    "plot_mechanism",
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


FONT = {"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9}
plt.rcParams.update(FONT)

NFE_TICKS = (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200)
FEW_BUDGETS = 6  # up to this many budgets, each gets a tick
TICK_GAP = 1.3  # round ticks closer than this factor to an end tick are left out
IDENTICAL = 1e-12  # relative difference below which two residual curves are one curve


def panel_shape(count: int) -> tuple[int, int]:
    """``(rows, cols)`` for ``count`` panels: one row up to 3, 2x2 for 4, else 3 columns.

    >>> [panel_shape(n) for n in (1, 3, 4, 6, 7)]
    [(1, 1), (1, 3), (2, 2), (2, 3), (3, 3)]
    """
    cols = count if count <= 3 else 2 if count == 4 else 3
    return math.ceil(count / cols), cols


def nfe_ticks(budgets: Iterable[int]) -> list[int]:
    """Tick positions of a log NFE axis: every budget run when there are at most
    :data:`FEW_BUDGETS` of them, else the smallest and largest budget and the round values of
    :data:`NFE_TICKS` between them (not closer than :data:`TICK_GAP` to either end).

    >>> nfe_ticks([4, 5, 7, 9])
    [4, 5, 7, 9]
    >>> nfe_ticks([4, 5, 9, 13, 15, 24, 25])
    [4, 7, 10, 15, 25]
    """
    budgets = sorted({b for b in budgets if b > 0})
    if len(budgets) <= FEW_BUDGETS:
        return budgets
    low, high = budgets[0], budgets[-1]
    inner = [t for t in NFE_TICKS if low * TICK_GAP <= t <= high / TICK_GAP]
    return sorted({low, *inner, high})


def _nfe_axis(ax, rows: Rows) -> None:
    """Log NFE axis; its ticks (:func:`nfe_ticks`) from the budgets most methods ran (a method
    that rounds a budget down, RES-3S, adds only its smallest and largest)."""
    methods = _unique(r["method"] for r in rows)
    runs: dict[int, int] = {}
    for r in rows:
        runs[r["nfe"]] = runs.get(r["nfe"], 0) + 1
    common = [n for n, count in runs.items() if 2 * count >= len(methods)]
    _log_nfe_ticks(ax, nfe_ticks([*common, min(runs), max(runs)]))


def _log_nfe_ticks(ax, ticks: Sequence[int]) -> None:
    """A log x axis labelled at exactly ``ticks`` (no minor ticks)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(t) for t in ticks]))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _plain_log_y(ax) -> None:
    """Log y axis labelled with plain numbers (``20``, ``0.5``) instead of ``2 x 10^1``: every
    tick over a factor 3, the decades and the 2s and 5s over a factor 30, else the decades."""
    low, high = ax.get_ylim()
    ratio = high / low

    def minor(value: float, _: object) -> str:
        leading = int(f"{value:e}"[0])
        return f"{value:g}" if ratio <= 3 or (ratio <= 30 and leading in (2, 5)) else ""

    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor))


def _label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _finite_positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _points(rows: Rows, key: str, value: Any, x: str, y: str) -> list[tuple[Any, Any]]:
    """``(r[x], r[y])`` of the rows with ``r[key] == value`` and a finite positive ``r[y]`` (a
    log-scale curve), sorted by ``x``."""
    return sorted((r[x], r[y]) for r in rows if r[key] == value and _finite_positive(r[y]))


def _panels(count: int, width: float = 4.2, height: float = 3.4):
    rows, cols = panel_shape(count)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _figure_legend(fig, axes: Sequence[Any]) -> None:
    """One legend for the whole figure, right of the panels: every label drawn in any panel."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(
        list(entries.values()),
        list(entries),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _line(ax, rows: Rows, x: str, y: str, method: str, suffix: str = "") -> None:
    points = _points(rows, "method", method, x, y)
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=_label(method) + suffix, **STYLE.get(method, {}))


def plot_metric_vs_nfe(rows: Rows, metric: str, ylabel: str, path: Path) -> Path:
    """One log-log panel per problem: ``metric`` against NFE for every method; a ``reference``
    row (``method == "reference"``) is drawn as a black horizontal line."""
    problems = _unique(r["problem"] for r in rows)
    fig, axes = _panels(len(problems))
    for ax, problem in zip(axes, problems, strict=False):
        mine = [r for r in rows if r["problem"] == problem]
        for method in _unique(r["method"] for r in mine):
            if method == "reference":
                ref = [r[metric] for r in mine if r["method"] == method]
                ax.axhline(ref[0], color="k", linewidth=1.2, label="converged ODE solution")
            else:
                _line(ax, mine, "nfe", metric, method)
        _nfe_axis(ax, [r for r in mine if r["method"] != "reference"])
        ax.set(yscale="log", xlabel="NFE", ylabel=ylabel, title=f"{problem} ({mine[0]['kind']})")
        _plain_log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
    return _save(fig, path)


def plot_schedule_robustness(rows: Rows, path: Path) -> Path:
    """One panel per (problem, requested NFE): defect against Karras ``rho`` (log axis, ticks
    at the values swept; ``rho = 1`` is uniform in sigma). The exponential schedule
    (``rho_swept = inf``, the limit ``rho -> inf`` of Karras') is an unconnected point at a
    separate tick ``exp.`` right of a dotted line. A method that spent a smaller budget (RES-3S:
    7 for 9) says so in the legend."""
    keys = _unique((r["problem"], r["nfe_requested"]) for r in rows)
    fig, axes = _panels(len(keys))
    finite = sorted({r["rho_swept"] for r in rows if math.isfinite(r["rho_swept"])})
    at_inf = 2.5 * max(finite) if finite else 1.0
    for ax, (problem, requested) in zip(axes, keys, strict=False):
        mine = [r for r in rows if r["problem"] == problem and r["nfe_requested"] == requested]
        for method in _unique(r["method"] for r in mine):
            spent = {r["nfe"] for r in mine if r["method"] == method}
            suffix = f" (NFE {min(spent)})" if spent != {requested} else ""
            ordered = [r for r in mine if r["method"] == method]
            _line(
                ax,
                [r for r in ordered if math.isfinite(r["rho_swept"])],
                "rho_swept",
                "defect",
                method,
                suffix,
            )
            exponential = [r["defect"] for r in ordered if math.isinf(r["rho_swept"])]
            style = {k: v for k, v in STYLE.get(method, {}).items() if k != "linestyle"}
            ax.plot([at_inf] * len(exponential), exponential, linestyle="none", **style)
        ax.axvline(7.0, color="k", linewidth=0.6, alpha=0.5)
        if finite:
            ax.axvline(math.sqrt(max(finite) * at_inf), color="k", linewidth=0.8, linestyle=":")
        ticks = [*finite, at_inf]
        ax.set(xscale="log", yscale="log", title=f"{problem}, NFE {requested}")
        ax.set(xlabel="Karras rho (exp.: exponential schedule)", ylabel="defect (mean L2)")
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        labels = [f"{t:g}" for t in finite] + ["exp."]
        ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter(labels))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        _plain_log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
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
        ax.set(yscale="log", xlabel="NFE", ylabel="Fréchet distance")
        ax.set_title(f"{problem}, S_churn = {churn:g}")
        _plain_log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
    return _save(fig, path)


def identical_groups(curves: dict[Any, Sequence[float]]) -> list[list[Any]]:
    """The keys of ``curves`` grouped by equal values (relative difference below
    :data:`IDENTICAL` at every point), in order of first appearance.

    >>> identical_groups({"a": [1.0, 2.0], "b": [1.0, 3.0], "c": [1.0, 2.0]})
    [['a', 'c'], ['b']]
    """
    groups: list[list[Any]] = []
    for key, values in curves.items():
        for group in groups:
            first = curves[group[0]]
            if len(first) == len(values) and all(
                abs(u - v) <= IDENTICAL * max(abs(u), abs(v))
                for u, v in zip(first, values, strict=True)
            ):
                group.append(key)
                break
        else:
            groups.append([key])
    return groups


def _tableaux_label(keys: Sequence[tuple[str, float]]) -> str:
    """``"DPM-Solver++(2S), c2=0.5, 1 = DPM-Solver++(2M)"`` for ``(method, c2)`` keys: the
    nodes of a single-step method listed after it (a multistep method's ``c2`` is its history
    node and is not shown)."""
    nodes: dict[str, list[float]] = {}
    for method, c2 in keys:
        nodes.setdefault(method, []).append(c2)
    parts = []
    for method, c2s in nodes.items():
        multistep = method in METHODS and not METHODS[method].single_step
        shown = [f"{c:g}" for c in c2s if math.isfinite(c)]
        parts.append(
            _label(method) if multistep or not shown else f"{_label(method)}, c2={', '.join(shown)}"
        )
    return " = ".join(parts)


def plot_psi_residuals(rows: Rows, path: Path) -> Path:
    """One panel per condition ``psi_j`` with a non-zero residual: ``|psi_j(h)|`` against step
    size ``h`` for each tableau whose residual is not identically zero (below 1e-14
    everywhere); tableaux with the same residual function are one line naming all of them. The
    ``psi_2`` panel also shows ``h/12``, the leading term of DPM-Solver++'s residual. The
    identically-zero residuals are listed under the panels."""
    drawn, zero = [], []
    for condition in _unique(r["condition"] for r in rows):
        curves: dict[tuple[str, float], list[tuple[float, float]]] = {}
        for r in rows:
            if r["condition"] == condition:
                curves.setdefault((r["method"], r["c2"]), []).append((r["h"], abs(r["residual"])))
        curves = {k: sorted(v) for k, v in curves.items()}
        nonzero = {k: v for k, v in curves.items() if max(y for _, y in v) >= 1e-14}
        vanishing = [k for k in curves if k not in nonzero]
        if vanishing:
            names = (
                "every tableau" if not nonzero else _tableaux_label(vanishing).replace(" = ", ", ")
            )
            zero.append(f"{condition} for {names}")
        if nonzero:
            drawn.append((condition, nonzero))
    fig, axes = _panels(max(len(drawn), 1), width=5.6, height=5.2)
    for ax, (condition, curves) in zip(axes, drawn, strict=False):
        values = {k: [y for _, y in v] for k, v in curves.items()}
        shade: dict[str, int] = {}
        for group in identical_groups(values):
            xs, ys = zip(*curves[group[0]], strict=True)
            method = group[0][0]
            style = dict(STYLE.get(method, {}))
            shade[method] = shade.get(method, -1) + 1  # later nodes of a method: lighter hue
            if shade[method] and "color" in style:
                rgb = matplotlib.colors.to_rgb(style["color"])
                style["color"] = tuple(c + (1 - c) * 0.5 * shade[method] ** 0.5 for c in rgb)
            ax.plot(
                xs,
                ys,
                label=_tableaux_label(group),
                color=style.get("color"),
                linestyle=style.get("linestyle"),
                marker=style.get("marker"),
                markevery=8,
                markersize=4,
                linewidth=2.0,
            )
        if condition == "psi_2":
            hs = sorted({h for v in curves.values() for h, _ in v})
            ax.plot(hs, [h / 12 for h in hs], color="k", linewidth=1.0, linestyle=":", label="h/12")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="step size h",
            ylabel=f"|{condition}(h)|",
            title=f"order condition {condition}",
        )
        _plain_log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    if zero:
        note = "Identically zero (not drawn): " + "; ".join(zero) + "."
        fig.text(0.0, -0.01, "\n".join(_wrap(note, 110)), ha="left", va="top")
    return _save(fig, path)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def plot_c2_sweep(rows: Rows, path: Path) -> Path:
    """One panel per (problem, NFE): defect against the node ``c2`` of the 2-stage methods."""
    keys = _unique((r["problem"], r["nfe"]) for r in rows)
    fig, axes = _panels(len(keys))
    for ax, (problem, nfe) in zip(axes, keys, strict=False):
        mine = [r for r in rows if r["problem"] == problem and r["nfe"] == nfe]
        for method in _unique(r["method"] for r in mine):
            _line(ax, mine, "c2", "defect", method)
        ax.set(yscale="log", xlabel="c2", ylabel="defect (mean L2)", title=f"{problem}, NFE {nfe}")
        _plain_log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
    return _save(fig, path)


def plot_convergence(rows: Rows, path: Path) -> Path:
    """One log-log panel per problem: error against step size ``h`` for every method
    (``table == "errors"`` rows); each panel's legend, below it, gives the measured and the
    expected order (``table == "slopes"`` rows of :mod:`experiments.convergence.table`). A
    method keeps its colour and marker in every panel."""
    errors = [r for r in rows if r["table"] == "errors"]
    slopes = {(r["problem"], r["method"]): r for r in rows if r["table"] == "slopes"}
    problems = _unique(r["problem"] for r in errors)
    methods = sorted(_unique(r["method"] for r in errors))
    colours, markers = plt.get_cmap("tab20"), "os^vDP*X<>ph"
    fig, axes = _panels(len(problems), width=6.0, height=7.8)
    for ax, problem in zip(axes, problems, strict=False):
        mine = [r for r in errors if r["problem"] == problem]
        for index, method in enumerate(methods):
            points = _points(mine, "method", method, "h", "error")
            if not points:
                continue
            fit = slopes.get((problem, method), {})
            measured = fit.get("measured_order")
            label = f"{method}: {'--' if measured is None else f'{measured:.2f}'}"
            label += f" (exp. {fit.get('expected')})"
            xs, ys = zip(*points, strict=True)
            ax.plot(
                xs,
                ys,
                marker=markers[index % len(markers)],
                markersize=3.5,
                color=colours(index % 20),
                label=label,
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="step size h",
            ylabel="error at final time",
            title=problem,
        )
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(
            title="method: measured order (expected)",
            fontsize=8,
            title_fontsize=9,
            ncol=2,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            frameon=False,
        )
    return _save(fig, path)


LEAGUE_TARGET = 0.8  # the league's target ratio (best res / best peer) on the exact testbeds


def _best_envelope(rows: Rows, family: str) -> tuple[list[int], list[float]]:
    best: dict[int, float] = {}
    for r in rows:
        if (r["family"] == "res") == (family == "res") and _finite_positive(r["defect"]):
            best[r["nfe"]] = min(best.get(r["nfe"], math.inf), r["defect"])
    points = sorted(best.items())
    return [n for n, _ in points], [d for _, d in points]


def plot_league(rows: Rows, cells: Rows, path: Path) -> Path:
    """One log-log panel per testbed: defect against the NFE budget of every league entrant
    (res entrants thin blue, peers thin grey dashed), the best res entrant and the best peer per
    budget as thick lines; a last panel: the ratio best res / best peer per cell (``cells``,
    :func:`experiments.league.run.cell_summary`) per testbed, with the target 0.8 and 1."""
    testbeds = _unique(r["testbed"] for r in rows)
    fig, axes = _panels(len(testbeds) + 1)
    for ax, testbed in zip(axes, testbeds, strict=False):
        mine = [r for r in rows if r["testbed"] == testbed]
        for entrant in _unique(r["entrant"] for r in mine):
            points = _points(mine, "entrant", entrant, "nfe", "defect")
            if not points:
                continue
            res = next(r["family"] for r in mine if r["entrant"] == entrant) == "res"
            ax.plot(
                *zip(*points, strict=True),
                color="tab:blue" if res else "0.55",
                linestyle="-" if res else "--",
                linewidth=0.7,
                alpha=0.45,
                label="res entrants" if res else "peers",
            )
        for family, colour, label in (
            ("res", "tab:blue", "best res entrant"),
            ("peer", "tab:red", "best peer"),
        ):
            ax.plot(*_best_envelope(mine, family), color=colour, linewidth=2.2, marker="o",
                    markersize=4, label=label)  # fmt: skip
        _log_nfe_ticks(ax, nfe_ticks({r["nfe"] for r in mine}))
        ax.set(yscale="log", xlabel="NFE", ylabel="defect (mean L2)")
        ax.set_title(f"{testbed} ({mine[0]['kind']})")
        _plain_log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
    ratio_ax = axes[len(testbeds)]
    colours = plt.get_cmap("Dark2")  # not the blue / red of the families
    for index, testbed in enumerate(testbeds):
        points = _points(cells, "testbed", testbed, "nfe", "ratio")
        if points:
            ratio_ax.plot(*zip(*points, strict=True), color=colours(index % 8), marker="o",
                          markersize=3.5, linewidth=1.2, label=f"ratio: {testbed}")  # fmt: skip
    ratio_ax.axhline(1.0, color="k", linewidth=1.0)
    ratio_ax.axhline(LEAGUE_TARGET, color="k", linewidth=1.2, linestyle="--",
                     label=f"target {LEAGUE_TARGET} (exact testbeds)")  # fmt: skip
    _log_nfe_ticks(ratio_ax, nfe_ticks({c["nfe"] for c in cells}))
    ratio_ax.set(yscale="log", xlabel="NFE", ylabel="best res / best peer (defect)")
    ratio_ax.set_title("ratio per cell (below 1: res wins)")
    _plain_log_y(ratio_ax)
    ratio_ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
    return _save(fig, path)


MECHANISM_STYLE: dict[str, str] = {
    "D in lambda": "tab:blue",
    "eps in sigma": "tab:red",
    "eps in log sigma": "tab:orange",
}


def plot_mechanism(rows: Rows, path: Path) -> Path:
    """One panel per testbed: the step-scaled k-th Taylor term ``|Y^(k)| du^k / k!`` (NFE-10
    Karras spacing) per sigma band (largest sigma left) of each extrapolated quantity
    (:mod:`experiments.league.mechanisms`); colour: quantity, marker and line style: ``k``."""
    testbeds = _unique(r["testbed"] for r in rows)
    fig, axes = _panels(len(testbeds))
    markers, styles = "os^", ("-", "--", ":")
    for ax, testbed in zip(axes, testbeds, strict=False):
        mine = [r for r in rows if r["testbed"] == testbed]
        bands = _unique(r["band"] for r in mine)
        for quantity in _unique(r["quantity"] for r in mine):
            for k in sorted({r["k"] for r in mine}):
                values = {r["band"]: r["step_scaled"] for r in mine
                          if r["quantity"] == quantity and r["k"] == k}  # fmt: skip
                xs = [i for i, b in enumerate(bands) if _finite_positive(values.get(b))]
                ax.plot(xs, [values[bands[i]] for i in xs],
                        color=MECHANISM_STYLE.get(quantity, "0.4"),
                        marker=markers[(k - 1) % 3], linestyle=styles[(k - 1) % 3],
                        label=f"{quantity}, k = {k}")  # fmt: skip
        ax.set_xticks(range(len(bands)), bands, rotation=30)
        ax.set(yscale="log", xlabel="sigma band", ylabel="|Y^(k)| du^k / k!", title=testbed)
        ax.grid(True, which="both", alpha=0.3)
    _figure_legend(fig, axes)
    return _save(fig, path)
