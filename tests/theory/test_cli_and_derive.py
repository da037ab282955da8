"""The res-theory command line and the solver."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import time

import pytest
import sympy as sp

from res_theory import cli, library
from res_theory.cli import build_parser, main
from res_theory.derive import DerivationError, derive, max_order_for, quadrature_weights
from res_theory.phi import phi
from res_theory.tableau import Z


def test_conditions_command(capsys) -> None:
    assert main(["conditions", "--order", "4"]) == 0
    out = capsys.readouterr().out
    assert "sum_i b_i J sum_j a_ij J psi_{2,j} = 0" in out
    assert out.count(" = 0") == 8


def test_check_command(capsys) -> None:
    assert main(["check", "res_2s", "--c2", "1/3"]) == 0
    assert "stiff order 2" in capsys.readouterr().out
    assert main(["check", "ddim", "--json", "--order", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["stiff_order"] == 1


def test_derive_command_with_numeric_nodes(capsys) -> None:
    # RES-3S at c2 = 1/2, c3 = 1: b_2 = 4 phi_2 - 8 phi_3, b_3 = 4 phi_3 - phi_2 (res_3s_family)
    assert main(["derive", "--stages", "3", "--order", "3", "--nodes", "1/2", "1"]) == 0
    out = capsys.readouterr().out
    assert "b2 = 4*phi(2, Z) - 8*phi(3, Z)" in out and "b3 = -phi(2, Z) + 4*phi(3, Z)" in out
    assert main(["derive", "--stages", "3", "--order", "3", "--nodes", "1/2", "x"]) == 2
    assert "node must be a number like 1/2" in capsys.readouterr().err
    assert main(["derive", "--stages", "3", "--order", "3", "--nodes", "1/2"]) == 2
    assert "nodes" in capsys.readouterr().err


def test_cli_errors(capsys) -> None:
    assert main(["check", "no_such_method"]) == 2
    assert "unknown tableau" in capsys.readouterr().err
    assert main(["check", "res_2s", "--c2", "0"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["export"]) == 2


def test_export_command(tmp_path, capsys) -> None:
    assert main(["export", "ddim", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "ddim.json").is_file()


def test_derive_rederives_the_paper_2_stage_res() -> None:
    result = derive(2, 2)
    c2 = sp.Symbol("c2")
    tab = result.tableau
    assert sp.expand(tab.A[1][0] - c2 * phi(1, c2 * Z)) == 0
    assert sp.expand(tab.b[1] - phi(2, Z) / c2) == 0
    assert sp.expand(tab.b[0] - (phi(1, Z) - phi(2, Z) / c2)) == 0
    assert result.weakened == ()
    assert derive(1, 1).tableau.b[0] == phi(1, Z)


def test_derive_reports_impossibility() -> None:
    with pytest.raises(DerivationError, match="no 1-stage method"):
        derive(1, 2)
    with pytest.raises(DerivationError, match="no 2-stage method of stiff order 3"):
        derive(2, 3)
    with pytest.raises(DerivationError, match="nodes"):
        derive(3, 3, nodes=(sp.Rational(1, 2),))


def test_quadrature_weights_are_res_3m() -> None:
    c2, c3 = sp.symbols("c2 c3")
    assert quadrature_weights((0, c2, c3)) == library.get("res_3m").b
    with pytest.raises(DerivationError, match="distinct"):
        quadrature_weights((0, c2, c2))


def test_derive_3_stage_order_3_finds_res_3s() -> None:
    """Scalar case: psi_1..psi_3 and condition 4 cannot all hold identically; the solver weakens
    condition 4 and finds exactly the library's res_3s family."""
    result = derive(3, 3)
    ref = library.get("res_3s")
    assert result.weakened == ("sum_i b_i J psi_{2,i}",)
    for x, y in zip(result.tableau.b, ref.b, strict=True):
        assert sp.simplify(x - y) == 0
    for i in range(3):
        for j in range(i):
            assert sp.simplify(result.tableau.A[i][j] - ref.A[i][j]) == 0
    assert result.tableau.scalar_order(3) == 3


