"""The league's testbeds: exact float64 denoisers and the trained networks, registered in one place.

Every testbed is an EDM denoiser ``D(x, sigma)`` (variance exploding, ``docs/MATH.md`` §1) with
a sample shape and a league batch size. The exact ones are Gaussian mixtures, whose posterior
mean is closed-form (:class:`experiments.problems.gaussian_mixture.GaussianMixture`):

* ``gmm``: the paper experiments' random 4-component mixture in ``R^16``
  (:func:`experiments.problems.get_problem`);
* ``gmm_sharp``: ``R^32``, 4 components with unequal weights ``0.7, 0.2, 0.08, 0.02`` and tiny
  covariances (eigen-standard-deviations uniform in ``[0.01, 0.05]``);
* ``gmm_aniso``: ``R^32``, 4 components whose covariance eigenvalues are log-uniform in
  ``[1e-4, 1]`` (standard deviations ``1e-2 .. 1``) in random rotations;
* ``kernel_digits`` / ``kernel_patches``: kernel denoisers of real data smoothed with
  ``N(0, s^2 I)``, ``s = 0.15`` (data in ``[-1, 1]``): the data distribution is
  ``(1/N) sum_i N(y_i, s^2 I)`` over the 1437 digits training images (``8 x 8``) or 1000 ``8 x 8``
  RGB crops of the bundled photographs, so its exact denoiser is the equal-weight mixture
  denoiser (:class:`SmoothedKernelDenoiser`) and, unlike the pure empirical denoiser
  (``s = 0``), its ODE does not end on a training point.

The trained testbeds are the bundled EDM networks ``digits`` and ``patches32``
(``experiments.models.load.load_denoiser``, evaluated in float32 on float64 states).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

__all__ = [
    "KERNEL_SMOOTHING",
    "TESTBEDS",
    "SmoothedKernelDenoiser",
    "Testbed",
    "TestbedError",
    "get_testbed",
    "scaled_testbed",
]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KERNEL_SMOOTHING = 0.15
EXACT_BATCH, QUICK_BATCH = 32, 16  # league sample counts of the exact testbeds


class TestbedError(ValueError):
    """Unknown testbed name or invalid testbed data."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class Testbed:
    """A denoiser the league samples from: ``kind`` is ``"exact"`` or ``"trained"``; ``batch``
    and ``quick_batch`` are the league's sample counts; ``reference_rtol`` the DOP853 tolerance
    of its reference (tighter for float64 denoisers than for float32 networks)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    denoiser: Denoiser
    batch: int
    quick_batch: int
    reference_rtol: float
    description: str


class SmoothedKernelDenoiser:
    """Exact denoiser of ``p_0 = (1/N) sum_i N(y_i, s^2 I)`` (the data ``y_i`` smoothed by s).

    ``x = x_0 + sigma eps`` is distributed as ``(1/N) sum_i N(y_i, (s^2 + sigma^2) I)``; by Bayes'
    rule per component and the conditional-Gaussian mean (the mixture formula of
    :mod:`experiments.problems.gaussian_mixture` with equal weights and ``Sigma_k = s^2 I``)

        D(x, sigma) = c x + (1 - c) sum_i r_i(x) y_i,   c = s^2 / (s^2 + sigma^2),
        r_i(x) = softmax_i( -|x - y_i|^2 / (2 (s^2 + sigma^2)) ).

    ``s = 0`` is the empirical denoiser; here ``s > 0`` is required. Float64 throughout.

    >>> data = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    >>> kernel = SmoothedKernelDenoiser(data, 0.5)
    >>> float(kernel(torch.zeros(1, 1, dtype=torch.float64), torch.ones(1)))  # symmetric point
    0.0
    """

    def __init__(self, data: torch.Tensor, smoothing: float) -> None:
        if data.ndim < 2 or data.shape[0] < 1:
            raise TestbedError(f"data must have shape (N, ...) with N >= 1, got {data.shape}")
        if not smoothing > 0:
            raise TestbedError(f"smoothing must be > 0, got {smoothing}")
        self.sample_shape = tuple(data.shape[1:])
        self.flat = data.reshape(data.shape[0], -1).to(torch.float64)
        self.norms = (self.flat**2).sum(-1)
        self.smoothing = float(smoothing)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.sample_shape:
            raise TestbedError(
                f"inputs have sample shape {tuple(x.shape[1:])}, data {self.sample_shape}"
            )
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=flat.device).reshape(-1, 1)
        variance = self.smoothing**2 + sigma**2
        data, norms = self.flat.to(flat.device), self.norms.to(flat.device)
        squared = ((flat**2).sum(-1, keepdim=True) - 2 * flat @ data.T + norms).clamp_min(0)
        mean = torch.softmax(-squared / (2 * variance), dim=-1) @ data
        shrink = self.smoothing**2 / variance
        return (shrink * flat + (1 - shrink) * mean).reshape(x.shape).to(x.dtype)


def _mixture(dim: int, weights: list[float], log_std_range: tuple[float, float], seed: int):
    """Random mixture: means ``N(0, 2^2 I)``, random rotations, eigen-standard-deviations
    ``exp(uniform(log_std_range))``."""
    from experiments.problems.gaussian_mixture import GaussianMixture

    generator = torch.Generator().manual_seed(seed)
    kw = {"dtype": torch.float64, "generator": generator}
    k = len(weights)
    means = 2.0 * torch.randn(k, dim, **kw)
    rotations, _ = torch.linalg.qr(torch.randn(k, dim, dim, **kw))
    low, high = log_std_range
    stds = torch.exp(low + (high - low) * torch.rand(k, dim, **kw))
    covariances = rotations @ torch.diag_embed(stds**2) @ rotations.transpose(1, 2)
    covariances = (covariances + covariances.transpose(1, 2)) / 2
    return GaussianMixture(torch.tensor(weights, dtype=torch.float64), means, covariances)


_MIXTURES: dict[str, tuple[list[float], tuple[float, float], int, str]] = {
    "gmm_sharp": (
        [0.7, 0.2, 0.08, 0.02],
        (math.log(0.01), math.log(0.05)),
        1,
        "R^32, weights 0.7/0.2/0.08/0.02, component stds 0.01-0.05",
    ),
    "gmm_aniso": (
        [0.25, 0.25, 0.25, 0.25],
        (math.log(1e-2), 0.0),
        2,
        "R^32, 4 components, covariance eigenvalues 1e-4..1",
    ),
}
"""The random mixtures in R^32: weights, range of the log component stds, seed, description."""


def _build(name: str, device: torch.device) -> Testbed:
    if name == "gmm":
        from experiments.problems import get_problem

        problem = get_problem("gmm", device)
        return Testbed(
            name,
            "exact",
            problem.shape,
            problem.denoiser,
            EXACT_BATCH,
            QUICK_BATCH,
            1e-10,
            "4-component Gaussian mixture in R^16 (the paper experiments' gmm)",
        )
    if name in _MIXTURES:
        weights, log_std_range, seed, description = _MIXTURES[name]
        mixture = _mixture(32, weights, log_std_range, seed)
        return Testbed(
            name,
            "exact",
            (32,),
            mixture.denoiser,
            EXACT_BATCH,
            QUICK_BATCH,
            1e-10,
            description,
        )
    if name == "kernel_digits":
        from experiments.models.load import bundled_dataset

        data = bundled_dataset("digits", "train").to(device, torch.float64)
        return Testbed(
            name,
            "exact",
            (1, 8, 8),
            SmoothedKernelDenoiser(data, KERNEL_SMOOTHING),
            EXACT_BATCH,
            QUICK_BATCH,
            1e-10,
            f"1437 digits (8x8) smoothed by N(0, {KERNEL_SMOOTHING}^2)",
        )
    if name == "kernel_patches":
        from experiments.models.data import PatchSampler

        data = PatchSampler("train", seed=0, size=8).sample(1000).to(device, torch.float64)
        return Testbed(
            name,
            "exact",
            (3, 8, 8),
            SmoothedKernelDenoiser(data, KERNEL_SMOOTHING),
            EXACT_BATCH,
            QUICK_BATCH,
            1e-10,
            f"1000 RGB 8x8 photo crops smoothed by N(0, {KERNEL_SMOOTHING}^2)",
        )
    if name in ("digits", "patches32"):
        from experiments.problems import get_problem

        problem = get_problem(name, device)
        batch = (32, 8) if name == "digits" else (4, 2)  # docs/league.md: Sample counts
        return Testbed(
            name,
            "trained",
            problem.shape,
            problem.denoiser,
            *batch,
            1e-6,
            f"trained EDM network {name} (float32)",
        )
    raise TestbedError(f"unknown testbed {name!r}; known: {', '.join(TESTBEDS)}")


TESTBEDS: tuple[str, ...] = (
    "gmm",
    "gmm_sharp",
    "gmm_aniso",
    "kernel_digits",
    "kernel_patches",
    "digits",
    "patches32",
)


@cache
def _cached(name: str, device: str) -> Testbed:
    return _build(name, torch.device(device))


def get_testbed(name: str, device: torch.device | str = "cpu") -> Testbed:
    """The :class:`Testbed` called ``name`` (built once per process and device)."""
    if name not in TESTBEDS:
        raise TestbedError(f"unknown testbed {name!r}; known: {', '.join(TESTBEDS)}")
    return _cached(name, str(torch.device(device)))


def scaled_testbed(testbed: Testbed, scale: float) -> Testbed:
    """``testbed`` with its data multiplied by ``scale > 0``: if ``x = y + sigma eps`` for data
    ``y``, then ``x = k y + sigma eps`` has ``x/k = y + (sigma/k) eps``, so the denoiser of the
    scaled data is ``D_k(x, sigma) = k D(x/k, sigma/k)``, exact where ``D`` is (named
    ``<name>_x<scale>``; the league's robustness to data far from unit scale,
    ``docs/designed_methods.md``).

    >>> data = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    >>> base = Testbed("pair", "exact", (1,), SmoothedKernelDenoiser(data, 0.5), 2, 2, 1e-10, "")
    >>> wide = scaled_testbed(base, 10.0)
    >>> x, sigma = torch.full((1, 1), 0.3, dtype=torch.float64), torch.ones(1)
    >>> wide.name, bool(wide.denoiser(10 * x, 10 * sigma) == 10 * base.denoiser(x, sigma))
    ('pair_x10', True)
    """
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise TestbedError(f"data scale must be a finite number > 0, got {scale!r}")
    if scale == 1:
        return testbed
    denoiser = testbed.denoiser

    def scaled(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return scale * denoiser(x / scale, sigma / scale)

    return Testbed(
        f"{testbed.name}_x{scale:g}", testbed.kind, testbed.shape, scaled, testbed.batch,
        testbed.quick_batch, testbed.reference_rtol,
        f"{testbed.description}, data scaled by {scale:g}",
    )  # fmt: skip
