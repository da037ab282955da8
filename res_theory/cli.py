"""Command line interface ``res-theory`` (also ``python -m res_theory``).

res-theory conditions --order 4
res-theory check NAME [--c2 X] [--c3 Y] [--order N] [--json]
res-theory derive --stages 3 --order 3 [--case scalar|operator] [--nodes 1/2 1]
res-theory embedded NAME [--case scalar|operator]
res-theory optimise NAME [--case scalar|operator]
res-theory export --all [--out DIR]   |   res-theory export NAME ... [--out DIR]
res-theory list

Limits (answered at once with an error): orders 1..6 (``MAX_ORDER``), check with at most 8 stages
(``MAX_CHECK_STAGES``), derive with 1..5 stages
(``MAX_STAGES``) and an order that the stage count allows (``derive.max_order_for``); ``check``
gives up after ``--time-limit`` seconds (default :data:`CHECK_TIME_LIMIT`: a tableau file is
untrusted input).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from res_theory import library
from res_theory.check import check
from res_theory.conditions import MAX_ORDER, order_conditions
from res_theory.tableau import TableauError, exact_value

__all__ = ["main", "DEFAULT_CHECK_ORDER"]

DEFAULT_CHECK_ORDER = 5
"""``check`` without ``--order`` checks up to order 5 (the order of the library's best method)."""


MAX_CHECK_STAGES = 8
"""``check`` refuses tableaux with more stages (the library's largest, ``luan_ostermann5``, has 8;
a dense 8-stage file checks in about 10 s, a 32-stage one runs for many minutes)."""


def _conditions(args: argparse.Namespace) -> None:
    print(f"{'no.':>3}  {'order':>5}  condition (operator case: identity in z1, z2, ...)")
    for n, cond in enumerate(order_conditions(args.order), start=1):
        print(f"{n:>3}  {cond.order:>5}  {cond.name} = 0")


CHECK_TIME_LIMIT = 120.0
"""Default ``--time-limit`` of ``check``, seconds: a tableau file is untrusted, and one within
every size limit of the format can still make the symbolic check run for hours (a review's
40 kB 8-stage file ran past 150 s; the library's 8-stage ``luan_ostermann5`` checks in under
a second)."""


class _TimeUp(BaseException):
    """Raised by the ``SIGALRM`` handler of :func:`_time_limit`: not an ``Exception``, so no
    handler inside SymPy swallows it."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_TimeUp` in the block once it has run ``seconds`` (0: no limit; on platforms
    without ``SIGALRM``, or off the main thread, the block runs unlimited). The previous handler
    and a timer the caller had set (less the time spent here) are restored."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if seconds <= 0 or not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _TimeUp

    caller, start = signal.getitimer(signal.ITIMER_REAL), time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
        left = caller[0] - (time.monotonic() - start)
        if caller[0] > 0:  # the caller's timer, less the time spent here (at least 1 ms)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), caller[1])


def _check(args: argparse.Namespace) -> None:
    try:
        with _time_limit(args.time_limit):
            _run_check(args)
    except _TimeUp:
        raise TableauError(
            f"check of {args.name} did not finish within {args.time_limit:g} s (--time-limit; "
            "a lower --order is faster)"
        ) from None


def _run_check(args: argparse.Namespace) -> None:
    if args.name.endswith(".json"):
        from res_theory.load import load

        tableau = load(args.name)
    else:
        tableau = library.get(args.name)
    if tableau.stages > MAX_CHECK_STAGES:
        raise TableauError(
            f"check handles at most {MAX_CHECK_STAGES} stages, {tableau.name} has "
            f"{tableau.stages} (use res_theory.check.check from Python for larger tableaux)"
        )
    values = {k: v for k, v in (("c2", args.c2), ("c3", args.c3)) if v is not None}
    if values:
        tableau = tableau.at(**values)
    if args.order is not None:
        report = check(tableau, order=args.order)
    else:
        report = check(tableau, order=DEFAULT_CHECK_ORDER)
        if report.stiff_order == DEFAULT_CHECK_ORDER:  # one order more for the error constant
            report = check(tableau, order=DEFAULT_CHECK_ORDER + 1)
    print(report.to_json() if args.json else report)


def _derive(args: argparse.Namespace) -> None:
    from res_theory.derive import derive

    nodes = None
    if args.nodes is not None:
        nodes = tuple(exact_value(node, "node") for node in args.nodes)
    print(derive(args.stages, args.order, nodes=nodes, case=args.case), end="")


def _embedded(args: argparse.Namespace) -> None:
    from res_theory.embedded import embedded_pair

    print(embedded_pair(library.get(args.name), case=args.case), end="")


def _optimise(args: argparse.Namespace) -> None:
    from res_theory.design import minimise_error_constant

    print(f"{args.name}: {minimise_error_constant(library.get(args.name), case=args.case)}")


def _export(args: argparse.Namespace) -> None:
    from res_theory.export import DEFAULT_OUT, export_all

    if not args.all and not args.names:
        raise TableauError("name the tableaux to export or pass --all")
    names = None if args.all else args.names
    for path in export_all(Path(args.out) if args.out else DEFAULT_OUT, names=names):
        print(path)


def _list(args: argparse.Namespace) -> None:
    for name in library.names():
        t = library.get(name)
        print(f"{name:22s} {t.kind:10s} {t.stages} stages  {t.title}")


def _seconds(text: str) -> float:
    """A time limit in seconds, ``>= 0`` (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"time limit must be finite and >= 0, got {text}")
    return value


def _order(text: str) -> int:
    """An order ``1..MAX_ORDER`` (argparse type: a clear message instead of a long run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_ORDER:
        raise argparse.ArgumentTypeError(f"order must be in 1..{MAX_ORDER}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from res_theory.derive import MAX_STAGES

    parser = argparse.ArgumentParser(prog="res-theory", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    case_help = (
        "scalar: L = -1 (diffusion sampling), conditions as identities in h; operator: stiff "
        "conditions as identities in independent z1, z2, ... (default: %(default)s)"
    )
    p = sub.add_parser("conditions", help="list the stiff order conditions")
    p.add_argument(
        "--order", type=_order, default=4, help=f"highest order, 1..{MAX_ORDER} (default: 4)"
    )
    p.set_defaults(run=_conditions)
    p = sub.add_parser(
        "check",
        help="check a named tableau (or a .json file) against the conditions",
        description="Orders (stiff, scalar, classical), the verdict on every condition and "
        "the error constant of a tableau.",
    )
    p.add_argument("name", help="library name (see 'list') or path to a res-tableau .json file")
    p.add_argument(
        "--c2",
        type=str,
        help="value of the parameter c2 (e.g. 1/3), if it has one; a negative value (a "
        "multistep history node) with '=': --c2=-1/2",
    )
    p.add_argument("--c3", type=str, help="value of the parameter c3, if it has one")
    p.add_argument(
        "--order",
        type=_order,
        default=None,
        help=f"check up to this order, 1..{MAX_ORDER} (default: {DEFAULT_CHECK_ORDER}, or "
        f"{DEFAULT_CHECK_ORDER + 1} when order {DEFAULT_CHECK_ORDER} holds, so that the error "
        "constant is shown)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--time-limit",
        type=_seconds,
        default=CHECK_TIME_LIMIT,
        help=f"give up after this many seconds, 0: never (default: {CHECK_TIME_LIMIT:g}; "
        "where SIGALRM exists, as on Linux and macOS)",
    )
    p.set_defaults(run=_check)
    p = sub.add_parser("derive", help="solve the conditions for a family of methods")
    p.add_argument("--stages", type=int, required=True, help=f"number of stages, 1..{MAX_STAGES}")
    p.add_argument(
        "--order", type=_order, required=True, help="stiff order wanted (at most stages + 1)"
    )
    p.add_argument("--case", choices=["scalar", "operator"], default="scalar", help=case_help)
    p.add_argument(
        "--nodes",
        nargs="+",
        metavar="C",
        help="numeric nodes c2 .. c_s (rationals, e.g. 1/2 1/2 1 1/2); symbolic if omitted "
        "(exact but slow from 4 stages on)",
    )
    p.set_defaults(run=_derive)
    p = sub.add_parser(
        "embedded", help="find the embedded lower-order pair of a named tableau (step control)"
    )
    p.add_argument("name", help="library name (see 'list')")
    p.add_argument("--case", choices=["scalar", "operator"], default="scalar", help=case_help)
    p.set_defaults(run=_embedded)
    p = sub.add_parser(
        "optimise", help="free parameters of a named family with the smallest error constant"
    )
    p.add_argument("name", help="library name of a family with free parameters (e.g. res_2s)")
    p.add_argument("--case", choices=["scalar", "operator"], default="scalar", help=case_help)
    p.set_defaults(run=_optimise)
    p = sub.add_parser("export", help="write res-tableau JSON files")
    p.add_argument("names", nargs="*", help="library names to export (or use --all)")
    p.add_argument("--all", action="store_true", help="export every library tableau")
    p.add_argument("--out", help="output folder (default: res_torch/tableaux)")
    p.set_defaults(run=_export)
    p = sub.add_parser("list", help="list the named tableaux")
    p.set_defaults(run=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as exc:  # TableauError, ..., PhiError; files (export --out)
        print(f"res-theory: error: {exc}", file=sys.stderr)
        return 2
    return 0
