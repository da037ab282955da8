"""Running a configured experiment, caching its table by configuration, and its command line.

An experiment is a frozen dataclass of settings (with ``quick()`` and ``full()`` presets) and a
function ``run(config, device) -> list[dict]`` returning the rows of its table. Tables are CSV;
:func:`cached_rows` stores them under ``cache/<name>-<key>.csv`` where ``key`` hashes the
configuration and the device type the table was computed on (:func:`config_key`), so a repeated
figure run recomputes only what changed (``force`` recomputes).
Beside each table it records the :func:`code_fingerprint` that computed it, and a table read
back from the cache under other code raises a :class:`StaleCacheWarning`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

__all__ = [
    "ExperimentConfig",
    "ResultFileError",
    "StoredFileError",
    "at_least",
    "StaleCacheWarning",
    "cached_rows",
    "check_columns",
    "code_fingerprint",
    "config_key",
    "fingerprint",
    "experiment_main",
    "positive_real",
    "read_csv",
    "resolve_device",
    "warn_if_stale",
    "writable_folder",
    "write_csv",
    "replaced_whole",
    "write_text_atomic",
]


class ExperimentConfig(Protocol):
    """What :func:`experiment_main` needs of an experiment's settings class."""

    @classmethod
    def quick(cls) -> ExperimentConfig: ...

    @classmethod
    def full(cls) -> ExperimentConfig: ...


C = TypeVar("C")

REPOSITORY = Path(__file__).resolve().parents[1]


class StaleCacheWarning(UserWarning):
    """A cached table was computed by other code than the one running now."""


@functools.cache
def code_fingerprint() -> str:
    """:func:`fingerprint` of this repository, computed once per process."""
    return fingerprint(REPOSITORY)


def fingerprint(root: Path) -> str:
    """A short hash of everything a table depends on besides its configuration: the Python
    files of ``res_theory``, ``res_torch`` and ``experiments`` under ``root``, the shipped
    tableaux and the model checkpoints (not results, figures or other data)."""
    files = [
        *(p for package in ("res_theory", "res_torch", "experiments")
          for p in (root / package).rglob("*.py")),
        *(root / "res_torch" / "tableaux").glob("*.json"),
        *(root / "experiments" / "checkpoints").glob("*.pt"),
    ]  # fmt: skip
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def config_key(name: str, config: Any, device: str = "cpu") -> str:
    """A short stable hash of an experiment name, its (dataclass) configuration and the device
    type its table is computed on (``"cpu"``, ``"cuda"``), so a table computed on one device is
    not read back for another. The CPU is the default device: its key hashes the name and the
    configuration only (the key of every table computed before devices were keyed)."""
    fields: dict[str, Any] = {"name": name, "config": dataclasses.asdict(config)}
    if device != "cpu":
        fields["device"] = device
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


@contextlib.contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """The ``.partial`` file beside ``path`` to write in the ``with`` block; on leaving it
    without an error the partial file replaces ``path`` whole, so that an interrupted write
    (Ctrl-C, a full disk) leaves the old file or none, never a truncated one."""
    partial = path.with_name(path.name + ".partial")
    yield partial
    os.replace(partial, path)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, replaced whole (:func:`replaced_whole`)."""
    with replaced_whole(path) as partial:
        partial.write_text(text)
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write ``rows`` (dicts with the same keys, in order of first appearance) as CSV."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_whole(path) as partial, partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("True", "False"):
        return text == "True"
    return text


class StoredFileError(ValueError):
    """A file the experiments read back (a cached table or its record, a league reference, a
    model checkpoint) is damaged or is not one they wrote; the message names the file and what
    to do."""


class ResultFileError(StoredFileError):
    """A result table on disk is not one :func:`write_csv` wrote (truncated, edited)."""


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_csv`, numbers parsed back to int/float;
    :class:`ResultFileError` for a row with missing or extra cells, a table without rows or a
    file that is not CSV text."""
    rerun = "rerun the experiment, with --force for a cached table"
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = []
        try:
            for line, row in enumerate(reader, start=2):
                if None in row or None in row.values():  # DictReader's marks of short/long rows
                    cells = sum(v is not None for k, v in row.items() if k is not None)
                    raise ResultFileError(
                        f"{path}: line {line} has {cells + len(row.get(None, []))} cells where "
                        f"the header has {len(reader.fieldnames or [])} (a truncated or edited "
                        f"file; {rerun})"
                    )
                rows.append({k: _parse_cell(v) for k, v in row.items()})
        except (UnicodeDecodeError, csv.Error) as err:  # binary garbage, an oversized field
            raise ResultFileError(f"{path}: not a CSV table ({err}); {rerun}") from err
    if not rows:
        raise ResultFileError(f"{path}: no rows (rerun the experiment)")
    return rows


def check_columns(
    rows: Sequence[dict[str, Any]],
    path: Path,
    text: Sequence[str] = (),
    numbers: Sequence[str] = (),
) -> None:
    """:class:`ResultFileError` unless every row of the table read from ``path`` has the
    columns ``text`` and ``numbers``, the latter holding real numbers (infinite allowed, not
    NaN, not empty): a table of another experiment or one edited by hand must not be drawn."""
    for line, row in enumerate(rows, start=2):
        missing = [c for c in (*text, *numbers) if c not in row]
        if missing:
            raise ResultFileError(
                f"{path}: no column {', '.join(missing)} (not this experiment's table, or "
                "written by other code; rerun the experiment, with --force for a cached table)"
            )
        for column in numbers:
            value = row[column]
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ResultFileError(
                    f"{path}: line {line}, column {column}: {value!r} is not a number (an "
                    "edited or damaged file; rerun the experiment, with --force for a cached "
                    "table)"
                )


