"""Read a ``res-tableau`` JSON file back into a symbolic :class:`~res_theory.tableau.ExpTableau`.

The inverse of :mod:`res_theory.export` for the parts that define the method (parameters, ``c``,
``A``, ``b``, ``kind``, ``startup``, provenance); the ``order`` report is recomputed, not trusted.
Expressions are parsed with :mod:`ast` and only the grammar of ``docs/tableau_format.md``
(numbers, parameter names, ``+ - * / **``, ``sqrt``) is accepted: a file never executes code.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import sympy as sp

from res_theory.phi import phi
from res_theory.tableau import ExpTableau, Parameter, TableauError, Z

__all__ = ["load", "from_document", "parse_expression"]

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def parse_expression(source: Any, names: frozenset[str]) -> sp.Expr:
    """Exact SymPy value of a grammar expression; ``TableauError`` if it leaves the grammar."""
    if not isinstance(source, str) or not source.strip():
        raise TableauError(f"expected a non-empty expression string, got {source!r}")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise TableauError(f"cannot parse expression {source!r}: {exc.msg}") from None

    def walk(node: ast.expr) -> sp.Expr:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise TableauError(f"expression {source!r} uses unknown parameter {node.id!r}")
            return sp.Symbol(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "sqrt"
            and len(node.args) == 1
            and not node.keywords
        ):
            return sp.sqrt(walk(node.args[0]))
        raise TableauError(f"unsupported construct in expression {source!r}")

    return walk(tree)


def from_document(data: Any, origin: str = "<data>") -> ExpTableau:
    """Build the :class:`ExpTableau` of a decoded ``res-tableau`` document."""

    def fail(message: str) -> TableauError:
        return TableauError(f"{origin}: {message}")

    if not isinstance(data, dict) or data.get("format") != "res-tableau":
        raise fail("not a res-tableau document (missing 'format': 'res-tableau')")
    for key in ("name", "kind", "parameters", "c", "A", "b"):
        if key not in data:
            raise fail(f"missing key {key!r}")
    try:
        names = frozenset(p["name"] for p in data["parameters"])
        params = tuple(
            Parameter(
                p["name"],
                parse_expression(p["default"], frozenset()),
                None if p.get("lower") is None else parse_expression(p["lower"], frozenset()),
                None if p.get("upper") is None else parse_expression(p["upper"], frozenset()),
                bool(p.get("lower_inclusive", False)),
                bool(p.get("upper_inclusive", False)),
                str(p.get("description", "")),
                str(p.get("role", "free")),
            )
            for p in data["parameters"]
        )

        def entry(terms: Any) -> sp.Expr:
            return sum(
                (
                    parse_expression(t["coefficient"], names)
                    * phi(int(t["k"]), parse_expression(t["scale"], names) * Z)
                    for t in terms
                ),
                sp.Integer(0),
            )

        c = tuple(parse_expression(x, names) for x in data["c"])
        s = len(c)
        A = [[sp.Integer(0)] * s for _ in range(s)]
        for i, row in enumerate(data["A"]):
            if len(row) != i:
                raise fail(f"A[{i}] must have {i} entries (strictly lower triangular)")
            for j, terms in enumerate(row):
                A[i][j] = entry(terms)
        b = tuple(entry(terms) for terms in data["b"])
        provenance = data.get("provenance", {})
        return ExpTableau(
            data["name"],
            str(data.get("title", data["name"])),
            c,
            tuple(map(tuple, A)),
            b,
            parameters=params,
            kind=data["kind"],
            startup=tuple(data.get("startup", ())),
            source=str(provenance.get("source", "")),
            derivation=str(provenance.get("derivation", "")),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise fail(f"malformed document: {type(exc).__name__}: {exc}") from None


def load(path: str | Path) -> ExpTableau:
    """Read a ``res-tableau`` JSON file; raises :class:`TableauError` on malformed input."""
    path = Path(path)
    if not path.is_file():
        raise TableauError(f"no tableau file at {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TableauError(f"{path}: not valid JSON ({exc})") from None
    return from_document(data, origin=str(path))
