"""Semilinear ODEs ``dx/dlambda = -x + g(x, lambda)`` with manufactured exact solutions.

Method of manufactured solutions (Roache, *Verification and Validation in Computational Science
and Engineering*, 1998, ch. 3; Salari & Knupp, Sandia SAND2000-1444): choose a smooth exact
solution ``x*(lambda)`` and a smooth nonlinearity ``N(x)``, and set

    g(x, lambda) = x*'(lambda) + x*(lambda) - N(x*(lambda)) + N(x),

so that ``x*`` solves ``dx/dlambda = -x + g(x, lambda)`` exactly, while ``g`` depends on ``x``
through ``N`` (Jacobian ``N'(x)``, which is what stages of a Runge–Kutta method probe). As a
diffusion ODE (``docs/MATH.md`` §1) this is ``sigma = e^{-lambda}``,
``D(x, sigma) = g(x, -log sigma)``: the scalar linear part ``L = -1`` of diffusion sampling.

The three problems, each over ``lambda in [0, 3]`` (``sigma`` from 1 to ``e^{-3}``), a batch of
three trajectories:

* ``sine``: ``x* = a + sin(2 lambda)/2``, ``N(x) = sin(2x)``, ``a in {0.5, -0.3, 1}``, ``d = 1``.
* ``logistic``: ``x* = a / (1 + e^{-lambda})``, ``N(x) = x^2``, ``a in {0.5, 1, -0.8}``, ``d = 1``.
* ``coupled``: ``x* = a (cos lambda, sin lambda)``, ``N(x) = tanh(M x)`` with the non-normal
  ``M = [[0.5, 1.5], [-1.5, 0.5]]``, ``a in {0.7, 1, 1.3}``, ``d = 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from experiments.problems.base import DiffusionProblem, ProblemError

__all__ = ["MANUFACTURED", "ManufacturedSolution", "manufactured_problem"]

LAMBDA_START = 0.0
LAMBDA_END = 3.0
# Up to 512 steps: third- and fourth-order methods (res_3m, Cox-Matthews ETDRK4) are still
# pre-asymptotic on the logistic problem below ~64 steps (local slopes 3.4 and 3.6-4.0).
STEPS = (4, 8, 16, 32, 64, 128, 256, 512)
QUICK_STEPS = (16, 32, 64, 128, 256, 512)

Curve = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ManufacturedSolution:
    """``x*(lambda)``, its derivative and ``N(x)``; ``lambda`` broadcasts against ``(B, d)``."""

    name: str
    exact: Curve
    derivative: Curve
    nonlinear: Callable[[torch.Tensor], torch.Tensor]

    def g(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """``g(x, lambda) = x*' + x* - N(x*) + N(x)``; ``lam`` a scalar or ``(B, 1)`` tensor."""
        star = self.exact(lam)
        return self.derivative(lam) + star - self.nonlinear(star) + self.nonlinear(x)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``D(x, sigma) = g(x, -log sigma)`` for a batch ``x (B, d)``, ``sigma (B,)``."""
        lam = -torch.log(sigma.to(x)).reshape(-1, 1)
        return self.g(x, lam)


def _column(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 1)


def _sine() -> ManufacturedSolution:
    a = _column((0.5, -0.3, 1.0))
    return ManufacturedSolution(
        "sine",
        exact=lambda lam: a.to(lam) + torch.sin(2 * lam) / 2,
        derivative=lambda lam: torch.cos(2 * lam) + 0 * a.to(lam),
        nonlinear=lambda x: torch.sin(2 * x),
    )


def _logistic() -> ManufacturedSolution:
    a = _column((0.5, 1.0, -0.8))
    return ManufacturedSolution(
        "logistic",
        exact=lambda lam: a.to(lam) * torch.sigmoid(lam),
        derivative=lambda lam: a.to(lam) * torch.sigmoid(lam) * torch.sigmoid(-lam),
        nonlinear=lambda x: x**2,
    )


def _coupled() -> ManufacturedSolution:
    a = _column((0.7, 1.0, 1.3))
    m = torch.tensor([[0.5, 1.5], [-1.5, 0.5]], dtype=torch.float64)
    return ManufacturedSolution(
        "coupled",
        exact=lambda lam: a.to(lam) * torch.cat([torch.cos(lam), torch.sin(lam)], dim=-1),
        derivative=lambda lam: a.to(lam) * torch.cat([-torch.sin(lam), torch.cos(lam)], dim=-1),
        nonlinear=lambda x: torch.tanh(x @ m.to(x).T),
    )


MANUFACTURED: dict[str, Callable[[], ManufacturedSolution]] = {
    "sine": _sine,
    "logistic": _logistic,
    "coupled": _coupled,
}


def manufactured_problem(name: str, device: torch.device | str | None = None) -> DiffusionProblem:
    """The manufactured problem ``name`` (a key of :data:`MANUFACTURED`) as a diffusion ODE."""
    if name not in MANUFACTURED:
        raise ProblemError(
            f"unknown manufactured problem {name!r}; available: {', '.join(MANUFACTURED)}"
        )
    solution = MANUFACTURED[name]()
    start = torch.tensor([[LAMBDA_START]], dtype=torch.float64, device=device)
    end = torch.tensor([[LAMBDA_END]], dtype=torch.float64, device=device)
    return DiffusionProblem(
        name=f"manufactured_{name}",
        description=f"dx/dlambda = -x + g(x, lambda), manufactured exact solution ({name})",
        denoiser=solution.denoiser,
        x_start=solution.exact(start),
        sigma_start=math.exp(-LAMBDA_START),
        sigma_end=math.exp(-LAMBDA_END),
        solution=lambda: solution.exact(end),
        solution_accuracy=lambda: 0.0,
        steps=STEPS,
        quick_steps=QUICK_STEPS,
    )
