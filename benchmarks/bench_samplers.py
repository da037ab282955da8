"""Sampler overhead: res_torch RES-2M / RES-2S against k-diffusion, diffusers and a lower bound.

With a trivial denoiser ``D(x, sigma) = 0.5 x`` (one elementwise kernel, so almost only the
sampler's own work is timed), on a ``64 x 3 x 64 x 64`` batch, for NFE 10, 20, 50 (a 2-stage
single-step method spends ``2N + 1`` evaluations, so RES-2S runs at NFE 9, 19, 49):

* ``res_torch``: ``sample_res_2m`` and ``sample_res_2s`` (Karras schedule from ``sigmas_for_nfe``);
* k-diffusion's ``sample_dpmpp_2m`` (``k_diffusion/sampling.py`` loaded on its own, its optional
  imports stubbed: ``pip install --no-deps k-diffusion``);
* diffusers' ``DPMSolverMultistepScheduler`` loop (``prediction_type="sample"``, Karras sigmas);
* the lower bound: per evaluation the model call and one update ``x = a x + b D`` with
  precomputed coefficients (the fastest of three eager forms).

Prints a markdown table of median wall times and ratios to the lower bound at the same NFE.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_samplers.py [--threads 1]
[--device cpu] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch

from res_torch import get_sigmas_karras, sample_res_2m, sample_res_2s, sigmas_for_nfe

SHAPE = (64, 3, 64, 64)
NFES = (10, 20, 50)


def trivial_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x * 0.5


def load_k_diffusion_sampling() -> types.ModuleType | None:
    """``k_diffusion/sampling.py`` without the package's heavy imports (torchvision, torchsde)."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = f"{spec.submodule_search_locations[0]}/sampling.py"
    package = types.ModuleType("k_diffusion")
    package.__path__ = []
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    stubs = {
        "k_diffusion": package,
        "k_diffusion.utils": utils,
        "torchdiffeq": types.SimpleNamespace(odeint=None),
        "torchsde": types.SimpleNamespace(BrownianTree=None),
    }
    added = [name for name in stubs if name not in sys.modules]
    sys.modules.update({name: stubs[name] for name in added})
    try:
        module_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:  # the stubs must not fool later imports (diffusers probes for torchsde)
        for name in added:
            del sys.modules[name]
    return module


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

    return {"mul+addcmul_": mul_addcmul, "add(alpha)": mul_add_alpha, "lerp": lerp}


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


def timed(run: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> float:
    """Median wall time in milliseconds (two warm-up runs)."""
    times = []
    for attempt in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if attempt >= 2:
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    k_sampling = load_k_diffusion_sampling()

    print(f"machine: {platform.processor() or platform.machine()}, {platform.platform()}, "
          f"device {device}, torch {torch.__version__}, {args.threads} thread(s), "
          f"median of {args.repeats}")  # fmt: skip
    print()
    print("| sampler | NFE | time (ms) | / lower bound | / k-diffusion dpmpp_2m | / diffusers |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        for target in NFES:
            for name, nfe, runner in (
                ("res_torch RES-2M", target, "res_2m"),
                ("res_torch RES-2S", target - 1, "res_2s"),
            ):
                sigmas = sigmas_for_nfe(nfe, runner, device=device)
                sampler = sample_res_2m if runner == "res_2m" else sample_res_2s
                ours = timed(lambda s=sigmas, f=sampler: f(trivial_denoiser, x, s, disable=True),
                             args.repeats, device)  # fmt: skip
                bounds = {k: timed(r, args.repeats, device)
                          for k, r in lower_bound_runs(nfe, x).items()}  # fmt: skip
                bound = min(bounds.values())
                peers = {}
                if k_sampling is not None:
                    k_sigmas = get_sigmas_karras(nfe, 0.002, 80.0, device=device).to(x.dtype)
                    peers["k"] = timed(lambda s=k_sigmas: k_sampling.sample_dpmpp_2m(
                        trivial_denoiser, x, s, disable=True), args.repeats, device)  # fmt: skip
                diffusers_loop = diffusers_run(nfe, x)
                if diffusers_loop is not None:
                    peers["d"] = timed(diffusers_loop, args.repeats, device)
                k_ratio = f"{ours / peers['k']:.2f}" if "k" in peers else "n/a"
                d_ratio = f"{ours / peers['d']:.2f}" if "d" in peers else "n/a"
                print(f"| {name} | {nfe} | {ours:.1f} | {ours / bound:.2f} | {k_ratio} | "
                      f"{d_ratio} |")  # fmt: skip
                if runner == "res_2m":
                    best = min(bounds, key=bounds.get)
                    k_time = f"{peers['k']:.1f}" if "k" in peers else "n/a"
                    d_time = f"{peers['d']:.1f}" if "d" in peers else "n/a"
                    print(f"| lower bound ({best}) | {nfe} | {bound:.1f} | 1.00 | | |")
                    print(f"| k-diffusion dpmpp_2m | {nfe} | {k_time} | | | |")
                    print(f"| diffusers DPMSolverMultistep | {nfe} | {d_time} | | | |")


if __name__ == "__main__":
    main()
