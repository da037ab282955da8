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
    with pytest.raises(TableauError, match="at most 2\\^53"):
        load_tableau(good).parameter_values(c2=10**400)  # an int float64 cannot hold
    assert isinstance(load_tableau(good).parameter_values(c2=1)["c2"], float)
    with pytest.raises(TableauError, match="no tableau file"):
        load_tableau(str(tmp_path / "nul\0.json"))
    with pytest.raises(TableauError, match="no tableau file"):
        load_tableau(str(tmp_path / ("x" * 5000 + ".json")))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(name="res_2s\n"), "name"),  # "$" would match before the newline
        (lambda d: d.update(title="\ud800"), "lone surrogate"),
    ],
)
def test_text_no_tableau_file_may_hold_is_refused_by_both_readers(tmp_path, mutate, message):
    from res_theory.load import load

    data = _res_2s()
    mutate(data)
    path = tmp_path / "res_2s.json"
    path.write_text(json.dumps(data))  # ASCII: the surrogate is written as the escape \ud800
    for read in (load_tableau, load):
        with pytest.raises(ValueError, match=message):
            read(path)


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


def _res_3m_starting_with_res_2s_then_etd2rk(folder: Path, etd2rk_name: str) -> Path:
    """A RES-3M copy in ``folder`` whose start-up files are ``sa`` (RES-2S, ``c2 = 1/2``) and
    ``sb`` (ETD2RK, ``c2 = 1``) with the internal name ``etd2rk_name``."""
    import res_torch

    shipped = Path(res_torch.__file__).parent / "tableaux"
    main = json.loads((shipped / "res_3m.json").read_text())
    main["name"], main["startup"] = "main", ["sa", "sb"]
    (folder / "main.json").write_text(json.dumps(main))
    (folder / "sa.json").write_text((shipped / "res_2s.json").read_text())
    second = json.loads((shipped / "etd2rk.json").read_text())
    second["name"] = etd2rk_name
    (folder / "sb.json").write_text(json.dumps(second))
    return folder / "main.json"


def _second_step_levels(path: Path, sigmas: torch.Tensor) -> tuple[float, ...]:
    from res_torch.coefficients import coefficients
    from res_torch.grid import make_grid
    from res_torch.methods import method_of

    return coefficients(method_of(str(path)), make_grid(sigmas)).steps[1].sigmas


@pytest.mark.parametrize("etd2rk_name", ["res_2s", "sb"])
def test_start_up_files_are_told_apart_by_file_not_by_name(tmp_path, etd2rk_name):
    """Step 2 runs ``sb``'s ETD2RK, whose second stage sits at the step's end (``c2 = 1``),
    also when ``sb`` carries the same internal name as ``sa`` (a copy-paste slip): steps are
    grouped by tableau, not by ``name``."""
    import res_torch

    sigmas = res_torch.get_sigmas_karras(5, 0.1, 50.0, dtype=torch.float64)
    path = _res_3m_starting_with_res_2s_then_etd2rk(tmp_path, etd2rk_name)
    levels = _second_step_levels(path, sigmas)
    assert levels == pytest.approx([sigmas[1].item(), sigmas[2].item()], rel=1e-12)


def test_an_edited_start_up_file_is_read_again_by_the_samplers(tmp_path):
    """The samplers' cached plan follows the start-up files too, not only the main file."""
    import os

    import res_torch

    path = _res_3m_starting_with_res_2s_then_etd2rk(tmp_path, "sb")
    model = lambda x, s: x / (1 + s.view(-1, 1) ** 2)  # noqa: E731
    sigmas = res_torch.get_sigmas_karras(5, 0.1, 50.0, dtype=torch.float64)
    x = torch.ones(1, 2, dtype=torch.float64)
    before = res_torch.sample_erk(model, x, sigmas, tableau=str(path), disable=True)
    shipped = Path(res_torch.__file__).parent / "tableaux"
    (tmp_path / "sb.json").write_text((shipped / "res_2s.json").read_text())
    stat = os.stat(tmp_path / "sb.json")  # a coarse-clock file system may keep the mtime
    os.utime(tmp_path / "sb.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = res_torch.sample_erk(model, x, sigmas, tableau=str(path), disable=True)
    res_torch.clear_plan_cache()
    fresh = res_torch.sample_erk(model, x, sigmas, tableau=str(path), disable=True)
    assert torch.equal(after, fresh) and not torch.equal(after, before)


def test_a_start_up_methods_own_start_up_list_is_not_used(tmp_path):
    """Where a start-up multistep step must drop to a lower order (a history node too close),
    the main method's chain supplies it; a start-up file's own ``startup`` (here one that
    would need more history than there is) is never consulted."""
    import res_torch

    shipped = Path(res_torch.__file__).parent / "tableaux"
    main = json.loads((shipped / "res_3m.json").read_text())
    main["name"], main["startup"] = "main", ["res_2s", "x2m"]
    (tmp_path / "main.json").write_text(json.dumps(main))
    second = json.loads((shipped / "res_2m.json").read_text())
    second["name"], second["startup"] = "x2m", ["res_3m"]
    (tmp_path / "x2m.json").write_text(json.dumps(second))
    sigmas = torch.tensor([80.0, 79.99, 1.0, 0.1, 0.0], dtype=torch.float64)  # 79.99 too close
    x = torch.ones(1, 2, dtype=torch.float64)
    path = str(tmp_path / "main.json")
    out = res_torch.sample_erk(lambda x, s: 0.1 * x, x, sigmas, tableau=path, disable=True)
    assert torch.isfinite(out).all()
