"""Bad input to res_theory gets a clear error."""

from __future__ import annotations

import pytest
import sympy as sp

from res_theory import library
from res_theory.check import check
from res_theory.phi import phi
from res_theory.tableau import ExpTableau, Parameter, TableauError, Z

c2 = sp.Symbol("c2")


def test_nonpositive_node_for_single_step() -> None:
    with pytest.raises(TableauError, match="outside"):
        library.get("res_2s").at(c2=0)
    with pytest.raises(TableauError, match="outside"):
        library.get("res_2s").at(c2=-0.5)
    with pytest.raises(TableauError, match="must be > 0"):
        ExpTableau("x", "x", (0, -1), ((0, 0), (-phi(1, -Z), 0)), (phi(1, Z), 0))


def test_mismatched_lengths() -> None:
    with pytest.raises(TableauError, match="mismatched lengths"):
        ExpTableau("x", "x", (0, 1), ((0, 0), (phi(1, Z), 0)), (phi(1, Z),))
    with pytest.raises(TableauError, match="mismatched lengths"):
        ExpTableau("x", "x", (0, 1), ((0, 0),), (phi(1, Z), 0))


def test_not_strictly_lower_triangular() -> None:
    with pytest.raises(TableauError, match="strictly lower triangular"):
        ExpTableau("x", "x", (0, 1), ((0, phi(1, Z)), (phi(1, Z), 0)), (phi(1, Z), 0))


def test_entries_must_be_phi_combinations() -> None:
    with pytest.raises(TableauError, match="linear combination"):
        ExpTableau("x", "x", (0,), ((0,),), (phi(1, Z) * phi(2, Z),))
    with pytest.raises(TableauError, match="linear combination|depends on Z"):
        ExpTableau("x", "x", (0,), ((0,),), (Z * phi(1, Z),))
    with pytest.raises(TableauError, match="unknown symbols"):
        ExpTableau("x", "x", (0,), ((0,),), (c2 * phi(1, Z),))


def test_parameter_errors() -> None:
    with pytest.raises(TableauError, match="no parameter"):
        library.get("res_2s").at(c3=0.5)
    with pytest.raises(TableauError, match="outside"):
        Parameter("c2", 2, 0, 1)
    with pytest.raises(TableauError, match="identifier"):
        Parameter("c 2", 0)
    with pytest.raises(TableauError, match="outside"):
        library.get("res_2m").at(c2=0)  # history nodes lie strictly before the current point


def test_unknown_name_and_wrong_type() -> None:
    with pytest.raises(TableauError, match="unknown tableau"):
        library.get("no_such_method")
    with pytest.raises(TypeError, match="ExpTableau"):
        check("res_2s")  # type: ignore[arg-type]


def test_multistep_structure() -> None:
    hist = Parameter("c2", -1, None, 0, role="history_node")
    with pytest.raises(TableauError, match="startup"):
        ExpTableau("m", "m", (0, c2), ((0, 0), (0, 0)), (phi(1, Z), 0), (hist,), kind="multistep")
    with pytest.raises(TableauError, match="A = 0"):
        ExpTableau(
            "m",
            "m",
            (0, c2),
            ((0, 0), (phi(1, Z), 0)),
            (phi(1, Z), 0),
            (hist,),
            kind="multistep",
            startup=("ddim",),
        )


