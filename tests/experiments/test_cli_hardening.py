"""Damaged inputs of the experiments' command lines and of the figure pipeline: each gives a short
error naming the file (never a raw traceback, a silent wrong answer or a figure from garbage),
and an interrupted write never leaves a file that is read back as complete."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import experiments.experiment_runner as runner
import experiments.league.references as references
from experiments.experiment_runner import (
    ResultFileError,
    cached_rows,
    cached_table,
    experiment_main,
    read_csv,
    resolve_device,
)
from experiments.league.references import ReferenceFileError, league_reference, reference_key
from experiments.league.testbeds import get_testbed
from experiments.models.load import load_checkpoint
from paper_figures import pipeline, readme
from paper_figures.pipeline import EXPERIMENTS, run_pipeline

OUTPUT = Path(__file__).resolve().parents[2] / "paper_figures" / "output"


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    """A configuration for :func:`experiment_main` that computes nothing."""

    size: int = 1

    @classmethod
    def quick(cls) -> TinyConfig:
        return cls()

    @classmethod
    def full(cls) -> TinyConfig:
        return cls(2)


def _copy_table(name: str, folder: Path) -> Path:
    """A copy of the committed table ``name.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(OUTPUT / f"{name}.csv", folder / f"{name}.csv"))


def _drop_column(path: Path, column: str) -> None:
    """Rewrite the CSV at ``path`` without ``column``."""
    rows = read_csv(path)
    runner.write_csv([{k: v for k, v in r.items() if k != column} for r in rows], path)


def _set_last_cell(path: Path, text: str) -> None:
    """Rewrite the last cell of the first row of the CSV at ``path`` as ``text``."""
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + f",{text}"
    path.write_text("\n".join(lines) + "\n")


# --- devices ---------------------------------------------------------------------------------


def test_a_device_type_other_than_cpu_or_cuda_stops_an_experiment_command_line(capsys) -> None:
    called = []
    with pytest.raises(SystemExit) as stop:
        experiment_main(
            "tiny", TinyConfig, lambda *a: called.append(a) or [{"a": 1}], ["--device", "meta"]
        )
    assert stop.value.code == 2 and not called
    assert "--device must be cpu or cuda, got meta" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["nonsense", "cuda:x", "mps"])
def test_a_device_torch_cannot_parse_or_use_gets_a_short_message(device: str) -> None:
    with pytest.raises(ValueError, match=f"^--device must be cpu or cuda, got {device}$"):
        resolve_device(device)


