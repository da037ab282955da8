"""Command line interface ``res-theory`` (also ``python -m res_theory``).

res-theory conditions --order 4
res-theory check NAME [--c2 X] [--c3 Y] [--order 4] [--json]
res-theory derive --stages 3 --order 3 [--case scalar|operator] [--nodes 1/2 1]
res-theory export --all [--out DIR]   |   res-theory export NAME ... [--out DIR]
res-theory list
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sympy as sp

from res_theory import library
from res_theory.check import check
from res_theory.conditions import order_conditions
from res_theory.tableau import TableauError

__all__ = ["main"]


def _conditions(args: argparse.Namespace) -> None:
    print(f"{'no.':>3}  {'order':>5}  condition (operator case: identity in z1, z2, ...)")
    for n, cond in enumerate(order_conditions(args.order), start=1):
        print(f"{n:>3}  {cond.order:>5}  {cond.name} = 0")


def _check(args: argparse.Namespace) -> None:
    if args.name.endswith(".json"):
        from res_theory.load import load

        tableau = load(args.name)
    else:
        tableau = library.get(args.name)
    values = {k: v for k, v in (("c2", args.c2), ("c3", args.c3)) if v is not None}
    if values:
        tableau = tableau.at(**values)
    report = check(tableau, order=args.order)
    print(report.to_json() if args.json else report)


def _derive(args: argparse.Namespace) -> None:
    from res_theory.derive import DerivationError, derive

    nodes = None
    if args.nodes is not None:
        try:
            nodes = tuple(sp.Rational(node) for node in args.nodes)
        except (TypeError, ValueError):
            raise DerivationError(f"nodes must be rationals like 1/2, got {args.nodes}") from None
    print(derive(args.stages, args.order, nodes=nodes, case=args.case))


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="res-theory", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("conditions", help="list the stiff order conditions")
    p.add_argument("--order", type=int, default=4)
    p.set_defaults(run=_conditions)
    p = sub.add_parser(
        "check", help="check a named tableau (or a .json file) against the conditions"
    )
    p.add_argument("name", help="library name or path to a res-tableau .json file")
    p.add_argument("--c2", type=str)
    p.add_argument("--c3", type=str)
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_check)
    p = sub.add_parser("derive", help="solve the conditions for a family of methods")
    p.add_argument("--stages", type=int, required=True)
    p.add_argument("--order", type=int, required=True)
    p.add_argument("--case", choices=["scalar", "operator"], default="scalar")
    p.add_argument(
        "--nodes",
        nargs="+",
        metavar="C",
        help="numeric nodes c2 .. c_s (rationals, e.g. 1/2 1/2 1 1/2); symbolic if omitted "
        "(exact but slow from 4 stages on)",
    )
    p.set_defaults(run=_derive)
    p = sub.add_parser("export", help="write res-tableau JSON files")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--out")
    p.set_defaults(run=_export)
    p = sub.add_parser("list", help="list the named tableaux")
    p.set_defaults(run=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as exc:  # TableauError, ConditionError, DerivationError, PhiError
        print(f"res-theory: error: {exc}", file=sys.stderr)
        return 2
    return 0
