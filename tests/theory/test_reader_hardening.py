"""Both tableau readers on files that an earlier review found them to mishandle.

Each case is refused by ``res_torch.load_tableau`` and ``res_theory.load.load`` alike, with the
reader's ``TableauError`` and a message under 200 characters: expressions with digits of other
scripts or non-ASCII whitespace (the schema refuses them), a ``c[0]`` that is 0 only after
arithmetic (read differently with and without exact arithmetic), consistency sums and
``classical`` limits beyond float64's range (a silent pass, or an ``OverflowError``, in
``res_torch``), and long parameter names or bounds in a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import res_theory.load as theory_load
import res_torch.tableau as torch_tableau
from res_theory.tableau import TableauError as TheoryTableauError
from res_torch.errors import TableauError as TorchTableauError
from res_torch.expression import Expression

FOLDER = resources.files("res_torch") / "tableaux"
READERS = pytest.mark.parametrize(
    ("load", "error"),
    [(torch_tableau.load_tableau, TorchTableauError), (theory_load.load, TheoryTableauError)],
    ids=["res_torch", "res_theory"],
)


def _res_2s() -> dict[str, Any]:
    return json.loads((FOLDER / "res_2s.json").read_text())


def _term(coefficient: str, k: int, scale: str) -> dict[str, Any]:
    return {
        "coefficient": coefficient,
        "coefficient_float": float(coefficient),
        "k": k,
        "scale": scale,
        "scale_float": float(scale),
    }


def _refused(load: Callable, error: type[Exception], tmp_path: Path, doc: Any) -> str:
    """The message of the reader's refusal of ``doc`` (no other exception, under 200 chars)."""
    path = tmp_path / "case.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(error) as caught:
        load(path)
    message = str(caught.value)
    assert len(message) < 200, message
    return message


@pytest.mark.parametrize(
    "source", ["\u0661/\u0662", "1/\uff12", "1\t/2", "1/2\n", "1\u00a0/2", "c2\u3000"]
)
def test_expressions_are_ascii_digits_and_spaces_only(source):
    with pytest.raises(TorchTableauError, match="unsupported construct"):
        Expression.parse(source, frozenset({"c2"}))
    with pytest.raises(TheoryTableauError, match="unsupported construct"):
        theory_load.parse_tree(source)


def test_spaces_still_separate_tokens():
    assert Expression.parse(" 1 / 2 ")() == 0.5
    assert theory_load.parse_tree(" 1 / 2 ")[0] == Expression.parse("1/2").tree


@READERS
@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["parameters"][0].update(default="\u0661/\u0662"),
        lambda d: d["test_vectors"]["Z"].__setitem__(0, "-\u0660.\u0661"),
        lambda d: d["test_vectors"]["b"][1].__setitem__(0, "\u0660" + d["test_vectors"]["b"][1][0]),
    ],
    ids=["default", "test vector Z", "test vector value"],
)
def test_files_with_other_scripts_digits_are_refused(tmp_path, load, error, mutate):
    doc = _res_2s()
    mutate(doc)
    _refused(load, error, tmp_path, doc)


@READERS
@pytest.mark.parametrize("c0", ["0.1+0.2-0.3", "c2-c2", "0*c2", "-0"])
def test_c0_must_be_the_literal_0(tmp_path, load, error, c0):
    doc = _res_2s()
    doc["c"][0] = doc["classical"]["c"][0] = c0
    assert "c[0] must be 0" in _refused(load, error, tmp_path, doc)


@READERS
@pytest.mark.parametrize("c0", ["0.0", "(0)", "+0"])
def test_c0_written_as_another_literal_0_loads(tmp_path, load, error, c0):
    doc = _res_2s()
    doc["c"][0] = c0
    path = tmp_path / "zero.json"
    path.write_text(json.dumps(doc))
    load(path)


@READERS
@pytest.mark.parametrize("consistent", [False, True], ids=["inconsistent", "consistent"])
def test_consistency_sums_beyond_float64_are_refused(tmp_path, load, error, consistent):
    # 1e308 + 1e308 is inf in float64: res_torch's check passed inf <= 1e-12 * inf, and its
    # classical check raised OverflowError from math.fsum
    doc = _res_2s()
    doc["b"][0] += [_term("1e308", 1, "2"), _term("1e308", 1, "2")]
    if consistent:
        doc["b"][0] += [_term("-1e308", 1, "2"), _term("-1e308", 1, "2")]
    for key in ((), ("classical",), ("classical", "test_vectors")):
        case = {k: v for k, v in doc.items() if k not in key}
        assert "beyond float64's range" in _refused(load, error, tmp_path, case)


@READERS
def test_classical_limits_beyond_float64_are_refused(tmp_path, load, error):
    # every (k, s) group of the consistency sums is 1e308 in size, the Z -> 0 limit of b[0] 2e308
    doc = _res_2s()
    del doc["test_vectors"]
    for scale in "2345":
        doc["b"][0].append(_term("0.5e308", 1, scale))
        doc["b"][1].append(_term("-0.5e308", 1, scale))
    message = _refused(load, error, tmp_path, doc)
    assert "classical: the Z -> 0 limits add up beyond float64's range" in message
    del doc["classical"]
    path = tmp_path / "no_classical.json"
    path.write_text(json.dumps(doc))
    load(path)


def _renamed(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """``doc`` with its parameter ``c2`` renamed ``name`` everywhere."""
    return json.loads(re.sub(r"\bc2\b", name, json.dumps(doc)))


def _with_default(doc: dict[str, Any], default: str, **bounds: str) -> dict[str, Any]:
    doc["parameters"][0].update(default=default, **bounds)
    return doc


@READERS
@pytest.mark.parametrize(
    "bad",
    [
        lambda d: _with_default(d, "2", upper="1" + "*1" * 450),
        lambda d: _with_default(_renamed(d, "c" * 900), "2"),
        lambda d: _with_default(d, "sqrt(1/4" + "+sqrt(1/4" * 20 + ")" * 21),
    ],
    ids=["long bound", "long name", "long default"],
)
def test_messages_about_long_names_and_bounds_are_short(tmp_path, load, error, bad):
    message = _refused(load, error, tmp_path, bad(_res_2s()))
    assert "default outside its interval" in message


@READERS
def test_a_long_history_node_name_gives_a_short_message(tmp_path, load, error):
    doc = _renamed(json.loads((FOLDER / "res_2m.json").read_text()), "c" * 900)
    doc["c"][1] = f"({'c' * 900})*1"
    assert "multistep nodes" in _refused(load, error, tmp_path, doc)


def test_a_parameter_keeps_the_exact_rational_it_is_given():
    """A decimal means the exact rational it writes (docs/tableau_format.md): 0.3333333333333333
    is not 1/3, and a bound of 0.5000000000000000001 is not 1/2 (nsimplify would round both)."""
    import sympy as sp

    from res_theory.tableau import Parameter

    third = sp.Rational("0.3333333333333333")
    above_half = sp.Rational("0.5000000000000000001")
    parameter = Parameter("c2", third, 0, above_half)
    assert parameter.default == third != sp.Rational(1, 3)
    assert parameter.upper == above_half != sp.Rational(1, 2)
    assert Parameter("c2", 0.5, 0, 1).default == sp.Rational(1, 2)
