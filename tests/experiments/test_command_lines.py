"""The research command lines refuse bad arguments at once, before any computation, with a
usage error (exit status 2) rather than a traceback after the run or a silent bad table."""

from __future__ import annotations

from pathlib import Path

import pytest


def _usage_error(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_convergence_refuses_a_window_tolerance_or_problem_it_cannot_use(capsys, tmp_path):
    from experiments.convergence.study import main

    out = ["--out", str(tmp_path)]
    assert "must be >= 3, got 0" in _usage_error(main, ["--window", "0", *out], capsys)
    assert "must be finite and > 0" in _usage_error(main, ["--tolerance", "nan", *out], capsys)
    assert "unknown convergence problem" in _usage_error(
        main, ["--quick", "--problems", "bogus", *out], capsys
    )


def test_designs_refuses_a_rho_no_grid_has(capsys, tmp_path):
    from experiments.league.designs import main

    out = ["--out", str(tmp_path)]
    assert "must be finite and > 0" in _usage_error(main, ["--rho", "0", *out], capsys)
    assert "no valid grid" in _usage_error(main, ["--rho", "1e308", *out], capsys)


def test_an_output_folder_that_cannot_be_made_stops_before_the_run(capsys, tmp_path):
    from experiments.league.run import main

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    assert "--out" in _usage_error(main, ["--quick", "--out", str(blocked / "sub")], capsys)


def test_paper_figures_redraw_needs_tables(capsys, tmp_path):
    from paper_figures.__main__ import main

    message = _usage_error(main, ["--redraw", "--out", str(tmp_path / "empty")], capsys)
    assert "no result tables" in message and not (tmp_path / "empty").exists()


def test_paper_figures_redraw_refuses_force_and_an_only_without_its_table(capsys, tmp_path):
    from paper_figures.__main__ import main

    out = ["--out", str(tmp_path)]
    assert "not allowed with argument" in _usage_error(main, ["--redraw", "--force", *out], capsys)
    (tmp_path / "defect.csv").write_text("problem,nfe\ngmm,5\n")
    message = _usage_error(main, ["--redraw", "--only", "defect", "league", *out], capsys)
    assert "no table league.csv" in message and "defect.csv" not in message


def test_paper_figures_refuses_a_device_it_cannot_run(capsys, tmp_path: Path):
    from paper_figures.__main__ import main

    assert "cpu or cuda" in _usage_error(main, ["--device", "meta", "--out", str(tmp_path)], capsys)
