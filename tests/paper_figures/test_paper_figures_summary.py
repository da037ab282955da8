"""RESULTS.md arithmetic and wording (paper_figures.summary), the CSV cache
(experiments.experiment_runner) and the plotting functions, on small hand-made tables."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from experiments import experiment_runner
from experiments.experiment_runner import (
    ResultFileError,
    StaleCacheWarning,
    cached_rows,
    cached_table,
    config_key,
    fingerprint,
    read_csv,
    resolve_device,
    write_csv,
)
from paper_figures import plots
from paper_figures.summary import compare_res_to_dpmpp, results_markdown


def table(values: dict[tuple[str, int], float], problem: str = "digits") -> list[dict]:
    return [
        {"problem": problem, "kind": "trained", "method": m, "nfe": n, "defect": v}
        for (m, n), v in values.items()
    ]


def test_change_is_relative_to_dpmpp_and_signed() -> None:
    rows = table(
        {
            ("res_2s", 9): 0.75,
            ("dpmpp_2s", 9): 1.0,
            ("res_2s", 15): 0.6,
            ("dpmpp_2s", 15): 0.5,
            ("res_2m", 9): 2.0,
        }
    )
    cmp = compare_res_to_dpmpp(rows, "defect")
    by_nfe = {(c["res"], c["nfe"]): c["change_pct"] for c in cmp}
    assert by_nfe == {("res_2s", 9): pytest.approx(-25.0), ("res_2s", 15): pytest.approx(20.0)}


def test_markdown_states_losses_as_losses() -> None:
    rows = table(
        {("res_2s", 9): 1.2, ("dpmpp_2s", 9): 1.0, ("res_2m", 9): 0.5, ("dpmpp_2m", 9): 1.0}
    )
    text = results_markdown(compare_res_to_dpmpp(rows, "defect"), [], [("a.png", "cap")], "cmd")
    assert "+20.0% (RES not better)" in text
    assert "-50.0% (RES better)" in text
    assert "RES lower at 0 of 1 NFEs" in text and "RES lower at 1 of 1 NFEs" in text
    assert "`cmd`" in text and "![a.png](a.png)" in text


@dataclass(frozen=True)
class _Config:
    n: int


def _recording(calls: list[int]):
    """A ``compute(config)`` that records each configuration it computes."""

    def compute(config: _Config) -> list[dict]:
        calls.append(config.n)
        return [{"n": config.n}]

    return compute


def test_csv_round_trip_and_cache(tmp_path: Path) -> None:
    rows = [{"method": "res_2s", "nfe": 9, "defect": 0.125, "rho": math.inf}]
    assert read_csv(write_csv(rows, tmp_path / "t.csv")) == rows
    calls: list[int] = []
    compute = _recording(calls)

    assert cached_rows("x", _Config(1), compute, tmp_path)[1] is False
    assert cached_rows("x", _Config(1), compute, tmp_path) == ([{"n": 1}], True)
    assert cached_rows("x", _Config(2), compute, tmp_path)[1] is False
    assert cached_rows("x", _Config(1), compute, tmp_path, force=True)[1] is False
    assert calls == [1, 2, 1]
    assert config_key("x", _Config(1)) != config_key("y", _Config(1))


def test_a_table_is_cached_per_device_type(tmp_path: Path) -> None:
    calls: list[int] = []
    compute = _recording(calls)

    assert cached_rows("x", _Config(1), compute, tmp_path)[1] is False
    assert cached_rows("x", _Config(1), compute, tmp_path, device="cuda")[1] is False
    assert cached_rows("x", _Config(1), compute, tmp_path, device="cpu")[1] is True
    assert cached_rows("x", _Config(1), compute, tmp_path, device="cuda")[1] is True
    assert calls == [1, 1]
    cpu, cuda = (cached_table("x", _Config(1), tmp_path, d) for d in ("cpu", "cuda"))
    assert cpu == cached_table("x", _Config(1), tmp_path) != cuda  # the CPU is the default
    assert json.loads(cuda.with_suffix(".json").read_text())["device"] == "cuda"
    assert config_key("x", _Config(1)) == config_key("x", _Config(1), "cpu")


def test_a_table_cached_by_other_code_is_flagged(tmp_path: Path, monkeypatch) -> None:
    @dataclass(frozen=True)
    class Config:
        n: int

    def compute(config: Config) -> list[dict]:
        return [{"n": config.n}]

    cached_rows("x", Config(1), compute, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_rows("x", Config(1), compute, tmp_path)[1] is True  # same code: silent
    monkeypatch.setattr(experiment_runner, "code_fingerprint", lambda: "0123456789ab")
    with pytest.warns(StaleCacheWarning, match="computed by other code"):
        assert cached_rows("x", Config(1), compute, tmp_path) == ([{"n": 1}], True)
    assert cached_rows("x", Config(1), compute, tmp_path, force=True)[1] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_rows("x", Config(1), compute, tmp_path)  # recomputed: the record is current


def test_the_fingerprint_follows_code_tableaux_and_checkpoints_only(tmp_path: Path) -> None:
    files = {
        "res_torch/steppers.py": b"x = 1",
        "res_torch/tableaux/res_2m.json": b"{}",
        "experiments/checkpoints/edm.pt": b"weights",
        "res_theory/phi.py": b"y = 2",
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    before = fingerprint(tmp_path)
    (tmp_path / "experiments" / "results.csv").write_text("a,b")  # data: not code
    assert fingerprint(tmp_path) == before
    for name in files:
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(original + b" ")
        assert fingerprint(tmp_path) != before, name
        (tmp_path / name).write_bytes(original)
    assert fingerprint(tmp_path) == before
    assert experiment_runner.code_fingerprint() == fingerprint(experiment_runner.REPOSITORY)


def test_write_csv_refuses_empty_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        write_csv([], tmp_path / "t.csv")


def test_plots_write_png_files(tmp_path: Path) -> None:
    defect = table(
        {("res_2s", 5): 2.0, ("res_2s", 9): 1.0, ("dpmpp_2s", 9): 1.5, ("unipc", 9): 0.9}
    )
    defect.append(
        {"problem": "digits", "kind": "trained", "method": "reference", "nfe": 0, "defect": 0.1}
    )
    schedule = [
        {**r, "rho_swept": rho, "nfe_requested": 9}
        for r in defect[:3]
        for rho in (1.0, 7.0, math.inf)
    ]
    stochastic = [{**r, "s_churn": 10.0, "frechet": r["defect"]} for r in defect[:3]]
    psi = [
        {
            "method": m,
            "c2": 0.5,
            "condition": "psi_2",
            "h": h,
            "residual": 0.0 if m == "res_2s" else h / 12,
        }
        for m in ("res_2s", "dpmpp_2s")
        for h in (0.01, 0.1, 1.0)
    ]
    sweep = [{**r, "c2": c2} for r in defect[:3] for c2 in (0.5, 1.0)]
    paths = [
        plots.plot_metric_vs_nfe(defect, "defect", "defect", tmp_path / "a.png"),
        plots.plot_schedule_robustness(schedule, tmp_path / "b.png"),
        plots.plot_stochastic(stochastic, tmp_path / "c.png"),
        plots.plot_psi_residuals(psi, tmp_path / "d.png"),
        plots.plot_c2_sweep(sweep, tmp_path / "e.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_refused() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")


def test_experiment_command_line_writes_its_table(tmp_path: Path) -> None:
    from experiments.diffusion.residuals import main

    main(["--quick", "--device", "cpu", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "residuals.csv")
    psi_2 = [r for r in rows if r["table"] == "psi" and r["condition"] == "psi_2"]
    res = [abs(r["residual"]) for r in psi_2 if r["method"] == "res_2s"]
    dpm = {r["h"]: r["residual"] for r in psi_2 if r["method"] == "dpmpp_2s"}
    # RES: psi_2 = 0 identically; DPM-Solver++(2S): psi_2 = phi_2 - phi_1/2 = h/12 + O(h^2).
    assert max(res) < 1e-14
    assert dpm[min(dpm)] == pytest.approx(min(dpm) / 12, rel=0.01)
    assert {r["method"] for r in rows if r["table"] == "c2_sweep"} == {"dpmpp_2s", "res_2s"}


def test_a_truncated_table_is_refused_with_its_name(tmp_path: Path) -> None:
    path = write_csv([{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}], tmp_path / "t.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # written whole, no partial left
    path.write_text(path.read_text()[:-5])  # cut mid-row: "3" without its second cell
    with pytest.raises(ResultFileError, match="t.csv: line 3 has 1 cells where the header has 2"):
        read_csv(path)
    path.write_text("a,b\n")
    with pytest.raises(ResultFileError, match="no rows"):
        read_csv(path)


def test_a_cached_table_cut_at_a_row_boundary_is_refused(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Config:
        n: int

    rows, _ = cached_rows("x", Config(3), lambda c: [{"i": i} for i in range(c.n)], tmp_path)
    table = next(tmp_path.glob("x-*.csv"))
    table.write_text("\n".join(table.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ResultFileError, match="2 rows where 3 were written"):
        cached_rows("x", Config(3), lambda c: [], tmp_path)
