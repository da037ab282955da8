"""Exponential Runge–Kutta tableaux as data, read from ``res-tableau`` JSON files.

A tableau describes, for ``u' = L u + g(u, t)`` and ``Z = h L`` (``docs/tableau_format.md``)::

    U_i     = e^{c_i Z} u_n + h * sum_{j<i} a_ij(Z) g(U_j, t_n + c_j h)
    u_{n+1} = e^{Z}     u_n + h * sum_i    b_i(Z)  g(U_i, t_n + c_i h)

with every ``a_ij``, ``b_i`` a sum of :class:`PhiTerm` ``coefficient * phi_k(scale * Z)``.
The files are written by ``res_theory`` (``res-theory export --all``); this module only reads
them and never imports SymPy. :meth:`Tableau.evaluate` gives the numbers a diffusion sampler
needs (``L = -1``); :meth:`Tableau.terms` gives the numeric terms for any other ``L``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, overload

import torch

from res_torch.errors import TableauError, UnknownParameterError
from res_torch.expression import Expression, ExpressionError
from res_torch.phi import K_MAX, phi

__all__ = [
    "CONSISTENCY_TOLERANCE",
    "MAX_FILE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PARAMETERS",
    "MAX_STAGES",
    "MAX_TERMS",
    "MAX_TEST_VECTOR_ARGUMENT",
    "TEST_VECTOR_FLOOR",
    "TEST_VECTOR_TOLERANCE",
    "Parameter",
    "PhiTerm",
    "Tableau",
    "TableauError",
    "available_tableaux",
    "parameter_number",
    "check_consistency",
    "consistency_points",
    "decode_document",
    "is_path",
    "load_tableau",
    "read_document",
    "parse_tableau",
]

FORMAT = "res-tableau"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[a-z0-9_]+\Z")

MAX_FILE_BYTES = 1_000_000
"""Largest tableau file read (bytes)."""
MAX_JSON_DEPTH = 16
"""Deepest nesting of JSON arrays/objects in a file (the format needs 6)."""
MAX_STAGES = 32
"""Most stages of a method."""
MAX_TERMS = 64
"""Most phi terms of one coefficient."""
MAX_PARAMETERS = 16
"""Most parameters of a family."""
CONSISTENCY_TOLERANCE = 1e-12
"""Relative tolerance of the consistency sums in float64 (:func:`check_consistency`), also used
for the ``classical`` block (the ``Z -> 0`` limit of the coefficients)."""
TEST_VECTOR_TOLERANCE = 1e-12
"""Tolerance of the ``test_vectors`` check, relative to the size ``sum_t |c_t phi_k(s_t Z)|`` of
the terms of an entry. The float64 evaluation is within ~5e-13 of that size: ``res_torch.phi``
is accurate to a few ulp (at most 7 measured, ``res_torch/phi.py``), each coefficient and scale
expression to a few ulp, the rounding of ``s Z`` (a few ulp) is amplified at most
:data:`MAX_TEST_VECTOR_ARGUMENT` times by ``phi_0``, and a sum of at most 64 terms adds at most
64 ulp of the size. Shipped files agree to below 4e-16 of the size."""
TEST_VECTOR_FLOOR = 1e-300
"""Absolute floor of the ``test_vectors`` check (also ``res_theory``'s): a value written as ``0.0``
or as a decimal below float64's normal range matches an exactly (or nearly) vanishing entry."""
MAX_TEST_VECTOR_ARGUMENT = 700.0
"""Largest ``|scale * Z|`` of a test vector's phi arguments: ``phi_k`` stays finite in float64
(``e^709.8`` overflows), and an exact reader stays fast."""


@dataclass(frozen=True)
class PhiTerm:
    """One term ``coefficient * phi_k(scale * Z)`` of a coefficient function."""

    coefficient: Expression
    k: int
    scale: Expression


@dataclass(frozen=True)
class Parameter:
    """A free parameter of a tableau family, with its admissible interval."""

    name: str
    default: Expression
    lower: Expression | None = None
    upper: Expression | None = None
    lower_inclusive: bool = False
    upper_inclusive: bool = False
    description: str = ""
    role: str = "free"

    def check(self, value: float) -> None:
        """Raise :class:`TableauError` unless ``value`` lies in the admissible interval."""
        if not math.isfinite(value):
            raise TableauError(f"parameter {self.name:.40} must be finite, got {value}")
        if self.lower is not None:
            lo = float(self.lower())
            if value < lo or (value == lo and not self.lower_inclusive):
                raise TableauError(
                    f"parameter {self.name:.40}={value} is outside {self.interval()}"
                )
        if self.upper is not None:
            hi = float(self.upper())
            if value > hi or (value == hi and not self.upper_inclusive):
                raise TableauError(
                    f"parameter {self.name:.40}={value} is outside {self.interval()}"
                )

    def interval(self) -> str:
        lo = "-inf" if self.lower is None else f"{self.lower.source:.40}"
        hi = "inf" if self.upper is None else f"{self.upper.source:.40}"
        left = "[" if self.lower_inclusive and self.lower is not None else "("
        right = "]" if self.upper_inclusive and self.upper is not None else ")"
        return f"{left}{lo}, {hi}{right}"


Coefficient = tuple[PhiTerm, ...]


@dataclass(frozen=True)
class Tableau:
    """An explicit exponential Runge–Kutta or exponential multistep method.

    ``a[i][j]`` (``j < i``) and ``b[i]`` are tuples of :class:`PhiTerm`. For a multistep method
    (``kind == "multistep"``) stage 1 is the current denoiser evaluation and stage ``j ≥ 2`` the
    stored evaluation of the ``(j-1)``-th previous step; its node ``c_j`` is a history parameter
    that the integrator sets from the grid at every step.
    """

    name: str
    title: str
    kind: str
    c: tuple[Expression, ...]
    a: tuple[tuple[Coefficient, ...], ...]
    b: tuple[Coefficient, ...]
    parameters: tuple[Parameter, ...] = ()
    startup: tuple[str, ...] = ()
    stiff_order: int | None = None
    classical_order: int | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    """The folder of the file this tableau was read from (``None`` for a shipped one)."""
    b_embedded: tuple[Coefficient, ...] | None = None
    """Weights of an embedded lower-order estimate on the same stages (same form as ``b``)."""

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def is_multistep(self) -> bool:
        return self.kind == "multistep"

    @property
    def history_parameters(self) -> tuple[str, ...]:
        """Names of the history nodes ``c_2, c_3, ...`` of a multistep method, in stage order."""
        return tuple(p.name for p in self.parameters if p.role == "history_node")

    def startup_tableaux(self, load: Callable[[str], Tableau] | None = None) -> tuple[Tableau, ...]:
        """The ``startup`` methods, each read from this tableau's folder if a file of that name
        is there, else the shipped one (``load`` defaults to :func:`load_tableau`)."""
        load = load or load_tableau
        return tuple(
            load(str(self.folder / f"{name}.json"))
            if self.folder is not None and (self.folder / f"{name}.json").is_file()
            else load(name)
            for name in self.startup
        )

    def parameter_values(self, **overrides: float) -> dict[str, float]:
        """The defaults, replaced by ``overrides``, each checked against its interval."""
        known = {p.name: p for p in self.parameters}
        unknown = set(overrides) - known.keys()
        if unknown:
            raise UnknownParameterError(
                f"tableau {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"it has {sorted(known) or 'none'}"
            )
        values = {name: float(p.default()) for name, p in known.items()}
        values.update({k: float(parameter_number(k, v)) for k, v in overrides.items()})
        for name, value in values.items():
            known[name].check(value)
        return values

    def terms(
        self, values: Mapping[str, float] | None = None
    ) -> tuple[list[list[list[tuple[float, int, float]]]], list[list[tuple[float, int, float]]]]:
        """Numeric ``(coefficient, k, scale)`` terms of ``A`` and ``b`` at the given parameters.

        For problems with a general linear part ``L``: ``a_ij(Z) = sum coefficient *
        phi_k(scale * Z)`` with ``Z = h L`` (a matrix phi function).
        """
        values = self.parameter_values(**(values or {}))

        def numeric(coefficient: Coefficient) -> list[tuple[float, int, float]]:
            return [
                (float(t.coefficient(values)), t.k, float(t.scale(values))) for t in coefficient
            ]

        a = [[numeric(entry) for entry in row] for row in self.a]
        return a, [numeric(entry) for entry in self.b]

    def nodes(self, values: Mapping[str, float] | None = None) -> list[float]:
        values = self.parameter_values(**(values or {}))
        return [float(ci(values)) for ci in self.c]

    @overload
    def evaluate(
        self,
        h: torch.Tensor,
        values: Mapping[str, float | torch.Tensor] | None = None,
        *,
        embedded: Literal[False] = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    @overload
    def evaluate(
        self,
        h: torch.Tensor,
        values: Mapping[str, float | torch.Tensor] | None = None,
        *,
        embedded: Literal[True],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def evaluate(
        self,
        h: torch.Tensor,
        values: Mapping[str, float | torch.Tensor] | None = None,
        *,
        embedded: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Coefficients for the diffusion case ``L = -1`` (``Z = -h``) at step sizes ``h``.

        ``h`` has shape ``(N,)``; ``values`` holds parameters as floats or ``(N,)`` tensors (the
        history nodes of a multistep method vary per step). Returns float64 tensors
        ``c (N, s)``, ``a (N, s, s)`` and ``b (N, s)``, already *without* the factor ``h``;
        with ``embedded=True`` also ``b_embedded (N, s)`` (:class:`TableauError` if the tableau
        has none).
        """
        if embedded and self.b_embedded is None:
            raise TableauError(f"tableau {self.name!r} has no b_embedded (no error estimate)")
        h = torch.as_tensor(h, dtype=torch.float64)
        if h.ndim != 1:
            raise TableauError(f"h must be a 1-d tensor of step sizes, got shape {tuple(h.shape)}")
        scalars = {k: v for k, v in (values or {}).items() if not torch.is_tensor(v)}
        params: dict[str, Any] = dict(self.parameter_values(**scalars))
        known = {p.name: p for p in self.parameters}
        for k, v in (values or {}).items():
            if torch.is_tensor(v):
                if k not in known:
                    raise UnknownParameterError(f"tableau {self.name!r} has no parameter {k!r}")
                if not v.is_meta:  # meta tensors (shape-only dry runs) carry no values
                    for value in v.detach().to("cpu", torch.float64).flatten().tolist():
                        known[k].check(value)
                params[k] = v.to(dtype=torch.float64, device=h.device)
        n, s = h.shape[0], self.stages
        phis: dict[tuple[int, str], torch.Tensor] = {}  # each phi_k(-scale h) evaluated once

        def evaluate_entry(coefficient: Coefficient) -> torch.Tensor:
            total = torch.zeros(n, dtype=torch.float64, device=h.device)
            for term in coefficient:
                key = (term.k, term.scale.source)
                if key not in phis:
                    phis[key] = phi(term.k, -term.scale(params) * h)
                total = total + term.coefficient(params) * phis[key]
            return total

        c = torch.stack(
            [
                torch.as_tensor(ci(params), dtype=torch.float64, device=h.device).expand(n)
                for ci in self.c
            ],
            dim=-1,
        )
        a = torch.zeros(n, s, s, dtype=torch.float64, device=h.device)
        for i, row in enumerate(self.a):
            for j, entry in enumerate(row):
                if entry:
                    a[:, i, j] = evaluate_entry(entry)
        b = torch.stack([evaluate_entry(entry) for entry in self.b], dim=-1)
        if not embedded:
            return c, a, b
        b_hat = torch.stack([evaluate_entry(entry) for entry in self.b_embedded], dim=-1)
        return c, a, b, b_hat


def available_tableaux() -> list[str]:
    """Names of the tableaux shipped in ``res_torch/tableaux``."""
    folder = resources.files("res_torch") / "tableaux"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def is_path(name_or_path: Any) -> bool:
    """Whether ``name_or_path`` names a file rather than a shipped tableau: a path object, or a
    string that contains a path separator or ends in ``.json``. Bare names never read files, so
    the working directory cannot shadow a shipped tableau.

    >>> is_path("res_2s"), is_path("res_2s.json"), is_path("./res_2s")
    (False, True, True)
    """
    if isinstance(name_or_path, os.PathLike):
        return True
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return isinstance(name_or_path, str) and (
        name_or_path.endswith(".json") or any(sep in name_or_path for sep in separators)
    )


def parameter_number(name: str, value: Any) -> float | int:
    """A parameter's value as a float (an int stays an int: ``max_order``, ``values``; a
    one-element tensor is read as its number); :class:`TableauError` unless it is a real number
    (a bool or a string is refused rather than converted)."""
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TableauError(f"parameter {name} must be a number, got {value!r:.40}")
    if isinstance(value, numbers.Integral):
        if abs(value) > 2**53:  # beyond float64's integers (and its range, for a huge int)
            raise TableauError(f"parameter {name} must be at most 2^53 in size, got {value!r:.40}")
        return int(value)
    return float(value)


def load_tableau(name_or_path: str | os.PathLike) -> Tableau:
    """Load a shipped tableau by name (``"res_2s"``) or a ``res-tableau`` file by explicit path
    (see :func:`is_path`); the file is validated fully (:func:`parse_tableau`)."""
    if is_path(name_or_path):
        path = Path(name_or_path)
        tableau = parse_tableau(read_document(path), _clip(str(path)))
        return dataclasses.replace(tableau, folder=path.resolve().parent)
    if isinstance(name_or_path, str) and _NAME.match(name_or_path):
        resource = resources.files("res_torch") / "tableaux" / f"{name_or_path}.json"
        if not resource.is_file():
            raise TableauError(
                f"unknown tableau {name_or_path!r}; available: {', '.join(available_tableaux())}"
            )
        return parse_tableau(decode_document(resource.read_bytes(), name_or_path), name_or_path)
    raise TableauError(
        f"expected a shipped tableau name ([a-z0-9_]+) or a path to a .json file, "
        f"got {name_or_path!r:.60}"
    )


def read_document(path: str | os.PathLike) -> Any:
    """The decoded JSON of the file at ``path`` (:func:`decode_document`), not yet validated as
    a tableau; a missing file, a directory or a FIFO is a :class:`TableauError`."""
    path = Path(path)
    origin = _clip(str(path))
    try:
        regular = not path.exists() or path.is_file()  # a directory or FIFO would hang
        if regular:
            with path.open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise TableauError(f"no tableau file at {origin} ({reason})") from None
    if not regular:
        raise TableauError(f"no tableau file at {origin} (not a regular file)")
    return decode_document(raw, origin)


def decode_document(raw: bytes, origin: str = "<data>") -> Any:
    """The JSON value of a file's bytes: at most :data:`MAX_FILE_BYTES`, UTF-8, standard JSON
    (no ``NaN``/``Infinity``, no lone surrogates), nested at most :data:`MAX_JSON_DEPTH` deep; else
    :class:`TableauError`."""
    if len(raw) > MAX_FILE_BYTES:
        raise TableauError(f"{origin}: file larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TableauError(f"{origin}: not UTF-8 text (byte {exc.start})") from None

    def refuse_constant(name: str) -> None:
        raise TableauError(f"{origin}: not valid JSON ({name} is not a JSON number)")

    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) < len(pairs):  # json.loads keeps the last value: a silent choice
            counts = Counter(key for key, _ in pairs)
            repeated = sorted(key for key, count in counts.items() if count > 1)
            raise TableauError(f"{origin}: key(s) {repeated} appear twice in one object"[:160])
        return data

    try:
        data = json.loads(text, parse_constant=refuse_constant, object_pairs_hook=refuse_duplicates)
    except TableauError:
        raise
    except RecursionError:
        raise TableauError(f"{origin}: JSON nested deeper than {MAX_JSON_DEPTH}") from None
    except ValueError as exc:
        raise TableauError(f"{origin}: not valid JSON ({str(exc)[:80]})") from None
    _check_structure(data, origin)
    return data


def _check_structure(data: Any, origin: str) -> None:
    """Nesting at most :data:`MAX_JSON_DEPTH` deep, every string valid Unicode."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise TableauError(f"{origin}: JSON nested deeper than {MAX_JSON_DEPTH}")
        if isinstance(value, dict | list):
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
        elif isinstance(value, str) and not _encodable(value):
            raise TableauError(f"{origin}: a string holds a lone surrogate ({value[:20]!a})")


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (JSON's ``\\ud800`` escapes can make lone surrogates,
    which no UTF-8 file can hold: a re-export would fail)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def parse_tableau(data: Any, origin: str = "<data>") -> Tableau:
    """Validate a decoded ``res-tableau`` document and build the :class:`Tableau`.

    Checks every key's type and bounds (``docs/tableau_format.md``, ``schema/``), that each
    ``*_float`` value agrees with its expression, the consistency sums (see
    :func:`check_consistency`), that the ``classical`` block is the ``Z -> 0`` limit of the
    coefficients and that the ``test_vectors`` are the coefficients' values (see
    :data:`TEST_VECTOR_TOLERANCE`). Every failure is a :class:`TableauError` with a short
    message.
    """
    return _Reader(_clip(origin)).tableau(data)


class _Reader:
    """The checks of :func:`parse_tableau`, each failure prefixed with the file's name."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.names: frozenset[str] = frozenset()
        self.defaults: dict[str, float] = {}

    def fail(self, message: str) -> TableauError:
        """The error, its message clipped below 200 characters (long names and bounds)."""
        text = f"{self.origin}: {message}"
        return TableauError(text if len(text) < 200 else text[:196] + "...")

    # -- typed values --------------------------------------------------------------------------
    def object(self, value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]):
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be an object, got {type(value).__name__}")
        for key in required:
            if key not in value:
                raise self.fail(f"{where}: missing key {key!r}")
        unknown = set(value) - set(required) - set(optional)
        if unknown:
            raise self.fail(f"{where}: unknown key(s) {sorted(map(str, unknown))}"[:160])
        return value

    def list(self, value: Any, where: str, length: int | None = None, limit: int = 0) -> list:
        if not isinstance(value, list):
            raise self.fail(f"{where} must be a list, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise self.fail(f"{where} must have {length} entries, got {len(value)}")
        if limit and len(value) > limit:
            raise self.fail(f"{where} has more than {limit} entries")
        return value

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(f"{where} must be an integer in [{lo}, {hi}], got {value!r:.40}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{where} must be a string, got {type(value).__name__}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{where} must be true or false, got {value!r:.40}")
        return value

    def number(self, value: Any, where: str) -> float:
        if type(value) in (int, float) and abs(value) <= _FLOAT_MAX:  # False for NaN
            return float(value)
        raise self.fail(f"{where} must be a finite number, got {str(value)[:40]}")

    def expression(self, source: Any, where: str, names: frozenset[str] | None = None):
        try:
            expression = Expression.parse(source, self.names if names is None else names)
            expression(self.defaults)  # finite and real at the defaults, else ExpressionError
        except ExpressionError as exc:
            raise self.fail(f"{where}: {exc}") from None
        return expression

    def matching_float(self, expression: Expression, value: Any, where: str) -> None:
        value = self.number(value, where)
        exact = float(expression(self.defaults))
        if not math.isclose(exact, value, rel_tol=1e-12, abs_tol=1e-14):
            raise self.fail(f"{where}: float {value!r} disagrees with {expression.source!r:.40}")

    # -- the document --------------------------------------------------------------------------
    def tableau(self, data: Any) -> Tableau:
        _check_structure(data, self.origin)
        if not isinstance(data, dict) or data.get("format") != "res-tableau":
            raise self.fail("not a res-tableau document ('format' must be 'res-tableau')")
        data = self.object(data, "the document", _REQUIRED_KEYS, _OPTIONAL_KEYS)
        if type(data["format_version"]) is not int or data["format_version"] != FORMAT_VERSION:
            raise self.fail(f"unsupported format_version {data['format_version']!r:.20}")
        name = data["name"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail(f"'name' must match [a-z0-9_]+, got {name!r:.40}")
        kind = data["kind"]
        if kind not in ("singlestep", "multistep"):
            raise self.fail(f"'kind' must be 'singlestep' or 'multistep', got {kind!r:.40}")
        s = self.integer(data["stages"], "'stages'", 1, MAX_STAGES)

        raw_parameters = self.list(data["parameters"], "'parameters'", limit=MAX_PARAMETERS)
        parameters = tuple(self.parameter(p, i) for i, p in enumerate(raw_parameters))
        self.names = frozenset(p.name for p in parameters)
        if len(self.names) != len(parameters):
            raise self.fail("duplicate parameter names")
        for p in parameters:
            try:
                self.defaults[p.name] = float(p.default())
                p.check(self.defaults[p.name])
            except TableauError as exc:
                raise self.fail(f"default outside its interval: {exc}") from None

        c_float = self.list(data["c_float"], "'c_float'", s)
        c = tuple(
            self.expression(ci, f"c[{i}]") for i, ci in enumerate(self.list(data["c"], "'c'", s))
        )
        for i, (ci, cf) in enumerate(zip(c, c_float, strict=True)):
            self.matching_float(ci, cf, f"c_float[{i}]")
        if c[0].tree[0] != "num" or c[0].tree[1] != 0:  # exactly: "0.1+0.2-0.3" is not 0.0
            raise self.fail(f"c[0] must be 0 (the literal), got {c[0].source!r:.40}")

        a_rows = self.list(data["A"], "'A'", s)
        a = tuple(
            tuple(
                self.coefficient(entry, f"A[{i}][{j}]")
                for j, entry in enumerate(self.list(row, f"A[{i}] (strictly lower triangular)", i))
            )
            for i, row in enumerate(a_rows)
        )
        b = tuple(
            self.coefficient(e, f"b[{i}]") for i, e in enumerate(self.list(data["b"], "'b'", s))
        )
        b_embedded = None
        if data.get("b_embedded") is not None:
            raw = self.list(data["b_embedded"], "'b_embedded'", s)
            b_embedded = tuple(self.coefficient(e, f"b_embedded[{i}]") for i, e in enumerate(raw))

        startup = tuple(
            self.string(x, f"startup[{i}]")
            for i, x in enumerate(self.list(data.get("startup", []), "'startup'", limit=MAX_STAGES))
        )
        if any(not _NAME.match(x) for x in startup):
            raise self.fail("startup entries must be tableau names ([a-z0-9_]+)")
        if kind == "multistep":
            history = [p.name for p in parameters if p.role == "history_node"]
            if [ci.tree for ci in c[1:]] != [("name", name) for name in history]:
                raise self.fail(f"multistep nodes c[1:] must be the history parameters {history}")
            if any(entry for row in a for entry in row):
                raise self.fail("a multistep method has no internal stages: 'A' must be all zero")
            if len(startup) != s - 1:
                raise self.fail(f"a multistep method with {s} stages needs {s - 1} startup methods")
        else:
            if startup or any(p.role == "history_node" for p in parameters):
                raise self.fail("'startup' and history nodes are only for multistep methods")
            if any(float(ci(self.defaults)) <= 0 for ci in c[1:]):
                raise self.fail("single-step nodes c[1:] must be > 0")

        classical = self.classical(data.get("classical"), s)
        order = self.order(data.get("order"))
        provenance = self.provenance(data.get("provenance"))
        vectors = self.test_vectors(data.get("test_vectors"), a, b, b_embedded)
        title = self.string(data.get("title", name), "'title'")
        tableau = Tableau(
            name=name,
            title=title,
            kind=kind,
            c=c,
            a=a,
            b=b,
            parameters=parameters,
            startup=startup,
            stiff_order=order.get("stiff_order"),
            classical_order=order.get("classical_order"),
            provenance=provenance,
            b_embedded=b_embedded,
        )
        try:
            check_consistency(tableau)
        except TableauError as exc:
            raise self.fail(str(exc)) from None
        if classical is not None:
            self.check_classical(classical, tableau)
        if vectors is not None:
            self.check_test_vectors(vectors)
        return tableau

    def parameter(self, p: Any, i: int) -> Parameter:
        where = f"parameters[{i}]"
        p = self.object(p, where, ("name", "default"), _PARAMETER_KEYS)
        name = p["name"]
        if not isinstance(name, str) or not _PARAMETER_NAME.match(name) or _RESERVED.match(name):
            raise self.fail(
                f"{where}: 'name' must be an identifier other than sqrt, Z, h, z1, z2, ... "
                f"(reserved), got {name!r:.40}"
            )
        role = p.get("role", "free")
        if role not in ("free", "history_node"):
            raise self.fail(f"{where}: 'role' must be 'free' or 'history_node', got {role!r:.40}")

        def bound(key: str) -> Expression | None:
            value = p.get(key)
            return None if value is None else self.expression(value, f"{where}.{key}", frozenset())

        parameter = Parameter(
            name=name,
            default=self.expression(p["default"], f"{where}.default", frozenset()),
            lower=bound("lower"),
            upper=bound("upper"),
            lower_inclusive=self.boolean(
                p.get("lower_inclusive", False), f"{where}.lower_inclusive"
            ),
            upper_inclusive=self.boolean(
                p.get("upper_inclusive", False), f"{where}.upper_inclusive"
            ),
            description=self.string(p.get("description", ""), f"{where}.description"),
            role=role,
        )
        return parameter

    def term(self, t: Any, where: str) -> PhiTerm:
        t = self.object(t, where, _TERM_KEYS, ())
        k = self.integer(t["k"], f"{where}: 'k'", 0, K_MAX)
        coefficient = self.expression(t["coefficient"], f"{where}.coefficient")
        scale = self.expression(t["scale"], f"{where}.scale")
        self.matching_float(coefficient, t["coefficient_float"], f"{where}.coefficient_float")
        self.matching_float(scale, t["scale_float"], f"{where}.scale_float")
        return PhiTerm(coefficient, k, scale)

    def coefficient(self, entry: Any, where: str) -> Coefficient:
        entry = self.list(entry, where, limit=MAX_TERMS)
        return tuple(self.term(t, f"{where}[{n}]") for n, t in enumerate(entry))

    def classical(self, classical: Any, s: int) -> _Classical | None:
        """The ``classical`` block's expressions (``A`` as a full ``s x s`` matrix), typed."""
        if classical is None:
            return None
        classical = self.object(classical, "'classical'", ("c", "A", "b"), ())
        return _Classical(
            c=tuple(
                self.expression(x, f"classical.c[{i}]")
                for i, x in enumerate(self.list(classical["c"], "classical.c", s))
            ),
            a=tuple(
                tuple(
                    self.expression(x, f"classical.A[{i}][{j}]")
                    for j, x in enumerate(self.list(row, f"classical.A[{i}]", s))
                )
                for i, row in enumerate(self.list(classical["A"], "classical.A", s))
            ),
            b=tuple(
                self.expression(x, f"classical.b[{i}]")
                for i, x in enumerate(self.list(classical["b"], "classical.b", s))
            ),
        )

    def check_classical(self, classical: _Classical, tableau: Tableau) -> None:
        """Refuse a ``classical`` block that is not the ``Z -> 0`` limit of the coefficients:
        ``c`` must be the nodes, ``A[i][j]`` the limit ``sum_t coefficient_t / k_t!`` of
        ``a_ij(Z)`` (``phi_k(0) = 1/k!``; 0 for ``j >= i``) and ``b[i]`` that of ``b_i(Z)``, at
        every point of :func:`consistency_points` where the family is defined, to
        :data:`CONSISTENCY_TOLERANCE` relative to the size of the numbers compared, and
        absolute below size 1 (where float64 rounds an exact 0 written as ``0.1+0.2-0.3`` to
        ``5.6e-17``, that is not the file's error: an exact reader sees 0)."""
        s = tableau.stages
        entries: list[tuple[str, Expression, list[tuple[Expression, int]]]] = [
            (f"c[{i}]", classical.c[i], [(tableau.c[i], 0)]) for i in range(s)
        ]
        entries += [
            (f"A[{i}][{j}]", classical.a[i][j], _limit_terms(tableau.a[i][j]) if j < i else [])
            for i in range(s)
            for j in range(s)
        ]
        entries += [(f"b[{i}]", classical.b[i], _limit_terms(tableau.b[i])) for i in range(s)]
        for n, values in enumerate(consistency_points(tableau.parameters)):
            try:
                sums = [(where, *_limit_difference(x, t, values)) for where, x, t in entries]
            except ExpressionError as exc:
                if n == 0:
                    raise self.fail(f"classical: {exc}") from None
                continue  # the family is singular at this sample point
            for where, total, size in sums:
                if abs(total) > CONSISTENCY_TOLERANCE * max(size, 1.0):
                    at = ", ".join(f"{name}={v:.4g}" for name, v in values.items())
                    raise self.fail(
                        f"classical.{where} is not the Z -> 0 limit of {where}"
                        + (f" at {at}" if at else "")
                        + f" (off by {total:.3g})"
                    )

    def order(self, order: Any) -> dict[str, Any]:
        if order is None:
            return {}
        if not isinstance(order, dict):
            raise self.fail(f"'order' must be an object, got {type(order).__name__}")
        for key in ("stiff_order", "scalar_order", "classical_order", "checked_up_to"):
            if order.get(key) is not None:
                self.integer(order[key], f"order.{key}", 0, 1000)
        if "conditions" in order:
            self.list(order["conditions"], "order.conditions")
        return order

    def provenance(self, provenance: Any) -> dict[str, str]:
        if provenance is None:
            return {}
        provenance = self.object(
            provenance, "'provenance'", (), ("source", "generated_by", "derivation")
        )
        return {key: self.string(value, f"provenance.{key}") for key, value in provenance.items()}

    def test_vectors(
        self,
        vectors: Any,
        a: tuple[tuple[Coefficient, ...], ...],
        b: tuple[Coefficient, ...],
        b_embedded: tuple[Coefficient, ...] | None,
    ) -> _TestVectors | None:
        """The ``test_vectors`` block, typed, each list of values paired with its coefficient."""
        if vectors is None:
            return None
        s = len(b)
        keys = ("Z", "parameters", "digits", "A", "b")
        vectors = self.object(vectors, "'test_vectors'", keys, ("b_embedded",))
        zs = self.list(vectors["Z"], "test_vectors.Z", limit=16)
        for i, z in enumerate(zs):
            self.decimal(z, f"test_vectors.Z[{i}]")
        parameters = self.object(
            vectors["parameters"], "test_vectors.parameters", (), tuple(self.names)
        )
        values = dict(self.defaults)
        for key, value in parameters.items():
            where = f"test_vectors.parameters.{key}"
            values[key] = float(self.expression(value, where, frozenset())())
        digits = self.integer(vectors["digits"], "test_vectors.digits", 1, 100)
        entries: list[tuple[str, Coefficient, list[str]]] = []

        def add(entry: Any, where: str, coefficient: Coefficient) -> None:
            texts = self.list(entry, f"test_vectors.{where}", len(zs))
            for n, v in enumerate(texts):
                self.decimal(v, f"test_vectors.{where}[{n}]")
            entries.append((where, coefficient, texts))

        for i, row in enumerate(self.list(vectors["A"], "test_vectors.A", s)):
            for j, entry in enumerate(self.list(row, f"test_vectors.A[{i}]", i)):
                add(entry, f"A[{i}][{j}]", a[i][j])
        for i, entry in enumerate(self.list(vectors["b"], "test_vectors.b", s)):
            add(entry, f"b[{i}]", b[i])
        if ("b_embedded" in vectors) != (b_embedded is not None):
            raise self.fail("test_vectors.b_embedded must be given exactly when b_embedded is")
        if b_embedded is not None:
            for i, entry in enumerate(
                self.list(vectors["b_embedded"], "test_vectors.b_embedded", s)
            ):
                add(entry, f"b_embedded[{i}]", b_embedded[i])
        return _TestVectors(zs, values, digits, entries)

    def check_test_vectors(self, vectors: _TestVectors) -> None:
        """Refuse test vectors that disagree with the coefficients: every entry is evaluated in
        float64 at the vectors' parameters (the defaults where none is given) and each ``Z``, as
        ``sum_t c_t phi_k(s_t Z)``, and the stored decimal must lie within ``10^(1 - digits)``
        of it (relative: its ``digits``) plus :data:`TEST_VECTOR_TOLERANCE` of the terms' size
        (float64's error) plus :data:`TEST_VECTOR_FLOOR`. A phi argument beyond
        :data:`MAX_TEST_VECTOR_ARGUMENT` is refused."""
        z = torch.tensor([float(x) for x in vectors.z], dtype=torch.float64)
        values = vectors.parameters
        try:
            terms = [
                (n, float(t.coefficient(values)), t.k, float(t.scale(values)))
                for n, (_, entry, _) in enumerate(vectors.entries)
                for t in entry
            ]
        except ExpressionError as exc:
            raise self.fail(f"test_vectors: undefined at its parameters ({exc})"[:150]) from None
        scales = max((abs(t[3]) for t in terms), default=0.0)
        largest = scales * max((abs(x) for x in z.tolist()), default=0.0)
        if not largest <= MAX_TEST_VECTOR_ARGUMENT:
            raise self.fail(
                f"test_vectors: a phi argument |scale * Z| = {largest:.3g} is beyond "
                f"{MAX_TEST_VECTOR_ARGUMENT:g}"
            )
        value = torch.zeros(len(vectors.entries), len(z), dtype=torch.float64)
        size = torch.zeros_like(value)
        for k in sorted({t[2] for t in terms}):
            group = [t for t in terms if t[2] == k]
            coefficient = torch.tensor([t[1] for t in group], dtype=torch.float64)[:, None]
            scale = torch.tensor([t[3] for t in group], dtype=torch.float64)[:, None]
            contribution = coefficient * phi(k, scale * z)
            index = torch.tensor([t[0] for t in group])
            value.index_add_(0, index, contribution)
            size.index_add_(0, index, contribution.abs())
        stored = torch.tensor(
            [[float(x) for x in texts] for _, _, texts in vectors.entries], dtype=torch.float64
        ).reshape(value.shape)
        allowed = (
            10.0 ** (1 - vectors.digits) * value.abs()
            + TEST_VECTOR_TOLERANCE * size
            + TEST_VECTOR_FLOOR
        )
        bad = ~((stored - value).abs() <= allowed) | ~torch.isfinite(size)
        if bad.any():
            n, m = (int(x) for x in bad.nonzero()[0])
            where, texts = vectors.entries[n][0], vectors.entries[n][2]
            raise self.fail(
                f"test_vectors.{where}[{m}] = {texts[m][:32]} disagrees with {where} at "
                f"Z = {vectors.z[m][:24]} (computed {value[n, m].item():.17g})"
            )

    def decimal(self, value: Any, where: str) -> None:
        if (
            not isinstance(value, str)
            or not _DECIMAL.match(value)
            or not math.isfinite(float(value))
        ):
            raise self.fail(f"{where} must be a finite decimal number string, got {value!r:.40}")


@dataclass(frozen=True)
class _Classical:
    """The expressions of a file's ``classical`` block (``a`` is the full ``s x s`` matrix)."""

    c: tuple[Expression, ...]
    a: tuple[tuple[Expression, ...], ...]
    b: tuple[Expression, ...]


@dataclass(frozen=True)
class _TestVectors:
    """A file's ``test_vectors``: the ``Z`` (decimal strings), the parameter values they were
    computed at, their significant ``digits`` and ``(where, coefficient, decimal strings)`` for
    every entry of ``A``, ``b`` and ``b_embedded``."""

    z: list[str]
    parameters: dict[str, float]
    digits: int
    entries: list[tuple[str, Coefficient, list[str]]]


def _limit_difference(
    value: Expression, terms: list[tuple[Expression, int]], values: Mapping[str, float]
) -> tuple[float, float]:
    """``(value - sum_t e_t / k_t!, |value| + sum_t |e_t / k_t!|)`` at ``values`` for a
    ``classical`` entry and its ``(e_t, k_t)`` terms; :class:`ExpressionError` where a number or
    the sums leave float64's range (``1e308 + 1e308``: the file is unusable in float64)."""
    number = float(value(values))
    limit = [float(e(values)) / math.factorial(k) for e, k in terms]
    size = abs(number) + sum(map(abs, limit))
    if not math.isfinite(size):
        raise ExpressionError("the Z -> 0 limits add up beyond float64's range")
    return number - math.fsum(limit), size


def _limit_terms(coefficient: Coefficient) -> list[tuple[Expression, int]]:
    """``(coefficient, k)`` of each term: the ``Z -> 0`` limit is ``sum coefficient / k!``."""
    return [(t.coefficient, t.k) for t in coefficient]


_REQUIRED_KEYS = (
    "format",
    "format_version",
    "name",
    "kind",
    "stages",
    "parameters",
    "c",
    "c_float",
    "A",
    "b",
)
_OPTIONAL_KEYS = (
    "title",
    "b_embedded",
    "classical",
    "startup",
    "order",
    "provenance",
    "test_vectors",
)
_PARAMETER_KEYS = ("lower", "upper", "lower_inclusive", "upper_inclusive", "description", "role")
_TERM_KEYS = ("coefficient", "coefficient_float", "k", "scale", "scale_float")
_FLOAT_MAX = sys.float_info.max
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = re.compile(r"^(sqrt|Z|h|z[0-9]+)\Z")
"""Names a parameter cannot take (``docs/tableau_format.md``): ``sqrt`` and the variables of the
order-condition checker, ``Z``, ``h``, ``z1, z2, ...``."""
_DECIMAL = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


def consistency_points(parameters: tuple[Parameter, ...]) -> list[dict[str, float]]:
    """The parameter values at which :func:`check_consistency` tests a family: the defaults and
    three points inside the intervals (fractions 0.29, 0.67, 0.83 of each interval, rotated per
    parameter so that no two parameters coincide; an unbounded side counts as width 4)."""
    fractions = (0.29, 0.67, 0.83)
    points = [{p.name: float(p.default()) for p in parameters}]
    for m in range(len(fractions)):
        point = {}
        for index, p in enumerate(parameters):
            lo = None if p.lower is None else float(p.lower())
            hi = None if p.upper is None else float(p.upper())
            lo = lo if lo is not None else (hi if hi is not None else 2.0) - 4.0
            hi = hi if hi is not None else lo + 4.0
            point[p.name] = lo + (hi - lo) * fractions[(m + index) % len(fractions)]
        points.append(point)
    return points


def check_consistency(tableau: Tableau, tolerance: float = CONSISTENCY_TOLERANCE) -> None:
    """Raise :class:`TableauError` unless the weights satisfy the consistency sums::

        sum_i b_i(Z) = phi_1(Z)                (also for b_embedded)
        sum_j a_ij(Z) = c_i phi_1(c_i Z)       (single-step; multistep methods have A = 0)

    Checked as identities in ``Z`` on the term representation (the functions ``phi_k(s Z)``,
    ``s != 0``, are linearly independent, and ``phi_k(0 Z) = 1/k!`` is a constant), i.e. the
    coefficients of equal ``(k, s)`` must sum to those of the right-hand side, at every point of
    :func:`consistency_points` where the family is defined (always at the defaults), to
    ``tolerance`` relative to the size of the coefficients summed. A point where a sum of their
    absolute values leaves float64's range counts as undefined (the file is unusable in
    float64 there; ``res_theory`` refuses it too).
    """
    points = consistency_points(tableau.parameters)
    for n, values in enumerate(points):
        try:
            nodes = [float(ci(values)) for ci in tableau.c]
            entries = [
                ("sum_i b_i(Z) = phi_1(Z)", tableau.b, 1.0, 1.0),
                *(
                    (f"sum_j a_{i + 1}j(Z) = c_{i + 1} phi_1(c_{i + 1} Z)", row, nodes[i], nodes[i])
                    for i, row in enumerate(tableau.a)
                    if tableau.kind == "singlestep"
                ),
            ]
            if tableau.b_embedded is not None:
                entries.append(("sum_i b_embedded_i(Z) = phi_1(Z)", tableau.b_embedded, 1.0, 1.0))
            sums = [
                (rule, _term_sums(row, values, target, scale))
                for rule, row, target, scale in entries
            ]
            if not all(math.isfinite(size) for _, groups in sums for _, size in groups.values()):
                raise ExpressionError("the consistency sums add up beyond float64's range")
        except ExpressionError:
            if n == 0:
                raise
            continue  # the family is singular at this sample point
        for rule, groups in sums:
            for (k, s), (total, size) in groups.items():
                if abs(total) > tolerance * max(size, 1e-300) and abs(total) > 1e-300:
                    at = ", ".join(f"{name}={v:.4g}" for name, v in values.items())
                    what = "constant part" if k < 0 else f"phi_{k}({s:.6g} Z)"
                    raise TableauError(
                        f"inconsistent: {rule} fails"
                        + (f" at {at}" if at else "")
                        + f" ({what} off by {total:.3g})"
                    )


def _term_sums(
    row: tuple[Coefficient, ...], values: Mapping[str, float], target: float, target_scale: float
) -> dict[tuple[int, float], tuple[float, float]]:
    """``{(k, s): (sum of coefficients - right-hand side, sum of |coefficients|)}`` over the terms
    of all entries of ``row``, minus ``target * phi_1(target_scale Z)``; ``k = -1`` collects the
    constant terms (scale 0) as ``coefficient / k!``."""
    terms = [
        (float(t.coefficient(values)), t.k, float(t.scale(values))) for entry in row for t in entry
    ]
    terms.append((-target, 1, target_scale))
    groups: dict[tuple[int, float], tuple[float, float]] = {}
    for k in sorted({k for _, k, _ in terms}):
        ks = sorted(((s, c) for c, kk, s in terms if kk == k), key=lambda x: x[0])
        representative = None
        for s, c in ks:
            if abs(s) <= 1e-14:
                key = (-1, 0.0)
                c = c / math.factorial(k)
            elif representative is not None and abs(s - representative) <= 1e-12 * abs(s):
                key = (k, representative)
            else:
                representative = s
                key = (k, s)
            total, size = groups.get(key, (0.0, 0.0))
            groups[key] = (total + c, size + abs(c))
    return groups
