"""Safe, bounded evaluation of the arithmetic expressions used in ``res-tableau`` files.

Grammar (``docs/tableau_format.md``; ``^`` and ``**`` are the same operator)::

    expr     := term (('+' | '-') term)*
    term     := factor (('*' | '/') factor)*
    factor   := ('+' | '-') factor | power
    power    := atom (('^' | '**') exponent)?
    exponent := INTEGER | ('+' | '-') INTEGER | '(' ('+' | '-')? INTEGER ')'
    atom     := INTEGER | DECIMAL | NAME | 'sqrt' '(' expr ')' | '(' expr ')'

A hand-written recursive-descent parser (no Python grammar, no ``eval``) builds a small tree, so a
file can never execute code, and every expression is bounded: at most
:data:`MAX_EXPRESSION_LENGTH` characters, :data:`MAX_NESTING` nested parentheses / signs /
``sqrt``, an exponent whose product with the exponents it is nested in is at most
:data:`MAX_EXPONENT` in absolute value (``9^9^9`` is refused at once), and at most
:data:`MAX_EXPANDED_SIZE` terms when multiplied out. Literals are read as
float64 and must be finite (``1e400`` is refused). A compiled :class:`Expression` evaluates on
Python floats, NumPy arrays or torch tensors alike (``sqrt`` dispatches on the argument's type).

The file's meaning is exact (a decimal literal is the rational it writes), so a division or a
negative power whose operand is a constant subexpression that is exactly 0 is refused at parse
time, although float64 may round it to a nonzero number: ``1/(0.1+0.2-0.3)`` divides by 0 (an
exact reader such as ``res_theory`` refuses it too). Constant subexpressions are evaluated with
:class:`fractions.Fraction` for this check only (:func:`_check_divisions`); evaluation stays
float64.

>>> Expression.parse("-1/(2*c2)")({"c2": 0.25})
-2.0
>>> Expression.parse("c3^2/c2")({"c2": 0.5, "c3": 1.5}), Expression.parse("c3**2/c2").tree
(4.5, ('product', (('*', ('^', ('name', 'c3'), 2)), ('/', ('name', 'c2')))))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from res_torch.errors import ExpressionError

__all__ = [
    "MAX_EXPANDED_SIZE",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING",
    "Expression",
    "ExpressionError",
]

MAX_EXPRESSION_LENGTH = 1000
"""Longest expression string accepted (characters)."""
MAX_NESTING = 32
"""Deepest nesting of parentheses, unary signs and ``sqrt`` accepted."""
MAX_EXPONENT = 64
"""Largest ``|n|`` of a power, counting the exponents it is nested in (``(x^8)^8`` has 64)."""
MAX_EXPANDED_SIZE = 256
"""Largest number of terms the fully expanded expression may have, bounded from the tree (a sum
adds, a product or quotient multiplies, ``x^n`` raises to ``|n|``): keeps symbolic readers fast."""

_TOKEN = re.compile(
    r" *(?:(?P<number>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*/^()]))"
)
"""ASCII digits and spaces only, as the schema's pattern: ``\\d`` would also read the digits of
other scripts (Arabic-Indic ``U+0661`` as ``1``) and ``\\s`` tabs, newlines and Unicode spaces,
which the schema and other readers refuse."""

Node = tuple
"""A parse tree node: ``("num", value, text)``, ``("name", id)``, ``("neg", x)``, ``("sqrt", x)``,
``("^", base, n)`` with an int ``n``, ``("sum", ((op, x), ...))`` with ``op`` in ``+ -`` and
``("product", ((op, x), ...))`` with ``op`` in ``* /`` (the first ``op`` is ``+`` / ``*``); sums and
products are flat, so the tree is only as deep as the nesting."""


def _short(source: str, limit: int = 40) -> str:
    return repr(source if len(source) <= limit else source[:limit] + "...")


def tokenize(source: str) -> list[tuple[str, str]]:
    """``[(kind, text), ...]`` with kind ``number``, ``name`` or ``op`` (``**`` becomes ``^``)."""
    tokens, position, end = [], 0, len(source.rstrip(" "))
    while position < end:
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise ExpressionError(
                f"unsupported construct: {source[position]!r} at {position} in {_short(source)}"
            )
        kind = match.lastgroup
        assert kind is not None
        text = match.group(kind)
        tokens.append((kind, "^" if text == "**" else text))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens; each rule returns ``(node, exponent product, expanded
    size bound)``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.position = 0
        self.depth = 0
        self.names: set[str] = set()

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in {_short(self.source)}")

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise self.fail("unexpected end")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, text: str) -> None:
        if self.take()[1] != text:
            raise self.fail(f"expected {text!r}")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(f"nesting deeper than {MAX_NESTING}")

    def parse(self) -> Node:
        node = self.expr()[0]
        if self.position != len(self.tokens):
            raise self.fail(f"unsupported construct at {self.tokens[self.position][1]!r}")
        return node

    def sized(self, node: Node, power: int, size: int) -> tuple[Node, int, int]:
        if size > MAX_EXPANDED_SIZE:
            raise self.fail(f"expanded form beyond {MAX_EXPANDED_SIZE} terms")
        return node, power, size

    def expr(self) -> tuple[Node, int, int]:
        node, power, size = self.term()
        parts = [("+", node)]
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node, right_power, right_size = self.term()
            parts.append((op, node))
            power, size = max(power, right_power), size + right_size
        return self.sized(parts[0][1] if len(parts) == 1 else ("sum", tuple(parts)), power, size)

    def term(self) -> tuple[Node, int, int]:
        node, power, size = self.factor()
        parts = [("*", node)]
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            node, right_power, right_size = self.factor()
            parts.append((op, node))
            power, size = max(power, right_power), size * right_size
        return self.sized(
            parts[0][1] if len(parts) == 1 else ("product", tuple(parts)), power, size
        )

    def factor(self) -> tuple[Node, int, int]:
        if self.peek() in ("+", "-"):
            self.nested()
            sign = self.take()[1]
            node, power, size = self.factor()
            self.depth -= 1
            return (node if sign == "+" else ("neg", node)), power, size
        return self.power()

    def power(self) -> tuple[Node, int, int]:
        base, power, size = self.atom()
        if self.peek() != "^":
            return base, power, size
        self.take()
        n = self.exponent()
        power = abs(n) * max(power, 1)
        if power > MAX_EXPONENT:
            raise self.fail(f"exponent beyond {MAX_EXPONENT} (nested powers multiply)")
        if self.peek() == "^":
            raise self.fail("chained powers (9^9^9) are not allowed: an exponent is an integer")
        return self.sized(("^", base, n), power, size ** abs(n))

    def exponent(self) -> int:
        parenthesised = self.peek() == "("
        if parenthesised:
            self.take()
        sign = self.take()[1] if self.peek() in ("+", "-") else "+"
        kind, text = self.take()
        if kind != "number" or not text.isdigit():
            raise self.fail("an exponent must be an integer literal")
        if parenthesised:
            self.expect(")")
        n = int(text) if len(text) <= 4 else MAX_EXPONENT + 1
        return -n if sign == "-" else n

    def atom(self) -> tuple[Node, int, int]:
        kind, text = self.take()
        if kind == "number":
            value = float(text)
            if not math.isfinite(value):
                raise self.fail(f"literal {text[:20]} is not a finite float64")
            if value == 0 and text.lower().split("e")[0].strip("0.+-"):
                raise self.fail(f"literal {text[:20]} underflows float64 (rounds to 0)")
            return ("num", value, text), 0, 1
        if kind == "name" and text == "sqrt":
            self.expect("(")
            self.nested()
            node, power, size = self.expr()
            self.depth -= 1
            self.expect(")")
            return ("sqrt", node), power, size
        if kind == "name":
            self.names.add(text)
            return ("name", text), 0, 1
        if text == "(":
            self.nested()
            node, power, size = self.expr()
            self.depth -= 1
            self.expect(")")
            return node, power, size
        raise self.fail(f"unsupported construct at {text!r}")


_EXACT_BITS = 4096
"""Largest numerator or denominator (in bits) of an exact constant that :func:`_exact` tracks; a
larger one (far beyond float64's range and precision) counts as unknown, so the exact check
costs at most a few milliseconds per expression."""


def _bits(value: Fraction) -> int:
    return max(abs(value.numerator).bit_length(), value.denominator.bit_length())


def _bounded(value: Fraction) -> Fraction | None:
    return value if _bits(value) <= _EXACT_BITS else None


def _exact_sqrt(value: Fraction) -> Fraction | None:
    """The square root of ``value`` if it is the square of a rational, else ``None``."""
    if value < 0:
        return None
    numerator, denominator = math.isqrt(value.numerator), math.isqrt(value.denominator)
    if numerator**2 != value.numerator or denominator**2 != value.denominator:
        return None
    return Fraction(numerator, denominator)


def _exact(node: Node) -> Fraction | None:
    """The exact value of ``node`` if it is constant (no parameter, ``sqrt`` only of rational
    squares, sizes within :data:`_EXACT_BITS`), else ``None``; a decimal literal is the rational
    it writes. ``ZeroDivisionError`` where it divides by 0 exactly."""
    op = node[0]
    if op == "num":
        if node[1] == 0:
            return Fraction(0)
        return _bounded(Fraction(int(node[2]) if node[2].isdigit() else node[2]))
    if op == "name":
        return None
    if op in ("neg", "sqrt"):
        value = _exact(node[1])
        if value is None:
            return None
        return -value if op == "neg" else _exact_sqrt(value)
    if op == "^":
        base, n = _exact(node[1]), node[2]
        if base is None or _bits(base) * abs(n) > _EXACT_BITS:
            return None
        return base**n
    total = Fraction(0) if op == "sum" else Fraction(1)
    for part_op, part in node[1]:
        value = _exact(part)
        if value is None or (part_op in "*/" and _bits(total) + _bits(value) > _EXACT_BITS):
            return None
        if part_op == "+":
            total = _bounded(total + value)
        elif part_op == "-":
            total = _bounded(total - value)
        elif part_op == "*":
            total = total * value
        else:
            total = total / value
        if total is None:
            return None
    return total


def _check_divisions(node: Node) -> None:
    """``ZeroDivisionError`` if a subtree of ``node`` divides by, or raises to a negative power,
    a constant subexpression that is exactly 0 (:func:`_exact`)."""
    op = node[0]
    if op in ("neg", "sqrt"):
        _check_divisions(node[1])
    elif op == "^":
        _check_divisions(node[1])
        if node[2] < 0 and _exact(node[1]) == 0:
            raise ZeroDivisionError
    elif op in ("sum", "product"):
        for part_op, part in node[1]:
            _check_divisions(part)
            if part_op == "/" and _exact(part) == 0:
                raise ZeroDivisionError


def _sqrt(x: Any) -> Any:
    if isinstance(x, int | float):
        return math.sqrt(x)
    return x.sqrt() if hasattr(x, "sqrt") else x**0.5


def _evaluate(node: Node, values: Mapping[str, Any]) -> Any:
    op = node[0]
    if op == "num":
        return node[1]
    if op == "name":
        return values[node[1]]
    if op == "neg":
        return -_evaluate(node[1], values)
    if op == "sqrt":
        return _sqrt(_evaluate(node[1], values))
    if op == "^":
        return _evaluate(node[1], values) ** node[2]
    (_, first), *rest = node[1]
    total = _evaluate(first, values)
    for part_op, part in rest:
        value = _evaluate(part, values)
        if part_op == "+":
            total = total + value
        elif part_op == "-":
            total = total - value
        elif part_op == "*":
            total = total * value
        else:
            total = total / value
    return total


@dataclass(frozen=True)
class Expression:
    """A parsed expression over named parameters, e.g. ``Expression.parse("-1/(2*c2)")``."""

    source: str
    names: frozenset[str]
    tree: Node = field(repr=False, compare=False)

    @classmethod
    def parse(cls, source: Any, allowed_names: frozenset[str] | None = None) -> Expression:
        """Parse ``source``; raise :class:`ExpressionError` if it leaves the grammar or a bound,
        or divides by a constant subexpression that is exactly 0 (see the module docstring)."""
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError(f"expected a non-empty expression string, got {source!r:.40}")
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise ExpressionError(
                f"expression longer than {MAX_EXPRESSION_LENGTH} characters: {_short(source)}"
            )
        parser = _Parser(source)
        tree = parser.parse()
        try:
            _check_divisions(tree)
        except ZeroDivisionError:
            raise ExpressionError(
                f"{_short(source)} is undefined: it divides by a constant that is exactly 0"
            ) from None
        names = frozenset(parser.names)
        if allowed_names is not None and not names <= allowed_names:
            unknown = ", ".join(sorted(names - allowed_names))
            raise ExpressionError(f"{_short(source)} uses unknown parameter(s): {unknown:.60}")
        return cls(source, names, tree)

    def __call__(self, values: Mapping[str, Any] | None = None) -> Any:
        """Evaluate with ``values`` for the parameters (floats, arrays or tensors).

        With float values the result is a finite float or :class:`ExpressionError` (division by
        zero, overflow, square root of a negative number); arrays and tensors follow their own
        IEEE rules.
        """
        values = values or {}
        missing = self.names - values.keys()
        if missing:
            raise ExpressionError(
                f"{_short(self.source)} needs a value for: {', '.join(sorted(missing))}"
            )
        try:
            result = _evaluate(self.tree, values)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise ExpressionError(f"{_short(self.source)} is undefined here ({exc})") from None
        if isinstance(result, float) and not math.isfinite(result):
            raise ExpressionError(f"{_short(self.source)} is not finite here ({result})")
        return result

    @property
    def is_constant(self) -> bool:
        return not self.names
