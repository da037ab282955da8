"""Convergence test problems with exact or converged reference solutions.

========================  ======================================================================
name                      problem
========================  ======================================================================
manufactured_sine         ``dx/dλ = -x + g``, manufactured exact solution, ``N(x) = sin 2x``
manufactured_logistic     same, ``N(x) = x^2``
manufactured_coupled      same in ``R^2``, ``N(x) = tanh(M x)``
hochbruck_ostermann       stiff parabolic PDE, matrix linear part (Hochbruck & Ostermann 2005)
gaussian_mixture          probability-flow ODE of a 16-d Gaussian mixture, exact denoiser
digits                    probability-flow ODE of the empirical optimal denoiser of 8x8 digits
========================  ======================================================================

:func:`get_problem` builds one by name; :data:`PROBLEMS` maps names to zero-argument factories.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from experiments.problems.base import DiffusionProblem, ProblemError, SemilinearProblem
from experiments.problems.digits import EmpiricalDenoiser, digits_problem
from experiments.problems.gaussian_mixture import GaussianMixture, gaussian_mixture_problem
from experiments.problems.manufactured import MANUFACTURED, manufactured_problem
from experiments.problems.parabolic import hochbruck_ostermann_problem

__all__ = [
    "PROBLEMS",
    "DiffusionProblem",
    "EmpiricalDenoiser",
    "GaussianMixture",
    "Problem",
    "ProblemError",
    "SemilinearProblem",
    "digits_problem",
    "gaussian_mixture_problem",
    "get_problem",
    "hochbruck_ostermann_problem",
    "manufactured_problem",
]

Problem = DiffusionProblem | SemilinearProblem

PROBLEMS: dict[str, Callable[[], Problem]] = {
    **{f"manufactured_{name}": partial(manufactured_problem, name) for name in MANUFACTURED},
    "hochbruck_ostermann": hochbruck_ostermann_problem,
    "gaussian_mixture": gaussian_mixture_problem,
    "digits": digits_problem,
}


def get_problem(name: str) -> Problem:
    """The problem called ``name`` (a key of :data:`PROBLEMS`) with its default settings."""
    if name not in PROBLEMS:
        raise ProblemError(f"unknown problem {name!r}; available: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]()
