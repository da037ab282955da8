"""The two kinds of convergence test problem.

* :class:`DiffusionProblem` -- a diffusion probability-flow ODE in the variance-exploding form,
  given by its denoiser ``D(x, sigma)`` (k-diffusion convention ``model(x, sigma_batch)``). With
  ``lambda = -log sigma`` it is the semilinear ODE with *scalar* linear part ``L = -1``
  (``docs/MATH.md`` §1)::

      dx/dlambda = -x + D(x, e^{-lambda}),

  solved from ``sigma_start`` down to ``sigma_end > 0`` (a small ``sigma_min``, not 0, so that the
  error measures the integrator and not a final jump to ``sigma = 0``). Any ODE
  ``dx/dlambda = -x + g(x, lambda)`` is one, with ``D(x, sigma) = g(x, -log sigma)``, so the
  library's samplers (``res_torch.sample``) integrate all of them.
* :class:`SemilinearProblem` -- ``u'(t) = L u + g(u, t)`` with a *matrix* linear part ``L`` (a
  discretised PDE), integrated by :mod:`experiments.convergence.erk_stepper` with matrix phi
  functions.

Each problem knows its solution at the final time: exact where one is manufactured, otherwise a
converged high-accuracy reference (:mod:`experiments.reference`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from res_torch.steppers import Denoiser

__all__ = ["Denoiser", "DiffusionProblem", "ProblemError", "SemilinearProblem"]


class ProblemError(ValueError):
    """A test problem was asked for with invalid settings or an unknown name."""


@dataclass(frozen=True)
class DiffusionProblem:
    """``dx/dlambda = -x + D(x, e^{-lambda})`` from ``sigma_start`` to ``sigma_end``.

    ``solution()`` returns ``x(sigma_end)`` (exact or a converged reference) and
    ``solution_accuracy`` a bound on its error (0 for an exact solution), used as the floor below
    which measured errors are not trusted. ``steps``/``quick_steps`` are the numbers of uniform
    steps in ``lambda`` of the convergence sweep.
    """

    name: str
    description: str
    denoiser: Denoiser
    x_start: torch.Tensor
    sigma_start: float
    sigma_end: float
    solution: Callable[[], torch.Tensor]
    solution_accuracy: Callable[[], float]
    steps: tuple[int, ...]
    quick_steps: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 < self.sigma_end < self.sigma_start:
            raise ProblemError(
                f"{self.name}: need 0 < sigma_end < sigma_start, "
                f"got {self.sigma_end}, {self.sigma_start}"
            )

    @property
    def lambda_span(self) -> float:
        """``log(sigma_start / sigma_end)``, the length of the integration interval in lambda."""
        return math.log(self.sigma_start / self.sigma_end)

    def sigmas(self, n_steps: int) -> torch.Tensor:
        """``n_steps + 1`` noise levels, uniform in ``lambda = -log sigma``, float64."""
        if n_steps < 1:
            raise ProblemError(f"n_steps must be >= 1, got {n_steps}")
        lambdas = torch.linspace(
            -math.log(self.sigma_start),
            -math.log(self.sigma_end),
            n_steps + 1,
            dtype=torch.float64,
            device=self.x_start.device,
        )
        sigmas = torch.exp(-lambdas)
        sigmas[0], sigmas[-1] = self.sigma_start, self.sigma_end
        return sigmas

    def g(self, x: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
        """The nonlinearity ``g(x, lambda) = D(x, e^{-lambda})`` of the semilinear form."""
        sigma = torch.exp(-torch.as_tensor(lam, dtype=x.dtype, device=x.device))
        return self.denoiser(x, sigma * x.new_ones(x.shape[0]))


@dataclass(frozen=True)
class SemilinearProblem:
    """``u'(t) = L u + g(u, t)``, ``u(t0) = u0``, on ``[t0, t_end]`` with a matrix ``L``.

    ``u`` is a vector of shape ``(n,)``; ``linear`` is ``L`` of shape ``(n, n)``; ``exact(t)``
    the exact solution (of the semi-discrete system).
    """

    name: str
    description: str
    linear: torch.Tensor
    g: Callable[[torch.Tensor, float], torch.Tensor]
    u0: torch.Tensor
    t0: float
    t_end: float
    exact: Callable[[float], torch.Tensor]
    steps: tuple[int, ...]
    quick_steps: tuple[int, ...]

    def __post_init__(self) -> None:
        n = self.u0.shape[-1]
        if self.linear.shape != (n, n):
            raise ProblemError(
                f"{self.name}: L has shape {tuple(self.linear.shape)}, expected ({n}, {n})"
            )
        if not self.t_end > self.t0:
            raise ProblemError(f"{self.name}: need t_end > t0, got {self.t0}, {self.t_end}")

    def solution(self) -> torch.Tensor:
        return self.exact(self.t_end)
