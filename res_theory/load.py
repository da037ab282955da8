"""Read a ``res-tableau`` JSON file back into a symbolic :class:`~res_theory.tableau.ExpTableau`.

The inverse of :mod:`res_theory.export` for the parts that define the method (parameters, ``c``,
``A``, ``b``, ``b_embedded``, ``kind``, ``startup``, provenance); the ``order`` report is
recomputed, not trusted. The file is validated as fully as ``res_torch.tableau`` does (same rules
and bounds, ``docs/tableau_format.md``): types (no ``true`` for ``1``, no ``1.5`` for an int),
sizes, finite real values (an exact division by 0 is refused, as ``1/(0.1+0.2-0.3)``), the
``*_float`` values, the consistency sums, checked at 40 digits with mpmath, the ``classical``
block, checked exactly to be the ``Z -> 0`` limit of the coefficients, and the ``test_vectors``,
recomputed with mpmath to their stated digits. Expressions are parsed by a small
recursive-descent parser of the format's grammar (no Python ``eval``), so a file never executes
code; every failure is a :class:`TableauError`.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mpmath
import sympy as sp

from res_theory.phi import phi, phi_mp
from res_theory.tableau import ExpTableau, Parameter, TableauError, Z

__all__ = ["load", "from_document", "parse_expression", "parse_tree"]

# The bounds of docs/tableau_format.md; res_torch.tableau and res_torch.expression hold the same
# values (tests/theory/test_tableau_fuzz.py checks that they agree with each other and the schema).
MAX_FILE_BYTES = 1_000_000
MAX_JSON_DEPTH = 16
MAX_STAGES = 32
MAX_TERMS = 64
MAX_PARAMETERS = 16
K_MAX = 20
MAX_EXPRESSION_LENGTH = 1000
MAX_NESTING = 32
MAX_EXPONENT = 64
MAX_EXPANDED_SIZE = 256
CONSISTENCY_DIGITS = 40
CONSISTENCY_TOLERANCE = mpmath.mpf("1e-30")
"""Relative tolerance of the consistency sums, evaluated at :data:`CONSISTENCY_DIGITS` digits."""
TEST_VECTOR_FLOOR = 1e-300
"""Absolute floor of the ``test_vectors`` check (``res_torch.tableau.TEST_VECTOR_FLOOR``)."""
MAX_TEST_VECTOR_ARGUMENT = 700.0
"""Largest ``|scale * Z|`` of a test vector's phi arguments (finite in float64 for res_torch)."""
_IRRATIONAL_TOLERANCE = sp.Float("1e-30")
"""Tolerance of the ``classical`` check where a difference is irrational (``sqrt``, evaluated to
50 digits), relative to the size of the numbers compared and absolute below size 1 (the size of
``(1 + sqrt(2))^2 - 3 - 2*sqrt(2)``, 0, does not bound its rounding)."""
_GUARD_DIGITS = 20
"""Digits beyond a test vector's own at which :meth:`_Reader.check_test_vectors` computes."""
_ZERO_SCALE = mpmath.mpf("1e-35")
_SAME_SCALE = mpmath.mpf("1e-30")

TABLEAU_NAME = re.compile(r"^[a-z0-9_]+\Z")
"""A tableau's name: its file's stem."""
_FLOAT_MAX = sys.float_info.max
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = re.compile(r"^(sqrt|Z|h|z[0-9]+)\Z")
"""Names a parameter cannot take: the grammar's ``sqrt`` and the checker's variables ``Z``, ``h``,
``z1, z2, ...`` (``res_theory.check``)."""
_DECIMAL = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
_REQUIRED_KEYS = (
    "format", "format_version", "name", "kind", "stages", "parameters", "c", "c_float", "A", "b",
)  # fmt: skip
_OPTIONAL_KEYS = (
    "title", "b_embedded", "classical", "startup", "order", "provenance", "test_vectors",
)  # fmt: skip
_PARAMETER_KEYS = ("lower", "upper", "lower_inclusive", "upper_inclusive", "description", "role")
_TERM_KEYS = ("coefficient", "coefficient_float", "k", "scale", "scale_float")


