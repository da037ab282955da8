"""The marker blocks shared by paper_figures.readme and experiments.league.designs."""

from __future__ import annotations

import doctest

import pytest

from experiments import generated_blocks
from experiments.generated_blocks import block, replace_block


def test_module_doctests():
    result = doctest.testmod(generated_blocks)
    assert result.failed == 0 and result.attempted > 0


def test_a_missing_marker_is_an_error_and_only_the_first_block_is_replaced():
    with pytest.raises(ValueError, match="no lines"):
        replace_block("<!-- a -->\nx\n", "<!-- a -->", "<!-- /a -->", "y")
    assert block("no markers", "<!-- a -->", "<!-- /a -->") is None
    twice = "<!-- a -->\n1\n<!-- /a -->\n<!-- a -->\n2\n<!-- /a -->\n"
    assert replace_block(twice, "<!-- a -->", "<!-- /a -->", "new") == twice.replace("1", "new")
