"""Adaptive step size: ``sample_res_adaptive`` against k-diffusion's ``sample_dpm_adaptive``.

Both samplers integrate the probability-flow ODE of the league's exact float64 testbeds
(``gmm``, ``gmm_sharp``, ``kernel_digits``; :mod:`experiments.league.testbeds`) from ``sigma_max
* noise`` (the league's seeded noise, ``testbed.batch`` samples) at sigma 80 to 0.002, at
identical ``rtol`` and ``atol = rtol * 0.0078/0.05`` (k-diffusion's default ratio), as pairs of
equal order: RES-3S with its RES-2S estimate (default nodes ``c2 = 1/2, c3 = 1``, and ``c3 =
56/83``, the minimum of its error constant at ``c2 = 1/2``) against DPM-Solver-23 (``order=3``),
RES-2S with exponential Euler against DPM-Solver-12 (``order=2``). res ends with the denoising
step ``D(x, 0.002)``; k-diffusion's result at 0.002 gets the same step here (one more model
call, counted). Every model call is counted by a wrapper (and checked against each sampler's
reported ``nfe``). Defect: batch mean L2 distance to the league's converged reference
(:mod:`experiments.league.references`: DOP853 at 1e-10, then the same denoising step).

Writes ``benchmarks/results/adaptive.csv`` and prints a markdown table with the NFE each res
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
from experiments.generated_blocks import replace_block  # noqa: E402
from experiments.league.peers import load_k_diffusion_sampling  # noqa: E402
from experiments.league.references import SIGMA_MAX, SIGMA_MIN, league_reference  # noqa: E402
from experiments.league.run import CountingDenoiser  # noqa: E402
from experiments.league.testbeds import get_testbed  # noqa: E402
from res_torch import sample_res_adaptive  # noqa: E402

TESTBEDS = ("gmm", "gmm_sharp", "kernel_digits")
RTOLS = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005)
TABLE_RTOLS = (0.2, 0.05, 0.01, 0.002)
ATOL_PER_RTOL = 0.0078 / 0.05
C3_DESIGNED = 56 / 83
ENTRANTS: dict[str, tuple[str, int, dict[str, float]]] = {
    "res_3s": ("RES-3S/2S", 3, {}),
    "res_3s_c3": ("RES-3S/2S, c3 = 56/83", 3, {"c3": C3_DESIGNED}),
    "dpm_solver_23": ("DPM-Solver-23", 3, {}),
    "res_2s": ("RES-2S/exp. Euler", 2, {}),
    "dpm_solver_12": ("DPM-Solver-12", 2, {}),
}
"""Method -> (label, order, res parameters); ``dpm_solver_*`` are k-diffusion's. ``c3 = 56/83``
minimises RES-3S's error constant at ``c2 = 1/2`` (``docs/theory.md``, error constants)."""
CSV = ROOT / "benchmarks" / "results" / "adaptive.csv"
BEGIN = "<!-- adaptive table: written by benchmarks/bench_adaptive.py --readme from benchmarks/results/adaptive.csv -->"  # noqa: E501
END = "<!-- end adaptive table -->"


def _sample(method: str, model: CountingDenoiser, x0: torch.Tensor, rtol: float, k_diffusion):
    """``(x, info)`` of one run, k-diffusion's with the final denoising step added (counted)."""
    _, order, params = ENTRANTS[method]
    options = dict(order=order, rtol=rtol, atol=rtol * ATOL_PER_RTOL, disable=True)
    if method.startswith("res"):
        return sample_res_adaptive(
            model, x0, SIGMA_MIN, SIGMA_MAX, return_info=True, **options, **params
        )
    x, info = k_diffusion.sample_dpm_adaptive(
        model, x0, SIGMA_MIN, SIGMA_MAX, return_info=True, **options
    )
    return model(x, x.new_full((x.shape[0],), SIGMA_MIN)), {**info, "nfe": info["nfe"] + 1}