def test_an_output_folder_that_is_a_file_is_named_so(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        experiment_main(
            "tiny", TinyConfig, lambda *_: [{"a": 1}], ["--out", str(tmp_path / "file")]
        )
    assert "file: a file, not a folder" in capsys.readouterr().err


def test_a_cuda_index_that_does_not_exist_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0").index == 0
    with pytest.raises(ValueError, match="cuda:3: only 1 CUDA device"):
        resolve_device("cuda:3")


# --- cached tables and their records ---------------------------------------------------------


def _cache_one(cache: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """A table cached for :class:`TinyConfig`; its path."""
    cached_rows("tiny", TinyConfig(), lambda _: rows or [{"a": 1}, {"a": 2}], cache)
    return cached_table("tiny", TinyConfig(), cache)


@pytest.mark.parametrize("record", ["{", "[1, 2]", "\x00\xff"])
def test_a_damaged_cache_record_names_itself_and_says_force(tmp_path: Path, record: str) -> None:
    table = _cache_one(tmp_path)
    table.with_suffix(".json").write_text(record)
    with pytest.raises(ResultFileError, match=r"tiny-\w+\.json: not the JSON record.*--force"):
        cached_rows("tiny", TinyConfig(), lambda _: [{"a": 3}], tmp_path)


def test_an_interrupted_cache_record_write_keeps_the_old_record(tmp_path, monkeypatch) -> None:
    table = _cache_one(tmp_path)
    old = table.with_suffix(".json").read_text()

    def interrupted(self: Path, text: str) -> None:
        with self.open("w") as handle:
            handle.write(text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached_rows("tiny", TinyConfig(), lambda _: [{"a": 5}] * 3, tmp_path, force=True)
    monkeypatch.undo()
    assert table.with_suffix(".json").read_text() == old
    with pytest.raises(ResultFileError, match="3 rows where 2 were written"):
        cached_rows("tiny", TinyConfig(), lambda _: [{"a": 6}], tmp_path)


@pytest.mark.parametrize("content", [b"\x80\x81\x82\r\n", b"a,b\r\n\xff\xfe,1\r\n"])
def test_a_table_that_is_not_csv_text_is_a_result_file_error(tmp_path, content) -> None:
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(ResultFileError, match=r"t\.csv: not a CSV table.*--force"):
        read_csv(tmp_path / "t.csv")


# --- tables the pipeline draws ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: _drop_column(p, "frechet"), "no column frechet"),
        (lambda p: _set_last_cell(p, "abc"), "line 2, column frechet: 'abc' is not a number"),
        (lambda p: _set_last_cell(p, "nan"), "column frechet: nan is not a number"),
        (lambda p: _set_last_cell(p, ""), "column frechet: None is not a number"),
        (lambda p: shutil.copy(OUTPUT / "quality.csv", p), "no column s_churn"),
    ],
    ids=["missing column", "text cell", "nan cell", "empty cell", "another experiment's table"],
)
def test_redraw_of_a_damaged_table_fails_with_its_name_and_draws_nothing(
    tmp_path: Path, damage: Any, message: str
) -> None:
    table = _copy_table("stochastic", tmp_path)
    damage(table)
    failures = run_pipeline(
        tmp_path, quick=True, device="cpu", force=False, command="C", redraw=True
    )
    assert set(failures) == {"stochastic"}
    assert str(table) in failures["stochastic"] and message in failures["stochastic"]
    assert not (tmp_path / "stochastic.png").exists()


def test_a_cached_table_without_the_drawn_columns_is_refused(tmp_path: Path, capsys) -> None:
    config = EXPERIMENTS["stochastic"].config_class.quick()
    cached_rows("stochastic", config, lambda _: [{"problem": "x", "nfe": 5}], tmp_path / "cache")
    failures = run_pipeline(
        tmp_path, quick=True, device="cpu", force=False, command="C", only=["stochastic"]
    )
    assert "stochastic-" in failures["stochastic"] and "no column kind" in failures["stochastic"]
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "stochastic.png").exists()


def test_a_damaged_record_of_a_table_not_asked_for_is_a_failure(tmp_path, monkeypatch) -> None:
    defect = read_csv(OUTPUT / "defect.csv")
    fast = dataclasses.replace(EXPERIMENTS["defect"], run=lambda *_: defect, draw=lambda *_: [])
    monkeypatch.setitem(EXPERIMENTS, "defect", fast)
    config = EXPERIMENTS["stochastic"].config_class.quick()
    rows = read_csv(OUTPUT / "stochastic.csv")
    cached_rows("stochastic", config, lambda _: rows, tmp_path / "cache")
    cached_table("stochastic", config, tmp_path / "cache").with_suffix(".json").write_text("{")
    failures = run_pipeline(
        tmp_path, quick=True, device="cpu", force=False, command="C", only=["defect"]
    )
    assert set(failures) == {"stochastic"} and "--force" in failures["stochastic"]
    assert "not the JSON record" in (tmp_path / "RESULTS.md").read_text()


