"""A reference reader of ``res-tableau`` files in plain Python + NumPy (no ``res`` imports).

It shows everything another language needs to use a tableau (``docs/tableau_format.md``):
a parser of the expression grammar, the phi functions, and the sum of terms::

    a_ij(Z) = sum_terms coefficient * phi_k(scale * Z)

Usage::

    import json
    from reference_reader import coefficients
    doc = json.load(open("res_torch/tableaux/res_2s.json"))
    c, A, b = coefficients(doc, Z=-0.5)             # default parameters
    c, A, b = coefficients(doc, Z=-0.5, parameters={"c2": 0.25})

``tests/test_tableau_interchange.py`` checks it against every file's ``test_vectors``. It checks
nothing else (no bounds, no consistency): a production reader validates as the format requires.
"""

from __future__ import annotations

import math
import re

import numpy as np

TOKEN = re.compile(r"\s*(?:(\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)"
                   r"|([A-Za-z_]\w*)|(\*\*|[-+*/^()]))")  # fmt: skip


def evaluate(source: str, values: dict[str, float]) -> float:
    """Value of a grammar expression (``+ - * /``, ``^`` or ``**`` with an integer exponent,
    ``sqrt``, parentheses, numbers, parameter names) by recursive descent."""
    tokens = []
    position = 0
    while source[position:].strip():
        match = TOKEN.match(source, position)
        if not match:
            raise ValueError(f"bad expression {source!r}")
        number, name, op = match.groups()
        tokens.append(("num", float(number)) if number else ("name", name) if name else
                      ("op", "^" if op == "**" else op))  # fmt: skip
        position = match.end()
    tokens.append(("end", None))
    index = 0

    def peek() -> object:
        return tokens[index][1]

    def take() -> tuple[str, object]:
        nonlocal index
        index += 1
        return tokens[index - 1]

    def expr() -> float:  # term (('+' | '-') term)*
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take()[1] == "+" else value - term()
        return value

    def term() -> float:  # factor (('*' | '/') factor)*
        value = factor()
        while peek() in ("*", "/"):
            value = value * factor() if take()[1] == "*" else value / factor()
        return value

    def factor() -> float:  # ('+' | '-') factor | power
        if peek() in ("+", "-"):
            return factor() if take()[1] == "+" else -factor()
        value = atom()
        if peek() == "^":  # the exponent: an integer, optionally signed and parenthesised
            take()
            parenthesised = peek() == "("
            if parenthesised:
                take()
            sign = -1 if peek() == "-" else 1
            if peek() in ("+", "-"):
                take()
            exponent = sign * int(take()[1])
            if parenthesised:
                take()
            value = value**exponent
        return value

    def atom() -> float:  # number | name | sqrt(expr) | (expr)
        kind, text = take()
        if kind == "num":
            return text
        if kind == "name" and text == "sqrt":
            take()
            value = math.sqrt(expr())
            take()
            return value
        if kind == "name":
            return values[text]
        value = expr()  # text == "("
        take()
        return value

    return expr()


def phi(k: int, z: float) -> float:
    """``phi_k(z) = ∫_0^1 e^{(1-θ) z} θ^{k-1}/(k-1)! dθ`` (``phi_0 = e^z``), by series whose
    terms are all positive: ``sum_n z^n/(n+k)!`` for ``z >= 0`` and
    ``e^z sum_n (-z)^n / (n! (k-1)! (n+k))`` for ``z < 0``; accurate for ``|z| <~ 700``."""
    if k == 0:
        return math.exp(z)
    t = abs(z)
    total, term, n = 0.0, 1.0 / math.factorial(k) if z >= 0 else 1.0 / math.factorial(k - 1), 0
    while True:
        value = term if z >= 0 else term / (n + k)
        total += value
        if value <= 1e-17 * total and n > t:
            break
        n += 1
        term *= t / (n + k) if z >= 0 else t / n
    return total if z >= 0 else math.exp(z) * total


def coefficients(
    doc: dict, Z: float, parameters: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, A, b)`` of the method at ``Z = hL`` (diffusion sampling: ``Z = -h``)."""
    values = {p["name"]: evaluate(p["default"], {}) for p in doc["parameters"]}
    values.update(parameters or {})

    def entry(terms: list[dict]) -> float:
        return sum(
            evaluate(t["coefficient"], values) * phi(t["k"], evaluate(t["scale"], values) * Z)
            for t in terms
        )

    s = doc["stages"]
    c = np.array([evaluate(x, values) for x in doc["c"]])
    A = np.zeros((s, s))
    for i, row in enumerate(doc["A"]):
        for j, terms in enumerate(row):
            A[i, j] = entry(terms)
    b = np.array([entry(terms) for terms in doc["b"]])
    return c, A, b
