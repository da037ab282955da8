"""A small CNN classifier of scikit-learn's 8x8 digits; its penultimate layer is the feature
space of the Fréchet Digits Distance (``experiments.frechet``).

    python -m experiments.models.classifier --epochs 40 --seed 0 \
        --out experiments/checkpoints/digits_classifier.pt

Architecture: ``conv3x3(1->32) SiLU conv3x3(32->32) SiLU maxpool2 conv3x3(32->64) SiLU
maxpool2 flatten linear(256->FEATURES) SiLU | linear(FEATURES->10)``; features are the
``FEATURES = 64`` activations before the last linear layer. Trained with Adam and
cross-entropy, with random one-pixel shifts as augmentation; the checkpoint records the
accuracy on the held-out split of ``experiments.models.data.digits``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from experiments.models.data import digits

__all__ = ["CLASSIFIER_FORMAT", "DigitClassifier", "accuracy", "main", "train_classifier"]

CLASSIFIER_FORMAT = "res-digits-classifier/1"
FEATURES = 64


class DigitClassifier(nn.Module):
    """``forward(x) -> logits`` (10 classes); ``features(x)`` -> penultimate activations."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, FEATURES),
            nn.SiLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"expected digits of shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by (dy, dx) in {-1, 0, 1}^2, filling with background (-1)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    offsets = torch.randint(3, (x.shape[0], 2), generator=generator)
    return torch.stack(
        [padded[k, :, dy : dy + 8, dx : dx + 8] for k, (dy, dx) in enumerate(offsets.tolist())]
    )


@torch.no_grad()
def accuracy(model: DigitClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``x`` whose arg-max logit equals ``labels``."""
    return float((model(x).argmax(1) == labels).float().mean())


def train_classifier(epochs: int = 40, seed: int = 0, batch_size: int = 64) -> DigitClassifier:
    """Train ``DigitClassifier`` on the training split (Adam, lr 2e-3, cosine decay)."""
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = digits("train", with_labels=True)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in tqdm(range(epochs), desc="train digits classifier"):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(_shift(x[index], generator)), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Train the digits feature classifier.")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = train_classifier(args.epochs, args.seed)
    seconds = time.perf_counter() - start
    x_test, y_test = digits("test", with_labels=True)
    held_out = accuracy(model, x_test, y_test)
    checkpoint = {
        "format": CLASSIFIER_FORMAT,
        "state_dict": model.state_dict(),
        "metadata": {
            "command": "python -m experiments.models.classifier "
            + shlex.join(sys.argv[1:] if argv is None else argv),
            "epochs": args.epochs,
            "seed": args.seed,
            "seconds": round(seconds, 1),
            "held_out_accuracy": held_out,
            "held_out_size": len(x_test),
            "torch_version": str(torch.__version__),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.out)
    print(checkpoint["metadata"])
    return args.out


if __name__ == "__main__":
    main()
