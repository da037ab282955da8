"""Timings of res_theory.

Targets on 2 cores: order-4 generation + HO4 check < 10 s; order-5 generation < 60 s;
``conditions --order 6`` and ``check --order 6`` of every library method < 10 s (CPU time).

Run: ``.venv/bin/python benchmarks/bench_theory.py [--order5] [--order6]``
"""

from __future__ import annotations

import argparse
import time

from res_theory import library
from res_theory.check import check
from res_theory.conditions import order_conditions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--order5", action="store_true", help="also time order 5")
    parser.add_argument(
        "--order6", action="store_true", help="also time order 6 for every library method"
    )
    args = parser.parse_args()

    order_conditions.cache_clear()
    t0 = time.perf_counter()
    conds = order_conditions(4)
    t1 = time.perf_counter()
    report = check(library.get("hochbruck_ostermann4"), order=4)
    t2 = time.perf_counter()
    print(f"generate order-4 conditions ({len(conds)}): {t1 - t0:.3f} s")
    print(
        f"check hochbruck_ostermann4 up to order 4 (stiff order {report.stiff_order}): "
        f"{t2 - t1:.2f} s"
    )
    print(f"total: {t2 - t0:.2f} s (target < 10 s)")
    if args.order5:
        t3 = time.perf_counter()
        conds5 = order_conditions(5)
        t4 = time.perf_counter()
        report5 = check(library.get("hochbruck_ostermann4"), order=5)
        t5 = time.perf_counter()
        print(f"generate order-5 conditions ({len(conds5)}): {t4 - t3:.3f} s (target < 60 s)")
        print(
            f"check hochbruck_ostermann4 up to order 5 (stiff order {report5.stiff_order}): "
            f"{t5 - t4:.2f} s"
        )

    if args.order6:
        order_conditions.cache_clear()
        t6 = time.process_time()
        conds6 = order_conditions(6)
        print(f"generate order-6 conditions ({len(conds6)}): {time.process_time() - t6:.3f} s")
        for name in library.names():
            t7 = time.process_time()
            report6 = check(library.get(name), order=6)
            print(
                f"check {name} up to order 6 (stiff order {report6.stiff_order}): "
                f"{time.process_time() - t7:.2f} s CPU (target < 10 s)"
            )


if __name__ == "__main__":
    main()
