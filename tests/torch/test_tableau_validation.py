"""res_torch's tableau loader refuses every bad file with a short TableauError (issue 11).

One test per case of the issue: the working directory cannot shadow shipped tableaux;
inconsistent weights, non-finite or non-real values, wrong types, huge exponents, phi indices,
deep nesting and non-UTF-8 bytes are refused quickly; ``phi(k, z)`` bounds ``k``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from importlib import resources

import mpmath
import pytest
import torch

import res_torch
from res_torch.errors import PhiError, TableauError
from res_torch.expression import Expression, ExpressionError
from res_torch.phi import K_MAX, phi
from res_torch.tableau import (
    TEST_VECTOR_TOLERANCE,
    available_tableaux,
    check_consistency,
    decode_document,
    is_path,
    load_tableau,
    parse_tableau,
)


def _shipped(name: str) -> dict:
    return json.loads((resources.files("res_torch") / "tableaux" / f"{name}.json").read_text())


def _refused(data: dict, match: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TableauError, match=match) as info:
        parse_tableau(data, origin="bad.json")
    assert time.perf_counter() - started < 1.0
    assert len(str(info.value)) < 200, str(info.value)


def test_every_shipped_tableau_loads_and_is_consistent():
    for name in available_tableaux():
        tableau = load_tableau(name)
        check_consistency(tableau)
        assert tableau.folder is None


def test_the_working_directory_does_not_shadow_shipped_tableaux(tmp_path, monkeypatch):
    (tmp_path / "res_2m").mkdir()
    (tmp_path / "res_2s").write_text("not a tableau")
    (tmp_path / "res_3m.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for name in ("res_2m", "res_2s", "res_3m"):
        assert load_tableau(name).name == name
        assert load_tableau(name).folder is None
    sigmas = res_torch.get_sigmas_karras(4, 0.1, 10.0)
    for method in ("res_2m", "res_2s"):
        x = res_torch.sample(lambda x, s: 0.5 * x, torch.ones(1, 2), sigmas, method=method)
        assert torch.isfinite(x).all()
    with pytest.raises(TableauError, match="not valid JSON|missing key|not a res-tableau"):
        load_tableau("res_3m.json")  # an explicit path reads the file


def test_only_explicit_paths_read_files(tmp_path):
    assert not is_path("res_2s")
    assert is_path("res_2s.json") and is_path("./res_2s") and is_path(tmp_path / "res_2s")
    (tmp_path / "mine.json").write_text(json.dumps(_shipped("res_2s") | {"name": "mine"}))
    assert load_tableau(tmp_path / "mine.json").name == "mine"
    assert load_tableau(str(tmp_path / "mine.json")).folder == tmp_path.resolve()
    for bad in ("Res-2s", "", "res 2s", 3, None):
        with pytest.raises(TableauError, match="expected a shipped tableau name|unknown tableau"):
            load_tableau(bad)  # type: ignore[arg-type]
    with pytest.raises(TableauError, match="no tableau file"):
        load_tableau(tmp_path / "absent.json")
    with pytest.raises(TableauError, match="no tableau file"):
        load_tableau(tmp_path)  # a folder


@pytest.mark.parametrize(
    ("name", "mutate", "rule"),
    [
        ("res_2s", lambda d: d["b"][1][0].update(coefficient="1/(2*c2)", coefficient_float=1.0),
         "sum_i b_i"),
        ("res_2s", lambda d: d["A"][1][0][0].update(coefficient="1", coefficient_float=1.0),
         "sum_j a_2j"),
        ("res_2s", lambda d: d["A"][1][0][0].update(scale="1", scale_float=1.0), "sum_j a_2j"),
        ("res_2s", lambda d: d["b"][0][1].update(k=3), "sum_i b_i"),
        ("krogstad", lambda d: d["b"][3].pop(), "sum_i b_i"),
        ("res_3m", lambda d: d["b"][2][0].update(coefficient="c2/(c3*(c2 + c3))",
                                                 coefficient_float=-1 / 6), "sum_i b_i"),
        ("res_2m", lambda d: d["b"][1].append(d["b"][1][0]), "sum_i b_i"),
    ],
)  # fmt: skip
def test_inconsistent_weights_are_refused(name, mutate, rule):
    data = copy.deepcopy(_shipped(name))
    mutate(data)
    _refused(data, f"inconsistent: {rule}")


def test_b_embedded_is_read_and_checked():
    data = copy.deepcopy(_shipped("res_2s"))
    data["b_embedded"] = [copy.deepcopy(data["b"][0][:1]), []]  # exponential Euler weights
    data.pop("test_vectors")
    tableau = parse_tableau(data)
    assert tableau.b_embedded is not None and len(tableau.b_embedded) == 2
    assert load_tableau("res_2s").b_embedded == tableau.b_embedded  # the shipped pair
    assert load_tableau("krogstad").b_embedded is None
    data["b_embedded"][0][0]["k"] = 2
    _refused(data, "inconsistent: sum_i b_embedded")
    data["b_embedded"] = [[]]
    _refused(data, "b_embedded' must have 2 entries")


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("9**9**9", "chained powers"),
        ("9^9^9", "chained powers"),
        ("(9^8)^9", "exponent beyond"),
        ("c2^100000000000", "exponent beyond"),
        ("c2^0.5", "integer literal"),
        ("c2^c2", "integer literal"),
        ("(c2+1)^9", "expanded form"),
        ("1/0", "undefined"),
        ("1/(c2-1/2)", "undefined"),
        ("1/(0.1+0.2-0.3)", "exactly 0"),  # nonzero in float64, 0 in the file's exact meaning
        ("1/c2 + 0/(0.1+0.2-0.3)", "exactly 0"),
        ("1/c2 + 0*(0.3-0.2-0.1)^-1", "exactly 0"),
        ("c2/(sqrt(0.04)-0.2)", "exactly 0"),
        ("1/(1/(0.1+0.2-0.3)+c2)", "exactly 0"),
        ("1e400", "not a finite float64"),
        ("1e300*1e300", "not finite"),
        ("(1e300)^2", "undefined"),
        ("sqrt(-1)", "undefined"),
        ("sqrt(c2-1)", "undefined"),
        ("(" * 40 + "1" + ")" * 40, "nesting deeper"),
        ("-" * 40 + "1", "nesting deeper"),
        ("+".join(["c2"] * 600), "longer than 1000"),
        ("__import__('os')", "unsupported construct"),
        ("c2.real", "unsupported construct"),
        ("c3", "unknown parameter"),
        ("1 if c2 else 2", "unsupported construct"),
        ("", "non-empty"),
    ],
)
def test_bad_expressions_are_refused_quickly(source, match):
    data = copy.deepcopy(_shipped("res_2s"))
    data["b"][1][0]["coefficient"] = source
    _refused(data, match)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format_version=True), "format_version"),
        (lambda d: d.update(format_version=1.0), "format_version"),
        (lambda d: d.update(format_version="1"), "format_version"),
        (lambda d: d.update(stages=True), "'stages'"),
        (lambda d: d.update(stages=2.0), "'stages'"),
        (lambda d: d["b"][0][0].update(k=1.5), "'k'"),
        (lambda d: d["b"][0][0].update(k=True), "'k'"),
        (lambda d: d["b"][0][0].update(k=400), "'k'"),
        (lambda d: d["b"][0][0].update(k=21), "'k'"),
        (lambda d: d["b"][0][0].update(coefficient=1), "non-empty expression string"),
        (lambda d: d["b"][0][0].update(coefficient_float=True), "finite number"),
        (lambda d: d["b"][0][0].update(coefficient_float=math.inf), "finite number"),
        (lambda d: d["b"][0][0].update(coefficient_float=math.nan), "finite number"),
        (lambda d: d["b"][0][0].update(extra=1), "unknown key"),
        (lambda d: d["b"][0][0].pop("k"), "missing key 'k'"),
        (lambda d: d["parameters"][0].update(lower_inclusive="no"), "true or false"),
        (lambda d: d["parameters"][0].update(role="other"), "'role'"),
        (lambda d: d["parameters"][0].update(name="sqrt"), "identifier"),
        (lambda d: d["parameters"][0].update(default="1e400"), "finite float64"),
        (lambda d: d.update(parameters=[d["parameters"][0]] * 2), "duplicate"),
        (lambda d: d.update(c=["0", "-c2"], c_float=[0.0, -0.5]), "nodes c\\[1:\\] must be > 0"),
        (lambda d: d.update(startup=["ddim"]), "only for multistep"),
        (lambda d: d.update(title=3), "'title'"),
        (lambda d: d.update(provenance={"source": 3}), "provenance.source"),
        (lambda d: d.update(order={"stiff_order": True}), "order.stiff_order"),
        (lambda d: d.update(A=[[], ["not a list"]]), "must be a list"),
        (lambda d: d.update(A=[[], [[]], []]), "must have 2 entries"),
        (lambda d: d["test_vectors"].update(Z=["-0.1", "x"]), "decimal number string"),
        (lambda d: d["test_vectors"]["b"][0].pop(), "must have 3 entries"),
        (lambda d: d["b"].__setitem__(0, [d["b"][0][0]] * 65), "more than 64"),
        (lambda d: d.update(b=[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]), "nested deeper"),
    ],
)
def test_bad_types_and_sizes_are_refused(mutate, match):
    data = copy.deepcopy(_shipped("res_2s"))
    mutate(data)
    _refused(data, match)


def test_bad_bytes_are_refused_quickly(tmp_path):
    text = (resources.files("res_torch") / "tableaux" / "res_2s.json").read_text()
    cases = {
        "deep.json": ("[" * 100_000 + "]" * 100_000).encode(),
        "latin1.json": text.replace("Zhang", "Zh\u00e4ng").encode("latin-1"),
        "bytes.json": b"\xff\xfe\x00{",
        "nan.json": text.replace('"coefficient_float": 1.0', '"coefficient_float": NaN').encode(),
        "inf.json": text.replace('"coefficient_float": 1.0', '"coefficient_float": 1e400').encode(),
        "bigint.json": text.replace('"k": 1', '"k": ' + "9" * 5000).encode(),
        "huge.json": b" " * 1_000_001 + b"{}",
    }
    matches = {
        "deep.json": "nested deeper", "latin1.json": "not UTF-8", "bytes.json": "not UTF-8",
        "nan.json": "NaN is not a JSON number", "inf.json": "finite number",
        "bigint.json": "not valid JSON", "huge.json": "larger than",
    }  # fmt: skip
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        started = time.perf_counter()
        with pytest.raises(TableauError, match=matches[name]) as info:
            load_tableau(tmp_path / name)
        assert time.perf_counter() - started < 2.0, name
        assert len(str(info.value)) < 200
    with pytest.raises(TableauError, match="nested deeper"):
        decode_document(b"[" * 17 + b"]" * 17)


def test_expressions_accept_caret_and_double_star_alike():
    for caret, star in [("c3^2/c2", "c3**2/c2"), ("-c2^2", "-c2**2"), ("2^-1", "2**-1"),
                        ("(c2 - 1)^(-2)", "(c2 - 1)**(-2)")]:  # fmt: skip
        values = {"c2": 0.3, "c3": 1.7}
        assert Expression.parse(caret)(values) == Expression.parse(star)(values)
        assert Expression.parse(caret).tree == Expression.parse(star).tree
    assert Expression.parse("-2^2")() == -4.0
    with pytest.raises(ExpressionError):
        Expression.parse("2^")


def test_phi_refuses_huge_indices_at_once_and_is_accurate_up_to_k_max():
    started = time.perf_counter()
    for k in (K_MAX + 1, 355, 400, 10**9):
        with pytest.raises(PhiError, match="<= 20"):
            phi(k, torch.tensor([0.5]))
    assert time.perf_counter() - started < 0.5
    z = [-700.0, -60.0, -20.0, -3.0, -0.5, -1e-6, 0.0, 1e-6, 0.5, 3.0, 20.0, 60.0, 600.0]
    got = phi(K_MAX, torch.tensor(z, dtype=torch.float64))
    with mpmath.workdps(40):
        for zi, value in zip(z, got.tolist(), strict=True):
            exact = mpmath.hyp1f1(1, K_MAX + 1, zi) / mpmath.factorial(K_MAX)
            assert abs(value - exact) <= 64 * 2.0**-52 * abs(exact), (zi, value, exact)


def test_exact_constants_only_refuse_an_exact_zero_divisor_and_stay_fast():
    assert Expression.parse("0.1+0.2-0.3")() == 0.1 + 0.2 - 0.3  # evaluation stays float64
    for source in ("1/(0.1+0.2)", "1/(sqrt(2) - 1)", "c2/(3 - 0.3*10 + c2)", "2^-1/(1e-300)"):
        Expression.parse(source)
    started = time.perf_counter()
    for source in (
        "1/(" + "*".join(["0.123456789012345"] * 50) + " - 1)",
        "1/((0." + "3" * 400 + ")^64 - 1)",
        "1/(" + "+".join(["1/7^9"] * 100) + ")",
    ):
        Expression.parse(source)
    assert time.perf_counter() - started < 0.5


def test_test_vectors_are_checked_in_float64_to_the_documented_tolerance():
    text = _shipped("res_2s")["test_vectors"]["b"][1][2]
    exact = float(text)
    for relative, loads in ((1e-13, True), (1e-15, True), (1e-11, False)):
        data = copy.deepcopy(_shipped("res_2s"))
        data["test_vectors"]["b"][1][2] = repr(exact * (1 + relative))
        if loads:
            parse_tableau(data)
        else:
            _refused(data, r"test_vectors\.b\[1\]\[2\] = .* disagrees with b\[1\] at Z = -5")
    assert TEST_VECTOR_TOLERANCE == 1e-12
