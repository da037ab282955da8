"""Sampler overhead: res_torch RES-2M / RES-2S against k-diffusion, diffusers and a lower bound.

With a trivial denoiser ``D(x, sigma) = 0.5 x`` (one elementwise kernel, so almost only the
sampler's own work is timed), on a ``64 x 3 x 64 x 64`` batch, for NFE 10, 20, 50 (a 2-stage
single-step method spends ``2N + 1`` evaluations, so RES-2S runs at NFE 9, 19, 49):

* ``res_torch``: ``sample_res_2m`` and ``sample_res_2s`` (Karras schedule from ``sigmas_for_nfe``);
* k-diffusion's ``sample_dpmpp_2m`` (``k_diffusion/sampling.py`` loaded on its own, its optional
  imports stubbed: ``pip install --no-deps k-diffusion``);
* diffusers' ``DPMSolverMultistepScheduler`` loop (``prediction_type="sample"``, Karras sigmas);
* the lower bound: per evaluation the model call and one update ``x = a x + b D`` with
  precomputed coefficients (the fastest of four eager forms, among them one ``lerp_`` that
  overwrites ``x`` in place).

Prints a markdown table of best-of-N wall times and ratios to the lower bound at the same NFE,
for that batch and for a 1 x 3 x 8 x 8 one (kernels of about a microsecond: the host-bound regime
of a GPU run, where Python and kernel launches are the cost). On CUDA the small batch also
runs RES-2M and the lower bound captured in a CUDA graph (:func:`graphed`: the fixed-step loop
on fixed sigmas with its precomputed tables, replayed with one launch; target: RES-2M graphed
<= 1.2 x the eager lower bound). CPU runs skip the graph rows.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_samplers.py [--threads 1]
[--device cpu] [--repeats 7] [--nfes 10 20 50] [--out CSV]``. A CPU run with the default
budgets writes ``benchmarks/results/samplers.csv`` (every time, per batch and NFE); ``--readme``
rewrites README.md's overhead table from it (:func:`render`).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # experiments/ is not an installed package

from experiments.experiment_runner import (  # noqa: E402
    at_least,
    read_csv,
    resolve_device,
    writable_folder,
    write_csv,
)
from experiments.generated_blocks import replace_block  # noqa: E402
from experiments.league import peers as league_peers  # noqa: E402
from res_torch import (  # noqa: E402
    get_sigmas_karras,
    sample,
    sample_res_2m,
    sample_res_2s,
    sigmas_for_nfe,
)
from res_torch.samplers import clear_plan_cache  # noqa: E402

SHAPE = (64, 3, 64, 64)
SMALL_SHAPE = (1, 3, 8, 8)  # kernels take ~1 us: the host-bound regime of a GPU run
NFES = (10, 20, 50)
GRAPH_TARGET = 1.2  # issue 10: RES-2M in a CUDA graph <= 1.2 x the eager one-axpy bound
CSV = ROOT / "benchmarks" / "results" / "samplers.csv"
BEGIN = "<!-- overhead table: written by benchmarks/bench_samplers.py --readme from benchmarks/results/samplers.csv -->"  # noqa: E501
END = "<!-- end overhead table -->"
CUDA_CSV = ROOT / "benchmarks" / "results" / "samplers_cuda.csv"
"""The CUDA run of benchmarks/gpu_check.sh (copied here from its $OUT)."""
CUDA_BEGIN = "<!-- cuda overhead table: written by benchmarks/bench_samplers.py --readme from benchmarks/results/samplers_cuda.csv -->"  # noqa: E501
CUDA_END = "<!-- end cuda overhead table -->"


def trivial_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x * 0.5


def load_k_diffusion_sampling() -> types.ModuleType | None:
    """k-diffusion's ``sampling.py`` as the league loads it, or None if it is not installed."""
    try:
        return league_peers.load_k_diffusion_sampling()
    except league_peers.PeerGridError:
        return None


