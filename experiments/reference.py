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
) -> tuple[torch.Tensor, int]:
    """``x(sigma_end)`` from ``x(sigma_start) = x`` by ``scipy.integrate.solve_ivp`` in lambda.

    ``denoiser(x, sigma_batch)`` is evaluated in float64 on ``x``'s device. Returns the solution
    (``x``'s dtype and device) and the number of denoiser evaluations.
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
    result = solve_ivp(rhs, span, y0, method=method, rtol=rtol, atol=atol)
    if result.status != 0:
        raise ReferenceError(f"{method} failed: {result.message}")
    final = torch.from_numpy(result.y[:, -1].copy()).reshape(shape)
    return final.to(device=device, dtype=x.dtype), int(result.nfev)


def converged_reference(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma_start: float,
    sigma_end: float,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    refinement: float = 100.0,
    bound: float = 1e-8,
) -> ReferenceSolution:
    """Solve at ``(rtol, atol)`` and ``refinement`` times tighter; check they agree to ``bound``.

    Returns the tighter solve. Raises :class:`ReferenceNotConvergedError` when the max-norm
    difference of the two exceeds ``bound``.
    """
    if refinement <= 1:
        raise ReferenceError(f"refinement must be > 1, got {refinement}")
    loose, n_loose = solve_probability_flow(denoiser, x, sigma_start, sigma_end, rtol, atol)
    tight_rtol, tight_atol = rtol / refinement, atol / refinement
    tight, n_tight = solve_probability_flow(
        denoiser, x, sigma_start, sigma_end, tight_rtol, tight_atol
    )
    difference = float((tight - loose).abs().max())
    if not difference <= bound:
        raise ReferenceNotConvergedError(
            f"reference not converged: DOP853 at rtol={rtol:g} and rtol={tight_rtol:g} differ by "
            f"{difference:.3g} (max norm) > bound {bound:g}"
        )
    return ReferenceSolution(tight, difference, tight_rtol, tight_atol, n_loose + n_tight)
