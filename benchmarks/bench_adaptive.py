"""Adaptive step size: ``sample_res_adaptive`` against k-diffusion's ``sample_dpm_adaptive``.

Both samplers integrate the probability-flow ODE of the league's exact float64 testbeds
(``gmm``, ``gmm_sharp``, ``kernel_digits``; :mod:`experiments.league.testbeds`) from
``sigma_max * noise`` (the league's seeded noise, ``testbed.batch`` samples) at sigma 80 to
0.002, at identical ``rtol`` and ``atol = rtol * 0.0078/0.05`` (k-diffusion's default ratio),
as pairs of equal order: RES-3S with its RES-2S estimate against DPM-Solver-23 (``order=3``),
RES-2S with exponential Euler against DPM-Solver-12 (``order=2``). res ends with the denoising
step ``D(x, 0.002)``; k-diffusion's result at 0.002 gets the same step here (one more model
call, counted). Every model call is counted by a wrapper (and checked against each sampler's
reported ``nfe``). Defect: batch mean L2 distance to the league's converged reference
(:mod:`experiments.league.references`: DOP853 at 1e-10, then the same denoising step).

Writes ``benchmarks/results/adaptive.csv`` and prints a markdown table, and the NFE each res
pair needs to reach k-diffusion's defect (its NFE-defect curve interpolated in log-log).
``--readme`` rewrites README.md's table between the markers :data:`BEGIN` and :data:`END` from
the CSV without running anything. Run: ``.venv/bin/pip install --no-deps k-diffusion &&
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_adaptive.py`` (about 2-4 min on 2 CPU
cores, most of it the first reference solve of each testbed, cached in ``results/cache``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # experiments/ is not an installed package

from experiments.experiment_runner import read_csv, write_csv  # noqa: E402
from experiments.league.peers import load_k_diffusion_sampling  # noqa: E402
from experiments.league.references import SIGMA_MAX, SIGMA_MIN, league_reference  # noqa: E402
from experiments.league.run import CountingDenoiser  # noqa: E402
from experiments.league.testbeds import get_testbed  # noqa: E402
from res_torch import sample_res_adaptive  # noqa: E402

TESTBEDS = ("gmm", "gmm_sharp", "kernel_digits")
RTOLS = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
TABLE_RTOLS = (0.2, 0.05, 0.01, 0.002)
ATOL_PER_RTOL = 0.0078 / 0.05
PAIRS = {3: ("RES-3S/2S", "DPM-Solver-23"), 2: ("RES-2S/exp. Euler", "DPM-Solver-12")}
CSV = ROOT / "benchmarks" / "results" / "adaptive.csv"
BEGIN = "<!-- adaptive table: written by benchmarks/bench_adaptive.py --readme from benchmarks/results/adaptive.csv -->"  # noqa: E501
END = "<!-- end adaptive table -->"


def run(cache_dir: Path) -> list[dict[str, Any]]:
    """Every (testbed, order, rtol, sampler) row."""
    k_diffusion = load_k_diffusion_sampling()
    machine = f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    date = datetime.date.today().isoformat()
    rows = []
    with tqdm(total=len(TESTBEDS) * len(PAIRS) * len(RTOLS), desc="adaptive") as progress:
        for name in TESTBEDS:
            testbed = get_testbed(name)
            progress.set_postfix_str(f"{name}: reference")
            reference = league_reference(testbed, batch=testbed.batch, cache_dir=cache_dir)
            x0 = reference.noise * SIGMA_MAX
            for order in PAIRS:
                for rtol in RTOLS:
                    progress.set_postfix_str(f"{name} order {order} rtol {rtol}")
                    options = dict(order=order, rtol=rtol, atol=rtol * ATOL_PER_RTOL)
                    for sampler in ("res", "k_diffusion"):
                        model = CountingDenoiser(testbed.denoiser)
                        if sampler == "res":
                            x, info = sample_res_adaptive(
                                model, x0, SIGMA_MIN, SIGMA_MAX, disable=True, return_info=True,
                                **options,
                            )  # fmt: skip
                        else:
                            x, info = k_diffusion.sample_dpm_adaptive(
                                model, x0, SIGMA_MIN, SIGMA_MAX, disable=True, return_info=True,
                                **options,
                            )  # fmt: skip
                            x = model(x, x.new_full((x.shape[0],), SIGMA_MIN))
                            info["nfe"] += 1
                        if info["nfe"] != model.calls:
                            raise AssertionError(
                                f"{sampler}: nfe {info['nfe']}, {model.calls} calls"
                            )
                        defect = float((x - reference.x).flatten(1).norm(dim=1).mean())
                        rows.append(
                            {"testbed": name, "order": order, "sampler": sampler,
                             "method": PAIRS[order][sampler != "res"], "rtol": rtol,
                             "atol": options["atol"], "nfe": model.calls,
                             "n_accept": info["n_accept"], "n_reject": info["n_reject"],
                             "defect": defect, "batch": testbed.batch, "date": date,
                             "machine": machine}
                        )  # fmt: skip
                    progress.update()
    return rows


def nfe_to_reach(points: Sequence[tuple[float, float]], defect: float) -> tuple[float, bool] | None:
    """``(nfe, exact)``: the NFE at which the curve ``(nfe, defect)`` (sorted by NFE) first
    reaches ``defect``, linear in ``(log nfe, log defect)`` between the bracketing points
    (``exact``), or its first NFE if that point already does (an upper bound); None if no
    point reaches it."""
    if points and points[0][1] <= defect:
        return points[0][0], False
    for (n0, d0), (n1, d1) in zip(points, points[1:], strict=False):
        if d0 > defect >= d1:
            t = math.log(d0 / defect) / math.log(d0 / d1)
            return math.exp(math.log(n0) + t * math.log(n1 / n0)), True
    return None


def _curve(rows: list[dict[str, Any]], name: str, order: int, sampler: str):
    chosen = [r for r in rows if (r["testbed"], r["order"], r["sampler"]) == (name, order, sampler)]
    return sorted(((r["nfe"], r["defect"], r["rtol"]) for r in chosen), key=lambda p: p[0])


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown: NFE and defect per tolerance, and res's NFE at k-diffusion's defect."""
    lines = [
        f"NFE (every model call, the final denoising step included) and defect (batch mean L2 "
        f"to the converged solution) at identical rtol, atol = {ATOL_PER_RTOL:.3g} rtol; last "
        "column: NFE res needs to reach k-diffusion's defect (log-log interpolation of its "
        "curve over rtol 0.2 ... 0.001), as a fraction of k-diffusion's NFE (< 1: res cheaper).",
        "",
        "| testbed | pair (res vs k-diffusion) | rtol | res NFE | res defect | k-diff. NFE | "
        "k-diff. defect | res NFE at k-diff.'s defect |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for name in dict.fromkeys(r["testbed"] for r in rows):
        for order in sorted({r["order"] for r in rows}, reverse=True):
            ours = _curve(rows, name, order, "res")
            theirs = _curve(rows, name, order, "k_diffusion")
            by_rtol = {p[2]: p for p in theirs}
            for nfe, defect, rtol in sorted(ours, key=lambda p: -p[2]):
                if rtol not in TABLE_RTOLS:
                    continue
                k_nfe, k_defect, _ = by_rtol[rtol]
                needed = nfe_to_reach([p[:2] for p in ours], k_defect)
                ratio = "—"
                if needed is not None:
                    ratio = ("" if needed[1] else "≤ ") + f"{needed[0] / k_nfe:.2f}"
                    ratios.append(needed[0] / k_nfe)
                lines.append(
                    f"| {name} | {' vs '.join(PAIRS[order])} | {rtol:g} | {nfe} | {defect:.3g} | "
                    f"{k_nfe} | {k_defect:.3g} | {ratio} |"
                )
    wins = sum(r < 1 for r in ratios)
    lines += [
        "",
        f"res reaches k-diffusion's defect with fewer NFE in {wins} of {len(ratios)} cells "
        f"(ratio {min(ratios):.2f}–{max(ratios):.2f}; ≤ : res's coarsest run already beats it; — : "
        "no res run reaches it). Generated by `benchmarks/bench_adaptive.py` on "
        f"{rows[0]['date']} ({rows[0]['machine']}).",
    ]
    return "\n".join(lines)


def update_readme(readme: Path, rows: list[dict[str, Any]]) -> None:
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render(rows) + "\n" + text[end:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="rewrite README's table from the CSV")
    parser.add_argument("--out", type=Path, default=CSV, help="CSV to write")
    parser.add_argument("--cache", type=Path, default=ROOT / "results" / "cache",
                        help="folder of the cached reference solutions")  # fmt: skip
    args = parser.parse_args(argv)
    if args.readme:
        update_readme(ROOT / "README.md", read_csv(CSV))
        return
    rows = run(args.cache)
    write_csv(rows, args.out)
    print(render(rows))


if __name__ == "__main__":
    main()
