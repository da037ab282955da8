"""The prepared GPU check (benchmarks/gpu_check.sh) and the CUDA-graph path of the sampler
benchmark, as far as a machine without a CUDA device can run them: the benchmark on the CPU
(no graph rows), the graph helper's clear error off CUDA, and the script's own CUDA check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


BENCH = ROOT / "benchmarks" / "bench_samplers.py"


def test_graph_helper_refuses_a_cpu_tensor(load_script) -> None:
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA tensor"):
        load_script(BENCH).graphed(lambda y: y * 2, torch.ones(3))


def test_sampler_benchmark_runs_on_the_cpu_without_graph_rows() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_samplers.py", "--device", "cpu", "--repeats", "1",
         "--nfes", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| res_torch RES-2M | 10 |" in result.stdout and "batch 1x3x8x8" in result.stdout
    assert "graph" not in result.stdout


def test_gpu_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the whole GPU check")
def test_gpu_script_stops_clearly_without_a_cuda_torch(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 99, result.stdout[-2000:] + result.stderr[-2000:]
    summary = (tmp_path / "gpu_check_summary.txt").read_text()
    assert "has no CUDA device" in summary and "gpu_check at" in summary
