"""docs/methods.md lists every method res_torch runs, as its descriptors describe them."""

from __future__ import annotations

from pathlib import Path

from res_torch.methods import METHODS, method_of, methods_table
from res_torch.tableau import available_tableaux

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"


def test_methods_doc_holds_the_current_table() -> None:
    table = methods_table()
    assert table in DOC.read_text(encoding="utf-8"), f"docs/methods.md is stale, new:\n{table}"


def test_table_has_one_row_per_descriptor() -> None:
    rows = methods_table().splitlines()[2:]
    names = [*METHODS, *available_tableaux()]
    assert [r.split("|")[1].strip(" `") for r in rows] == names
    for row, name in zip(rows, names, strict=True):
        cells = [c.strip() for c in row.split("|")[1:-1]]
        m = method_of(name)
        assert cells[1:7] == [m.family, m.variable, m.prediction, str(m.order), str(m.stages),
                              str(m.history)]  # fmt: skip
