"""High-accuracy reference solutions of the probability-flow ODE, checked for convergence.

The ODE is integrated in ``lambda = -log sigma`` (``docs/MATH.md`` §1),

    dx/dlambda = -x + D(x, e^{-lambda}),   lambda from -log sigma_start to -log sigma_end,

by scipy's ``DOP853`` (Dormand & Prince 8(5,3), Hairer, Nørsett & Wanner, *Solving Ordinary
Differential Equations I*, §II.10) at tight tolerances, the whole batch as one state vector
(every sample has its own trajectory; the error control is over all of them together).

:func:`converged_reference` solves twice, at ``(rtol, atol)`` and at tolerances ``refinement``
times tighter, and returns the tighter solution with the maximum difference of the two as its
error estimate; if that exceeds ``bound`` it raises :class:`ReferenceNotConvergedError` instead
of returning a number that cannot be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp

from res_torch.steppers import Denoiser

__all__ = [
    "ReferenceError",
    "ReferenceNotConvergedError",
    "ReferenceSolution",
    "converged_reference",
    "solve_probability_flow",
]


class ReferenceError(ValueError):
    """A reference solve was requested with invalid arguments or the integrator failed."""


class ReferenceNotConvergedError(ReferenceError):
    """Two reference solves at different tolerances disagree by more than the allowed bound."""


@dataclass(frozen=True)
class ReferenceSolution:
    """``x(sigma_end)`` with ``error_estimate`` (max-norm difference to the looser solve)."""

    x: torch.Tensor
    error_estimate: float
    rtol: float
    atol: float
    evaluations: int


def solve_probability_flow(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    method: str = "DOP853",
    progress: Callable[[float], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """``x(sigma_end)`` from ``x(sigma_start) = x`` by ``scipy.integrate.solve_ivp`` in lambda.

    ``denoiser(x, sigma_batch)`` is evaluated in float64 on ``x``'s device. Returns the solution
    (``x``'s dtype and device) and the number of denoiser evaluations. ``progress`` is called
    with the fraction of the lambda interval reached so far (non-decreasing, ending at 1).
    """
    if not 0 < sigma_end < sigma_start:
        raise ReferenceError(f"need 0 < sigma_end < sigma_start, got {sigma_end}, {sigma_start}")
    if not (rtol > 0 and atol > 0):
        raise ReferenceError(f"tolerances must be positive, got rtol={rtol}, atol={atol}")
    shape, device = x.shape, x.device
    ones = torch.ones(shape[0], dtype=torch.float64, device=device)

    def rhs(lam: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).to(device).reshape(shape)
        with torch.no_grad():
            dx = -state + denoiser(state, math.exp(-lam) * ones)
        return dx.reshape(-1).cpu().numpy()

    y0 = x.detach().to(torch.float64).reshape(-1).cpu().numpy()
    span = (-math.log(sigma_start), -math.log(sigma_end))
    fun = rhs if progress is None else _reporting(rhs, span, progress)
    result = solve_ivp(fun, span, y0, method=method, rtol=rtol, atol=atol)
    if result.status != 0:
        raise ReferenceError(f"{method} failed: {result.message}")
    if progress is not None:
        progress(1.0)
    final = torch.from_numpy(result.y[:, -1].copy()).reshape(shape)
    return final.to(device=device, dtype=x.dtype), int(result.nfev)


def _reporting(
    rhs: Callable[[float, np.ndarray], np.ndarray],
    span: tuple[float, float],
    progress: Callable[[float], None],
) -> Callable[[float, np.ndarray], np.ndarray]:
    """``rhs`` that also reports the largest fraction of ``span`` it was evaluated at."""
    reached = [0.0]

    def fun(lam: float, y: np.ndarray) -> np.ndarray:
        fraction = min(max((lam - span[0]) / (span[1] - span[0]), 0.0), 1.0)
        if fraction > reached[0]:
            reached[0] = fraction
            progress(fraction)
        return rhs(lam, y)

    return fun


def converged_reference(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    refinement: float = 100.0,
    bound: float = 1e-8,
    progress: Callable[[float], None] | None = None,
) -> ReferenceSolution:
    """Solve at ``(rtol, atol)`` and ``refinement`` times tighter; check they agree to ``bound``.

    Returns the tighter solve. Raises :class:`ReferenceNotConvergedError` when the max-norm
    difference of the two exceeds ``bound``. ``progress`` receives the fraction done: the
    looser solve's progress in lambda maps to [0, 1/2], the tighter one's to [1/2, 1].
    """
    if refinement <= 1:
        raise ReferenceError(f"refinement must be > 1, got {refinement}")
    first = None if progress is None else (lambda f: progress(f / 2))
    second = None if progress is None else (lambda f: progress((1 + f) / 2))
    loose, n_loose = solve_probability_flow(
        denoiser, x, sigma_start, sigma_end, rtol, atol, progress=first
    )
    tight_rtol, tight_atol = rtol / refinement, atol / refinement
    tight, n_tight = solve_probability_flow(
        denoiser, x, sigma_start, sigma_end, tight_rtol, tight_atol, progress=second
    )
    difference = float((tight - loose).abs().max())
    if not difference <= bound:
        raise ReferenceNotConvergedError(
            f"reference not converged: DOP853 at rtol={rtol:g} and rtol={tight_rtol:g} differ by "
            f"{difference:.3g} (max norm) > bound {bound:g}"
        )
    return ReferenceSolution(tight, difference, tight_rtol, tight_atol, n_loose + n_tight)
