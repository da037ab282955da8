"""Write tableaux as ``res-tableau`` JSON files (``docs/tableau_format.md``), deterministically.

Every entry becomes a list of terms ``coefficient * phi_k(scale * Z)`` with exact expression
strings in the format's grammar (``sympy.sstr`` with ``^`` for powers: integers, parameter names,
``+ - * / ^``, ``sqrt``; each string is parsed back and checked equal to the SymPy value) and their
float values at the parameters' defaults (``repr`` floats). ``test_vectors`` holds every
coefficient at the defaults and ``Z`` in :data:`TEST_VECTOR_Z` to :data:`TEST_VECTOR_DIGITS`
significant digits (mpmath at 50 digits), for checking other readers. Keys are written in a fixed
order and terms are sorted, so regenerating the files is byte-for-byte reproducible (a test
checks the committed files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mpmath
import sympy as sp

from res_theory import __version__
from res_theory.load import TABLEAU_NAME, parse_expression
from res_theory.phi import phi_mp
from res_theory.tableau import ExpTableau, TableauError, phi_terms

__all__ = [
    "DEFAULT_OUT",
    "REPORT_ORDER",
    "TEST_VECTOR_DIGITS",
    "TEST_VECTOR_Z",
    "coefficient_vectors",
    "export",
    "export_all",
    "tableau_document",
]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "res_torch" / "tableaux"
REPORT_ORDER = 5
"""The order up to which the exported ``order`` report checks the conditions."""
TEST_VECTOR_Z = ("-0.1", "-1", "-5")
"""The ``Z`` at which ``test_vectors`` evaluates every coefficient (diffusion: ``h = -Z``)."""
TEST_VECTOR_DIGITS = 30
"""Significant digits of the ``test_vectors`` values."""


def _expr(x: sp.Expr) -> str:
    """The grammar string of ``x`` (factored), checked to parse back to the same value."""
    value = sp.factor(sp.nsimplify(x))
    text = sp.sstr(value, order="lex").replace("**", "^")
    names = frozenset(str(symbol) for symbol in value.free_symbols)
    try:
        back = parse_expression(text, names)
    except TableauError as exc:
        raise TableauError(f"cannot write {value} in the res-tableau grammar: {exc}") from None
    if back != value and sp.simplify(back - value) != 0:
        raise TableauError(f"written expression {text!r} does not equal {value}")
    return text


def _float(x: sp.Expr, defaults: dict[sp.Symbol, sp.Expr]) -> float:
    return float(sp.nsimplify(x).subs(defaults))


def _terms(entry: sp.Expr, defaults: dict[sp.Symbol, sp.Expr]) -> list[dict[str, Any]]:
    terms = [
        {
            "coefficient": _expr(coeff),
            "coefficient_float": _float(coeff, defaults),
            "k": k,
            "scale": _expr(scale),
            "scale_float": _float(scale, defaults),
        }
        for coeff, k, scale in phi_terms(entry)
    ]
    return sorted(terms, key=lambda t: (t["k"], t["scale"], t["coefficient"]))


def _mp(x: sp.Expr, defaults: dict[sp.Symbol, sp.Expr]) -> mpmath.mpf:
    return mpmath.mpf(sp.N(sp.nsimplify(x).subs(defaults), 60))


def coefficient_vectors(tableau: ExpTableau) -> dict[str, Any]:
    """Every coefficient ``a_ij(Z)``, ``b_i(Z)`` (and ``b_embedded``) at the default parameters
    and each ``Z`` in :data:`TEST_VECTOR_Z`, as decimal strings of :data:`TEST_VECTOR_DIGITS`
    significant digits, from the exported terms with mpmath at 50 digits."""
    defaults = tableau.default_values()
    with mpmath.workdps(50):
        zs = [mpmath.mpf(z) for z in TEST_VECTOR_Z]

        def values(entry: sp.Expr) -> list[str]:
            terms = [(_mp(c, defaults), k, _mp(s, defaults)) for c, k, s in phi_terms(entry)]
            return [
                mpmath.nstr(sum((c * phi_mp(k, s * z) for c, k, s in terms), mpmath.mpf(0)),
                            TEST_VECTOR_DIGITS)
                for z in zs
            ]  # fmt: skip

        s = tableau.stages
        vectors: dict[str, Any] = {
            "Z": list(TEST_VECTOR_Z),
            "parameters": {p.name: _expr(p.default) for p in tableau.parameters},
            "digits": TEST_VECTOR_DIGITS,
            "A": [[values(tableau.A[i][j]) for j in range(i)] for i in range(s)],
            "b": [values(x) for x in tableau.b],
        }
        if tableau.b_embedded is not None:
            vectors["b_embedded"] = [values(x) for x in tableau.b_embedded]
    return vectors


def tableau_document(tableau: ExpTableau, report_order: int = REPORT_ORDER) -> dict[str, Any]:
    """The ``res-tableau`` document (a JSON-ready dict) of ``tableau`` with its order report."""
    defaults = tableau.default_values()
    s = tableau.stages
    c_cl, a_cl, b_cl = tableau.classical()
    report = tableau.report(report_order)
    doc: dict[str, Any] = {
        "format": "res-tableau",
        "format_version": 1,
        "name": tableau.name,
        "title": tableau.title,
        "kind": tableau.kind,
        "stages": s,
        "parameters": [
            {
                "name": p.name,
                "default": _expr(p.default),
                "lower": None if p.lower is None else _expr(p.lower),
                "upper": None if p.upper is None else _expr(p.upper),
                "lower_inclusive": p.lower_inclusive,
                "upper_inclusive": p.upper_inclusive,
                "description": p.description,
                "role": p.role,
            }
            for p in tableau.parameters
        ],
        "c": [_expr(x) for x in tableau.c],
        "c_float": [_float(x, defaults) for x in tableau.c],
        "A": [[_terms(tableau.A[i][j], defaults) for j in range(i)] for i in range(s)],
        "b": [_terms(x, defaults) for x in tableau.b],
    }
    if tableau.b_embedded is not None:
        doc["b_embedded"] = [_terms(x, defaults) for x in tableau.b_embedded]
    doc["classical"] = {
        "c": [_expr(x) for x in c_cl],
        "A": [[_expr(x) for x in row] for row in a_cl],
        "b": [_expr(x) for x in b_cl],
    }
    if tableau.kind == "multistep":
        doc["startup"] = list(tableau.startup)
    doc["test_vectors"] = coefficient_vectors(tableau)
    doc["order"] = report.to_dict()
    doc["provenance"] = {
        "source": tableau.source,
        "generated_by": f"res_theory {__version__} (res-theory export)",
        "derivation": tableau.derivation,
    }
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def export(tableau: ExpTableau, out: Path = DEFAULT_OUT) -> Path:
    """Write ``out/NAME.json``; returns the path. ``NAME`` must be a file name the readers
    accept (``[a-z0-9_]+``: no path separators); the file is written in UTF-8 and replaced
    whole (a failed export leaves an existing file as it was)."""
    if not isinstance(tableau.name, str) or not TABLEAU_NAME.match(tableau.name):
        raise TableauError(f"a tableau name must match [a-z0-9_]+, got {tableau.name!r:.60}")
    try:
        text = dumps(tableau_document(tableau)).encode("utf-8")
    except UnicodeEncodeError:
        raise TableauError(f"{tableau.name}: a string holds a lone surrogate") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{tableau.name}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_bytes(text)
    os.replace(partial, path)
    return path


def export_all(
    out: Path = DEFAULT_OUT, names: list[str] | None = None, progress: bool = True
) -> list[Path]:
    """Export every library tableau (or ``names``) to ``out``."""
    from tqdm.auto import tqdm

    from res_theory import library

    selected = names or library.names()
    return [
        export(library.get(n), out) for n in tqdm(selected, desc="export", disable=not progress)
    ]
