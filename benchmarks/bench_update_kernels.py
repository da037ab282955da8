"""What one sampler update costs, kernel by kernel: the floor under ``bench_samplers.py``'s ratios.

On a ``64 x 3 x 64 x 64`` float32 batch, times (best of ``--repeats`` blocks of 50 calls):

* the benchmark's trivial denoiser ``0.5 x`` (a new tensor);
* the lower bound's update ``x <- a x + (1 - a) D`` as one in-place ``lerp_``;
* the same as an out-of-place ``lerp`` (a third buffer, as a single-step stage needs);
* a two-term multistep update ``x <- a x + b D + c P`` as res_torch runs it, two in-place
  ``lerp_`` (:func:`res_torch.steppers.lerp_chain`);
* with ``--compile``, that update as one fused kernel from ``torch.compile`` (inductor; needs a
  C++ compiler on the CPU, Triton on CUDA; compiling takes about 20 s).

It prints each time and the ratio ``(denoiser + update) / (denoiser + lerp_)``: the per-step
overhead ratio that update would give against the lower bound with this denoiser.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_update_kernels.py [--compile]
[--device cpu] [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: not installed

from experiments.experiment_runner import at_least, resolve_device  # noqa: E402
from res_torch.steppers import lerp_chain  # noqa: E402

SHAPE = (64, 3, 64, 64)
CALLS = 50


def best_time(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best per-call time (ms) over ``repeats`` blocks of ``CALLS`` calls, after a warm-up."""
    run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(CALLS):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, 1e3 * (time.perf_counter() - start) / CALLS)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=at_least(1), default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=at_least(1), default=20)
    parser.add_argument("--compile", action="store_true", help="also time a fused kernel")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x, d, p = (torch.randn(SHAPE, generator=generator).to(device) for _ in range(3))
    # a RES-2M row at h = 0.5, step ratio 1: a = e^{-h}, b + c = 1 - a
    a, r = torch.exp(torch.tensor(-0.5, dtype=torch.float64)).item(), 1.0
    b, c = (1 - a) * (1 + 1 / (2 * r)), -(1 - a) / (2 * r)
    order, links = lerp_chain(a, [b, c])
    values = (d, p)
    on_device = {k: torch.tensor(v, device=device) for k, v in dict(a=a, b=b, c=c).items()}
    link_tensors = [torch.tensor(t, device=device) for t in links]
    bound_weight = torch.tensor(1 - a, device=device)

    def two_lerps() -> None:
        for j, t in zip(order, link_tensors, strict=True):
            x.lerp_(values[j], t)

    kernels: dict[str, Callable[[], object]] = {
        "denoiser 0.5 x (new tensor)": lambda: d * 0.5,
        "bound: lerp_ in place": lambda: x.lerp_(d, bound_weight),
        "lerp to a new tensor": lambda: torch.lerp(x, d, bound_weight),
        "two-term update: 2 x lerp_": two_lerps,
    }
    if args.compile:

        def fused_update(x, d, p, a, b, c):  # noqa: ANN001, ANN202 (traced by torch.compile)
            x.mul_(a).add_(b * d).add_(c * p)

        compiled = torch.compile(fused_update, dynamic=False, fullgraph=True)
        start = time.perf_counter()
        compiled(x, d, p, on_device["a"], on_device["b"], on_device["c"])
        print(f"torch.compile of the fused update: {time.perf_counter() - start:.1f} s")
        kernels["two-term update: compiled fused"] = lambda: compiled(
            x, d, p, on_device["a"], on_device["b"], on_device["c"]
        )
    with torch.inference_mode():
        times = {name: best_time(run, args.repeats, device) for name, run in kernels.items()}
    batch = "x".join(map(str, SHAPE))
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, device {device}, torch {torch.__version__}, "
          f"{args.threads} thread(s), batch {batch}")  # fmt: skip
    print()
    print("| kernel | time (ms) | (denoiser + it) / (denoiser + bound) |")
    print("|---|---|---|")
    model = times["denoiser 0.5 x (new tensor)"]
    bound = model + times["bound: lerp_ in place"]
    for name, value in times.items():
        ratio = "" if name.startswith("denoiser") else f"{(model + value) / bound:.2f}"
        print(f"| {name} | {value:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
