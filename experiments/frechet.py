"""Fréchet distances between Gaussian fits of image features (sample-quality metrics).

The Fréchet (2-Wasserstein) distance between ``N(mu1, C1)`` and ``N(mu2, C2)`` is

    d^2 = ||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2})

(Dowson & Landau 1982; used as FID by Heusel et al. 2017). ``(C1 C2)^{1/2}`` is computed with
``scipy.linalg.sqrtm`` and the safeguards of the reference implementations (pytorch-fid): if the
root is not finite, ``eps * I`` is added to both covariances; a complex root whose imaginary
part is negligible is replaced by its real part (a large one raises ``ValueError``).

The metrics are named after their feature spaces -- none of them is ImageNet FID:

* **FDD, Fréchet Digits Distance**: penultimate (64-d) features of the small CNN classifier
  ``experiments/checkpoints/digits_classifier.pt`` trained on scikit-learn's 8x8 digits.
* **FRCD, Fréchet Random-Conv Distance**: features of a fixed, *untrained* convolutional
  network (Kaiming-normal weights drawn from seed 0; three 3x3 conv + ReLU layers, average
  pooling, global mean and standard-deviation pooling, 256-d). It measures mismatch of local
  colour/edge/texture statistics of 32x32 patches; it is reproducible without downloads but has
  no perceptual calibration.
* **FID** (Inception): when the user supplies TorchScript Inception-v3 weights by path (the
  NVlabs / EDM ``inception-2015-12-05.pt`` convention: input float images in ``[0, 255]`` of
  shape ``(N, 3, H, W)``, called with ``return_features=True``, 2048-d pool features).

Images live in ``[-1, 1]``, the pixel range of the data and the input range of the feature
networks. :func:`frechet_distance_of_images` and the command line, which take image sets, refuse
non-finite values and values outside ``[-1, 1]`` beyond :data:`RANGE_TOLERANCE` (float
rounding) with a ``ValueError`` (images in ``[0, 1]`` or ``[0, 255]`` must be rescaled first, a
sampler's output clamped). :func:`extract_features`, which the sampling problems
(:mod:`experiments.problems.sampling`) apply to raw sampler outputs, refuses non-finite values
and clamps to ``[-1, 1]``: a sampler overshoots the data range (the trained digits network's
samples reach about +-1.05 with DDIM and +-4.3 with Heun at NFE 9), and clamping is how its
output becomes an image.

    python -m experiments.frechet --model digits --samples samples.pt
    python -m experiments.frechet --model patches32 --samples s.pt --feature-extractor incep.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

from experiments.models.classifier import CLASSIFIER_FORMAT, DigitClassifier
from experiments.models.load import CHECKPOINT_DIR, CheckpointError, bundled_dataset

__all__ = [
    "DigitsClassifierFeatures",
    "RANGE_TOLERANCE",
    "RandomConvFeatures",
    "TorchScriptFeatures",
    "check_image_range",
    "default_feature_extractor",
    "extract_features",
    "frechet_distance",
    "frechet_distance_of_features",
    "frechet_distance_of_images",
    "gaussian_fit",
    "main",
]

DIGITS_CLASSIFIER = CHECKPOINT_DIR / "digits_classifier.pt"
RANGE_TOLERANCE = 1e-6  # float rounding of images in [-1, 1], e.g. averages of data images
METRIC_NAMES = {
    "digits": "FDD (Fréchet Digits Distance)",
    "patches32": "FRCD (Fréchet Random-Conv Distance)",
}


def gaussian_fit(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of the rows of an ``(N, d)`` array, ``N >= 2``."""
    if torch.is_tensor(features):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must have shape (N >= 2, d), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinity")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, eps: float = 1e-6
) -> float:
    """``||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2})`` (squared 2-Wasserstein distance)."""
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    cov1, cov2 = (
        np.atleast_2d(np.asarray(cov1, np.float64)),
        np.atleast_2d(np.asarray(cov2, np.float64)),
    )
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, "
            f"cov1 {cov1.shape}, cov2 {cov2.shape}"
        )
    root = linalg.sqrtm(cov1 @ cov2)
    if not np.all(np.isfinite(root)):
        offset = eps * np.eye(d)
        root = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(
                f"sqrtm(C1 C2) has imaginary part {np.max(np.abs(root.imag)):.3g}: "
                "covariances are not positive semi-definite"
            )
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root))


def frechet_distance_of_features(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor
) -> float:
    """Fréchet distance between the Gaussian fits of two ``(N, d)`` feature sets."""
    return frechet_distance(*gaussian_fit(a), *gaussian_fit(b))


class DigitsClassifierFeatures(nn.Module):
    """Penultimate features of the digits classifier checkpoint, ``(N, 1, 8, 8) -> (N, 64)``."""

    def __init__(self, path: str | Path = DIGITS_CLASSIFIER) -> None:
        super().__init__()
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{path} is not a readable torch checkpoint: {error}") from error
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CLASSIFIER_FORMAT:
            raise CheckpointError(f"{path} is not a {CLASSIFIER_FORMAT!r} checkpoint")
        self.classifier = DigitClassifier()
        self.classifier.load_state_dict(checkpoint["state_dict"])
        self.metadata = checkpoint.get("metadata", {})
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


