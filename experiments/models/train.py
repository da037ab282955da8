"""Train an EDM-preconditioned denoiser on bundled data and write a small checkpoint.

    python -m experiments.models.train --dataset digits --iterations 3000 --seed 0 \
        --out experiments/checkpoints/edm_digits.pt

Adam with linear warm-up and cosine decay, gradient-norm clipping at 1, the EDM loss
(``experiments.models.edm.edm_loss``), and an exponential moving average of the weights
(decay ``min(ema_decay, (1 + k) / (10 + k))`` at step ``k``, as in Song et al. 2021's code); the
checkpoint stores the EMA weights. Next to ``NAME.pt`` it writes ``NAME_loss.csv`` and
``NAME_loss.png`` (per-iteration loss and its running mean).
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from experiments.models.data import PatchSampler, digits
from experiments.models.edm import EDMDenoiser, edm_loss
from experiments.models.unet import UNetConfig

__all__ = ["CHECKPOINT_FORMAT", "SETUPS", "TrainingSetup", "held_out_loss", "main", "train"]

CHECKPOINT_FORMAT = "res-edm-denoiser/1"


@dataclass(frozen=True)
class TrainingSetup:
    """Model and optimiser settings of one bundled data set."""

    config: UNetConfig
    sigma_data: float
    batch_size: int
    learning_rate: float
    ema_decay: float
    make_batches: Callable[[int, int], Callable[[], torch.Tensor]]
    held_out: Callable[[], torch.Tensor]


def _digit_batches(batch_size: int, seed: int) -> Callable[[], torch.Tensor]:
    data = digits("train")
    generator = torch.Generator().manual_seed(seed)
    return lambda: data[torch.randint(len(data), (batch_size,), generator=generator)]


def _patch_batches(batch_size: int, seed: int) -> Callable[[], torch.Tensor]:
    sampler = PatchSampler("train", seed=seed)
    return lambda: sampler.sample(batch_size)


# sigma_data = standard deviation of the training pixels, to two decimals
# (digits: 0.752; patches: 0.505 on 4096 crops).
SETUPS: dict[str, TrainingSetup] = {
    "digits": TrainingSetup(
        config=UNetConfig(channels=1, base_channels=32, channel_mult=(1, 2)),
        sigma_data=0.75,
        batch_size=128,
        learning_rate=2e-3,
        ema_decay=0.999,
        make_batches=_digit_batches,
        held_out=lambda: digits("test"),
    ),
    "patches": TrainingSetup(
        config=UNetConfig(channels=3, base_channels=16, channel_mult=(1, 2, 4)),
        sigma_data=0.5,
        batch_size=32,
        learning_rate=2e-3,
        ema_decay=0.999,
        make_batches=_patch_batches,
        held_out=lambda: PatchSampler("test", seed=1).sample(512),
    ),
}


@torch.no_grad()
def held_out_loss(denoiser: EDMDenoiser, data: torch.Tensor, seed: int = 0) -> float:
    """The EDM loss of ``denoiser`` on ``data`` with a fixed noise draw (seeded)."""
    generator = torch.Generator(device=data.device).manual_seed(seed)
    return float(edm_loss(denoiser, data, generator))


def _learning_rate(step: int, iterations: int, peak: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, iterations - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def train(dataset: str, iterations: int, seed: int = 0) -> tuple[EDMDenoiser, list[float], float]:
    """Train on ``dataset`` ("digits" or "patches"); returns ``(ema_model, losses, seconds)``."""
    if dataset not in SETUPS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(SETUPS)}")
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    setup = SETUPS[dataset]
    torch.manual_seed(seed)
    model = EDMDenoiser(setup.config, setup.sigma_data)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate)
    next_batch = setup.make_batches(setup.batch_size, seed)
    noise = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    start = time.perf_counter()
    progress = tqdm(range(iterations), desc=f"train {dataset}", mininterval=5.0)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, iterations, setup.learning_rate)
        loss = edm_loss(model, next_batch(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(setup.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            progress.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    return ema, losses, time.perf_counter() - start


def _write_loss_curve(losses: list[float], stem: Path, window: int = 100) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    running = []
    total = 0.0
    for k, value in enumerate(losses):
        total += value - (losses[k - window] if k >= window else 0.0)
        running.append(total / min(k + 1, window))
    with open(stem.with_name(stem.name + "_loss.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "loss", f"running_mean_{window}"])
        for k, (value, mean) in enumerate(zip(losses, running, strict=True)):
            writer.writerow([k, f"{value:.6g}", f"{mean:.6g}"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(losses, lw=0.4, alpha=0.4, label="loss")
    ax.plot(running, lw=1.5, label=f"running mean ({window})")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("EDM loss")
    ax.set_title(stem.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_name(stem.name + "_loss.png"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(SETUPS), required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path (.pt)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.out.suffix != ".pt":
        parser.error(f"--out must end in .pt, got {args.out}")
    torch.set_num_threads(args.threads)
    argv_used = sys.argv[1:] if argv is None else argv
    ema, losses, seconds = train(args.dataset, args.iterations, args.seed)
    ema.eval()
    setup = SETUPS[args.dataset]
    tail = losses[-100:]
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "dataset": args.dataset,
        "unet_config": setup.config.to_dict(),
        "sigma_data": setup.sigma_data,
        "state_dict": ema.state_dict(),
        "metadata": {
            "command": "python -m experiments.models.train " + shlex.join(argv_used),
            "iterations": args.iterations,
            "batch_size": setup.batch_size,
            "learning_rate": setup.learning_rate,
            "ema_decay": setup.ema_decay,
            "seed": args.seed,
            "threads": args.threads,
            "seconds": round(seconds, 1),
            "final_loss_mean_last_100": sum(tail) / len(tail),
            "held_out_loss_ema": held_out_loss(ema, setup.held_out()),
            "parameters": sum(p.numel() for p in ema.parameters()),
            "torch_version": str(torch.__version__),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.out)
    _write_loss_curve(losses, args.out.with_suffix(""))
    print({k: v for k, v in checkpoint["metadata"].items()})
    return args.out


if __name__ == "__main__":
    main()
