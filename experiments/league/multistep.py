"""Linear multistep samplers with exact integration of an interpolated prediction (prototypes).

The probability-flow ODE ``dx/dsigma = eps(x, sigma)``, ``eps = (x - D)/sigma``, has two exact
step forms (``docs/MATH.md`` §1; ``d(x/sigma)/dsigma = -D/sigma^2``):

    noise form:  x_{n+1} = x_n + int_{s_n}^{s_{n+1}} eps ds
    data form:   x_{n+1} = (s_{n+1}/s_n) x_n + s_{n+1} int_{s_{n+1}}^{s_n} D / s^2 ds

(``s = sigma``)

A method of this family replaces the prediction ``Y`` (``eps`` or ``D``) by its Lagrange
interpolant in a variable ``u(sigma)`` (``sigma``, ``log sigma`` or ``sigma^(1/7)``) through
stored values and integrates it exactly, which gives the general step of the core:

    predictor  x^p_{n+1} = a_n x_n + sum_{j<k_n} w_{n,j} Y_{n-j}
    corrector  x_{n+1}   = a_n x_n + sum_{j<k_n} v_{n,j} Y_{n-j} + v_{n,new} Y(x^p_{n+1}, s_{n+1})

``w_{n,j} = int weight(sigma) l_j(u(sigma)) dsigma`` over the step, ``l_j`` the Lagrange basis
of the predictor nodes ``sigma_n, ..., sigma_{n-k_n+1}`` (``v``: of ``sigma_{n+1}, sigma_n, ...``),
``weight = 1`` (noise form, ``a_n = 1``) or ``sigma_{n+1}/sigma^2`` (data form,
``a_n = sigma_{n+1}/sigma_n``). The evaluation at the predicted point is the next step's history
value (no extra NFE). The integrals are computed by 24-point Gauss–Legendre quadrature in
``theta`` along ``sigma(theta) = sigma_n (sigma_{n+1}/sigma_n)^theta``: the integrands are
entire in ``theta`` and the rule is exact to rounding for every step of an EDM grid (``h < 30``).
Members: the noise form in ``sigma`` is variable-step Adams–Bashforth (iPNDM-v), in ``log sigma``
DEIS (``rho``AB-log), the data form in ``log sigma`` (= ``lambda``) the RES multistep methods.

**History after a correction.** In PEC mode (UniC's choice) the next step's history value is
the prediction at the predicted point, ``Y(x_p)``, although the state moves on from the
corrected ``x_c``. With ``linearised_history = s_d`` it is the prediction at ``x_c`` from the
Gaussian linearisation of the denoiser, ``D(x_c) ~ D(x_p) + c (x_c - x_p)``,
``c = s_d^2 / (s_d^2 + sigma^2)`` (the exact Jacobian for data ``N(mu, s_d^2 I)``, EDM's
``c_skip``), and ``eps = (x_c - D(x_c)) / sigma``; ``s_d = 0`` keeps ``D(x_p)`` and recomputes only
``eps`` from ``x_c``. Why this matters for the noise form: ``eps`` depends on ``x`` with gain
about ``1/sigma`` where ``sigma`` is above the data's scales, so ``eps(x_p)`` carries the
correction ``x_c - x_p`` amplified by ``(sigma_n - sigma_{n+1})/sigma_{n+1} = e^h - 1`` into the
next step (docs/league.md).

The last step (to ``sigma = 0``) returns the estimate of ``D(x(sigma_min), sigma_min)`` that the
last history value implies: ``D`` (data form) or ``x - sigma_min eps`` (noise form; with a PEC
corrector this is ``D(x_p) + (x_c - x_p)``, the linearisation with ``dD/dx = I``, accurate where
``sigma_min`` lies below the data's scales).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "MultistepDesign",
    "StepCoefficients",
    "interpolation_variable",
    "lagrange_weights",
    "sample_multistep",
    "step_coefficients",
]

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(24)
_THETA = (_GAUSS_NODES + 1) / 2
_THETA_WEIGHTS = _GAUSS_WEIGHTS / 2

VARIABLES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigma": lambda s: s,
    "log_sigma": np.log,
    "rho7": lambda s: s ** (1 / 7),
}


def interpolation_variable(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """``u(sigma)`` of a variable name: ``sigma``, ``log_sigma`` or ``rho7`` (``sigma^(1/7)``)."""
    try:
        return VARIABLES[name]
    except KeyError:
        raise ValueError(f"unknown variable {name!r}; known: {', '.join(VARIABLES)}") from None


def lagrange_weights(
    sigma_from: float, sigma_to: float, nodes: list[float], prediction: str, variable: str
) -> np.ndarray:
    """``w_j = int weight(sigma) l_j(u(sigma)) dsigma`` over ``sigma_from -> sigma_to`` (> 0) for
    the Lagrange basis ``l_j`` of ``u(nodes)`` (module docstring), float64.

    >>> w = lagrange_weights(2.0, 1.0, [2.0, 3.0], "noise", "sigma")  # AB2, equal steps
    >>> [round(float(v), 12) for v in w]
    [-1.5, 0.5]
    """
    if not sigma_from > sigma_to > 0:
        raise ValueError(f"need sigma_from > sigma_to > 0, got {sigma_from}, {sigma_to}")
    u = interpolation_variable(variable)
    h = math.log(sigma_from / sigma_to)
    sig = sigma_from * np.exp(-h * _THETA)
    if prediction == "noise":
        density = -h * sig
    elif prediction == "denoised":
        density = sigma_to * h / sig
    else:
        raise ValueError(f"prediction must be 'noise' or 'denoised', got {prediction!r}")
    uq, un = u(sig), u(np.asarray(nodes, dtype=np.float64))
    weights = np.empty(len(nodes))
    for j in range(len(nodes)):
        basis = np.ones_like(uq)
        for m in range(len(nodes)):
            if m != j:
                basis *= (uq - un[m]) / (un[j] - un[m])
        weights[j] = float(np.sum(_THETA_WEIGHTS * density * basis))
    return weights


@dataclass(frozen=True)
class MultistepDesign:
    """A member of the family: stored ``prediction`` (``"noise"`` or ``"denoised"``), the
    interpolation ``variable``, the predictor order ``order`` (history length; step ``n`` uses
    ``min(n + 1, order)``: the free warm start), ``corrector`` (UniC-style, order + 1, no extra
    NFE), ``final_orders``: the predictor orders of the last non-final steps (``(2,)`` caps
    the last one at 2; empty: none capped) and ``linearised_history`` (``None``: PEC; a scale
    ``s_d >= 0``: the history value after a correction, module docstring)."""

    name: str
    prediction: str
    variable: str
    order: int
    corrector: bool = False
    final_orders: tuple[int, ...] = ()
    linearised_history: float | None = None

    def __post_init__(self) -> None:
        interpolation_variable(self.variable)
        if self.prediction not in ("noise", "denoised"):
            raise ValueError(f"prediction must be 'noise' or 'denoised', got {self.prediction!r}")
        if not 1 <= self.order <= 6:
            raise ValueError(f"order must be in 1..6, got {self.order}")
        if self.linearised_history is not None and not self.linearised_history >= 0:
            raise ValueError(f"linearised_history must be >= 0, got {self.linearised_history}")
        if self.linearised_history is not None and not self.corrector:
            raise ValueError("linearised_history needs a corrector")


@dataclass(frozen=True)
class StepCoefficients:
    """Step ``n``: ``a``, predictor weights ``w`` (on ``Y_n, Y_{n-1}, ...``) and corrector weights
    ``v`` (``v[0]`` on the new evaluation, then ``Y_n, Y_{n-1}, ...``; empty without corrector)."""

    a: float
    w: tuple[float, ...]
    v: tuple[float, ...]


def step_coefficients(design: MultistepDesign, sigmas: list[float]) -> list[StepCoefficients]:
    """The coefficients of every non-final step of ``design`` on the positive levels ``sigmas``
    (``sigmas[-1] = sigma_min``; the step to 0 is the final denoising step). Pure function."""
    steps = []
    count = len(sigmas) - 1
    for n in range(count):
        k = min(n + 1, design.order)
        from_end = count - 1 - n
        if from_end < len(design.final_orders):
            k = min(k, design.final_orders[-1 - from_end])
        s_from, s_to = sigmas[n], sigmas[n + 1]
        history = [sigmas[n - j] for j in range(k)]
        a = 1.0 if design.prediction == "noise" else s_to / s_from
        w = lagrange_weights(s_from, s_to, history, design.prediction, design.variable)
        v = ()
        if design.corrector:
            v = tuple(
                lagrange_weights(s_from, s_to, [s_to, *history], design.prediction, design.variable)
            )
        steps.append(StepCoefficients(a, tuple(w), v))
    return steps


@torch.no_grad()
def sample_multistep(
    design: MultistepDesign,
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
) -> torch.Tensor:
    """Run ``design`` from ``x`` at ``sigmas[0]`` over ``sigmas`` (decreasing, ending in 0): one
    denoiser evaluation per level, ``len(sigmas) - 1`` in all."""
    levels = [float(s) for s in sigmas[:-1]]
    if float(sigmas[-1]) != 0.0 or len(levels) < 1:
        raise ValueError("sigmas must have >= 2 entries and end in 0")
    coefficients = step_coefficients(design, levels)
    ones = x.new_ones([x.shape[0]])

    def predict(state: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        denoised = model(state, sigma * ones)
        return denoised, (state - denoised) / sigma

    denoised, eps = predict(x, levels[0])
    history = [eps if design.prediction == "noise" else denoised]
    for n, step in enumerate(coefficients):
        base = step.a * x
        x_p = base + sum(wj * y for wj, y in zip(step.w, history, strict=False))
        denoised, eps = predict(x_p, levels[n + 1])
        new = eps if design.prediction == "noise" else denoised
        if step.v:
            x = (
                base
                + step.v[0] * new
                + sum(vj * y for vj, y in zip(step.v[1:], history, strict=False))
            )
            if design.linearised_history is not None:
                scale, sigma = design.linearised_history, levels[n + 1]
                skip = scale**2 / (scale**2 + sigma**2) if scale > 0 else 0.0
                denoised = denoised + skip * (x - x_p)
                eps = (x - denoised) / sigma
                new = eps if design.prediction == "noise" else denoised
        else:
            x = x_p
        history = [new, *history][: design.order]
    return x - levels[-1] * eps if design.prediction == "noise" else denoised