class RandomConvFeatures(nn.Module):
    """Fixed untrained conv features of RGB images (``(N, 3, H, W)`` -> ``(N, 256)``).

    ``conv3x3(3->32) ReLU avgpool2 conv3x3(32->64) ReLU avgpool2 conv3x3(64->128) ReLU``, then
    the per-channel spatial mean and standard deviation; Kaiming-normal weights, zero biases,
    drawn from ``torch.Generator().manual_seed(seed)`` (identical on every machine and device).
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        widths = [3, 32, 64, 128]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:], strict=False)
        )
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=generator) * (2 / fan_in) ** 0.5
                )
                conv.bias.zero_()
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images of shape (N, 3, H, W), got {tuple(x.shape)}")
        h = x
        for k, conv in enumerate(self.convs):
            h = torch.relu(conv(h))
            if k < len(self.convs) - 1:
                h = nn.functional.avg_pool2d(h, 2)
        return torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3))], dim=1)


class TorchScriptFeatures(nn.Module):
    """A user-supplied TorchScript feature network, e.g. EDM's ``inception-2015-12-05.pt``.

    Images in ``[-1, 1]`` are mapped to ``[0, 255]``; single-channel images are repeated to
    RGB; the network is called as ``net(x, return_features=True)`` when it accepts that keyword,
    else ``net(x)``; the output is flattened to ``(N, d)``.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no TorchScript feature network at {path}")
        try:
            self.net = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise CheckpointError(f"{path} is not a TorchScript archive: {error}") from error
        self.net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) * 127.5
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        try:
            out = self.net(x, return_features=True)
        except (RuntimeError, TypeError):
            out = self.net(x)
        return out.reshape(x.shape[0], -1)


def default_feature_extractor(model: str) -> nn.Module:
    """The feature network of a bundled model's metric (``METRIC_NAMES``)."""
    if model == "digits":
        return DigitsClassifierFeatures()
    if model == "patches32":
        return RandomConvFeatures(seed=0)
    raise ValueError(
        f"no default feature network for {model!r}; choose from {sorted(METRIC_NAMES)}"
    )


def _check_images(images: torch.Tensor, what: str) -> None:
    """``ValueError`` unless ``images`` is an ``(N, C, H, W)`` tensor of finite values."""
    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError(
            f"{what} must be a (N, C, H, W) tensor, got {getattr(images, 'shape', images)}"
        )
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{what} contain NaN or infinity")


def check_image_range(images: torch.Tensor, what: str = "images") -> None:
    """``ValueError`` (naming ``what``) unless ``images`` is an ``(N, C, H, W)`` tensor of
    finite values in ``[-1, 1]``, up to :data:`RANGE_TOLERANCE`."""
    _check_images(images, what)
    if bool((images.abs() > 1 + RANGE_TOLERANCE).any()):
        raise ValueError(
            f"{what} have values in [{float(images.min()):.4g}, {float(images.max()):.4g}], "
            "outside [-1, 1], the image range of the data and the feature networks (rescale "
            "images in [0, 1] or [0, 255], clamp a sampler's output)"
        )


@torch.no_grad()
def extract_features(
    extractor: nn.Module, images: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """Features of ``images`` in batches, on the images' device: ``ValueError`` for a
    non-finite value; values outside ``[-1, 1]`` are clamped (module docstring)."""
    _check_images(images, "images")
    extractor = extractor.to(images.device)
    parts = [extractor(chunk.clamp(-1, 1)) for chunk in images.split(batch_size)]
    return torch.cat(parts).to(torch.float64)


def frechet_distance_of_images(
    samples: torch.Tensor, reference: torch.Tensor, extractor: nn.Module, batch_size: int = 500
) -> float:
    """Fréchet distance between Gaussian fits of ``extractor`` features of two image sets;
    ``ValueError`` (:func:`check_image_range`) for either set with a value outside ``[-1, 1]``
    or a non-finite one."""
    check_image_range(samples, "samples")
    check_image_range(reference, "reference images")
    return frechet_distance_of_features(
        extract_features(extractor, samples, batch_size).cpu(),
        extract_features(extractor, reference, batch_size).cpu(),
    )


def _read_images(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path)).float()
    value = torch.load(path, map_location="cpu", weights_only=True)
    if not torch.is_tensor(value):
        raise ValueError(f"must hold a single (N, C, H, W) tensor, got {type(value).__name__}")
    return value.float()


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        description="Fréchet distance of samples to a bundled data set."
    )
    parser.add_argument("--model", choices=sorted(METRIC_NAMES), required=True)
    parser.add_argument(
        "--samples", type=Path, required=True, help=".pt or .npy, (N, C, H, W) in [-1, 1]"
    )
    parser.add_argument("--reference-split", choices=["train", "test"], default="train")
    parser.add_argument("--reference-count", type=int, default=5000, help="patches32 only")
    parser.add_argument("--feature-extractor", type=Path, help="TorchScript feature network (FID)")
    args = parser.parse_args(argv)
    try:
        samples = _read_images(args.samples)
        check_image_range(samples, "samples")
    except (OSError, ValueError) as err:
        parser.error(f"--samples {args.samples}: {err}")
    reference = bundled_dataset(args.model, args.reference_split, args.reference_count)
    if args.feature_extractor is None:
        extractor, name = default_feature_extractor(args.model), METRIC_NAMES[args.model]
    else:
        extractor, name = TorchScriptFeatures(args.feature_extractor), "FID (user-supplied network)"
    value = frechet_distance_of_images(samples, reference, extractor)
    print(
        f"{name}: {value:.6g}  ({len(samples)} samples vs "
        f"{len(reference)} {args.reference_split} images)"
    )
    return value


if __name__ == "__main__":
    main()
