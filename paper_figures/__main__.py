"""``python -m paper_figures [--quick] [--device cuda|cpu] [--out DIR] [--force | --redraw]
[--only NAME ...]``.

Runs every experiment of the paper whose table is not cached yet (the cache in ``DIR/cache`` is
keyed by the experiment's configuration and the device type it computes on,
:func:`experiments.experiment_runner.cached_rows`), then regenerates every figure (PNG), its
table (CSV) and ``RESULTS.md`` in ``DIR`` (default ``paper_figures/output``,
``paper_figures/output_quick`` with ``--quick``). The full run into the default folder also
rewrites README.md's generated blocks (:mod:`paper_figures.readme`). ``--redraw`` runs nothing:
it writes RESULTS.md from every table already in ``DIR`` and redraws the figures from them
(with ``--only``, only those experiments' figures; it cannot be combined with ``--force``). An
experiment that fails is reported in RESULTS.md and makes the command exit with status 1 after
the others ran.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.experiment_runner import resolve_device, writable_folder
from paper_figures.pipeline import EXPERIMENTS, run_pipeline
from paper_figures.readme import update_readme

DEFAULT_OUT = Path(__file__).resolve().parent / "output"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small configurations (at most about 3 minutes on 2 CPU cores)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cpu or cuda (default: cuda if present); tables are cached per device type",
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="recompute cached tables")
    mode.add_argument(
        "--redraw",
        action="store_true",
        help="run nothing: write RESULTS.md from every table (CSV) in DIR and redraw the figures "
        "from them; with --only, redraw only those experiments' figures (RESULTS.md still lists "
        "every table's figures)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(EXPERIMENTS),
        default=None,
        help="run only these experiments (the others' figures are redrawn from their cached "
        "tables, if any); with --redraw, redraw only these experiments' figures, from their "
        "tables in DIR",
    )
    args = parser.parse_args(argv)
    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        parser.error(str(err))
    out = args.out or DEFAULT_OUT.with_name("output_quick" if args.quick else "output")
    if args.redraw and not any(out.glob("*.csv")):
        parser.error(f"--redraw: no result tables in {out} (run without --redraw first)")
    if args.redraw and args.only:
        missing = [n for n in args.only if not (out / f"{n}.csv").exists()]
        if missing:
            parser.error(
                f"--redraw --only: no table {', '.join(f'{n}.csv' for n in missing)} in {out} "
                "(run without --redraw first)"
            )
    writable_folder(parser, out)
    command = "python -m paper_figures" + (" --quick" if args.quick else "")
    failures = run_pipeline(
        out,
        quick=args.quick,
        device=args.device,
        force=args.force,
        command=command,
        only=args.only,
        redraw=args.redraw,
    )
    for name, message in failures.items():
        print(f"experiment {name} FAILED: {message}", file=sys.stderr)
    if not args.quick and out.resolve() == DEFAULT_OUT and not failures:
        changed = update_readme(output=out)
        print(f"README.md generated blocks rewritten from {out}: {', '.join(changed) or 'none'}")
    print(f"results in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
