"""Tableau interchange (issue 12, item 4): the JSON Schema validates every shipped file, the
test vectors are right to 30 digits, and the plain-numpy reference reader in ``docs/``
reproduces them; ``res_torch`` and ``res_theory`` refuse and accept the same files (test vectors
and the ``classical`` block cross-checked, exact division by zero, multistep nodes)."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path

import mpmath
import pytest
import sympy as sp
import torch

import res_theory.load as theory_load
from res_theory import library
from res_theory.tableau import TableauError as TheoryTableauError
from res_theory.tableau import Z
from res_torch.tableau import TableauError as TorchTableauError
from res_torch.tableau import available_tableaux, load_tableau

ROOT = Path(__file__).resolve().parents[1]
FOLDER = resources.files("res_torch") / "tableaux"
NAMES = available_tableaux()


def _doc(name: str) -> dict:
    return json.loads((FOLDER / f"{name}.json").read_text())


def _schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((FOLDER / "schema" / "res-tableau.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


READER = ROOT / "docs" / "reference_reader.py"


def test_the_schema_ships_beside_the_tableaux_and_is_not_a_tableau():
    assert (FOLDER / "schema" / "res-tableau.schema.json").is_file()
    assert "schema" not in NAMES and len(NAMES) == len(library.names())


@pytest.mark.parametrize("name", NAMES)
def test_schema_validates_every_shipped_tableau(name):
    errors = list(_schema_validator().iter_errors(_doc(name)))
    assert not errors, [e.message for e in errors[:3]]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format_version=True),
        lambda d: d["b"][0][0].update(k=1.5),
        lambda d: d["b"][0][0].update(k=400),
        lambda d: d.pop("b"),
        lambda d: d.update(extra=1),
        lambda d: d["b"][0][0].update(coefficient="x" * 1001),
        lambda d: d["b"][0][0].update(coefficient="__import__('os')"),
        lambda d: d["parameters"][0].update(lower_inclusive=1),
        lambda d: d.update(kind="multistep"),  # a multistep file needs 'startup'
        lambda d: d["test_vectors"]["b"][0].__setitem__(0, 0.5),
    ],
)
def test_schema_refuses_bad_documents(mutate):
    doc = copy.deepcopy(_doc("res_2s"))
    mutate(doc)
    assert list(_schema_validator().iter_errors(doc))


def test_files_use_caret_for_powers():
    text = (FOLDER / "res_3s.json").read_text()
    assert '"c3^2/c2"' in text
    for name in NAMES:
        doc = _doc(name)
        expressions = [t[key] for e in (*doc["b"], *(x for r in doc["A"] for x in r)) for t in e
                       for key in ("coefficient", "scale")]  # fmt: skip
        assert not any("**" in x for x in expressions), name


@pytest.mark.parametrize("name", NAMES)
def test_vectors_are_the_coefficients_to_30_digits(name):
    """Recomputed from the SymPy tableau through ``rewrite(exp)`` (not the exporter's phi terms)
    at 80 digits: every vector value matches to its 30 significant digits."""
    tableau = library.get(name)
    vectors = _doc(name)["test_vectors"]
    assert vectors["digits"] == 30 and vectors["Z"] == ["-0.1", "-1", "-5"]
    defaults = tableau.default_values()
    assert vectors["parameters"] == {str(k): str(v) for k, v in defaults.items()}
    s = tableau.stages
    entries = [(vectors["b"][i], tableau.b[i]) for i in range(s)] + [
        (vectors["A"][i][j], tableau.A[i][j]) for i in range(s) for j in range(i)
    ]
    for values, entry in entries:
        closed = sp.expand(entry.subs(defaults).rewrite(sp.exp))
        for z, text in zip(vectors["Z"], values, strict=True):
            exact = sp.N(closed.subs(Z, sp.Rational(z)), 80)
            assert len(text.lstrip("-0.").replace(".", "").split("e")[0]) <= 30
            assert abs(sp.Float(text, 40) - exact) <= sp.Float(10) ** -29 * max(abs(exact), 1e-300)


@pytest.mark.parametrize("name", NAMES)
def test_reference_reader_reproduces_the_vectors(name, load_script):
    reader = load_script(READER)
    doc = _doc(name)
    vectors = doc["test_vectors"]
    for n, z in enumerate(vectors["Z"]):
        c, A, b = reader.coefficients(doc, float(z))
        assert list(c) == pytest.approx(doc["c_float"], rel=1e-15, abs=1e-15)
        got = [(b[i], vectors["b"][i][n]) for i in range(doc["stages"])]
        got += [(A[i, j], vectors["A"][i][j][n]) for i in range(doc["stages"]) for j in range(i)]
        for value, text in got:
            expected = float(text)
            assert abs(value - expected) <= 1e-13 * max(abs(expected), 1.0), (z, value, text)


@pytest.mark.parametrize("name", NAMES)
def test_res_torch_reproduces_the_vectors(name):
    doc = _doc(name)
    vectors = doc["test_vectors"]
    h = torch.tensor([-float(z) for z in vectors["Z"]], dtype=torch.float64)
    _, a, b = load_tableau(name).evaluate(h)
    with mpmath.workdps(30):
        for n in range(len(h)):
            for i in range(doc["stages"]):
                expected = float(vectors["b"][i][n])
                assert abs(b[n, i].item() - expected) <= 1e-13 * max(abs(expected), 1.0)
                for j in range(i):
                    expected = float(vectors["A"][i][j][n])
                    assert abs(a[n, i, j].item() - expected) <= 1e-13 * max(abs(expected), 1.0)


def test_reference_reader_parses_the_grammar(load_script):
    reader = load_script(READER)
    cases = {"-c3^2/c2": -4.5, "c3**2/c2": 4.5, "2^-1 + 2**(+2) - (-2)^2": 0.5,
             "sqrt(4)*-3": -6.0, "-(c2 + c3)/(c2*c3)": -5 / 6, "1.5e1/(3)": 5.0}  # fmt: skip
    for source, value in cases.items():
        assert reader.evaluate(source, {"c2": 2.0, "c3": 3.0}) == pytest.approx(value, rel=1e-15)


# -- both readers refuse and accept the same files -------------------------------------------------


def _set(path: tuple, value: object):
    """A mutation that sets ``doc[path[0]][path[1]]... = value``."""

    def mutate(doc: dict) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return mutate


def _both_outcomes(tmp_path: Path, name: str, mutate) -> list[str]:
    """``"loaded"`` or the error message of ``res_torch`` and of ``res_theory`` on the mutated
    shipped file ``name``."""
    doc = copy.deepcopy(_doc(name))
    mutate(doc)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    outcomes = []
    for load, error in ((load_tableau, TorchTableauError), (theory_load.load, TheoryTableauError)):
        try:
            load(path)
            outcomes.append("loaded")
        except error as exc:
            assert len(str(exc)) < 200, str(exc)
            outcomes.append(str(exc))
    return outcomes


REFUSED_BY_BOTH = {
    # test vectors that disagree with the file's own coefficients
    "a vector value": ("res_2s", _set(("test_vectors", "b", 1, 2), "0.32053903579"),
                       r"test_vectors\.b\[1\]\[2\] = 0\.32053903579 disagrees .* at Z = -5"),
    "an A vector value": ("res_3s", _set(("test_vectors", "A", 1, 0, 0), "0.5"),
                          r"test_vectors\.A\[1\]\[0\]\[0\] = 0\.5 disagrees"),
    "a b_embedded vector value": ("res_2s", _set(("test_vectors", "b_embedded", 1, 0), "0.1"),
                                  r"test_vectors\.b_embedded\[1\]\[0\]"),
    "a multistep A vector value": ("res_2m", _set(("test_vectors", "A", 1, 0, 0), "1e-200"),
                                   r"test_vectors\.A\[1\]\[0\]\[0\]"),
    "the vectors' parameters": ("res_2s", _set(("test_vectors", "parameters", "c2"), "1/4"),
                                r"test_vectors\.A\[1\]\[0\]\[0\] = .* disagrees"),
    "the vectors' Z": ("res_2s", _set(("test_vectors", "Z", 0), "-0.2"), "at Z = -0.2"),
    "singular vector parameters": ("res_2s", _set(("test_vectors", "parameters", "c2"), "0"),
                                   "test_vectors: .*undefined at its parameters"),
    "a huge vector Z": ("res_2s", _set(("test_vectors", "Z", 0), "-1e5"),
                        r"phi argument \|scale \* Z\| = 1e\+05 is beyond 700"),
    "a 5-digit value claimed to 30 digits": ("res_2s", _set(("test_vectors", "b", 1, 2), "0.32054"),
                                             r"test_vectors\.b\[1\]\[2\]"),
    # a classical block that is not the Z -> 0 limit
    "classical b": ("res_2s", _set(("classical", "b", 1), "1/c2"),
                    r"classical\.b\[1\] is not the Z -> 0 limit of b\[1\] at c2=0\.5"),
    "classical c": ("krogstad", _set(("classical", "c", 1), "1/3"), r"classical\.c\[1\]"),
    "classical A above the diagonal": ("krogstad", _set(("classical", "A", 0, 1), "1"),
                                       r"classical\.A\[0\]\[1\]"),
    "classical A of a multistep method": ("res_2m", _set(("classical", "A", 1, 0), "1"),
                                          r"classical\.A\[1\]\[0\]"),
    "classical b right only at the defaults": (
        "res_3s", _set(("classical", "b", 0), "(6*c2*c3 - 3*c2 - 3*c3 + 2)/(6*c2*c3) + c2 - 1/2"),
        r"classical\.b\[0\] is not the Z -> 0 limit of b\[0\] at c2=0\.2"),
    # a division by a constant that is exactly 0, though not in float64
    "coefficient 1/(0.1+0.2-0.3)": ("res_2s", _set(("b", 1, 0, "coefficient"),
                                                   "1/c2 + 0/(0.1+0.2-0.3)"), "exactly 0"),
    "classical 1/(0.1+0.2-0.3)": ("res_2s", _set(("classical", "A", 0, 0), "0*(1/(0.1+0.2-0.3))"),
                                  "exactly 0"),
    "bound (0.1+0.2-0.3)^-1": ("res_2s", _set(("parameters", 0, "upper"),
                                              "1 + 0*(0.1+0.2-0.3)^-1"), "exactly 0"),
    "vector parameter 1/(0.1+0.2-0.3)": ("res_2s", _set(("test_vectors", "parameters", "c2"),
                                                        "1/2 + 0/(0.1+0.2-0.3)"), "exactly 0"),
    # multistep nodes that are other expressions than the history parameter
    "multistep node 1*c2": ("res_2m", _set(("c", 1), "1*c2"), "must be the history parameters"),
    "multistep node c2 + 0": ("res_2m", _set(("c", 1), "c2 + 0"), "must be the history"),
    "multistep node --c2": ("res_2m", _set(("c", 1), "--c2"), "must be the history"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED_BY_BOTH)
def test_both_readers_refuse_inconsistent_files(tmp_path, case):
    name, mutate, match = REFUSED_BY_BOTH[case]
    torch_outcome, theory_outcome = _both_outcomes(tmp_path, name, mutate)
    assert re.search(match, torch_outcome), torch_outcome
    assert re.search(match, theory_outcome), theory_outcome


ACCEPTED_BY_BOTH = {
    "multistep node (c2)": ("res_2m", _set(("c", 1), "(c2)")),
    "multistep nodes (c2), +c3": ("res_3m", _set(("c",), ["0", " ( c2 ) ", "+c3"])),
    "vector parameters written 0.5": ("res_2s", _set(("test_vectors", "parameters", "c2"), "0.5")),
    "vector parameters left to the defaults": ("res_2s", _set(("test_vectors", "parameters"), {})),
    "5-digit vectors that say so": ("res_2s", lambda d: (
        d["test_vectors"].update(digits=5), d["test_vectors"]["b"][1].__setitem__(2, "0.32054"))),
    "a vector 0 written 1e-400": ("res_2m", _set(("test_vectors", "A", 1, 0, 0), "1e-400")),
    "classical A written as decimals": ("krogstad", _set(("classical", "A", 1, 0), "0.5")),
    "classical b in another form": ("res_3s", _set(("classical", "b", 0),
                                                   "1 - 1/(2*c2) - 1/(2*c3) + 1/(3*c2*c3)")),
    "classical 0 written 0.1+0.2-0.3": ("krogstad", _set(("classical", "A", 0, 1), "0.1+0.2-0.3")),
    "no classical block, no vectors": ("res_3s", lambda d: (d.pop("classical"),
                                                            d.pop("test_vectors"))),
}  # fmt: skip


@pytest.mark.parametrize("case", ACCEPTED_BY_BOTH)
def test_both_readers_accept_equivalent_files(tmp_path, case):
    name, mutate = ACCEPTED_BY_BOTH[case]
    assert _both_outcomes(tmp_path, name, mutate) == ["loaded", "loaded"]


def test_a_multistep_node_in_parentheses_is_the_history_parameter(tmp_path):
    doc = _doc("res_3m")
    doc["c"] = ["0", "(c2)", "+c3"]
    path = tmp_path / "res_3m.json"
    path.write_text(json.dumps(doc))
    tableau, shipped = load_tableau(path), load_tableau("res_3m")
    assert tableau.history_parameters == ("c2", "c3")
    h = torch.tensor([0.3, 1.0], dtype=torch.float64)
    values = {"c2": torch.tensor([-1.0, -0.5]), "c3": torch.tensor([-2.0, -1.5])}
    for x, y in zip(tableau.evaluate(h, values), shipped.evaluate(h, values), strict=True):
        assert torch.equal(x, y)
    assert theory_load.load(path).c == library.get("res_3m").c


def test_errors_beyond_float64_are_refused_by_res_theory_alone(tmp_path):
    """The documented difference: ``res_torch`` checks in float64 (to 1e-12 of the terms' size),
    ``res_theory`` to the vectors' 30 digits and the ``classical`` block exactly."""
    value = _doc("res_2s")["test_vectors"]["b"][1][2]
    wrong_digit = value[:22] + str((int(value[22]) + 5) % 10) + value[23:]  # the 21st digit
    torch_outcome, theory_outcome = _both_outcomes(
        tmp_path, "res_2s", _set(("test_vectors", "b", 1, 2), wrong_digit)
    )
    assert torch_outcome == "loaded" and "test_vectors.b[1][2]" in theory_outcome
    torch_outcome, theory_outcome = _both_outcomes(
        tmp_path, "krogstad", _set(("classical", "b", 0), "1/6 + 1e-20")
    )
    assert torch_outcome == "loaded" and "classical.b[0]" in theory_outcome
