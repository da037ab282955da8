"""README.md's result blocks are the committed tables rendered (paper_figures.readme), and the
block machinery fails loudly on a missing marker or table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments.experiment_runner import read_csv, write_csv
from paper_figures import readme, tables
from paper_figures.pipeline import EXPERIMENTS


def test_readme_blocks_equal_the_committed_tables() -> None:
    rendered = readme.render_blocks(readme.OUTPUT)
    assert set(rendered) == {n for n, e in EXPERIMENTS.items() if e.readme is not None}
    current = readme.current_blocks(readme.README.read_text(), list(rendered))
    stale = [name for name in rendered if current[name] != rendered[name]]
    assert not stale, (
        f"README blocks {stale} differ from paper_figures/output/*.csv; "
        "run `python -m paper_figures.readme`"
    )


def test_check_command_reports_a_changed_table(tmp_path: Path, capsys) -> None:
    output = tmp_path / "output"
    shutil.copytree(readme.OUTPUT, output, ignore=shutil.ignore_patterns("*.png", "cache"))
    assert readme.main(["--check", "--output", str(output)]) == 0
    rows = read_csv(output / "defect.csv")
    first = next(r for r in rows if r["method"] == "res_2s" and r["nfe"] == 9)
    first["defect"] *= 3  # RES-2S now loses at NFE 9 on that problem
    write_csv(rows, output / "defect.csv")
    assert readme.main(["--check", "--output", str(output)]) == 1
    assert "'defect'" in capsys.readouterr().err
    copy = tmp_path / "README.md"
    copy.write_text(readme.README.read_text())
    assert readme.update_readme(copy, output) == ["defect"]
    assert readme.main(["--check", "--output", str(output), "--readme", str(copy)]) == 0


def test_missing_marker_and_missing_table_are_errors(tmp_path: Path) -> None:
    with pytest.raises(readme.ReadmeError, match="no generated block 'defect'"):
        readme.replace_blocks("# no markers here\n", {"defect": "x"})
    with pytest.raises(readme.ReadmeError, match="does not exist"):
        readme.render_blocks(tmp_path)


def test_replace_blocks_keeps_the_text_around_the_markers() -> None:
    text = f"before\n{readme.begin_marker('defect')}\nold\n{readme.end_marker('defect')}\nafter\n"
    new = readme.replace_blocks(text, {"defect": "new | table"})
    assert new == text.replace("\nold\n", "\nnew | table\n")
    assert readme.current_blocks(new, ["defect"]) == {"defect": "new | table"}


def _defect_rows(values: dict[tuple[str, str, int], float]) -> list[dict]:
    kinds = {"gmm": "exact", "digits": "trained"}
    return [
        {"problem": p, "kind": kinds[p], "method": m, "nfe": n, "defect": v}
        for (p, m, n), v in values.items()
    ]


def test_defect_block_counts_wins_and_puts_trained_models_first() -> None:
    rows = _defect_rows(
        {
            ("gmm", "res_2s", 9): 0.5,
            ("gmm", "dpmpp_2s", 9): 1.0,
            ("gmm", "res_2s", 15): 0.6,
            ("gmm", "dpmpp_2s", 15): 0.5,
            ("digits", "res_2s", 9): 2.0,
            ("digits", "dpmpp_2s", 9): 1.0,
        }
    )
    block = tables.defect_block(rows)
    assert block.index("digits (trained)") < block.index("gmm (exact)")
    assert "**−50.0 %** (better at 1/2 NFEs)" in block
    assert "+100.0 % (better at 0/1 NFEs)" in block
    assert "RES-2S lower than DPM-Solver++(2S) on 1 of 2 problems" in block


def test_convergence_block_separates_the_stiff_pde_from_the_diffusion_problems() -> None:
    def slope(problem: str, method: str, regime: str, measured: float | None, agrees: bool):
        return {
            "table": "slopes",
            "problem": problem,
            "method": method,
            "regime": regime,
            "measured_order": measured,
            "stiff_order": 2,
            "classical_order": 4,
            "agrees": agrees,
        }

    scalar = "scalar L = -1 (diffusion ODE)"
    rows = [
        slope("pde", "etdrk4", tables.PDE, 2.93, True),
        slope("sine", "etdrk4", scalar, 3.99, True),
        slope("gmm_ode", "etdrk4", scalar, 3.78, True),
        slope("digits_exact_ode", "etdrk4", scalar, None, False),
    ]
    block = tables.convergence_block(rows)
    assert "| `etdrk4` | 2 | 4 | 2.93 | 3.78–3.99 |" in block
    assert "2 of 3 (1 without a fit" in block and "stiff PDE: 1 of 1" in block
