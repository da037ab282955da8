"""The league in the figure pipeline: cells and targets, the README block, the RESULTS.md
section (misses listed with their numbers, the mechanism and gain tables) and a tiny end-to-end
run."""

from __future__ import annotations

import math
from pathlib import Path

from experiments.league.entrants import ENTRANTS
from experiments.league.run import LeagueConfig
from paper_figures import pipeline, plots, tables
from paper_figures.summary import league_cells, league_markdown


def _rows() -> list[dict]:
    values = {
        ("gmm", "exact", 5): {"res_a": 1.0, "res_b": 0.7, "peer_a": 1.0, "peer_b": 2.0},
        ("gmm", "exact", 10): {"res_a": 0.09, "res_b": 0.2, "peer_a": 0.1, "peer_b": 0.3},
        ("digits", "trained", 5): {"res_a": 0.9, "res_b": 1.5, "peer_a": 1.0, "peer_b": 2.0},
    }
    rows = []
    for (testbed, kind, nfe), defects in values.items():
        for entrant, defect in defects.items():
            family = "res" if entrant.startswith("res") else "peer"
            rows.append({"table": "league", "testbed": testbed, "kind": kind, "nfe": nfe,
                         "entrant": entrant, "family": family, "defect": defect})  # fmt: skip
    mechanism = {"D in lambda": (1.0, 2.0), "eps in sigma": (0.5, 4.0)}
    for quantity, values in mechanism.items():
        for k in (1, 2):
            for value, band in zip(values, ("80-10", "10-0.002"), strict=True):
                rows.append({"table": "mechanism", "testbed": "gmm", "quantity": quantity, "k": k,
                             "band": band, "norm": value, "step_scaled": value})  # fmt: skip
    for band, mean, worst in (("80-10", 0.2, 0.4), ("10-0.002", 1.25, 3.5)):
        rows.append({"table": "gain", "testbed": "gmm", "band": band, "mean_gain": mean,
                     "max_gain": worst})  # fmt: skip
    return rows


def test_cells_apply_the_target_of_their_kind() -> None:
    cells = {(c["testbed"], c["nfe"]): c for c in league_cells(_rows())}
    assert cells[("gmm", 5)]["best_res"] == "res_b" and cells[("gmm", 5)]["best_peer"] == "peer_a"
    assert math.isclose(cells[("gmm", 5)]["ratio"], 0.7) and cells[("gmm", 5)]["met"]
    assert math.isclose(cells[("gmm", 10)]["ratio"], 0.9) and not cells[("gmm", 10)]["met"]
    assert math.isclose(cells[("digits", 5)]["ratio"], 0.9) and cells[("digits", 5)]["met"]


def test_readme_block_bolds_the_cells_that_meet_the_target() -> None:
    block = tables.league_block(_rows())
    assert "| gmm (exact) | **0.70** | 0.90 |" in block
    assert "| digits (trained) | **0.90** | — |" in block
    assert "Target met in 2 of 3 cells" in block


def test_results_section_lists_every_miss_with_its_numbers() -> None:
    text = league_markdown(_rows())
    assert "Target met in 2 of 3 cells." in text
    assert "Missed: gmm NFE 10 (res_a 0.09 vs peer_a 0.1, ratio 0.90)." in text
    assert "trained testbeds (target 1): met in 1 of 1 cells" in text
    # mechanism: eps in sigma is smaller at sigma 80-10, D in lambda at 10-0.002; the league
    # ratio of gmm is the geometric mean of 0.7 and 0.9
    assert "| gmm | D in lambda | 1 | **2** | 0.79 |" in text
    assert "|  | eps in sigma | **0.5** | 4 |  |" in text
    assert "sigma 80-10: eps in sigma 1; sigma 10-0.002: D in lambda 1." in text
    assert "beats the best peer in 2 of 2 league cells" in text
    assert "| gmm | 0.20 / 0.40 | 1.25 / 3.50 |" in text  # the denoiser gain, mean / worst


def test_league_figures_are_drawn(tmp_path: Path) -> None:
    rows = _rows()
    league = [r for r in rows if r["table"] == "league"]
    assert plots.plot_league(league, league_cells(league), tmp_path / "l.png").stat().st_size
    mechanism = [r for r in rows if r["table"] == "mechanism"]
    assert plots.plot_mechanism(mechanism, tmp_path / "m.png").stat().st_size > 1000


def test_tiny_league_through_the_pipeline(tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "working_directory"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    entrants = tuple(n for n in ENTRANTS if n in ("res_2m", "res_2s", "ipndm"))
    entrants += tuple(n for n, e in ENTRANTS.items() if e.family == "peer")[:1]
    config = LeagueConfig(
        (("gmm", 2),), entrants, (5, 8), mechanism_testbeds=("gmm",), mechanism_batch=2
    )
    run = dict(quick=True, device="cpu", force=False, command="CMD", only=["league"])
    assert pipeline.run_pipeline(out, **run, configs={"league": config}) == {}
    for name in ("league.png", "league_mechanism.png", "league.csv"):
        assert (out / name).stat().st_size > 1000, name
    # the reference is kept in the output folder's cache, not under the working directory
    assert len(list((out / "cache").glob("league-ref-*.pt"))) == 1
    assert not any(elsewhere.iterdir())
    results = (out / "RESULTS.md").read_text()
    assert "## Sampler league" in results and "### Mechanism" in results
    assert "where denoisers leave the corrector's class" in results
    assert "| gmm (exact) | 5 |" in results and "![league.png](league.png)" in results
