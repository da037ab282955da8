"""What the figures show: panel layouts without empty cells, NFE ticks that include the largest
budget, identical residual curves merged, the reference line of the quality figure and the h/12
line of the residual figure drawn (the figures are inspected before they are saved)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from paper_figures import plots


def test_panel_shapes_leave_no_empty_cell_for_up_to_six_panels() -> None:
    for count in range(1, 7):
        rows, cols = plots.panel_shape(count)
        assert rows * cols - count <= (0 if count != 5 else 1), count
    assert plots.panel_shape(4) == (2, 2)


def test_nfe_ticks_include_the_smallest_and_largest_budget() -> None:
    assert plots.nfe_ticks([5, 9, 15, 25]) == [5, 9, 15, 25]
    many = plots.nfe_ticks([4, 5, 7, 9, 12, 15, 20, 30, 50])
    assert many[0] == 4 and many[-1] == 50 and len(many) < 9


def test_identical_residual_curves_are_grouped() -> None:
    groups = plots.identical_groups({"a": [1.0, 2.0], "b": [1.0, 2.0 + 1e-9], "c": [1.0, 2.0]})
    assert groups == [["a", "c"], ["b"]]


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions would save."""
    figures: list = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_quality_figure_draws_the_reference_line(drawn: list) -> None:
    rows = [
        {"problem": "gmm", "kind": "exact", "method": m, "nfe": n, "frechet": v}
        for m, n, v in [("res_2s", 5, 2.0), ("res_2s", 9, 1.0), ("reference", 0, 0.3)]
    ]
    plots.plot_metric_vs_nfe(rows, "frechet", "F", Path("unused.png"))
    (ax,) = [a for a in drawn[0].axes if a.get_visible()]
    reference = [line for line in ax.get_lines() if line.get_label() == "converged ODE solution"]
    assert len(reference) == 1 and list(reference[0].get_ydata()) == [0.3, 0.3]
    assert [int(t) for t in ax.get_xticks()] == [5, 9]


def test_residual_figure_merges_identical_curves_and_draws_h_over_12(drawn: list) -> None:
    hs = (0.01, 0.1, 1.0)
    rows = [
        {"method": m, "c2": c2, "condition": "psi_2", "h": h, "residual": r}
        for m, c2, f in [
            ("dpmpp_2s", 0.5, lambda h: h / 12 - h**2 / 50),
            ("dpmpp_2m", -1.0, lambda h: h / 12 - h**2 / 50),
            ("res_2s", 0.5, lambda h: 0.0),
        ]
        for h in hs
        for r in [f(h)]
    ]
    plots.plot_psi_residuals(rows, Path("unused.png"))
    labels = [line.get_label() for line in drawn[0].axes[0].get_lines()]
    assert labels == ["DPM-Solver++(2S), c2=0.5 = DPM-Solver++(2M)", "h/12"]
    assert "RES-2S, c2=0.5" in drawn[0].texts[0].get_text()


def test_schedule_figure_puts_the_exponential_schedule_at_its_own_tick(drawn: list) -> None:
    rows = [
        {"problem": "gmm", "method": "res_2s", "nfe": 9, "nfe_requested": 9, "rho_swept": rho,
         "defect": d}
        for rho, d in [(1.0, 3.0), (7.0, 1.0), (math.inf, 1.5)]
    ]  # fmt: skip
    plots.plot_schedule_robustness(rows, Path("unused.png"))
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "7", "exp."]