def lower_bound_runs(nfe: int, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Model call + one fused-as-possible affine update per evaluation, in three eager forms."""
    a = torch.linspace(0.9, 0.5, nfe, dtype=torch.float64)
    b = 1 - a
    a_dev, b_dev = list(a.to(x).unbind()), list(b.to(x).unbind())
    sigmas = list(torch.linspace(80, 0.01, nfe).to(x).unbind())
    a_host, b_host = a.tolist(), b.tolist()

    def mul_addcmul() -> torch.Tensor:
        y = x
        for i in range(nfe):
            d = trivial_denoiser(y, sigmas[i])
            y = y * a_dev[i]
            y.addcmul_(b_dev[i], d)
        return y

    def mul_add_alpha() -> torch.Tensor:
        y = x
        for i in range(nfe):
            d = trivial_denoiser(y, sigmas[i])
            y = torch.add(y * a_host[i], d, alpha=b_host[i])
        return y

    def lerp() -> torch.Tensor:  # a + b = 1 here, so a x + b D = lerp(D, x, a)
        y = x
        for i in range(nfe):
            d = trivial_denoiser(y, sigmas[i])
            y = torch.lerp(d, y, a_dev[i])
        return y

    def lerp_in_place() -> torch.Tensor:  # the first update makes y, the others overwrite it
        y = torch.lerp(x, trivial_denoiser(x, sigmas[0]), b_dev[0])
        for i in range(1, nfe):
            d = trivial_denoiser(y, sigmas[i])
            y.lerp_(d, b_dev[i])
        return y

    return {
        "mul+addcmul_": mul_addcmul,
        "add(alpha)": mul_add_alpha,
        "lerp": lerp,
        "lerp_ in place": lerp_in_place,
    }


def graphed(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, warmup: int = 3
) -> Callable[[], torch.Tensor]:
    """``run(x)`` captured once in a ``torch.cuda.CUDAGraph``; the returned callable copies
    ``x`` into the graph's input and replays the whole loop with one launch.

    ``run`` must not synchronise with the host (fixed sigmas on the host, coefficient tables
    already on the device: the warm-up calls, on a side stream as the PyTorch docs require,
    build them). ``ValueError`` for a tensor that is not on a CUDA device.
    """
    if x.device.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA tensor, got one on {x.device}")
    static = x.clone()
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            run(static)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run(static)

    def replay() -> torch.Tensor:
        static.copy_(x)
        graph.replay()
        return out

    return replay


def graph_runs(nfe: int, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """RES-2M and the ``lerp`` lower bound, each captured in a CUDA graph (:func:`graphed`);
    RES-2M runs on host sigmas with ``check_finite=False`` (the finiteness check reads the
    device, which a capture forbids)."""
    sigmas = sigmas_for_nfe(nfe, "res_2m")  # on the host: planning reads no device memory

    def res_2m(y: torch.Tensor) -> torch.Tensor:
        return sample(trivial_denoiser, y, sigmas, method="res_2m", disable=True,
                      check_finite=False)  # fmt: skip

    bound = lower_bound_runs(nfe, x)["lerp"]
    return {"RES-2M graph": graphed(res_2m, x), "bound graph": graphed(lambda _: bound(), x)}


def diffusers_run(nfe: int, x: torch.Tensor) -> Callable[[], torch.Tensor] | None:
    try:
        from diffusers import DPMSolverMultistepScheduler
    except ImportError:
        return None
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="sample", use_karras_sigmas=True, solver_order=2
    )

    def run() -> torch.Tensor:
        scheduler.set_timesteps(nfe, device=x.device)
        y = x
        for t in scheduler.timesteps:
            y = scheduler.step(trivial_denoiser(y, t), t, y).prev_sample
        return y

    return run


def best_times(
    runs: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Best wall time (ms) of each run over ``repeats`` round-robin rounds. Round-robin spreads
    the machine's load changes over all contenders; the minimum is what ``timeit`` recommends,
    as noise on a shared machine only ever adds time. In each round a run is first called once
    untimed (so no run pays for the caches another one left cold), and, as in ``timeit``, the
    garbage collector is off while it is timed."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            gc.disable()
            try:
                start = time.perf_counter()
                run()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[name] = min(best[name], 1e3 * (time.perf_counter() - start))
            finally:
                gc.enable()
    return best


def contenders(nfe: int, x: torch.Tensor, k_sampling: types.ModuleType | None) -> dict:
    """The timed runs at NFE ``nfe`` (RES-2S at ``nfe - 1``)."""
    device = x.device
    sigmas_2m = sigmas_for_nfe(nfe, "res_2m", device=device)
    sigmas_2s = sigmas_for_nfe(nfe - 1, "res_2s", device=device)

    runs = {
        "RES-2M": lambda: sample_res_2m(trivial_denoiser, x, sigmas_2m, disable=True),
        "RES-2S": lambda: sample_res_2s(trivial_denoiser, x, sigmas_2s, disable=True),
    }
    for count in (nfe, nfe - 1):
        for form, run in lower_bound_runs(count, x).items():
            runs[f"bound {count} {form}"] = run
    if k_sampling is not None:
        k_sigmas = get_sigmas_karras(nfe, 0.002, 80.0, device=device).to(x.dtype)
        runs["k-diffusion"] = lambda: k_sampling.sample_dpmpp_2m(
            trivial_denoiser, x, k_sigmas, disable=True
        )
    diffusers_loop = diffusers_run(nfe, x)
    if diffusers_loop is not None:
        runs["diffusers"] = diffusers_loop
    return runs


def cold_runs(nfe: int, x: torch.Tensor) -> dict:
    """RES-2M as on a first call: every coefficient table computed again. Timed on its own, as
    clearing the caches would make the other runs cold too."""
    sigmas_2m = sigmas_for_nfe(nfe, "res_2m", device=x.device)

    def cold_res_2m() -> torch.Tensor:
        clear_plan_cache()
        return sample_res_2m(trivial_denoiser, x, sigmas_2m, disable=True)

    return {"RES-2M cold": cold_res_2m}


def lower_bound(times: dict[str, float], count: int) -> tuple[str, float]:
    """The fastest lower-bound form at NFE ``count``: its name and time."""
    forms = {k: v for k, v in times.items() if k.startswith(f"bound {count} ")}
    best = min(forms, key=forms.get)
    return best.split(" ", 2)[2], forms[best]


def ratio(times: dict[str, float], name: str, peer: str) -> str:
    return f"{times[name] / times[peer]:.2f}" if peer in times else "n/a"


def table(shape: tuple[int, ...], args: argparse.Namespace, k_sampling: Any) -> list[dict]:
    """Print the markdown table of one sample shape (with the CUDA-graph rows on CUDA for the
    small batch); return one row per (NFE, run) with its best time and the NFE's bound."""
    rows = []
    device = torch.device(args.device)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    graphs = device.type == "cuda" and shape == SMALL_SHAPE
    print(f"batch {'x'.join(map(str, shape))}:")
    print()
    print("| run | NFE | time (ms) | / lower bound | / k-diffusion dpmpp_2m | / diffusers |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        for nfe in args.nfes:
            times = best_times(contenders(nfe, x, k_sampling), args.repeats, device)
            times |= best_times(cold_runs(nfe, x), args.repeats, device)
            if graphs:
                times |= best_times(graph_runs(nfe, x), args.repeats, device)

            for name, count in (("RES-2M", nfe), ("RES-2M cold", nfe), ("RES-2S", nfe - 1)):
                bound = lower_bound(times, count)[1]
                print(f"| res_torch {name} | {count} | {times[name]:.2f} | "
                      f"{times[name] / bound:.2f} | {ratio(times, name, 'k-diffusion')} | "
                      f"{ratio(times, name, 'diffusers')} |")  # fmt: skip
            form, value = lower_bound(times, nfe)
            print(f"| lower bound ({form}) | {nfe} | {value:.2f} | 1.00 | | |")
            batch = "x".join(map(str, shape))
            for name, time_ms in times.items():
                if not name.startswith("bound "):
                    rows.append({"batch": batch, "nfe": nfe, "run": name, "ms": time_ms})
            for count in (nfe, nfe - 1):
                rows.append({"batch": batch, "nfe": nfe, "run": f"bound {count}",
                             "ms": lower_bound(times, count)[1]})  # fmt: skip
            for peer in ("k-diffusion", "diffusers", "RES-2M graph", "bound graph"):
                if peer in times:
                    print(f"| {peer} | {nfe} | {times[peer]:.2f} | "
                          f"{times[peer] / value:.2f} | | |")  # fmt: skip
            if graphs:
                share = times["RES-2M graph"] / value
                verdict = "met" if share <= GRAPH_TARGET else "NOT met"
                print(f"| RES-2M graph / eager bound | {nfe} | {share:.2f} "
                      f"(target {GRAPH_TARGET}: {verdict}) | | | |")  # fmt: skip
    print()
    return rows


def render(rows: Sequence[dict[str, Any]]) -> str:
    """README's table: per batch and NFE, RES-2M's time and its ratios to the lower bound and
    the peers, and RES-2S's ratio to the bound at its own NFE (one fewer)."""
    times = {(r["batch"], r["nfe"], r["run"]): r["ms"] for r in rows}
    graphs = any(r["run"] == "RES-2M graph" for r in rows)  # a CUDA run
    lines = [
        "| batch | NFE | RES-2M (ms) | RES-2M / bound | RES-2M / k-diffusion | RES-2M / diffusers "
        "| RES-2S / bound |" + (" RES-2M graph / bound |" if graphs else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if graphs else ""),
    ]
    for batch, nfe in dict.fromkeys((r["batch"], r["nfe"]) for r in rows):
        res = times[batch, nfe, "RES-2M"]
        bound = times[batch, nfe, f"bound {nfe}"]
        two_stage = times[batch, nfe, "RES-2S"] / times[batch, nfe, f"bound {nfe - 1}"]
        graph = times.get((batch, nfe, "RES-2M graph"))
        lines.append(
            f"| {batch} | {nfe} | {res:.2f} | {res / bound:.2f} | "
            f"{res / times[batch, nfe, 'k-diffusion']:.2f} | "
            f"{res / times[batch, nfe, 'diffusers']:.2f} | {two_stage:.2f} (NFE {nfe - 1}) |"
            + ((f" {graph / bound:.2f} |" if graph is not None else " |") if graphs else "")
        )
    first = rows[0]
    lines += ["", f"Generated by `benchmarks/bench_samplers.py` on {first['date']} "
              f"({first['machine']}, best of {first['repeats']} round-robin rounds)."]  # fmt: skip
    return "\n".join(lines)


def update_readme(readme: Path, rows: Sequence[dict[str, Any]]) -> None:
    """README's CPU table from ``rows`` and, if committed, the CUDA table from
    :data:`CUDA_CSV`."""
    text = replace_block(readme.read_text(), BEGIN, END, render(rows))
    if CUDA_CSV.exists():
        text = replace_block(text, CUDA_BEGIN, CUDA_END, render(read_csv(CUDA_CSV)))
    readme.write_text(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_samplers.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--readme", action="store_true", help="rewrite README's table from the CSV")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"CSV to write (default: {CSV.relative_to(ROOT)} for a CPU run of "
                        "both batches at the default budgets)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=at_least(1), default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=at_least(1), default=15)
    parser.add_argument(
        "--nfes", type=at_least(3), nargs="+", default=list(NFES), help="budgets run (>= 3)"
    )
    parser.add_argument(
        "--no-small", action="store_true", help=f"skip the host-bound {SMALL_SHAPE} table"
    )
    args = parser.parse_args(argv)
    if args.readme:
        update_readme(ROOT / "README.md", read_csv(CSV))
        return
    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        parser.error(str(err))
    if args.out is not None:
        writable_folder(parser, args.out.parent)
    torch.set_num_threads(args.threads)
    k_sampling = load_k_diffusion_sampling()
    machine = (f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"device {args.device}, {args.threads} thread(s)")  # fmt: skip
    print(f"machine: {machine}, best of {args.repeats} round-robin rounds")
    print()
    rows = []
    for shape in (SHAPE,) if args.no_small else (SHAPE, SMALL_SHAPE):
        rows += table(shape, args, k_sampling)
    stamp = {"machine": machine, "repeats": args.repeats, "date": str(datetime.date.today())}
    rows = [{**row, **stamp} for row in rows]
    default = args.device == "cpu" and not args.no_small and tuple(args.nfes) == NFES
    out = args.out if args.out is not None else (CSV if default else None)
    if out is not None:
        print(f"wrote {write_csv(rows, out)}")


if __name__ == "__main__":
    main()
