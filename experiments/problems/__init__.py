"""The one registry of test problems: :data:`PROBLEMS` and :func:`get_problem`.

Two kinds, by what they serve:

*Convergence problems* (:data:`CONVERGENCE_PROBLEMS`, for :mod:`experiments.convergence`): an
ODE with its exact or converged solution at the final time, float64 on the CPU.

========================  ======================================================================
name                      problem
========================  ======================================================================
manufactured_sine         ``dx/dλ = -x + g``, manufactured exact solution, ``N(x) = sin 2x``
manufactured_logistic     same, ``N(x) = x^2``
manufactured_coupled      same in ``R^2``, ``N(x) = tanh(M x)``
hochbruck_ostermann       stiff parabolic PDE, matrix linear part (Hochbruck & Ostermann 2005)
gmm_ode                   probability-flow ODE of the ``gmm`` denoiser from a fixed start
digits_exact_ode          probability-flow ODE of the ``digits_exact`` denoiser, fixed start
========================  ======================================================================

*Sampling problems* (:data:`SAMPLING_PROBLEMS`, for :mod:`experiments.diffusion`): a denoiser
with a feature space and a data set to score samples against
(:class:`~experiments.problems.sampling.SamplingProblem`): ``gmm`` (exact, 16-d Gaussian
mixture), ``digits_exact`` (exact, empirical digits denoiser), ``digits`` and ``patches32``
(the trained EDM networks).

>>> from experiments.problems import get_problem
>>> get_problem("manufactured_sine").name
'manufactured_sine'
>>> get_problem("gmm").kind
'exact'

A new problem: write its factory in a module of this package and add one line to
:data:`PROBLEMS` (and its name to the tuple of its kind).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial

import torch

from experiments.problems.base import DiffusionProblem, ProblemError, SemilinearProblem
from experiments.problems.digits import EmpiricalDenoiser, digits_problem
from experiments.problems.gaussian_mixture import GaussianMixture, gaussian_mixture_problem
from experiments.problems.manufactured import MANUFACTURED, manufactured_problem
from experiments.problems.parabolic import hochbruck_ostermann_problem
from experiments.problems.sampling import SAMPLING_PROBLEMS, SamplingProblem, sampling_problem

__all__ = [
    "CONVERGENCE_PROBLEMS",
    "PROBLEMS",
    "SAMPLING_PROBLEMS",
    "ConvergenceProblem",
    "DiffusionProblem",
    "EmpiricalDenoiser",
    "GaussianMixture",
    "Problem",
    "ProblemError",
    "SamplingProblem",
    "SemilinearProblem",
    "digits_problem",
    "gaussian_mixture_problem",
    "get_problem",
    "hochbruck_ostermann_problem",
    "manufactured_problem",
]

ConvergenceProblem = DiffusionProblem | SemilinearProblem
Problem = ConvergenceProblem | SamplingProblem

_CONVERGENCE_FACTORIES: dict[str, Callable[[], ConvergenceProblem]] = {
    **{f"manufactured_{name}": partial(manufactured_problem, name) for name in MANUFACTURED},
    "hochbruck_ostermann": hochbruck_ostermann_problem,
    "gmm_ode": gaussian_mixture_problem,
    "digits_exact_ode": digits_problem,
}
CONVERGENCE_PROBLEMS: tuple[str, ...] = tuple(_CONVERGENCE_FACTORIES)
PROBLEMS: tuple[str, ...] = (*CONVERGENCE_PROBLEMS, *SAMPLING_PROBLEMS)


@cache
def _sampling_problem(name: str, device: str) -> SamplingProblem:
    return sampling_problem(name, torch.device(device))


def get_problem(name: str, device: torch.device | str = "cpu") -> Problem:
    """The problem called ``name`` (one of :data:`PROBLEMS`) with its default settings.

    A convergence problem is built afresh on each call, on the CPU (asking for another device is
    an error); a sampling problem is built once per process and ``device`` (it loads networks).
    """
    if name in _CONVERGENCE_FACTORIES:
        if torch.device(device).type != "cpu":
            raise ProblemError(f"convergence problem {name!r} runs on the CPU, not on {device}")
        return _CONVERGENCE_FACTORIES[name]()
    if name in SAMPLING_PROBLEMS:
        return _sampling_problem(name, str(torch.device(device)))
    raise ProblemError(f"unknown problem {name!r}; available: {', '.join(PROBLEMS)}")
