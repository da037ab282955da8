"""The empirical optimal denoiser of scikit-learn's 8x8 digits, and its probability-flow problem.

For the empirical data distribution ``p_0 = (1/N) sum_i delta_{y_i}`` of the training images
``y_i`` and ``x = x_0 + sigma eps``, the posterior over the training set is
``P(y_i | x) = softmax_i(-||x - y_i||^2 / (2 sigma^2))`` and the optimal denoiser (posterior mean,
Karras et al. 2022, Appendix B.3, eq. (57)) is

    D(x, sigma) = sum_i softmax_i(-||x - y_i||^2 / (2 sigma^2)) y_i,

computed with a logsumexp-stable softmax; squared distances as ``||x||^2 - 2 x.y + ||y||^2``
(one matrix product; in float64 the cancellation error, ``~ eps ||y||^2 ≈ 1e-14``, is far below
every error measured here). Its ODE is exactly solvable only through a reference
solve (:mod:`experiments.reference`). Data: ``experiments.models.data.digits("train")``
(1437 images in ``[-1, 1]``, shape ``(1, 8, 8)``).
"""

from __future__ import annotations

from functools import cache

import torch

from experiments.problems.base import DiffusionProblem, ProblemError
from experiments.reference import converged_reference

__all__ = ["EmpiricalDenoiser", "digits_problem"]

SIGMA_START = 20.0
SIGMA_END = 0.2
STEPS = (8, 16, 32, 64, 128, 256, 512)
QUICK_STEPS = (64, 128, 256, 512)


class EmpiricalDenoiser:
    """``D(x, sigma)`` = posterior mean over the rows of ``data`` (module docstring).

    ``data`` has shape ``(N, ...)``; inputs ``x`` have shape ``(B, ...)`` with the same trailing
    shape; ``sigma`` is a scalar or ``(B,)``. Computed in ``x``'s dtype and device.
    """

    def __init__(self, data: torch.Tensor) -> None:
        if data.ndim < 2 or data.shape[0] < 1:
            raise ProblemError(f"data must have shape (N, ...) with N >= 1, got {data.shape}")
        self.data = data
        self.flat = data.reshape(data.shape[0], -1).to(torch.float64)
        self._copies: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _data_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The flattened data and its squared norms in ``x``'s dtype and device (cached)."""
        key = (x.device, x.dtype)
        if key not in self._copies:
            data = self.flat.to(x)
            self._copies[key] = (data, (data**2).sum(-1))
        return self._copies[key]

    def _logits(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        if x.shape[1:] != self.data.shape[1:]:
            raise ProblemError(
                f"inputs have sample shape {tuple(x.shape[1:])}, data {tuple(self.data.shape[1:])}"
            )
        flat = x.reshape(x.shape[0], -1)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1)
        data, data_norms = self._data_like(x)
        squared = ((flat**2).sum(-1, keepdim=True) - 2 * flat @ data.T + data_norms).clamp_min(0)
        return -squared / (2 * sigma**2)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        weights = torch.softmax(self._logits(x, sigma), dim=-1)
        return (weights @ self._data_like(x)[0]).reshape(x.shape)

    def log_weights(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``log P(y_i | x)``, shape ``(B, N)``."""
        return torch.log_softmax(self._logits(x, sigma), dim=-1)


def digits_problem(
    batch: int = 8,
    seed: int = 0,
    sigma_start: float = SIGMA_START,
    sigma_end: float = SIGMA_END,
) -> DiffusionProblem:
    """The probability-flow ODE of the empirical digits denoiser from ``sigma_start`` to
    ``sigma_end``, started at ``sigma_start * eps`` plus held-out test digits (so that the start is
    distributed like ``p_sigma_start`` up to the train/test difference); solution: a converged
    DOP853 reference.
    """
    from experiments.models.data import digits

    generator = torch.Generator().manual_seed(seed)
    denoiser = EmpiricalDenoiser(digits("train").to(torch.float64))
    held_out = digits("test").to(torch.float64)
    if not 1 <= batch <= held_out.shape[0]:
        raise ProblemError(f"batch must be in [1, {held_out.shape[0]}], got {batch}")
    chosen = torch.randperm(held_out.shape[0], generator=generator)[:batch]
    noise = torch.randn(held_out[chosen].shape, dtype=torch.float64, generator=generator)
    x_start = held_out[chosen] + sigma_start * noise

    @cache
    def reference():
        return converged_reference(denoiser, x_start, sigma_start, sigma_end)

    return DiffusionProblem(
        name="digits_exact_ode",
        description=(
            "probability-flow ODE of the empirical optimal denoiser of sklearn digits "
            f"(1437 training images), sigma {sigma_start:g} -> {sigma_end:g}"
        ),
        denoiser=denoiser,
        x_start=x_start,
        sigma_start=sigma_start,
        sigma_end=sigma_end,
        solution=lambda: reference().x,
        solution_accuracy=lambda: reference().error_estimate,
        steps=STEPS,
        quick_steps=QUICK_STEPS,
    )
