"""The res-tableau reader rejects malformed files with a clear error."""

import copy
import json
from pathlib import Path

import pytest
import torch

from res_torch.expression import Expression, ExpressionError
from res_torch.tableau import TableauError, load_tableau, parse_tableau


def _res_2s() -> dict:
    term = lambda coef, cf, k: {  # noqa: E731
        "coefficient": coef,
        "coefficient_float": cf,
        "k": k,
        "scale": "1",
        "scale_float": 1.0,
    }
    return {
        "format": "res-tableau",
        "format_version": 1,
        "name": "res_2s",
        "kind": "singlestep",
        "stages": 2,
        "parameters": [
            {
                "name": "c2",
                "default": "1/2",
                "lower": "0",
                "upper": "1",
                "lower_inclusive": False,
                "upper_inclusive": True,
            }
        ],
        "c": ["0", "c2"],
        "c_float": [0.0, 0.5],
        "A": [
            [],
            [
                [
                    {
                        "coefficient": "c2",
                        "coefficient_float": 0.5,
                        "k": 1,
                        "scale": "c2",
                        "scale_float": 0.5,
                    }
                ]
            ],
        ],
        "b": [[term("1", 1.0, 1), term("-1/c2", -2.0, 2)], [term("1/c2", 2.0, 2)]],
    }


def test_parsed_tableau_evaluates_the_res_2s_formulas():
    tableau = parse_tableau(_res_2s())
    h = torch.tensor([1e-3, 0.5, 3.0], dtype=torch.float64)
    c, a, b = tableau.evaluate(h, {"c2": 0.25})
    phi1 = -torch.expm1(-h) / h
    phi2 = (1 - phi1) / h
    assert torch.allclose(b.sum(-1), phi1, rtol=1e-13)
    assert torch.allclose(b[:, 1], phi2 / 0.25, rtol=1e-12)
    assert torch.allclose(a[:, 1, 0], -torch.expm1(-0.25 * h) / h, rtol=1e-13)
    assert torch.equal(c[:, 1], torch.full((3,), 0.25, dtype=torch.float64))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(stages=3), "entries"),
        (lambda d: d["A"][1].append([]), "strictly lower triangular"),
        (lambda d: d["b"][0][0].update(k=-1), "'k'"),
        (lambda d: d["b"][0][0].update(coefficient="__import__('os')"), "unsupported"),
        (lambda d: d["b"][1][0].update(coefficient="1/c3"), "unknown parameter"),
        (lambda d: d["b"][1][0].update(coefficient_float=2.5), "disagrees"),
        (lambda d: d.update(c=["1/3", "c2"], c_float=[1 / 3, 0.5]), r"c\[0\] must be 0"),
        (lambda d: d["parameters"][0].update(default="2"), "outside"),
        (lambda d: d.pop("b"), "missing key"),
    ],
)
def test_malformed_files_are_rejected(mutate, message):
    data = copy.deepcopy(_res_2s())
    mutate(data)
    with pytest.raises(TableauError, match=message):
        parse_tableau(data)


def test_invalid_parameters_and_files(tmp_path):
    tableau = parse_tableau(_res_2s())
    with pytest.raises(TableauError, match="outside"):
        tableau.parameter_values(c2=0.0)
    with pytest.raises(TableauError, match="no parameter"):
        tableau.parameter_values(c3=0.5)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TableauError, match="not valid JSON"):
        load_tableau(bad)
    with pytest.raises(TableauError, match="unknown tableau"):
        load_tableau("no_such_method")
    good = tmp_path / "res_2s.json"
    good.write_text(json.dumps(_res_2s()))
    assert load_tableau(good).stages == 2


def test_expressions_are_sandboxed():
    assert Expression.parse("-1/(2*c2)")({"c2": 0.25}) == -2.0
    assert Expression.parse("sqrt(4)*c**2")({"c": 3}) == 18.0
    for source in ["c2.real", "f(1)", "[1]", "'a'", "", "1 if c else 2"]:
        with pytest.raises(ExpressionError):
            Expression.parse(source)


def test_tensor_parameters_are_range_checked_and_follow_the_device_of_h():
    tableau = parse_tableau(_res_2s())
    h = torch.tensor([0.5, 1.0], dtype=torch.float64)
    with pytest.raises(TableauError, match="outside"):
        tableau.evaluate(h, {"c2": torch.tensor([0.5, 0.0])})
    c, a, b = tableau.evaluate(h.to("meta"), {"c2": torch.tensor([0.5, 0.25]).to("meta")})
    assert c.device.type == a.device.type == b.device.type == "meta"


def test_startup_methods_resolve_next_to_the_file_for_samplers_and_nfe(tmp_path):
    """A custom multistep tableau whose start-up method lives in the same folder."""
    import shutil

    import res_torch
    from res_torch.tableau import available_tableaux

    assert "res_2m" in available_tableaux()
    source = load_tableau("res_2m")
    assert source.folder is None
    shipped = Path(res_torch.__file__).parent / "tableaux"
    shutil.copy(shipped / "ddim.json", tmp_path / "ddim.json")
    data = json.loads((shipped / "res_2m.json").read_text())
    data["name"], data["startup"] = "my_2m", ["my_start"]
    (tmp_path / "my_2m.json").write_text(json.dumps(data))
    start = json.loads((shipped / "ddim.json").read_text())
    start["name"] = "my_start"
    (tmp_path / "my_start.json").write_text(json.dumps(start))

    tableau = load_tableau(tmp_path / "my_2m.json")
    assert [t.name for t in tableau.startup_tableaux()] == ["my_start"]
    sigmas = res_torch.get_sigmas_karras(4, 0.1, 10.0)
    assert res_torch.nfe(str(tmp_path / "my_2m.json"), sigmas) == 4
    x = res_torch.sample_erk(
        lambda x, s: 0.5 * x, torch.ones(1, 2), sigmas, tableau=str(tmp_path / "my_2m.json"),
        disable=True,
    )  # fmt: skip
    assert torch.isfinite(x).all()


def test_an_edited_tableau_file_is_read_again(tmp_path):
    """Samplers cache parsed files, but by file version: after the file changes on disk (here a
    RES-2S copy replaced by a RES-3S copy under the same name) the next run uses the new
    coefficients, not the cached ones."""
    import os

    import res_torch

    shipped = Path(res_torch.__file__).parent / "tableaux"
    path = tmp_path / "mine.json"
    model = lambda x, s: x / (1 + s.view(-1, 1) ** 2)  # noqa: E731
    sigmas = res_torch.get_sigmas_karras(4, 0.1, 10.0)
    runs = {}
    for source in ("res_2s", "res_3s"):
        data = json.loads((shipped / f"{source}.json").read_text())
        data["name"] = "mine"
        path.write_text(json.dumps(data))
        stat = os.stat(path)  # a coarse-clock file system may keep the mtime: move it on
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9 * len(runs)))
        runs[source] = res_torch.sample_method(path, model, torch.ones(1, 2), sigmas, disable=True)
        expected = res_torch.sample(model, torch.ones(1, 2), sigmas, method=source, disable=True)
        torch.testing.assert_close(runs[source], expected, rtol=0, atol=0)
    assert not torch.equal(runs["res_2s"], runs["res_3s"])