def test_readme_refuses_a_damaged_table_and_a_missing_readme(tmp_path: Path, capsys) -> None:
    for name, experiment in EXPERIMENTS.items():
        if experiment.readme is not None:
            _copy_table(name, tmp_path)
    text = (OUTPUT.parents[1] / "README.md").read_text()
    (tmp_path / "README.md").write_text(text)
    _drop_column(tmp_path / "defect.csv", "defect")
    args = ["--output", str(tmp_path), "--readme", str(tmp_path / "README.md")]
    for check in ([], ["--check"]):
        with pytest.raises(SystemExit) as stop:
            readme.main([*check, *args])
        assert stop.value.code == 2
        assert f"{tmp_path / 'defect.csv'}: no column defect" in capsys.readouterr().err
    assert (tmp_path / "README.md").read_text() == text
    _copy_table("defect", tmp_path)
    with pytest.raises(SystemExit) as stop:
        readme.main(["--check", "--output", str(tmp_path), "--readme", str(tmp_path / "no.md")])
    assert stop.value.code == 2 and "no.md" in capsys.readouterr().err


def test_the_committed_tables_pass_their_checks() -> None:
    for name in EXPERIMENTS:
        pipeline.read_table(name, OUTPUT / f"{name}.csv")


# --- league references and checkpoints -------------------------------------------------------

RTOL = 1e-6


def _reference_path(cache: Path, batch: int = 2) -> Path:
    """Where :func:`league_reference` keeps gmm's reference of ``batch`` samples at ``RTOL``."""
    key = reference_key(get_testbed("gmm"), batch, 0, RTOL, 1e3 * RTOL)
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"league-ref-{key}.pt"


def _good(batch: int = 2) -> dict[str, Any]:
    return {"noise": torch.zeros(batch, 16, dtype=torch.float64), "x": torch.zeros(batch, 16),
            "error_estimate": 1e-7}  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (b"PK\x03\x04 truncated", "not a readable torch file"),
        ({"noise": torch.zeros(2, 16)}, "expected the keys"),
        ([1, 2], "expected the keys"),
        ({**_good(), "x": torch.zeros(3, 16)}, r"x should be a tensor of shape \(2, 16\)"),
        ({**_good(), "noise": 1.0}, "noise should be a tensor"),
        ({**_good(), "x": torch.full((2, 16), float("nan"))}, "x is not finite"),
        ({**_good(), "error_estimate": "small"}, "error_estimate 'small' is not a number"),
    ],
    ids=["truncated", "missing keys", "not a dict", "wrong shape", "not a tensor", "nan", "text"],
)
def test_a_damaged_league_reference_is_refused_with_its_name(tmp_path, stored, message) -> None:
    path = _reference_path(tmp_path)
    if isinstance(stored, bytes):
        path.write_bytes(stored)
    else:
        torch.save(stored, path)
    with pytest.raises(ReferenceFileError, match=message) as error:
        league_reference(get_testbed("gmm"), batch=2, rtol=RTOL, cache_dir=tmp_path)
    assert str(path) in str(error.value) and "delete it" in str(error.value)


def test_a_good_league_reference_is_read_back(tmp_path: Path) -> None:
    torch.save(_good(), _reference_path(tmp_path))
    reference = league_reference(get_testbed("gmm"), batch=2, rtol=RTOL, cache_dir=tmp_path)
    assert reference.error_estimate == 1e-7 and reference.x.shape == (2, 16)


def test_an_interrupted_reference_save_leaves_no_reference(tmp_path, monkeypatch) -> None:
    def interrupted(obj: Any, path: Path) -> None:
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(references.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        league_reference(get_testbed("gmm"), batch=2, rtol=RTOL, cache_dir=tmp_path)
    assert not _reference_path(tmp_path).exists()


@pytest.mark.parametrize(
    "damaged",
    [
        lambda tmp: league_reference(get_testbed("gmm"), batch=2, rtol=RTOL, cache_dir=tmp),
        lambda tmp: load_checkpoint(tmp / "missing.pt"),
    ],
    ids=["reference", "checkpoint"],
)
def test_experiment_command_line_reports_a_damaged_file_without_a_traceback(
    tmp_path: Path, capsys, damaged: Any
) -> None:
    _reference_path(tmp_path).write_bytes(b"garbage")
    with pytest.raises(SystemExit) as stop:
        experiment_main(
            "tiny", TinyConfig, lambda *_: damaged(tmp_path), ["--quick", "--out", str(tmp_path)]
        )
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "error:" in err and str(tmp_path) in err
