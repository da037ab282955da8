"""The figure pipeline end to end: ``python -m paper_figures --quick`` writes every figure, table
(the league's too) and RESULTS.md (0.5-1.5 minutes on 2 shared cores), and the same pipeline on
tiny configurations of the exact Gaussian-mixture problem, run twice to check that the second run
is all cache."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

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


@dataclass(frozen=True)
class Tiny:
    """A configuration of the stand-in experiments below."""

    n: int = 1

    @classmethod
    def quick(cls) -> Tiny:
        return cls()

    @classmethod
    def full(cls) -> Tiny:
        return cls()


Calls = list[tuple[str, str, str | None]]


def _stand_ins(calls: Calls) -> dict[str, pipeline.Experiment]:
    """Two experiments that record their runs ``("run", name, device type)`` and draws
    ``("draw", name, out folder's name or None)``: ``on_device`` computes on the device it is
    given, ``cpu_only`` does not."""

    def run(name: str) -> Callable[[Tiny, torch.device], list[dict]]:
        def rows(config: Tiny, device: torch.device) -> list[dict]:
            calls.append(("run", name, device.type))
            return [{"n": config.n}]

        return rows

    def draw(name: str) -> Callable[[list[dict], Path | None, str], list[tuple[str, str]]]:
        def figures(rows: list[dict], out: Path | None, command: str) -> list[tuple[str, str]]:
            calls.append(("draw", name, None if out is None else out.name))
            return [(f"{name}.png", f"the {name} figure")]

        return figures

    return {
        "on_device": pipeline.Experiment(Tiny, run("on_device"), draw("on_device")),
        "cpu_only": pipeline.Experiment(Tiny, run("cpu_only"), draw("cpu_only"), on_device=False),
    }


def test_a_table_computed_on_one_device_is_not_reused_on_another(tmp_path, monkeypatch) -> None:
    calls: Calls = []
    monkeypatch.setattr(pipeline, "EXPERIMENTS", _stand_ins(calls))
    monkeypatch.setattr(pipeline, "resolve_device", torch.device)  # "cuda" without a GPU
    run = dict(quick=True, force=False, command="CMD")
    out = tmp_path / "out"
    for device in ("cpu", "cuda", "cuda:0", "cpu"):
        assert pipeline.run_pipeline(out, device=device, **run) == {}
    runs = [c[1:] for c in calls if c[0] == "run"]
    # cuda recomputes the device's table (cuda:0 is the same type); the CPU-only one is reused
    assert runs == [("on_device", "cpu"), ("cpu_only", "cpu"), ("on_device", "cuda")]
    assert len(list((out / "cache").glob("on_device-*.csv"))) == 2
    assert len(list((out / "cache").glob("cpu_only-*.csv"))) == 1


def test_redraw_only_redraws_those_figures_and_lists_every_table(tmp_path, monkeypatch) -> None:
    calls: Calls = []
    monkeypatch.setattr(pipeline, "EXPERIMENTS", _stand_ins(calls))
    run = dict(quick=True, device="cpu", force=False, command="CMD")
    out = tmp_path / "out"
    assert pipeline.run_pipeline(out, **run) == {}
    results = (out / "RESULTS.md").read_text()
    assert "the on_device figure" in results and "the cpu_only figure" in results
    calls.clear()
    assert pipeline.run_pipeline(out, **run, redraw=True, only=["cpu_only"]) == {}
    # nothing runs; only cpu_only's figure is drawn, on_device's caption is still listed
    assert calls == [("draw", "on_device", None), ("draw", "cpu_only", "out")]
    assert (out / "RESULTS.md").read_text() == results


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
