"""Exported tableau files: not stale, loadable by res_torch, classical limits cross-checked."""

from __future__ import annotations

import json

import pytest
import sympy as sp

from res_theory import library
from res_theory.export import DEFAULT_OUT, REPORT_ORDER, dumps, tableau_document
from res_torch.tableau import load_tableau


@pytest.mark.parametrize("name", library.names())
def test_committed_file_is_not_stale(name: str) -> None:
    committed = DEFAULT_OUT / f"{name}.json"
    assert committed.is_file(), f"missing {committed}; run `res-theory export --all`"
    assert committed.read_text() == dumps(tableau_document(library.get(name))), (
        f"{committed} is stale; run `res-theory export --all`"
    )


@pytest.mark.parametrize("name", library.names())
def test_file_loads_with_res_torch(name: str) -> None:
    tab = load_tableau(name)
    sym = library.get(name)
    assert tab.stages == sym.stages
    assert tab.stiff_order == sym.stiff_order(REPORT_ORDER)
    assert tab.classical_order == sym.classical_order(REPORT_ORDER)
    assert tab.is_multistep == (sym.kind == "multistep")


def test_export_all_writes_every_file(tmp_path) -> None:
    from res_theory.export import export_all

    paths = export_all(tmp_path, names=["ddim", "res_2m"], progress=False)
    assert [p.name for p in paths] == ["ddim.json", "res_2m.json"]
    data = json.loads(paths[1].read_text())
    assert data["startup"] == ["ddim"]
    assert data["parameters"][0]["role"] == "history_node"
    assert data["order"]["stiff_order"] == 2
    assert "scalar_order" in data["order"] and "conditions" in data["order"]


def _classical_rk_order(c, A, b, max_order: int = 5) -> int:
    """Classical RK order from the Butcher conditions (rooted trees up to order 4, then 5)."""
    nodepy = pytest.importorskip("nodepy.runge_kutta_method", reason="nodepy (needs `six`)")
    import numpy as np

    rk = nodepy.ExplicitRungeKuttaMethod(
        np.array([[float(x) for x in row] for row in A]), np.array([float(x) for x in b])
    )
    return int(rk.order(tol=1e-12))


@pytest.mark.parametrize(
    "name", [n for n in library.names() if library.get(n).kind == "singlestep"]
)
def test_classical_limit_order_agrees_with_nodepy(name: str) -> None:
    sym = library.get(name).at(**{p.name: p.default for p in library.get(name).parameters})
    c, A, b = sym.classical()
    assert all(sp.simplify(sum(row) - ci) == 0 for row, ci in zip(A, c, strict=True))
    assert _classical_rk_order(c, A, b) == library.get(name).classical_order(REPORT_ORDER)
