"""The one-way data flow of the project: res_theory -> tableau files -> res_torch -> experiments."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_level_modules(package: str) -> set[str]:
    modules = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def test_res_torch_never_imports_sympy_or_res_theory():
    imported = _imported_top_level_modules("res_torch")
    assert not imported & {"sympy", "res_theory", "experiments", "paper_figures", "mpmath"}


def test_res_theory_does_not_depend_on_downstream_packages():
    assert not _imported_top_level_modules("res_theory") & {"experiments", "paper_figures"}


def test_experiments_do_not_import_paper_figures():
    assert "paper_figures" not in _imported_top_level_modules("experiments")


def test_importing_res_torch_loads_no_sympy():
    code = (
        "import sys, res_torch; "
        "print(sorted(m for m in ('sympy', 'res_theory', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
