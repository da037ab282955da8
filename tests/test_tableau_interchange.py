"""Tableau interchange (issue 12, item 4): the JSON Schema validates every shipped file, the
test vectors are right to 30 digits, and the plain-numpy reference reader in ``docs/``
reproduces them."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import mpmath
import pytest
import sympy as sp
import torch

from res_theory import library
from res_theory.tableau import Z
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