def test_load_round_trip_and_malformed_json(tmp_path) -> None:
    import json

    from res_theory.export import dumps, tableau_document
    from res_theory.load import load

    for name in ("res_2s", "krogstad", "res_3m"):
        original = library.get(name)
        path = tmp_path / f"{name}.json"
        path.write_text(dumps(tableau_document(original)))
        back = load(path)
        assert back.kind == original.kind and back.startup == original.startup
        assert [p.name for p in back.parameters] == [p.name for p in original.parameters]
        for x, y in zip(
            (*back.b, *(e for r in back.A for e in r)),
            (*original.b, *(e for r in original.A for e in r)),
            strict=True,
        ):
            assert sp.expand(x - y) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TableauError, match="not valid JSON"):
        load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(TableauError, match="not a res-tableau"):
        load(bad)
    doc = tableau_document(library.get("res_2s"))
    doc["b"][0][0]["coefficient"] = "__import__('os').getcwd()"
    bad.write_text(json.dumps(doc))
    with pytest.raises(TableauError, match="unsupported construct"):
        load(bad)
    doc = tableau_document(library.get("res_2s"))
    doc["A"][1] = []
    bad.write_text(json.dumps(doc))
    with pytest.raises(TableauError, match="strictly lower triangular"):
        load(bad)
    del doc["b"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(TableauError, match="missing key"):
        load(bad)
    with pytest.raises(TableauError, match="no tableau file"):
        load(tmp_path / "absent.json")


def test_a_zero_literal_with_a_huge_exponent_is_read_at_once(tmp_path) -> None:
    """``0e9999999999`` is 0; SymPy's ``Rational("0eN")`` would build ``10**N`` first (hours)."""
    import json
    from importlib import resources

    from res_theory.load import load
    from res_theory.tableau import exact_value

    assert exact_value("0e9999999999") == 0 and exact_value("2.5e-3") == sp.Rational(1, 400)
    data = json.loads((resources.files("res_torch") / "tableaux" / "res_2s.json").read_text())
    data["b"][1][0]["coefficient"] = "1/c2 + 0e9999999999"
    (tmp_path / "res_2s.json").write_text(json.dumps(data))
    assert load(tmp_path / "res_2s.json").stiff_order() == 2


def test_an_irrational_node_is_checked_exactly() -> None:
    """``c2 = sqrt(2)/2``: the checker's series run over SymPy's expression domain."""
    irrational = library.get("res_2s").at(c2="sqrt(2)/2")
    assert irrational.stiff_order(max_order=3) == 2
    assert sp.simplify(irrational.c[1] - sp.sqrt(2) / 2) == 0


def test_parameters_where_the_coefficients_divide_by_zero_are_refused() -> None:
    with pytest.raises(TableauError, match="undefined at c2=-1, c3=-1"):
        library.get("res_3m").at(c2=-1, c3=-1)


def test_a_replaced_tableau_does_not_keep_the_old_order_report() -> None:
    from dataclasses import replace

    ho4 = library.get("hochbruck_ostermann4")
    assert ho4.order() == 4
    euler_weights = replace(ho4, name="mine", b=(phi(1, Z),) + (0,) * (ho4.stages - 1))
    assert euler_weights.order() == 1


@pytest.mark.parametrize("name", ["../escaped", "Res2S Third", "res_2s\n"])
def test_export_refuses_names_the_readers_would_refuse(tmp_path, name) -> None:
    from dataclasses import replace

    from res_theory.export import export

    with pytest.raises(TableauError, match=r"must match \[a-z0-9_\]\+"):
        export(replace(library.get("res_2s"), name=name), tmp_path / "out")
    assert not (tmp_path / "escaped.json").exists()


def test_export_of_a_title_no_file_can_hold_leaves_the_old_file(tmp_path) -> None:
    from dataclasses import replace

    from res_theory.export import export

    tableau = library.get("res_2s")
    path = export(tableau, tmp_path)
    before = path.read_bytes()
    with pytest.raises(TableauError, match="lone surrogate"):
        export(replace(tableau, title="\ud800"), tmp_path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def _outcome(tmp_path, mutate) -> str:
    """``"loaded"`` or the error message of ``res_theory.load`` on the shipped ``res_2s`` file
    after ``mutate``."""
    import json
    from importlib import resources

    from res_theory.load import load

    data = json.loads((resources.files("res_torch") / "tableaux" / "res_2s.json").read_text())
    mutate(data)
    (tmp_path / "res_2s.json").write_text(json.dumps(data))
    try:
        load(tmp_path / "res_2s.json")
    except TableauError as exc:
        assert len(str(exc)) < 200
        return str(exc)
    return "loaded"


def test_an_exact_division_by_zero_is_refused_in_every_expression(tmp_path) -> None:
    zero = "(sqrt(2)^2 - 2)"  # 0 exactly, 4.4e-16 in float64
    for mutate in (
        lambda d: d["b"][1][0].update(coefficient=f"1/c2 + 0/{zero}"),
        lambda d: d["classical"]["A"][0].__setitem__(0, f"0*{zero}^-1"),
        lambda d: d["test_vectors"]["parameters"].update(c2=f"1/2 + 0/{zero}"),
        lambda d: d["parameters"][0].update(lower=f"1/64 + 0/{zero}"),
    ):
        assert "is undefined: it divides by exactly 0" in _outcome(tmp_path, mutate)


def test_the_classical_block_is_checked_exactly(tmp_path) -> None:
    zero = "(1 + sqrt(2))^2 - 3 - 2*sqrt(2)"  # SymPy does not expand it: checked to 50 digits
    assert _outcome(tmp_path, lambda d: d["classical"]["A"][0].__setitem__(0, zero)) == "loaded"
    alike = "1/(2*c2) + 0*c2"
    assert _outcome(tmp_path, lambda d: d["classical"]["b"].__setitem__(1, alike)) == "loaded"
    for wrong in (f"{zero} + 1e-25", "1e-40"):
        message = _outcome(tmp_path, lambda d, x=wrong: d["classical"]["A"][0].__setitem__(0, x))
        assert "classical.A[0][0] is not the Z -> 0 limit of A[0][0]" in message
    message = _outcome(tmp_path, lambda d: d["classical"]["b"].__setitem__(1, "1/(2*c2) + 1e-35"))
    assert "classical.b[1] is not the Z -> 0 limit" in message


def test_test_vectors_are_checked_to_their_digits(tmp_path) -> None:
    def set_value(value: str, digits: int = 30):
        def mutate(data: dict) -> None:
            data["test_vectors"]["digits"] = digits
            data["test_vectors"]["b"][1][2] = value

        return mutate

    exact = "0.320539035759926837367730883874"  # b_2(-5) at c2 = 1/2, 30 digits
    assert _outcome(tmp_path, set_value(exact)) == "loaded"
    off = exact[:-3] + "999"  # off in the 28th digit
    assert "test_vectors.b[1][2] = " in _outcome(tmp_path, set_value(off))
    assert _outcome(tmp_path, set_value(off, digits=27)) == "loaded"
    assert _outcome(tmp_path, set_value("0.3205", digits=4)) == "loaded"
    # 1.4e-3 off: beyond 10^(1 - digits)
    assert "disagrees with b[1]" in _outcome(tmp_path, set_value("0.3210", digits=4))