def test_check_command_reads_json_files(tmp_path, capsys) -> None:
    assert main(["export", "krogstad", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "krogstad.json")]) == 0
    assert "stiff order 3" in capsys.readouterr().out
    (tmp_path / "broken.json").write_text("[")
    assert main(["check", str(tmp_path / "broken.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "ddim", "--order", "99"], "order must be in 1..6, got 99"),
        (["conditions", "--order", "99"], "order must be in 1..6, got 99"),
        (["conditions", "--order", "0"], "order must be in 1..6, got 0"),
        (["derive", "--stages", "2", "--order", "9"], "order must be in 1..6, got 9"),
    ],
)
def test_cli_order_limit_is_answered_at_once(argv: list[str], message: str, capsys) -> None:
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["derive", "--stages", "9", "--order", "3"], "stages must be an integer in 1..5, got 9"),
        (["derive", "--stages", "0", "--order", "1"], "stages must be an integer in 1..5, got 0"),
        (["derive", "--stages", "2", "--order", "3"], "2 stages allow at most order 2"),
        (["derive", "--stages", "3", "--order", "5"], "3 stages allow at most order 4"),
        (
            ["derive", "--stages", "4", "--order", "5", "--case", "operator"],
            "4 stages allow at most order 4",
        ),
    ],
)
def test_impossible_derivations_are_refused_at_once(argv, message, capsys) -> None:
    start = time.perf_counter()
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert time.perf_counter() - start < 1


def test_order_bound_is_sharp_where_known() -> None:
    """max_order_for never refuses what exists: 1, 2, 3 stages reach orders 1, 2, 3 (derive),
    5 stages order 4 (Hochbruck-Ostermann), 8 stages order 5 (Luan-Ostermann, beyond derive)."""
    assert [max_order_for(s, "operator") for s in (1, 2, 3, 5)] >= [1, 2, 3, 4]
    for name in ("ddim", "res_2s", "res_3s", "krogstad", "hochbruck_ostermann4"):
        tab = library.get(name)
        assert tab.stiff_order(4) <= max_order_for(tab.stages, "operator")
    with pytest.raises(DerivationError, match="at most order 2"):
        derive(2, 3)
    with pytest.raises(DerivationError, match="1..5"):
        derive(9, 3)
    with pytest.raises(DerivationError, match="1..6"):
        derive(2, 9)


def test_every_cli_option_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name} {action.dest} has no help"


