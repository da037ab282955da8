"""The doctests of res_torch's query methods and of docs/extending.md run in the suite."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = ["res_torch.coefficients", "res_torch.methods", "res_torch.nfe", "res_torch.recommend"]
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_extending_md_doctests():
    result = doctest.testfile(str(DOCS / "extending.md"), module_relative=False)
    assert result.failed == 0 and result.attempted >= 8