def run(cache_dir: Path) -> list[dict[str, Any]]:
    """Every (testbed, method, rtol) row."""
    k_diffusion = load_k_diffusion_sampling()
    machine = f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    date = datetime.date.today().isoformat()
    rows = []
    with tqdm(total=len(TESTBEDS) * len(ENTRANTS) * len(RTOLS), desc="adaptive") as progress:
        for name in TESTBEDS:
            testbed = get_testbed(name)
            progress.set_postfix_str(f"{name}: reference")
            reference = league_reference(testbed, batch=testbed.batch, cache_dir=cache_dir)
            x0 = reference.noise * SIGMA_MAX
            for method, (_, order, _) in ENTRANTS.items():
                for rtol in RTOLS:
                    progress.set_postfix_str(f"{name} {method} rtol {rtol}")
                    model = CountingDenoiser(testbed.denoiser)
                    x, info = _sample(method, model, x0, rtol, k_diffusion)
                    if info["nfe"] != model.calls:
                        raise AssertionError(f"{method}: nfe {info['nfe']}, {model.calls} calls")
                    rows.append(
                        {"testbed": name, "method": method, "order": order, "rtol": rtol,
                         "atol": rtol * ATOL_PER_RTOL, "nfe": model.calls,
                         "n_accept": info["n_accept"], "n_reject": info["n_reject"],
                         "defect": float((x - reference.x).flatten(1).norm(dim=1).mean()),
                         "batch": testbed.batch, "date": date, "machine": machine}
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


def render(rows: list[dict[str, Any]]) -> str:
    """Markdown: NFE and defect per tolerance, and res's NFE at k-diffusion's defect."""
    lines = [
        "NFE (every model call, the final denoising step included) and defect (batch mean L2 "
        f"to the converged solution) at identical rtol, atol = {ATOL_PER_RTOL:.3g} rtol; last "
        "column: the NFE res needs to reach k-diffusion's defect (log-log interpolation of "
        f"res's curve over rtol {max(RTOLS):g} ... {min(RTOLS):g}) over k-diffusion's NFE "
        "(< 1: res cheaper at equal defect).",
        "",
        "| testbed | res vs k-diffusion | rtol | res NFE | res defect | k-diff. NFE | "
        "k-diff. defect | NFE ratio at equal defect |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for r in rows:
        curves.setdefault((r["testbed"], r["method"]), []).append(
            (r["nfe"], r["defect"], r["rtol"])
        )
    ratios: dict[str, list[float]] = {}
    peers = {order: m for m, (_, order, _) in ENTRANTS.items() if m.startswith("dpm")}
    for name in dict.fromkeys(r["testbed"] for r in rows):
        for method, (label, order, _) in ENTRANTS.items():
            if not method.startswith("res"):
                continue
            ours = sorted(curves[name, method])
            theirs = {p[2]: p for p in curves[name, peers[order]]}
            for nfe, defect, rtol in sorted(ours, key=lambda p: -p[2]):
                if rtol not in TABLE_RTOLS:
                    continue
                k_nfe, k_defect, _ = theirs[rtol]
                needed = nfe_to_reach([p[:2] for p in ours], k_defect)
                ratio = "—"
                if needed is not None:
                    ratio = ("" if needed[1] else "≤ ") + f"{needed[0] / k_nfe:.2f}"
                    ratios.setdefault(method, []).append(needed[0] / k_nfe)
                lines.append(
                    f"| {name} | {label} vs {ENTRANTS[peers[order]][0]} | {rtol:g} | {nfe} | "
                    f"{defect:.3g} | {k_nfe} | {k_defect:.3g} | {ratio} |"
                )
    cells = len(TABLE_RTOLS) * len({r["testbed"] for r in rows})
    cheaper = [
        (r["nfe"] < k["nfe"], r["nfe"] == k["nfe"])
        for r in rows
        if r["method"].startswith("res")
        for k in rows
        if (k["testbed"], k["method"], k["rtol"])
        == (r["testbed"], peers[ENTRANTS[r["method"]][1]], r["rtol"])
    ]
    summary = "; ".join(
        f"{ENTRANTS[m][0]} in {sum(r < 1 for r in v)} of {cells} (ratio {min(v):.2f}–{max(v):.2f})"
        for m, v in ratios.items()
    )
    lines += [
        "",
        f"At equal rtol, res spends fewer NFE than k-diffusion in {sum(c[0] for c in cheaper)} "
        f"of {len(cheaper)} runs (as many in {sum(c[1] for c in cheaper)}). "
        f"Fewer NFE than k-diffusion at its defect: {summary}. ≤: res's coarsest run (rtol "
        f"{max(RTOLS):g}) already reaches it; —: no res run reaches it (not counted as fewer). "
        f"Generated by `benchmarks/bench_adaptive.py` on {rows[0]['date']} "
        f"({rows[0]['machine']}).",
    ]
    return "\n".join(lines)


def update_readme(readme: Path, rows: list[dict[str, Any]]) -> None:
    readme.write_text(replace_block(readme.read_text(), BEGIN, END, render(rows)))


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