def test_derive_output_ends_with_one_newline(capsys) -> None:
    assert main(["derive", "--stages", "2", "--order", "2"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and not out.endswith("\n\n")


def test_check_defaults_to_order_5_and_shows_the_error_constant(capsys) -> None:
    assert main(["check", "hochbruck_ostermann4"]) == 0
    out = capsys.readouterr().out
    assert "stiff order 4" in out and "checked up to order 5" in out
    assert "error constant (scalar case): C_5 = " in out
    assert main(["check", "ddim"]) == 0
    assert "error constant (operator case): C_2 = 1/2 = 0.5" in capsys.readouterr().out


@pytest.mark.slow
def test_check_luan_ostermann5_reports_order_5_by_default(capsys) -> None:
    assert main(["check", "luan_ostermann5"]) == 0
    out = capsys.readouterr().out
    assert "stiff order 5" in out and "checked up to order 6" in out


def test_embedded_and_optimise_commands(capsys) -> None:
    assert main(["embedded", "res_2s"]) == 0
    out = capsys.readouterr().out
    assert "bhat1 = phi(1, Z)" in out and out.endswith("\n")
    assert main(["optimise", "res_2s"]) == 0
    assert "c2 = 1/3" in capsys.readouterr().out
    assert main(["optimise", "krogstad"]) == 2
    assert "no free parameters" in capsys.readouterr().err


@pytest.mark.slow
def test_derive_5_stage_order_4_recovers_hochbruck_ostermann() -> None:
    """Operator case, Hochbruck-Ostermann's nodes: the bilinear stage is solved by the 2-colour
    split (inner row fixed at a_32 = phi_2(Z/2), the shortest solution) and the result is their
    method, entry by entry, of stiff order 4 (psi_4 and J psi_3 weakened). About 14 minutes
    wall on 2 loaded cores; the scalar case (about a minute) finds a method of scalar order 4
    with the same b, a_32 and a_54 but stiff order 3."""
    half = sp.Rational(1, 2)
    result = derive(5, 4, nodes=(half, half, 1, half), case="operator")
    tab, ho = result.tableau, library.get("hochbruck_ostermann4")
    for i in range(5):
        for j in range(i):
            assert sp.simplify(tab.A[i][j] - ho.A[i][j]) == 0, (i + 1, j + 1)
    for x, y in zip(tab.b, ho.b, strict=True):
        assert sp.simplify(x - y) == 0
    assert result.weakened == ("psi_4", "sum_i b_i J psi_{3,i}")
    report = tab.report(5)
    assert (report.stiff_order, report.scalar_order) == (4, 4)


def test_command_line_values_are_parsed_not_evaluated(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    attack = "__import__('pathlib').Path('PWNED').write_text('x') and 0 or 1/2"
    assert main(["check", "res_2s", "--c2", attack]) == 2
    assert not (tmp_path / "PWNED").exists()
    assert "unsupported construct" in capsys.readouterr().err
    assert main(["check", "res_2s", "--c2", "sqrt(2)/2", "--order", "2"]) == 0
    assert main(["derive", "--stages", "2", "--order", "2", "--nodes", "1/0"]) == 2
    assert "node must be finite" in capsys.readouterr().err


def test_check_refuses_tableaux_beyond_its_stage_limit(tmp_path, capsys) -> None:
    from res_theory.cli import MAX_CHECK_STAGES

    s = MAX_CHECK_STAGES + 1  # a valid file: stage i is the Euler step to c_i = i/s

    def term(c: str, value: float) -> dict:
        return {"coefficient": c, "coefficient_float": value, "k": 1, "scale": c,
                "scale_float": value}  # fmt: skip

    doc = {
        "format": "res-tableau", "format_version": 1, "name": "big", "kind": "singlestep",
        "stages": s, "parameters": [], "c": ["0"] + [f"{i}/{s}" for i in range(1, s)],
        "c_float": [i / s for i in range(s)],
        "A": [[]] + [[[term(f"{i}/{s}", i / s)]] + [[] for _ in range(i - 1)] for i in range(1, s)],
        "b": [[term("1", 1.0)]] + [[] for _ in range(s - 1)],
    }  # fmt: skip
    (tmp_path / "big.json").write_text(json.dumps(doc))
    start = time.perf_counter()
    assert main(["check", str(tmp_path / "big.json")]) == 2
    assert f"at most {MAX_CHECK_STAGES} stages" in capsys.readouterr().err
    assert time.perf_counter() - start < 5


def test_files_that_are_not_regular_files_are_refused(tmp_path, capsys) -> None:
    folder = tmp_path / "folder.json"
    folder.mkdir()
    assert main(["check", str(folder)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_export_onto_an_existing_file_is_a_clear_error(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("")
    assert main(["export", "ddim", "--out", str(tmp_path / "file")]) == 2
    assert "res-theory: error:" in capsys.readouterr().err


def test_check_refuses_a_file_with_a_repeated_key(tmp_path, capsys) -> None:
    assert main(["export", "ddim", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "ddim.json").read_text()
    (tmp_path / "twice.json").write_text(
        text.replace('"name": "ddim"', '"name": "ddim", "name": "x"', 1)
    )
    capsys.readouterr()
    assert main(["check", str(tmp_path / "twice.json")]) == 2
    assert "appear twice" in capsys.readouterr().err


def test_decimal_values_are_the_fractions_they_write(capsys) -> None:
    # a review found --c2 0.5 refused ("not a linear combination of phi_k"): SymPy Floats
    for decimal, fraction in (("0.5", "1/2"), ("0.25", "1/4")):
        assert main(["check", "res_2s", "--c2", decimal, "--order", "3"]) == 0
        with_decimal = capsys.readouterr().out
        assert main(["check", "res_2s", "--c2", fraction, "--order", "3"]) == 0
        assert with_decimal == capsys.readouterr().out
    assert main(["derive", "--stages", "2", "--order", "2", "--nodes", "0.5"]) == 0
    assert "1/2" in capsys.readouterr().out


def test_a_literal_that_underflows_is_refused_at_once(capsys) -> None:
    # SymPy's Float("1e-99999999") ran for minutes; float64 reads it as 0
    assert main(["check", "res_2s", "--c2", "1e-99999999"]) == 2
    assert "underflows float64" in capsys.readouterr().err


def test_check_gives_up_after_its_time_limit(capsys, monkeypatch) -> None:
    # a file within every size limit can make the symbolic check run for hours: stand in for
    # it with a check that never ends (a SymPy-style loop that catches every Exception)
    def endless(args) -> None:
        while True:
            with contextlib.suppress(Exception):  # the limit must not be an Exception
                sum(range(10_000))

    monkeypatch.setattr(cli, "_run_check", endless)

    def callers(signum, frame) -> None:
        pass

    handler = signal.signal(signal.SIGALRM, callers)  # a caller's timer and handler: restored
    signal.setitimer(signal.ITIMER_REAL, 50.0)
    try:
        assert main(["check", "res_2s", "--time-limit", "0.2"]) == 2
        assert "did not finish within 0.2 s" in capsys.readouterr().err
        assert 45 < signal.getitimer(signal.ITIMER_REAL)[0] < 50
        assert signal.getsignal(signal.SIGALRM) is callers
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
    monkeypatch.undo()
    assert main(["check", "ddim", "--order", "2", "--time-limit", "0"]) == 0
    with pytest.raises(SystemExit):  # argparse: "time limit must be finite and >= 0"
        main(["check", "ddim", "--time-limit", "-1"])
