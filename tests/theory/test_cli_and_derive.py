"""The res-theory command line and the solver."""

from __future__ import annotations

import json

import pytest
import sympy as sp

from res_theory import library
from res_theory.cli import main
from res_theory.derive import DerivationError, derive, quadrature_weights
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
    assert "rationals" in capsys.readouterr().err
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