def _short(source: str, limit: int = 40) -> str:
    return repr(source if len(source) <= limit else source[:limit] + "...")


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


def tokenize(source: str) -> list[tuple[str, str]]:
    """``[(kind, text), ...]`` with kind ``number``, ``name`` or ``op`` (``**`` becomes ``^``)."""
    tokens, position, end = [], 0, len(source.rstrip(" "))
    while position < end:
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise TableauError(
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

    def fail(self, message: str) -> TableauError:
        return TableauError(f"{message} in {_short(self.source)}")

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


def parse_tree(source: Any) -> tuple[tuple, frozenset[str]]:
    """``(tree, names)`` of an expression string (the tree of ``res_torch.expression``)."""
    if not isinstance(source, str) or not source.strip():
        raise TableauError(f"expected a non-empty expression string, got {source!r:.40}")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise TableauError(
            f"expression longer than {MAX_EXPRESSION_LENGTH} characters: {_short(source)}"
        )
    parser = _Parser(source)
    tree = parser.parse()
    return tree, frozenset(parser.names)


def _fold(
    node: tuple,
    number: Callable[[tuple], Any],
    name: Callable[[str], Any],
    sqrt: Callable[[Any], Any],
) -> Any:
    """Evaluate a tree with the given leaves and ``sqrt`` (SymPy, float or mpmath)."""
    op = node[0]
    if op == "num":
        return number(node)
    if op == "name":
        return name(node[1])
    if op == "neg":
        return -_fold(node[1], number, name, sqrt)
    if op == "sqrt":
        return sqrt(_fold(node[1], number, name, sqrt))
    if op == "^":
        return _fold(node[1], number, name, sqrt) ** node[2]
    (_, first), *rest = node[1]
    total = _fold(first, number, name, sqrt)
    for part_op, part in rest:
        value = _fold(part, number, name, sqrt)
        if part_op == "+":
            total = total + value
        elif part_op == "-":
            total = total - value
        elif part_op == "*":
            total = total * value
        else:
            total = total / value
    return total


def _exact_literal(node: tuple) -> sp.Rational:
    """The exact value of a number literal. A literal that is 0 in float64 is exactly 0 (the
    parser refuses nonzero ones that underflow), read without its exponent: SymPy would build
    ``10**N`` for ``"0eN"``, which for a ten-digit ``N`` never finishes."""
    _, value, text = node
    if value == 0:
        return sp.Integer(0)
    return sp.Integer(text) if text.isdigit() else sp.Rational(text)


def _sympy(tree: tuple) -> sp.Expr:
    return _fold(tree, _exact_literal, sp.Symbol, sp.sqrt)


def _float(tree: tuple, values: Mapping[str, float]) -> float:
    """float64 value (every step finite, as ``res_torch`` computes it) or ``TableauError``."""
    try:
        value = _fold(tree, lambda n: n[1], values.__getitem__, math.sqrt)
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        raise TableauError(f"undefined at the defaults ({exc})") from None
    if not math.isfinite(value):
        raise TableauError(f"not finite at the defaults ({value})")
    return float(value)


def _mp(tree: tuple, values: Mapping[str, mpmath.mpf]) -> mpmath.mpf:
    """mpmath value at the working precision; ``ZeroDivisionError``/``ValueError`` if undefined."""
    value = _fold(tree, lambda n: mpmath.mpf(_exact_literal(n)), values.__getitem__, mpmath.sqrt)
    if not isinstance(value, mpmath.mpf) or not mpmath.isfinite(value):
        raise ValueError("not a finite real number")
    return value


def parse_expression(source: Any, names: frozenset[str]) -> sp.Expr:
    """Exact SymPy value of a grammar expression; ``TableauError`` if it leaves the grammar."""
    tree, used = parse_tree(source)
    if not used <= names:
        unknown = ", ".join(sorted(used - names))
        raise TableauError(f"{_short(source)} uses unknown parameter(s): {unknown:.60}")
    return _sympy(tree)


class _Expr:
    """A checked expression of a document: its tree, SymPy value and float value at defaults."""

    def __init__(self, tree: tuple, value: float) -> None:
        self.tree, self.value = tree, value
        self.sympy = _sympy(tree)


_Terms = list[tuple[_Expr, int, _Expr]]
"""The ``(coefficient, k, scale)`` terms of one coefficient of a document."""


@dataclass(frozen=True)
class _Classical:
    """The expressions of a file's ``classical`` block (``a`` is the full ``s x s`` matrix)."""

    c: list[_Expr]
    a: list[list[_Expr]]
    b: list[_Expr]


@dataclass(frozen=True)
class _TestVectors:
    """A file's ``test_vectors``: the ``Z`` (decimal strings), the parameter expressions they
    were computed at, their significant ``digits`` and ``(where, terms, decimal strings)`` for
    every entry of ``A``, ``b`` and ``b_embedded``."""

    z: list[str]
    parameters: dict[str, _Expr]
    digits: int
    entries: list[tuple[str, _Terms, list[str]]]


class _Reader:
    """The checks of :func:`from_document` (the rules of ``res_torch.tableau.parse_tableau``)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin if len(origin) <= 60 else "..." + origin[-60:]
        self.names: frozenset[str] = frozenset()
        self.defaults: dict[str, float] = {}

    def fail(self, message: str) -> TableauError:
        """The error, its message clipped below 200 characters (long names and bounds)."""
        text = f"{self.origin}: {message}"
        return TableauError(text if len(text) < 200 else text[:196] + "...")

    def object(self, value: Any, where: str, required: tuple, optional: tuple) -> dict:
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

    def expression(self, source: Any, where: str, names: frozenset[str] | None = None) -> _Expr:
        names = self.names if names is None else names
        try:
            tree, used = parse_tree(source)
            if not used <= names:
                unknown = ", ".join(sorted(used - names))
                raise TableauError(f"{_short(source)} uses unknown parameter(s): {unknown:.60}")
            value = _float(tree, self.defaults)
        except TableauError as exc:
            raise self.fail(f"{where}: {exc}") from None
        expression = _Expr(tree, value)
        if expression.sympy.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise self.fail(f"{where}: {_short(source)} is undefined: it divides by exactly 0")
        return expression

    def matching_float(self, expression: _Expr, value: Any, where: str) -> None:
        value = self.number(value, where)
        if not math.isclose(expression.value, value, rel_tol=1e-12, abs_tol=1e-14):
            raise self.fail(f"{where}: float {value!r} disagrees with the expression")

    def document(self, data: Any) -> ExpTableau:
        _check_depth(data, self.origin)
        if not isinstance(data, dict) or data.get("format") != "res-tableau":
            raise self.fail("not a res-tableau document ('format' must be 'res-tableau')")
        data = self.object(data, "the document", _REQUIRED_KEYS, _OPTIONAL_KEYS)
        if type(data["format_version"]) is not int or data["format_version"] != 1:
            raise self.fail(f"unsupported format_version {data['format_version']!r:.20}")
        name = data["name"]
        if not isinstance(name, str) or not TABLEAU_NAME.match(name):
            raise self.fail(f"'name' must match [a-z0-9_]+, got {name!r:.40}")
        kind = data["kind"]
        if kind not in ("singlestep", "multistep"):
            raise self.fail(f"'kind' must be 'singlestep' or 'multistep', got {kind!r:.40}")
        s = self.integer(data["stages"], "'stages'", 1, MAX_STAGES)

        raw = self.list(data["parameters"], "'parameters'", limit=MAX_PARAMETERS)
        specs = [self.parameter(p, i) for i, p in enumerate(raw)]
        self.names = frozenset(spec["name"] for spec in specs)
        if len(self.names) != len(specs):
            raise self.fail("duplicate parameter names")
        self.defaults = {spec["name"]: spec["default"].value for spec in specs}
        try:
            parameters = tuple(
                Parameter(**{k: v.sympy if isinstance(v, _Expr) else v for k, v in spec.items()})
                for spec in specs
            )
        except TableauError as exc:
            raise self.fail(f"default outside its interval: {str(exc)[:120]}") from None

        c_float = self.list(data["c_float"], "'c_float'", s)
        c = [self.expression(x, f"c[{i}]") for i, x in enumerate(self.list(data["c"], "'c'", s))]
        for i, (ci, cf) in enumerate(zip(c, c_float, strict=True)):
            self.matching_float(ci, cf, f"c_float[{i}]")
        if c[0].tree[0] != "num" or c[0].tree[1] != 0:  # as res_torch, which has no SymPy
            raise self.fail(f"c[0] must be 0 (the literal), got {data['c'][0]!r:.40}")
        a = [
            [
                self.coefficient(entry, f"A[{i}][{j}]")
                for j, entry in enumerate(self.list(row, f"A[{i}] (strictly lower triangular)", i))
            ]
            for i, row in enumerate(self.list(data["A"], "'A'", s))
        ]
        b = [self.coefficient(e, f"b[{i}]") for i, e in enumerate(self.list(data["b"], "'b'", s))]
        b_embedded = None
        if data.get("b_embedded") is not None:
            raw = self.list(data["b_embedded"], "'b_embedded'", s)
            b_embedded = [self.coefficient(e, f"b_embedded[{i}]") for i, e in enumerate(raw)]
        startup = [
            self.string(x, f"startup[{i}]")
            for i, x in enumerate(self.list(data.get("startup", []), "'startup'", limit=MAX_STAGES))
        ]
        if any(not TABLEAU_NAME.match(x) for x in startup):
            raise self.fail("startup entries must be tableau names ([a-z0-9_]+)")
        history = [spec["name"] for spec in specs if spec["role"] == "history_node"]
        if kind == "multistep":
            if [ci.tree for ci in c[1:]] != [("name", name) for name in history]:
                raise self.fail(f"multistep nodes c[1:] must be the history parameters {history}")
            if any(entry for row in a for entry in row):
                raise self.fail("a multistep method has no internal stages: 'A' must be all zero")
            if len(startup) != s - 1:
                raise self.fail(f"a multistep method with {s} stages needs {s - 1} startup methods")
        else:
            if startup or history:
                raise self.fail("'startup' and history nodes are only for multistep methods")
            if any(ci.value <= 0 for ci in c[1:]):
                raise self.fail("single-step nodes c[1:] must be > 0")
        classical = self.classical(data.get("classical"), s)
        self.order(data.get("order"))
        provenance = self.provenance(data.get("provenance"))
        vectors = self.test_vectors(data.get("test_vectors"), a, b, b_embedded)
        title = self.string(data.get("title", name), "'title'")
        self.consistency(specs, c, a, b, b_embedded, kind)
        if classical is not None:
            self.check_classical(classical, specs, c, a, b)
        if vectors is not None:
            self.check_test_vectors(vectors, specs)

        def entry(terms: list[tuple[_Expr, int, _Expr]]) -> sp.Expr:
            return sp.Add(*(coef.sympy * phi(k, scale.sympy * Z) for coef, k, scale in terms))

        matrix = [[sp.Integer(0)] * s for _ in range(s)]
        for i, row in enumerate(a):
            for j, terms in enumerate(row):
                matrix[i][j] = entry(terms)
        try:
            return ExpTableau(
                name,
                title,
                tuple(ci.sympy for ci in c),
                tuple(map(tuple, matrix)),
                tuple(entry(terms) for terms in b),
                parameters=parameters,
                kind=kind,
                startup=tuple(startup),
                source=provenance.get("source", ""),
                derivation=provenance.get("derivation", ""),
                b_embedded=None if b_embedded is None else tuple(entry(t) for t in b_embedded),
            )
        except TableauError as exc:
            raise self.fail(str(exc)[:150]) from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise self.fail(
                f"not a valid tableau ({type(exc).__name__}: {str(exc)[:80]})"
            ) from None

    def parameter(self, p: Any, i: int) -> dict[str, Any]:
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
        none = frozenset()
        return {
            "name": name,
            "default": self.expression(p["default"], f"{where}.default", none),
            "lower": None if p.get("lower") is None else self.expression(p["lower"], where, none),
            "upper": None if p.get("upper") is None else self.expression(p["upper"], where, none),
            "lower_inclusive": self.boolean(
                p.get("lower_inclusive", False), f"{where}.lower_inclusive"
            ),
            "upper_inclusive": self.boolean(
                p.get("upper_inclusive", False), f"{where}.upper_inclusive"
            ),
            "description": self.string(p.get("description", ""), f"{where}.description"),
            "role": role,
        }

    def coefficient(self, entry: Any, where: str) -> list[tuple[_Expr, int, _Expr]]:
        terms = []
        for n, t in enumerate(self.list(entry, where, limit=MAX_TERMS)):
            at = f"{where}[{n}]"
            t = self.object(t, at, _TERM_KEYS, ())
            k = self.integer(t["k"], f"{at}: 'k'", 0, K_MAX)
            coefficient = self.expression(t["coefficient"], f"{at}.coefficient")
            scale = self.expression(t["scale"], f"{at}.scale")
            self.matching_float(coefficient, t["coefficient_float"], f"{at}.coefficient_float")
            self.matching_float(scale, t["scale_float"], f"{at}.scale_float")
            terms.append((coefficient, k, scale))
        return terms

    def classical(self, classical: Any, s: int) -> _Classical | None:
        """The ``classical`` block's expressions (``A`` as a full ``s x s`` matrix), typed."""
        if classical is None:
            return None
        classical = self.object(classical, "'classical'", ("c", "A", "b"), ())
        return _Classical(
            c=[
                self.expression(x, f"classical.c[{i}]")
                for i, x in enumerate(self.list(classical["c"], "classical.c", s))
            ],
            a=[
                [
                    self.expression(x, f"classical.A[{i}][{j}]")
                    for j, x in enumerate(self.list(row, f"classical.A[{i}]", s))
                ]
                for i, row in enumerate(self.list(classical["A"], "classical.A", s))
            ],
            b=[
                self.expression(x, f"classical.b[{i}]")
                for i, x in enumerate(self.list(classical["b"], "classical.b", s))
            ],
        )

    def check_classical(
        self,
        classical: _Classical,
        specs: list[dict[str, Any]],
        c: list[_Expr],
        a: list[list[_Terms]],
        b: list[_Terms],
    ) -> None:
        """Refuse a ``classical`` block that is not the ``Z -> 0`` limit of the coefficients:
        ``c`` must be the nodes, ``A[i][j]`` the limit ``sum_t coefficient_t / k_t!`` of
        ``a_ij(Z)`` (``phi_k(0) = 1/k!``; 0 for ``j >= i``) and ``b[i]`` that of ``b_i(Z)``,
        exactly (SymPy; an irrational difference, from ``sqrt``, to
        :data:`_IRRATIONAL_TOLERANCE` at 50 digits), at every point
        of ``consistency_points`` where the family is defined (as ``res_torch`` checks it)."""
        s = len(c)

        def limit(terms: _Terms) -> list[tuple[sp.Expr, int]]:
            return [(coefficient.sympy, k) for coefficient, k, _ in terms]

        entries = [(f"c[{i}]", classical.c[i].sympy, [(c[i].sympy, 0)]) for i in range(s)]
        entries += [
            (f"A[{i}][{j}]", classical.a[i][j].sympy, limit(a[i][j]) if j < i else [])
            for i in range(s)
            for j in range(s)
        ]
        entries += [(f"b[{i}]", classical.b[i].sympy, limit(b[i])) for i in range(s)]
        # res_torch compares in float64 and refuses limits whose sums overflow it (1e308 + 1e308)
        at_defaults = [(x, [(c[i], 0)]) for i, x in enumerate(classical.c)]
        at_defaults += [
            (x, a[i][j] if j < i else [])
            for i, row in enumerate(classical.a)
            for j, x in enumerate(row)
        ]
        at_defaults += list(zip(classical.b, b, strict=True))
        for x, terms in at_defaults:
            size = abs(x.value) + sum(abs(t[0].value) / math.factorial(t[1]) for t in terms)
            if not math.isfinite(size):
                raise self.fail("classical: the Z -> 0 limits add up beyond float64's range")
        points = _exact_points(specs)
        for n, point in enumerate(points):
            if point in points[:n]:
                continue  # the same point (a tableau without parameters has only one)
            values = {sp.Symbol(name): value for name, value in point.items()}
            sums = []
            for where, x, terms in entries:
                value = x.xreplace(values)
                parts = [e.xreplace(values) / math.factorial(k) for e, k in terms]
                sums.append((where, value, parts, value - sp.Add(*parts)))
            if any(total.has(sp.zoo, sp.nan, sp.oo, -sp.oo) for *_, total in sums):
                if n == 0:
                    raise self.fail("classical: undefined at the defaults")
                continue  # the family is singular at this sample point
            for where, value, parts, total in sums:
                if total == 0 or (
                    not total.is_Rational
                    and abs(sp.N(total, 50))
                    <= _IRRATIONAL_TOLERANCE
                    * max(sum(abs(sp.N(v, 50)) for v in (value, *parts)), 1)
                ):
                    continue
                at = ", ".join(f"{k}={float(v):.4g}" for k, v in point.items())
                raise self.fail(
                    f"classical.{where} is not the Z -> 0 limit of {where}"
                    + (f" at {at}" if at else "")
                    + f" (off by {float(sp.N(total, 20)):.3g})"
                )

    def order(self, order: Any) -> None:
        if order is None:
            return
        if not isinstance(order, dict):
            raise self.fail(f"'order' must be an object, got {type(order).__name__}")
        for key in ("stiff_order", "scalar_order", "classical_order", "checked_up_to"):
            if order.get(key) is not None:
                self.integer(order[key], f"order.{key}", 0, 1000)
        if "conditions" in order:
            self.list(order["conditions"], "order.conditions")

    def provenance(self, provenance: Any) -> dict[str, str]:
        if provenance is None:
            return {}
        keys = ("source", "generated_by", "derivation")
        provenance = self.object(provenance, "'provenance'", (), keys)
        return {key: self.string(value, f"provenance.{key}") for key, value in provenance.items()}

    def test_vectors(
        self,
        vectors: Any,
        a: list[list[_Terms]],
        b: list[_Terms],
        b_embedded: list[_Terms] | None,
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
        where = "test_vectors.parameters"
        parameters = self.object(vectors["parameters"], where, (), tuple(self.names))
        values = {
            key: self.expression(value, f"{where}.{key}", frozenset())
            for key, value in parameters.items()
        }
        digits = self.integer(vectors["digits"], "test_vectors.digits", 1, 100)
        entries: list[tuple[str, _Terms, list[str]]] = []

        def add(entry: Any, where: str, terms: _Terms) -> None:
            texts = self.list(entry, f"test_vectors.{where}", len(zs))
            for n, v in enumerate(texts):
                self.decimal(v, f"test_vectors.{where}[{n}]")
            entries.append((where, terms, texts))

        for i, row in enumerate(self.list(vectors["A"], "test_vectors.A", s)):
            for j, entry in enumerate(self.list(row, f"test_vectors.A[{i}]", i)):
                add(entry, f"A[{i}][{j}]", a[i][j])
        for i, entry in enumerate(self.list(vectors["b"], "test_vectors.b", s)):
            add(entry, f"b[{i}]", b[i])
        if ("b_embedded" in vectors) != (b_embedded is not None):
            raise self.fail("test_vectors.b_embedded must be given exactly when b_embedded is")
        if b_embedded is not None:
            rows = self.list(vectors["b_embedded"], "test_vectors.b_embedded", s)
            for i, entry in enumerate(rows):
                add(entry, f"b_embedded[{i}]", b_embedded[i])
        return _TestVectors(zs, values, digits, entries)

    def check_test_vectors(self, vectors: _TestVectors, specs: list[dict[str, Any]]) -> None:
        """Refuse test vectors that disagree with the coefficients: every entry is recomputed
        with mpmath at the vectors' parameters (exact; the defaults where none is given) and
        each ``Z``, as ``sum_t c_t phi_k(s_t Z)`` at ``digits`` + 20 digits, and must match the
        stored decimal to its ``digits`` (``10^(1 - digits)`` relative), with the floor
        :data:`TEST_VECTOR_FLOOR`; a phi argument beyond :data:`MAX_TEST_VECTOR_ARGUMENT` is
        refused (as ``res_torch`` does)."""
        with mpmath.workdps(vectors.digits + _GUARD_DIGITS):
            zs = [mpmath.mpf(z) for z in vectors.z]
            try:
                point = {spec["name"]: _mp(spec["default"].tree, {}) for spec in specs}
                point.update({name: _mp(x.tree, {}) for name, x in vectors.parameters.items()})
                entries = [
                    (where, [(_mp(c.tree, point), k, _mp(s.tree, point)) for c, k, s in terms])
                    for where, terms, _ in vectors.entries
                ]
            except (ZeroDivisionError, ValueError):
                raise self.fail(
                    "test_vectors: a coefficient is undefined at its parameters"
                ) from None
            scales = max((abs(s) for _, terms in entries for _, _, s in terms), default=0)
            largest = scales * max((abs(z) for z in zs), default=0)
            if largest > MAX_TEST_VECTOR_ARGUMENT:
                raise self.fail(
                    f"test_vectors: a phi argument |scale * Z| = {float(largest):.3g} is beyond "
                    f"{MAX_TEST_VECTOR_ARGUMENT:g}"
                )
            relative = mpmath.mpf(10) ** (1 - vectors.digits)
            rounding = mpmath.mpf(10) ** (2 - vectors.digits - _GUARD_DIGITS)
            phis: dict[tuple[int, mpmath.mpf], mpmath.mpf] = {}
            for (where, terms), (_, _, texts) in zip(entries, vectors.entries, strict=True):
                for m, (z, text) in enumerate(zip(zs, texts, strict=True)):
                    value = size = mpmath.mpf(0)
                    for coefficient, k, scale in terms:
                        x = scale * z
                        if (k, x) not in phis:
                            phis[k, x] = phi_mp(k, x)
                        term = coefficient * phis[k, x]
                        value, size = value + term, size + abs(term)
                    error = abs(mpmath.mpf(text) - value)
                    if error > relative * abs(value) + rounding * size + TEST_VECTOR_FLOOR:
                        raise self.fail(
                            f"test_vectors.{where}[{m}] = {text[:32]} disagrees with {where} at "
                            f"Z = {vectors.z[m][:24]} (computed {mpmath.nstr(value, 17)})"
                        )

    def decimal(self, value: Any, where: str) -> None:
        if (
            not isinstance(value, str)
            or not _DECIMAL.match(value)
            or not math.isfinite(float(value))
        ):
            raise self.fail(f"{where} must be a finite decimal number string, got {value!r:.40}")

    def consistency(self, specs, c, a, b, b_embedded, kind: str) -> None:
        """``sum_i b_i = phi_1``, ``sum_j a_ij = c_i phi_1(c_i Z)`` (single-step), as identities
        in ``Z`` on the term representation, at the points of ``consistency_points`` (the same
        as ``res_torch.tableau.consistency_points``), to 40 digits; a point where a sum of the
        coefficients' absolute values is beyond float64's range counts as undefined (as in
        ``res_torch``)."""
        with mpmath.workdps(CONSISTENCY_DIGITS):
            for n, point in enumerate(_consistency_points(specs)):
                try:
                    nodes = [_mp(ci.tree, point) for ci in c]
                    one = mpmath.mpf(1)
                    rules = [("sum_i b_i(Z) = phi_1(Z)", b, one, one)]
                    if kind == "singlestep":
                        rules += [
                            (f"sum_j a_{i + 1}j(Z) = c_{i + 1} phi_1(c_{i + 1} Z)", row, ci, ci)
                            for i, (row, ci) in enumerate(zip(a, nodes, strict=True))
                        ]
                    if b_embedded is not None:
                        rules.append(("sum_i b_embedded_i(Z) = phi_1(Z)", b_embedded, one, one))
                    sums = [(rule, _term_sums(row, point, t, ts)) for rule, row, t, ts in rules]
                except (ZeroDivisionError, ValueError):
                    if n == 0:
                        raise self.fail("coefficients undefined at the defaults") from None
                    continue  # the family is singular at this sample point
                if any(size > _FLOAT_MAX for _, groups in sums for _, size in groups.values()):
                    if n == 0:  # unusable in float64: res_torch refuses it (1e308 + 1e308)
                        raise self.fail("the consistency sums add up beyond float64's range")
                    continue  # as res_torch, which counts the point as undefined
                for rule, groups in sums:
                    for (k, scale), (total, size) in groups.items():
                        if abs(total) > CONSISTENCY_TOLERANCE * size and total != 0:
                            at = ", ".join(f"{k}={float(v):.4g}" for k, v in point.items())
                            what = "constant part" if k < 0 else f"phi_{k}({float(scale):.6g} Z)"
                            raise self.fail(
                                f"inconsistent: {rule} fails"
                                + (f" at {at}" if at else "")
                                + f" ({what} off by {float(total):.3g})"
                            )


def _exact_points(specs: list[dict[str, Any]]) -> list[dict[str, sp.Expr]]:
    """The defaults and three points inside the intervals, exactly: fractions 0.29, 0.67, 0.83
    of each interval, rotated per parameter; an unbounded side counts as width 4 (the points of
    ``res_torch.tableau.consistency_points``)."""
    fractions = [sp.Rational(29, 100), sp.Rational(67, 100), sp.Rational(83, 100)]
    points = [{spec["name"]: spec["default"].sympy for spec in specs}]
    for m in range(len(fractions)):
        point = {}
        for index, spec in enumerate(specs):
            lo = None if spec["lower"] is None else spec["lower"].sympy
            hi = None if spec["upper"] is None else spec["upper"].sympy
            lo = lo if lo is not None else (hi if hi is not None else 2) - 4
            hi = hi if hi is not None else lo + 4
            point[spec["name"]] = lo + (hi - lo) * fractions[(m + index) % len(fractions)]
        points.append(point)
    return points


def _consistency_points(specs: list[dict[str, Any]]) -> list[dict[str, mpmath.mpf]]:
    """:func:`_exact_points` at the working precision."""
    digits = mpmath.mp.dps + 10
    return [
        {name: mpmath.mpf(sp.N(value, digits)) for name, value in point.items()}
        for point in _exact_points(specs)
    ]


def _term_sums(
    row: list, point: Mapping[str, mpmath.mpf], target: mpmath.mpf, target_scale: mpmath.mpf
) -> dict[tuple[int, Any], tuple[mpmath.mpf, mpmath.mpf]]:
    """``{(k, s): (sum of coefficients - right-hand side, sum of |coefficients|)}`` over all terms
    of ``row``, minus ``target * phi_1(target_scale Z)``; ``k = -1`` collects the constant
    (scale 0) terms as ``coefficient / k!``."""
    terms = [(_mp(t[0].tree, point), t[1], _mp(t[2].tree, point)) for e in row for t in e]
    terms.append((-target, 1, target_scale))
    groups: dict[tuple[int, Any], tuple[mpmath.mpf, mpmath.mpf]] = {}
    for k in sorted({k for _, k, _ in terms}):
        representative = None
        for s, coefficient in sorted(((s, c) for c, kk, s in terms if kk == k), key=lambda x: x[0]):
            if abs(s) <= _ZERO_SCALE:
                key, coefficient = (-1, 0), coefficient / math.factorial(k)
            elif representative is not None and abs(s - representative) <= _SAME_SCALE * abs(s):
                key = (k, representative)
            else:
                representative = s
                key = (k, s)
            total, size = groups.get(key, (mpmath.mpf(0), mpmath.mpf(0)))
            groups[key] = (total + coefficient, size + abs(coefficient))
    return groups


def _check_depth(data: Any, origin: str) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise TableauError(f"{origin}: JSON nested deeper than {MAX_JSON_DEPTH}")
        if isinstance(value, dict | list):
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def from_document(data: Any, origin: str = "<data>") -> ExpTableau:
    """Build the :class:`ExpTableau` of a decoded ``res-tableau`` document, validated fully."""
    return _Reader(origin).document(data)


def load(path: str | Path) -> ExpTableau:
    """Read a ``res-tableau`` JSON file; raises :class:`TableauError` on any malformed input."""
    path = Path(path)
    origin = str(path) if len(str(path)) <= 60 else "..." + str(path)[-60:]
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
    try:  # JSON's \ud800 escapes can make lone surrogates, which a re-export cannot write
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise TableauError(f"{origin}: a string holds a lone surrogate") from None
    return from_document(data, origin=origin)
