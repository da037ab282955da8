"""README.md as a newcomer reads it: every Python snippet runs as written (from the repository
root, as the README says), the two newcomer commands stay two, every ``python -m`` module it
names exists, and the Layout section names every module, document and folder."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from experiments.generated_blocks import block

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCH_ADAPTIVE = ROOT / "benchmarks" / "bench_adaptive.py"
BENCH_SAMPLERS = ROOT / "benchmarks" / "bench_samplers.py"


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    following = README.find("\n## ", start + 1)
    return README[start : following if following >= 0 else len(README)]


def python_snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_snippets() -> None:
    assert len(python_snippets()) >= 2


@pytest.mark.parametrize("index", range(len(python_snippets())))
def test_snippet_runs_as_written_from_the_repository_root(index: int, monkeypatch) -> None:
    """Each snippet runs in a fresh namespace (it must import and define all it uses), in the
    repository root, which is on ``sys.path`` as for ``python`` started there."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    snippet = python_snippets()[index]
    exec(compile(snippet, f"README.md python snippet {index}", "exec"), {"__name__": "__main__"})


def test_exactly_two_newcomer_commands() -> None:
    commands = re.findall(
        r"^    (\S.*)$", _section("Two commands on a fresh machine"), re.MULTILINE
    )
    assert commands == [
        "bash .ci/install && .venv/bin/python -m paper_figures --quick",
        "bash .ci/run",
    ]


def test_every_module_the_readme_runs_exists() -> None:
    modules = set(re.findall(r"python -m ([A-Za-z_][\w.]*)", README))
    modules -= {"MODULE", "pytest"}
    assert modules >= {"paper_figures", "experiments.convergence", "paper_figures.readme"}
    missing = [m for m in sorted(modules) if importlib.util.find_spec(m) is None]
    assert not missing, f"README runs modules that do not exist: {missing}"


def _layout_names() -> set[str]:
    names = {p.name for p in ROOT.iterdir() if not p.name.startswith(".git")}
    names -= {"README.md", ".venv", ".pytest_cache", ".ruff_cache", ".hypothesis", "results"}
    names = {n for n in names if not n.endswith(".egg-info") and n != "__pycache__"}
    for package in ("res_theory", "res_torch", "experiments", "paper_figures"):
        for path in (ROOT / package).rglob("*.py"):
            if path.stem not in ("__init__", "__main__"):
                names.add(path.stem)
            if path.stem == "__init__" and path.parent != ROOT / package:
                names.add(path.parent.name)
    names |= {p.name for p in (ROOT / "docs").glob("*.md")}
    names |= {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    names |= {p.name for p in (ROOT / "tests").iterdir() if not p.name.startswith("__")}
    return names


def test_layout_names_every_module_document_and_folder() -> None:
    layout = _section("Layout")
    missing = sorted(
        n for n in _layout_names() if not re.search(rf"(?<![\w.]){re.escape(n)}\b", layout)
    )
    assert not missing, f"README's Layout section does not mention: {missing}"


def test_overhead_table_is_the_committed_csv(load_script) -> None:
    """README's sampler-overhead table is ``bench_samplers.render`` of the committed CSV
    (rewrite it with ``python benchmarks/bench_samplers.py --readme``)."""
    bench = load_script(BENCH_SAMPLERS)
    assert block(README, bench.BEGIN, bench.END) == bench.render(bench.read_csv(bench.CSV))
    cuda = block(README, bench.CUDA_BEGIN, bench.CUDA_END)
    assert cuda == bench.render(bench.read_csv(bench.CUDA_CSV))  # the lent GPU's run
    assert "device cuda" in cuda and "RES-2M graph / bound" in cuda


def test_adaptive_table_is_the_committed_csv(load_script) -> None:
    """README's adaptive benchmark table is ``bench_adaptive.render`` of the committed CSV
    (rewrite it with ``python benchmarks/bench_adaptive.py --readme``)."""
    bench = load_script(BENCH_ADAPTIVE)
    rows = bench.read_csv(bench.CSV)
    assert block(README, bench.BEGIN, bench.END) == bench.render(rows)
    assert {r["method"] for r in rows} == set(bench.ENTRANTS)
