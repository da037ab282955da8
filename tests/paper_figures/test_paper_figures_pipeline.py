"""The figure pipeline end to end: ``python -m paper_figures --quick`` writes every figure, table
(the league's too) and RESULTS.md (0.5-1.5 minutes on 2 shared cores), and the same pipeline on
tiny configurations of the exact Gaussian-mixture problem, run twice to check that the second run
is all cache."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.diffusion.defect import DefectConfig
from experiments.diffusion.quality import QualityConfig
from experiments.diffusion.residuals import ResidualsConfig
from experiments.diffusion.schedule_robustness import ScheduleConfig
from experiments.diffusion.stochastic import StochasticConfig
from paper_figures import pipeline

ROOT = Path(__file__).resolve().parents[2]

FIGURES = (
    "defect_vs_nfe.png",
    "quality_vs_nfe.png",
    "schedule_robustness.png",
    "stochastic.png",
    "psi_residuals.png",
    "c2_sweep.png",
    "convergence.png",
)
TABLES = (
    "defect.csv",
    "quality.csv",
    "schedule_robustness.csv",
    "stochastic.csv",
    "residuals.csv",
    "convergence.csv",
    "res_vs_dpmpp.csv",
)
LEAGUE_FILES = ("league.csv", "league.png", "league_mechanism.png")


def test_pipeline_on_tiny_exact_problem(tmp_path: Path) -> None:
    methods = ("ddim", "dpmpp_2s", "res_2s", "dpmpp_2m", "res_2m", "unipc")
    tiny = {
        "defect": replace(
            DefectConfig.quick(), problems=(("gmm", 8),), methods=methods, nfes=(5, 9, 17)
        ),
        "quality": replace(
            QualityConfig.quick(), problems=(("gmm", 64),), methods=methods, nfes=(5, 9)
        ),
        "schedule_robustness": replace(
            ScheduleConfig.quick(),
            problems=(("gmm", 8),),
            methods=methods,
            nfes=(9,),
            rhos=(1.0, 7.0, math.inf),
        ),
        "stochastic": replace(
            StochasticConfig.quick(),
            problems=(("gmm", 64),),
            methods=("heun", "res_2s"),
            nfes=(9,),
        ),
        "residuals": replace(
            ResidualsConfig.quick(), problems=(("gmm", 8),), h_points=5, c2s=(0.5, 1.0)
        ),
    }
    run = dict(quick=True, device="cpu", force=False, command="CMD", only=list(tiny), configs=tiny)
    failures = pipeline.run_pipeline(tmp_path, **run)
    assert failures == {}
    for name in FIGURES[:-1]:
        assert (tmp_path / name).stat().st_size > 1000, name
    for name in TABLES:
        if name != "convergence.csv":
            assert (tmp_path / name).exists(), name
    results = (tmp_path / "RESULTS.md").read_text()
    assert "## gmm (exact)" in results and "at NFE 9" in results and "`CMD`" in results
    # A second run reads every table from the cache.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert pipeline.run_pipeline(tmp_path, **run) == {}
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == before
    # Re-running one experiment keeps the others' (cached) results in RESULTS.md.
    assert pipeline.run_pipeline(tmp_path, **{**run, "only": ["residuals"]}) == {}
    assert (tmp_path / "RESULTS.md").read_text() == results


def test_pipeline_rejects_unknown_experiment(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        pipeline.run_pipeline(
            tmp_path, quick=True, device="cpu", force=False, command="x", only=["nonsense"]
        )


def test_quick_figure_run_writes_every_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "paper_figures",
            "--quick",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (*FIGURES, *TABLES, *LEAGUE_FILES, "RESULTS.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    results = (tmp_path / "RESULTS.md").read_text()
    assert "## digits (trained)" in results and "failed" not in results
    assert "## Sampler league" in results and "### Mechanism" in results
