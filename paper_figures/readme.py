"""README.md's generated result blocks, kept equal to the committed result tables.

Each experiment of :data:`paper_figures.pipeline.EXPERIMENTS` with a ``readme`` renderer owns
one block of README.md, written between two marker lines::

    <!-- generated: NAME (python -m paper_figures.readme, from paper_figures/output/NAME.csv) -->
    ...
    <!-- end generated: NAME -->

:func:`render_blocks` renders every block from the CSV tables of an output folder,
:func:`replace_blocks` puts them into a README text (a registered block without its markers is
an error). The full figure run (``python -m paper_figures``) rewrites the blocks;
``python -m paper_figures.readme`` does it from the committed tables without running anything,
and ``--check`` only reports the blocks that differ (exit status 1), as the test does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from experiments.experiment_runner import StoredFileError, write_text_atomic
from experiments.generated_blocks import block, replace_block
from paper_figures.pipeline import EXPERIMENTS, read_table

__all__ = ["README", "ReadmeError", "begin_marker", "end_marker", "render_blocks", "replace_blocks"]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OUTPUT = ROOT / "paper_figures" / "output"


class ReadmeError(ValueError):
    """A registered block has no markers in the README, or its table is missing."""


def begin_marker(name: str) -> str:
    return (
        f"<!-- generated: {name} (python -m paper_figures.readme, "
        f"from paper_figures/output/{name}.csv) -->"
    )


def end_marker(name: str) -> str:
    return f"<!-- end generated: {name} -->"


def render_blocks(output: Path = OUTPUT) -> dict[str, str]:
    """``{experiment: Markdown}`` for every experiment with a ``readme`` renderer, from
    ``output/<experiment>.csv`` (a missing table is a :class:`ReadmeError`, a damaged one a
    :class:`~experiments.experiment_runner.ResultFileError`)."""
    blocks = {}
    for name, experiment in EXPERIMENTS.items():
        if experiment.readme is None:
            continue
        table = Path(output) / f"{name}.csv"
        if not table.exists():
            raise ReadmeError(f"README block {name!r} needs {table}, which does not exist")
        blocks[name] = experiment.readme(read_table(name, table)).strip()
    return blocks


def current_blocks(text: str, names: Sequence[str]) -> dict[str, str]:
    """The text between the markers of each block in ``names`` (a missing one is an error)."""
    found = {}
    for name in names:
        body = block(text, begin_marker(name), end_marker(name))
        if body is None:
            raise ReadmeError(
                f"README has no generated block {name!r}: add the lines {begin_marker(name)!r} "
                f"and {end_marker(name)!r} where its table belongs"
            )
        found[name] = body
    return found


def replace_blocks(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with the content between each block's markers replaced by ``blocks[name]``."""
    current_blocks(text, list(blocks))
    for name, body in blocks.items():
        text = replace_block(text, begin_marker(name), end_marker(name), body)
    return text


def update_readme(readme: Path = README, output: Path = OUTPUT) -> list[str]:
    """Rewrite the generated blocks of ``readme`` from the tables in ``output``; returns the
    names of the blocks that changed."""
    text = readme.read_text()
    blocks = render_blocks(output)
    before = current_blocks(text, list(blocks))
    write_text_atomic(readme, replace_blocks(text, blocks))
    return [name for name in blocks if before[name] != blocks[name]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures.readme", description=__doc__)
    parser.add_argument("--check", action="store_true", help="report differing blocks only")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder of the result CSVs")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    try:
        if args.check:
            blocks = render_blocks(args.output)
            current = current_blocks(args.readme.read_text(), list(blocks))
        else:
            changed = update_readme(args.readme, args.output)
    except (ReadmeError, StoredFileError, OSError) as err:  # a missing or damaged input file
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.check:
        stale = [name for name, body in current.items() if body != blocks[name]]
        for name in stale:
            print(f"README block {name!r} differs from {args.output / name}.csv", file=sys.stderr)
        return 1 if stale else 0
    print(f"README blocks rewritten: {', '.join(changed) or 'none changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
