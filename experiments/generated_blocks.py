"""Generated blocks of Markdown files: the lines between a begin and an end marker line, which
a command rewrites from result files (README.md's result tables, ``docs/designed_methods.md``).

>>> text = "intro\\n<!-- a -->\\nold\\n<!-- /a -->\\nrest\\n"
>>> block(text, "<!-- a -->", "<!-- /a -->")
'old'
>>> replace_block(text, "<!-- a -->", "<!-- /a -->", "new")
'intro\\n<!-- a -->\\nnew\\n<!-- /a -->\\nrest\\n'
"""

from __future__ import annotations

import re

__all__ = ["block", "replace_block"]


def _pattern(begin: str, end: str) -> re.Pattern[str]:
    return re.compile(re.escape(begin) + r"\n(.*?)\n?" + re.escape(end), re.DOTALL)


def block(text: str, begin: str, end: str) -> str | None:
    """The text between the first ``begin`` line and the next ``end`` marker (stripped);
    ``None`` when ``text`` lacks them."""
    match = _pattern(begin, end).search(text)
    return None if match is None else match.group(1).strip()


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with the lines between the markers replaced by ``body`` (``ValueError`` when
    ``text`` lacks them)."""
    if block(text, begin, end) is None:
        raise ValueError(f"no lines {begin!r} ... {end!r}")
    replacement = f"{begin}\n{body}\n{end}"
    return _pattern(begin, end).sub(lambda _: replacement, text, count=1)
