"""``method="auto"``'s table (``res_torch.recommend``) against the committed league results.

For each NFE of the league, the table's method must be the best res method by the geometric
mean of the defect over the exact testbeds, or within ``FACTOR`` of it. The factor: the league
runs use eight samples per testbed and three (quick) or five (designs) testbeds, so methods
closer than a quarter are not ranked reliably, and the table keeps three ranges instead of
following every such swap (at NFE 5 ``res_2s`` is 2 % better than ``res_pc4_rho7`` on the
designs' run and 1 % worse on the quick run; at NFE 12 ``res_pc4_sigma`` and ``res_pc4_rho7``
differ by 1 %; at NFE 50 ``res_pc4_rho7`` and ``res_pc4_logsigma`` by 0-9 %).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import pytest

from experiments.league.designs import ratio_table
from experiments.league.entrants import ENTRANTS
from experiments.league.run import NFES
from res_torch import AUTO_TABLE, METHODS, nfe, recommend
from res_torch.recommend import auto_table_markdown

ROOT = Path(__file__).resolve().parents[2]
FACTOR = 1.25
OTHER_GRID_FACTOR = 2.0
"""On the grids other than the EDM one the table is a default, not chosen cell by cell: its
method must stay within 2x of the best res method there (measured worst: 1.61, Karras rho 3 at
NFE 20; the previous table, ``res_pc3_rho7`` / ``res_pc4_logsigma``, was 4.6x there and 4.2x on
the flow grid at NFE 30)."""
TABLE_METHODS = {method for _, method in AUTO_TABLE}
KNOWN_GAPS = {("designs_karras_rho3", 30): "res_ab3_free"}
"""Cells where the table's method is more than the factor behind the best res method, as
``docs/designed_methods.md`` states (the ``method="auto"`` section): on Karras rho = 3 at NFE
30 ``res_pc4_free``'s corrector loses to ``res_ab3_free``, which the EDM grid's NFE 30-50 rule
out. The test checks the gap is still there (a change must update the doc)."""


LEAGUE_CSVS = {
    "designs": ROOT / "benchmarks/results/league_designs.csv",
    "designs_karras_rho3": ROOT / "benchmarks/results/league_designs_karras_rho3.csv",
    "designs_exponential": ROOT / "benchmarks/results/league_designs_exponential.csv",
    "designs_flow": ROOT / "benchmarks/results/league_designs_flow.csv",
    "designs_vp": ROOT / "benchmarks/results/league_designs_vp.csv",
    "designs_discrete": ROOT / "benchmarks/results/league_designs_discrete.csv",
    "full": ROOT / "paper_figures/output/league.csv",
}
"""The committed league results: the designs' runs (nine NFEs, five exact testbeds; EDM grid,
Karras rho 3, exponential, flow, VP and discrete grids) and the figure run's full league (EDM
grid)."""


def _geometric_means(rows) -> dict[int, dict[str, float]]:
    defects: dict[tuple[int, str], list[float]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "exact" and row["family"] == "res":
            defects[(int(row["nfe"]), row["entrant"])].append(float(row["defect"]))
    means: dict[int, dict[str, float]] = defaultdict(dict)
    for (budget, entrant), values in defects.items():
        means[budget][entrant] = math.exp(sum(map(math.log, values)) / len(values))
    return means


@pytest.mark.parametrize("run", LEAGUE_CSVS)
def test_the_table_picks_the_best_res_method_of_the_league_at_every_nfe(run):
    path = LEAGUE_CSVS[run]
    if not path.exists():
        pytest.fail(f"{path.name} is not committed")
    rows = list(csv.DictReader(path.open()))
    if not {row["entrant"] for row in rows} >= TABLE_METHODS:
        if run == "full":
            pytest.skip("the committed full run predates the auto table's methods")
        pytest.fail(f"{path.name} lacks some of {sorted(TABLE_METHODS)}")
    means = _geometric_means(rows)
    assert len(means) >= 4
    for budget, by_method in sorted(means.items()):
        chosen = recommend(budget)
        best = min(by_method.values())
        factor = FACTOR if run in ("designs", "full") else OTHER_GRID_FACTOR
        if (run, budget) in KNOWN_GAPS:
            assert min(by_method, key=by_method.get) == KNOWN_GAPS[(run, budget)]
            assert by_method[chosen] > factor * best, (budget, chosen, by_method)
            continue
        assert by_method[chosen] <= factor * best, (budget, chosen, by_method)


def test_the_table_methods_are_league_entrants_spending_one_evaluation_per_step():
    """One evaluation per step, and all start free or none (``res_torch.recommend.budget_of``
    counts the budget of the whole table so)."""
    for method in TABLE_METHODS:
        assert ENTRANTS[method].family == "res"
        assert METHODS[method].stages == 1
        assert nfe(method, [8.0, 4.0, 1.0, 0.1, 0.0]) == 4
        assert nfe(method, [80.0, 10.0, 1.0, 0.1, 0.0]) == 3
        assert METHODS[method].free_start


def test_the_doc_quotes_the_table():
    assert auto_table_markdown() in (ROOT / "docs/designed_methods.md").read_text()


def test_ratio_table_is_the_geometric_mean_of_the_ratio_to_the_best_peer():
    rows = [
        {"testbed": t, "nfe": n, "entrant": e, "family": f, "defect": d}
        for t, n, e, f, d in [
            ("a", 5, "p1", "peer", 2.0), ("a", 5, "p2", "peer", 1.0), ("a", 5, "r", "res", 4.0),
            ("b", 5, "p1", "peer", 1.0), ("b", 5, "p2", "peer", 3.0), ("b", 5, "r", "res", 0.25),
        ]
    ]  # fmt: skip
    assert ratio_table(rows) == {"r": {5: pytest.approx(1.0)}}


def test_the_doc_block_is_generated_from_the_committed_designs_runs():
    from experiments.league.designs import DOC, DOC_RUNS, README, RESULTS, doc_block, summary_block

    assert all((RESULTS / name).exists() for name in DOC_RUNS)
    assert doc_block() in DOC.read_text(), "run: python -m experiments.league.designs --doc"
    assert summary_block() in README.read_text(), "run: python -m experiments.league.designs --doc"


def test_best_res_ratios_is_the_geometric_mean_of_the_per_cell_ratios():
    from experiments.league.designs import best_res_ratios

    rows = [
        {"testbed": t, "kind": "exact", "nfe": 5, "family": f, "entrant": e, "defect": d}
        for t, f, e, d in [
            ("a", "res", "r1", 2.0), ("a", "res", "r2", 1.0), ("a", "peer", "p", 4.0),
            ("b", "res", "r1", 9.0), ("b", "res", "r2", 16.0), ("b", "peer", "p", 1.0),
        ]
    ]  # fmt: skip
    assert best_res_ratios(rows) == {5: pytest.approx((0.25 * 9.0) ** 0.5)}


def test_the_designs_figure_is_drawn_from_the_committed_runs(tmp_path):
    from experiments.league.designs import plot_runs

    plot_runs(tmp_path / "designs.png")
    assert (tmp_path / "designs.png").stat().st_size > 10_000


@pytest.mark.parametrize("scale, behind", [(4, False), (10, True)])
def test_the_documented_data_scale_limit_of_the_free_step(scale, behind):
    """``docs/designed_methods.md``: with the testbeds' data scaled 10x the free methods (auto's)
    are behind their ``_grid`` counterparts at every budget (geometric mean over the exact
    testbeds); at 4x they are not behind everywhere (the free step still pays at some budgets)."""
    path = ROOT / f"benchmarks/results/league_designs_x{scale}.csv"
    means = _geometric_means(list(csv.DictReader(path.open())))
    assert set(means) == set(NFES)
    pairs = [("res_pc3_free", "res_pc3_grid"), ("res_pc4_free", "res_pc4_grid")]
    worse = [means[n][free] > means[n][grid] for n in NFES for free, grid in pairs]
    assert all(worse) if behind else not all(worse)
