"""Write tableaux as ``res-tableau`` JSON files (``docs/tableau_format.md``), deterministically.

Every entry becomes a list of terms ``coefficient * phi_k(scale * Z)`` with exact expression
strings (``sympy.sstr``: integers, parameter names, ``+ - * / **``) and their float values at the
parameters' defaults (``repr`` floats). Keys are written in a fixed order and terms are sorted,
so regenerating the files is byte-for-byte reproducible (a test checks the committed files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sympy as sp

from res_theory import __version__
from res_theory.tableau import ExpTableau, phi_terms

__all__ = ["tableau_document", "export", "export_all", "DEFAULT_OUT", "REPORT_ORDER"]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "res_torch" / "tableaux"
REPORT_ORDER = 5
"""The order up to which the exported ``order`` report checks the conditions."""


def _expr(x: sp.Expr) -> str:
    return sp.sstr(sp.factor(sp.nsimplify(x)), order="lex")


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
        "classical": {
            "c": [_expr(x) for x in c_cl],
            "A": [[_expr(x) for x in row] for row in a_cl],
            "b": [_expr(x) for x in b_cl],
        },
    }
    if tableau.kind == "multistep":
        doc["startup"] = list(tableau.startup)
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
    """Write ``out/NAME.json``; returns the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{tableau.name}.json"
    path.write_text(dumps(tableau_document(tableau)))
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
