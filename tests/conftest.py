"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def _load_script(path: Path) -> ModuleType:
    """The Python file ``path`` (a script outside the packages: ``benchmarks/``, ``docs/``)
    executed as a module of its own name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_script() -> Callable[[Path], ModuleType]:
    """:func:`_load_script`: import a script file by its path."""
    return _load_script
