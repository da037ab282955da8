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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from res_torch.errors import TableauError
from res_torch.expression import Expression, ExpressionError
from res_torch.phi import phi

__all__ = [
    "Parameter",
    "PhiTerm",
    "Tableau",
    "TableauError",
    "available_tableaux",
    "load_tableau",
    "parse_tableau",
]

FORMAT = "res-tableau"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[a-z0-9_]+$")



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
            raise TableauError(f"parameter {self.name} must be finite, got {value}")
        if self.lower is not None:
            lo = float(self.lower())
            if value < lo or (value == lo and not self.lower_inclusive):
                raise TableauError(f"parameter {self.name}={value} is outside {self.interval()}")
        if self.upper is not None:
            hi = float(self.upper())
            if value > hi or (value == hi and not self.upper_inclusive):
                raise TableauError(f"parameter {self.name}={value} is outside {self.interval()}")

    def interval(self) -> str:
        lo = "-inf" if self.lower is None else self.lower.source
        hi = "inf" if self.upper is None else self.upper.source
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
            raise TableauError(
                f"tableau {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"it has {sorted(known) or 'none'}"
            )
        values = {name: float(p.default()) for name, p in known.items()}
        values.update({k: float(v) for k, v in overrides.items()})
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

    def evaluate(
        self, h: torch.Tensor, values: Mapping[str, float | torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coefficients for the diffusion case ``L = -1`` (``Z = -h``) at step sizes ``h``.

        ``h`` has shape ``(N,)``; ``values`` holds parameters as floats or ``(N,)`` tensors (the
        history nodes of a multistep method vary per step). Returns float64 tensors
        ``c (N, s)``, ``a (N, s, s)`` and ``b (N, s)``, already *without* the factor ``h``.
        """
        h = torch.as_tensor(h, dtype=torch.float64)
        if h.ndim != 1:
            raise TableauError(f"h must be a 1-d tensor of step sizes, got shape {tuple(h.shape)}")
        scalars = {k: v for k, v in (values or {}).items() if not torch.is_tensor(v)}
        params: dict[str, Any] = dict(self.parameter_values(**scalars))
        known = {p.name: p for p in self.parameters}
        for k, v in (values or {}).items():
            if torch.is_tensor(v):
                if k not in known:
                    raise TableauError(f"tableau {self.name!r} has no parameter {k!r}")
                if not v.is_meta:  # meta tensors (shape-only dry runs) carry no values
                    for value in v.detach().to("cpu", torch.float64).flatten().tolist():
                        known[k].check(value)
                params[k] = v.to(dtype=torch.float64, device=h.device)
        n, s = h.shape[0], self.stages

        def evaluate_entry(coefficient: Coefficient) -> torch.Tensor:
            total = torch.zeros(n, dtype=torch.float64, device=h.device)
            for term in coefficient:
                total = total + term.coefficient(params) * phi(term.k, -term.scale(params) * h)
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
        return c, a, b


def available_tableaux() -> list[str]:
    """Names of the tableaux shipped in ``res_torch/tableaux``."""
    folder = resources.files("res_torch") / "tableaux"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_tableau(name_or_path: str | Path) -> Tableau:
    """Load a shipped tableau by name (``"res_2s"``) or any ``res-tableau`` file by path."""
    path = Path(name_or_path)
    folder = None
    if path.suffix == ".json" or path.exists():
        folder = path.resolve().parent
        if not path.is_file():
            raise TableauError(f"no tableau file at {path}")
        text = path.read_text()
    else:
        resource = resources.files("res_torch") / "tableaux" / f"{name_or_path}.json"
        if not resource.is_file():
            raise TableauError(
                f"unknown tableau {name_or_path!r}; available: {', '.join(available_tableaux())}"
            )
        text = resource.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableauError(f"{name_or_path}: not valid JSON ({exc})") from None
    return dataclasses.replace(parse_tableau(data, origin=str(name_or_path)), folder=folder)


def parse_tableau(data: Any, origin: str = "<data>") -> Tableau:
    """Validate a decoded ``res-tableau`` document and build the :class:`Tableau`."""

    def fail(message: str) -> TableauError:
        return TableauError(f"{origin}: {message}")

    if not isinstance(data, dict):
        raise fail("top level must be a JSON object")
    if data.get("format") != FORMAT:
        raise fail(f"'format' must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise fail(f"unsupported format_version {data.get('format_version')!r}")
    for key in ("name", "kind", "stages", "parameters", "c", "c_float", "A", "b"):
        if key not in data:
            raise fail(f"missing key {key!r}")
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(f"'name' must match [a-z0-9_]+, got {name!r}")
    kind = data["kind"]
    if kind not in ("singlestep", "multistep"):
        raise fail(f"'kind' must be 'singlestep' or 'multistep', got {kind!r}")
    s = data["stages"]
    if not isinstance(s, int) or isinstance(s, bool) or s < 1:
        raise fail(f"'stages' must be a positive integer, got {s!r}")

    parameters = tuple(
        _parse_parameter(p, fail) for p in _list(data["parameters"], "parameters", fail)
    )
    names = frozenset(p.name for p in parameters)
    if len(names) != len(parameters):
        raise fail("duplicate parameter names")
    defaults: dict[str, float] = {}
    for p in parameters:
        defaults[p.name] = float(p.default())
        try:
            p.check(defaults[p.name])
        except TableauError as exc:
            raise fail(f"default outside its interval: {exc}") from None

    def expression(source: Any, where: str) -> Expression:
        try:
            return Expression.parse(source, names)
        except ExpressionError as exc:
            raise fail(f"{where}: {exc}") from None

    def check_float(expr: Expression, value: Any, where: str) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise fail(f"{where}: float value missing or not a number ({value!r})")
        exact = float(expr(defaults))
        if not math.isclose(exact, value, rel_tol=1e-12, abs_tol=1e-14):
            raise fail(
                f"{where}: float {value!r} disagrees with expression {expr.source!r} = {exact!r}"
            )

    def term(t: Any, where: str) -> PhiTerm:
        if not isinstance(t, dict):
            raise fail(f"{where}: a term must be an object")
        for key in ("coefficient", "coefficient_float", "k", "scale", "scale_float"):
            if key not in t:
                raise fail(f"{where}: term is missing {key!r}")
        k = t["k"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise fail(f"{where}: 'k' must be an integer >= 0, got {k!r}")
        coefficient = expression(t["coefficient"], where)
        scale = expression(t["scale"], where)
        check_float(coefficient, t["coefficient_float"], f"{where} coefficient")
        check_float(scale, t["scale_float"], f"{where} scale")
        return PhiTerm(coefficient, k, scale)

    def coefficient(entry: Any, where: str) -> Coefficient:
        return tuple(term(t, where) for t in _list(entry, where, fail))

    c_src, c_float = _list(data["c"], "c", fail), _list(data["c_float"], "c_float", fail)
    if len(c_src) != s or len(c_float) != s:
        raise fail(
            f"'c' and 'c_float' must have {s} entries (stages), got {len(c_src)}, {len(c_float)}"
        )
    c = tuple(expression(ci, f"c[{i}]") for i, ci in enumerate(c_src))
    for i, (ci, cf) in enumerate(zip(c, c_float, strict=True)):
        check_float(ci, cf, f"c[{i}]")
    if float(c[0](defaults)) != 0.0 or not c[0].is_constant:
        raise fail("c[0] must be 0")

    a_rows = _list(data["A"], "A", fail)
    if len(a_rows) != s:
        raise fail(f"'A' must have {s} rows, got {len(a_rows)}")
    a = []
    for i, row in enumerate(a_rows):
        row = _list(row, f"A[{i}]", fail)
        if len(row) != i:
            raise fail(f"A[{i}] must have {i} entries (strictly lower triangular), got {len(row)}")
        a.append(tuple(coefficient(entry, f"A[{i}][{j}]") for j, entry in enumerate(row)))
    b_src = _list(data["b"], "b", fail)
    if len(b_src) != s:
        raise fail(f"'b' must have {s} entries, got {len(b_src)}")
    b = tuple(coefficient(entry, f"b[{i}]") for i, entry in enumerate(b_src))

    startup = tuple(_list(data.get("startup", []), "startup", fail))
    if kind == "multistep":
        history = [p.name for p in parameters if p.role == "history_node"]
        if [ci.source.strip() for ci in c[1:]] != history:
            raise fail(f"multistep nodes c[1:] must be the history parameters {history}, in order")
        if any(entry for row in a for entry in row):
            raise fail("a multistep method has no internal stages: 'A' must be all zero")
        if len(startup) != s - 1:
            raise fail(f"a multistep method with {s} stages needs {s - 1} startup methods")
    elif startup:
        raise fail("'startup' is only meaningful for multistep methods")

    order = data.get("order") or {}
    return Tableau(
        name=name,
        title=str(data.get("title", name)),
        kind=kind,
        c=c,
        a=tuple(a),
        b=b,
        parameters=parameters,
        startup=startup,
        stiff_order=order.get("stiff_order"),
        classical_order=order.get("classical_order"),
        provenance=data.get("provenance", {}),
    )


def _list(value: Any, where: str, fail: Any) -> list:
    if not isinstance(value, list):
        raise fail(f"{where!r} must be a list, got {type(value).__name__}")
    return value


def _parse_parameter(p: Any, fail: Any) -> Parameter:
    if not isinstance(p, dict) or not isinstance(p.get("name"), str) or "default" not in p:
        raise fail(f"a parameter must be an object with 'name' and 'default', got {p!r}")

    def optional(key: str) -> Expression | None:
        if p.get(key) is None:
            return None
        try:
            return Expression.parse(p[key], frozenset())
        except ExpressionError as exc:
            raise fail(f"parameter {p['name']}: {key}: {exc}") from None

    default = optional("default")
    assert default is not None
    return Parameter(
        name=p["name"],
        default=default,
        lower=optional("lower"),
        upper=optional("upper"),
        lower_inclusive=bool(p.get("lower_inclusive", False)),
        upper_inclusive=bool(p.get("upper_inclusive", False)),
        description=str(p.get("description", "")),
        role=str(p.get("role", "free")),
    )