def cached_table(name: str, config: Any, cache_dir: Path, device: str = "cpu") -> Path:
    """Where :func:`cached_rows` keeps experiment ``name``'s table for ``config`` computed on
    the device type ``device``."""
    return Path(cache_dir) / f"{name}-{config_key(name, config, device)}.csv"


def cached_rows(
    name: str,
    config: C,
    compute: Callable[[C], list[dict[str, Any]]],
    cache_dir: Path,
    *,
    device: str = "cpu",
    force: bool = False,
) -> tuple[list[dict[str, Any]], bool]:
    """``compute(config)``'s rows, from ``cache_dir/<name>-<key>.csv`` when present, the key
    that of :func:`config_key` for ``device``, the type of the device ``compute`` runs on.

    Returns ``(rows, was_cached)``. The configuration, the device type and the
    :func:`code_fingerprint` are saved beside the table as JSON; a cached table from other code
    is returned with a :class:`StaleCacheWarning` (``force=True`` recomputes it).
    """
    table = cached_table(name, config, cache_dir, device)
    if table.exists() and not force:
        record = _record(table)
        warn_if_stale(name, table, record)
        rows = read_csv(table)
        recorded = record.get("rows")
        if recorded is not None and recorded != len(rows):
            raise ResultFileError(
                f"{table}: {len(rows)} rows where {recorded} were written (a truncated or "
                "edited file); rerun with --force"
            )
        return rows, True
    rows = compute(config)
    write_csv(rows, table)
    record = {
        "name": name,
        "config": dataclasses.asdict(config),
        "device": device,
        "code": code_fingerprint(),
        "rows": len(rows),
    }
    write_text_atomic(table.with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True))
    return rows, False


def _record(table: Path) -> dict[str, Any]:
    """The JSON record beside a cached table (``{}`` if none; :class:`ResultFileError` for
    one that is not a JSON object)."""
    record = table.with_suffix(".json")
    if not record.exists():
        return {}
    try:
        loaded = json.loads(record.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        loaded = err
    if not isinstance(loaded, dict):
        raise ResultFileError(
            f"{record}: not the JSON record of the cached table {table.name} ({loaded}); "
            "rerun with --force"
        )
    return loaded


def warn_if_stale(name: str, table: Path, record: dict[str, Any] | None = None) -> None:
    """A :class:`StaleCacheWarning` if the cached ``table`` was computed by other code
    (``record``: the table's JSON record, read if not given)."""
    computed_by = (_record(table) if record is None else record).get("code")
    if computed_by != code_fingerprint():
        warnings.warn(
            f"{name}: the cached table {table} was computed by other code (fingerprint "
            f"{computed_by or 'not recorded'}, now {code_fingerprint()}); rerun with --force "
            "to recompute it",
            StaleCacheWarning,
            stacklevel=3,
        )


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def positive_real(text: str) -> float:
    """An argparse type: a finite real number ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value


def writable_folder(parser: argparse.ArgumentParser, folder: Path) -> None:
    """Create ``folder`` before any work, or stop with ``parser.error`` (a long run must not
    fail only when it writes its results)."""
    if folder.exists() and not folder.is_dir():
        parser.error(f"--out {folder}: a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {folder}: {err.strerror or err}")
    if not os.access(folder, os.W_OK):
        parser.error(f"--out {folder}: not writable")


def resolve_device(device: str | None) -> torch.device:
    """``"cuda"`` (``"cuda:N"``), ``"cpu"`` or ``None`` (CUDA when available); a
    ``ValueError`` for another device or a string torch cannot parse, absent CUDA or a CUDA
    index that does not exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:  # torch's message lists every device type it knows
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def experiment_main(
    name: str,
    config_class: type[ExperimentConfig],
    run: Callable[..., list[dict[str, Any]]],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    module: str | None = None,
    *,
    uses_cache: bool = False,
) -> Path:
    """Command line ``python -m MODULE [--quick] [--device D] [--out DIR]`` of the experiment
    module ``module`` (for the usage line): runs the quick or full configuration with
    ``run(config, device)`` and writes ``DIR/<name>.csv``. With ``uses_cache``, ``run`` is called
    as ``run(config, device, DIR/cache)``: the folder where it keeps results worth reusing
    between runs (the league's reference solutions)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}" if module else None, description=description
    )
    parser.add_argument("--quick", action="store_true", help="small, fast configuration")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        parser.error(str(err))
    writable_folder(parser, args.out)
    config = config_class.quick() if args.quick else config_class.full()
    try:
        rows = run(config, device, args.out / "cache") if uses_cache else run(config, device)
    except StoredFileError as err:  # a damaged cache file or checkpoint: its message says why
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    path = write_csv(rows, args.out / f"{name}.csv")
    print(f"wrote {len(rows)} rows to {path}")
    return path
