"""Training and held-out data that ship inside installed packages (no downloads).

Two data sets, both scaled to ``[-1, 1]`` and laid out ``(N, C, H, W)``:

* ``digits``: scikit-learn's 8x8 handwritten digits (UCI ML hand-written digits, 1797 images,
  grey levels 0..16), ``x = v / 8 - 1``, shape ``(N, 1, 8, 8)``. A fixed permutation (seed 0)
  holds out 20% as the ``"test"`` split.
* ``patches32``: 32x32 RGB crops of the colour photographs bundled with scikit-image
  (``BUNDLED_PHOTOS``), ``x = v / 127.5 - 1``, random position and random horizontal flip,
  deterministic given the seed. Held-out data: crops whose columns lie in the rightmost
  ``HELD_OUT_WIDTH_FRACTION`` of each photograph; training crops lie entirely left of it, so the
  two splits share no pixel.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
import torch

__all__ = [
    "BUNDLED_PHOTOS",
    "HELD_OUT_WIDTH_FRACTION",
    "PatchSampler",
    "Split",
    "digits",
    "image_patches",
]

Split = Literal["train", "test"]

DIGITS_HELD_OUT_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
HELD_OUT_WIDTH_FRACTION = 0.2
# Colour photographs stored inside the scikit-image wheel (skimage/data/*.png|jpg); the other
# skimage.data images need a network download through pooch.
BUNDLED_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


@cache
def _digits_numpy() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 8.0 - 1.0
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    return images[order][:, None], bunch.target[order].astype(np.int64)


def digits(split: Split = "train", *, with_labels: bool = False):
    """scikit-learn's 8x8 digits in ``[-1, 1]``, shape ``(N, 1, 8, 8)``, float32.

    ``split="train"`` is 80% of the 1797 images, ``"test"`` the other 20% (fixed permutation).
    With ``with_labels=True`` returns ``(images, labels)`` with integer labels 0..9.
    """
    _check_split(split)
    images, labels = _digits_numpy()
    n_test = round(DIGITS_HELD_OUT_FRACTION * len(images))
    part = slice(n_test, None) if split == "train" else slice(0, n_test)
    x = torch.from_numpy(images[part].copy())
    return (x, torch.from_numpy(labels[part].copy())) if with_labels else x


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle_left":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        image = getattr(skimage.data, name)()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is not an 8-bit RGB photograph")
    return image


class PatchSampler:
    """Random ``size x size`` RGB crops of the bundled photographs, in ``[-1, 1]``.

    Each crop picks a photograph uniformly, a uniform top-left corner inside the split's column
    range, and a horizontal flip with probability 1/2; all draws come from a
    ``numpy.random.Generator`` seeded with ``seed``, so a sampler reproduces its sequence.
    """

    def __init__(self, split: Split = "train", *, seed: int = 0, size: int = 32) -> None:
        _check_split(split)
        if size < 1:
            raise ValueError(f"patch size must be positive, got {size}")
        self.size = size
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.photos = []
        for name in BUNDLED_PHOTOS:
            image = _photo(name)
            cut = int(round(image.shape[1] * (1 - HELD_OUT_WIDTH_FRACTION)))
            region = image[:, :cut] if split == "train" else image[:, cut:]
            if region.shape[0] < size or region.shape[1] < size:
                raise ValueError(f"{name}: {split} region {region.shape[:2]} smaller than {size}")
            self.photos.append(region)

    def sample(self, count: int) -> torch.Tensor:
        """``count`` crops as a float32 tensor of shape ``(count, 3, size, size)``."""
        if count < 1:
            raise ValueError(f"count must be positive, got {count}")
        out = np.empty((count, self.size, self.size, 3), dtype=np.uint8)
        which = self.rng.integers(len(self.photos), size=count)
        flips = self.rng.random(count) < 0.5
        for k in range(count):
            photo = self.photos[which[k]]
            top = self.rng.integers(photo.shape[0] - self.size + 1)
            left = self.rng.integers(photo.shape[1] - self.size + 1)
            crop = photo[top : top + self.size, left : left + self.size]
            out[k] = crop[:, ::-1] if flips[k] else crop
        x = torch.from_numpy(out).permute(0, 3, 1, 2).float()
        return (x / 127.5 - 1.0).contiguous()


def image_patches(count: int, split: Split = "test", *, seed: int = 0) -> torch.Tensor:
    """``count`` deterministic 32x32 crops of the bundled photographs (see ``PatchSampler``)."""
    return PatchSampler(split, seed=seed, size=32).sample(count)
