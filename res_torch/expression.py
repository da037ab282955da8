"""Safe evaluation of the arithmetic expressions used in ``res-tableau`` files.

Grammar (``docs/tableau_format.md``)::

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := ('+' | '-') factor | atom ('**' factor)?
    atom   := INTEGER | DECIMAL | NAME | 'sqrt' '(' expr ')' | '(' expr ')'

Expressions are parsed with :mod:`ast` and only the nodes of this grammar are accepted, so a file
can never execute code. A compiled :class:`Expression` evaluates on Python floats, NumPy arrays or
torch tensors alike (``sqrt`` dispatches on the argument's type).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from res_torch.errors import ExpressionError

__all__ = ["Expression", "ExpressionError"]



_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _sqrt(x: Any) -> Any:
    return (
        math.sqrt(x) if isinstance(x, int | float) else x.sqrt() if hasattr(x, "sqrt") else x**0.5
    )


@dataclass(frozen=True)
class Expression:
    """A parsed expression over named parameters, e.g. ``Expression.parse("-1/(2*c2)")``."""

    source: str
    names: frozenset[str]
    _tree: ast.expr = field(repr=False, compare=False)

    @classmethod
    def parse(cls, source: str, allowed_names: frozenset[str] | None = None) -> Expression:
        """Parse ``source``; raise :class:`ExpressionError` if it leaves the grammar."""
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError(f"expected a non-empty expression string, got {source!r}")
        try:
            tree = ast.parse(source.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse expression {source!r}: {exc.msg}") from None
        names: set[str] = set()
        _validate(tree, source, names)
        if allowed_names is not None and not names <= allowed_names:
            unknown = ", ".join(sorted(names - allowed_names))
            raise ExpressionError(f"expression {source!r} uses unknown parameter(s): {unknown}")
        return cls(source, frozenset(names), tree)

    def __call__(self, values: Mapping[str, Any] | None = None) -> Any:
        """Evaluate with ``values`` for the parameters (floats, arrays or tensors)."""
        values = values or {}
        missing = self.names - values.keys()
        if missing:
            raise ExpressionError(
                f"expression {self.source!r} needs a value for: {', '.join(sorted(missing))}"
            )
        return _evaluate(self._tree, values)

    @property
    def is_constant(self) -> bool:
        return not self.names


def _validate(node: ast.expr, source: str, names: set[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"only numeric literals are allowed in {source!r}")
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _validate(node.left, source, names)
        _validate(node.right, source, names)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _validate(node.operand, source, names)
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "sqrt"
        and len(node.args) == 1
        and not node.keywords
    ):
        _validate(node.args[0], source, names)
    else:
        raise ExpressionError(f"unsupported construct {ast.dump(node)[:40]}... in {source!r}")


def _evaluate(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    assert isinstance(node, ast.Call)
    return _sqrt(_evaluate(node.args[0], values))
