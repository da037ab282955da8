"""A generic exponential Runge–Kutta / exponential multistep stepper for ``u' = L u + g(u, t)``.

Runs any ``res-tableau`` (``docs/tableau_format.md``) with a general linear part ``L``: with
``Z = h L`` and uniform steps ``h``,

    U_i     = phi_0(c_i Z) u_n + h * sum_{j<i} a_ij(Z) g(U_j, t_n + c_i h)
    u_{n+1} = phi_0(Z)     u_n + h * sum_i    b_i(Z)  g(U_i, t_n + c_i h)

(Hochbruck & Ostermann, Acta Numerica 19 (2010) 209–286, eq. (2.23)), where each ``a_ij``, ``b_i``
is the sum of ``coefficient * phi_k(scale * Z)`` over the tableau's terms
(:meth:`res_torch.tableau.Tableau.terms`). For a multistep tableau stage ``j >= 2`` is the stored
``g`` of the ``(j-1)``-th previous step (nodes ``c_j = 1 - j`` on a uniform grid, the history
parameters' defaults) and the first steps use the tableau's ``startup`` methods.

``L`` is a :class:`MatrixLinearPart` (matrix phi functions,
:mod:`experiments.convergence.matrix_phi`) or a
:class:`ScalarLinearPart` (``L = -1`` of diffusion sampling, scalar ``res_torch.phi``); the
diffusion samplers of ``res_torch`` cover the scalar case, this stepper exists for matrix ``L``
and as an independent cross-check of those samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from experiments.convergence.matrix_phi import MatrixPhiCache
from res_torch.phi import phi as scalar_phi
from res_torch.tableau import Tableau, load_tableau

__all__ = ["MatrixLinearPart", "ScalarLinearPart", "StepperError", "integrate_erk"]

Nonlinearity = Callable[[torch.Tensor, float], torch.Tensor]


class StepperError(ValueError):
    """The stepper was called with invalid arguments."""


class ScalarLinearPart:
    """``L = value`` (a scalar times the identity): ``phi_k(a L)`` is a 0-d tensor."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def phi(self, k: int, argument: float) -> torch.Tensor:
        return scalar_phi(k, torch.tensor(argument * self.value, dtype=torch.float64))

    @staticmethod
    def apply(operator: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return operator.to(v) * v


class MatrixLinearPart:
    """A square matrix ``L`` acting on the last axis: ``phi_k(a L) v`` via cached matrix phis."""

    def __init__(self, linear: torch.Tensor, p: int = 5) -> None:
        self.cache = MatrixPhiCache(linear, p)

    def phi(self, k: int, argument: float) -> torch.Tensor:
        return self.cache(k, argument)

    @staticmethod
    def apply(operator: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v @ operator.to(v).T


LinearPart = ScalarLinearPart | MatrixLinearPart


@dataclass(frozen=True)
class _Operators:
    """The operators of one tableau at one step size: ``e^{c_i Z}``, ``h a_ij(Z)``, ``h b_i(Z)``."""

    tableau: Tableau
    nodes: list[float]
    stage_exp: list[torch.Tensor]
    a: list[list[torch.Tensor | None]]
    b: list[torch.Tensor | None]
    step_exp: torch.Tensor


def _operators(tableau: Tableau, linear: LinearPart, h: float) -> _Operators:
    a_terms, b_terms = tableau.terms()

    def combine(terms: list[tuple[float, int, float]]) -> torch.Tensor | None:
        if not terms:
            return None
        return h * sum(coef * linear.phi(k, scale * h) for coef, k, scale in terms)

    nodes = tableau.nodes()
    # a multistep method's nodes c_j <= 0 belong to stored values: no e^{c_j Z} (it would overflow)
    internal = nodes[:1] if tableau.is_multistep else nodes
    return _Operators(
        tableau=tableau,
        nodes=nodes,
        stage_exp=[linear.phi(0, c * h) for c in internal],
        a=[[combine(entry) for entry in row] for row in a_terms],
        b=[combine(entry) for entry in b_terms],
        step_exp=linear.phi(0, h),
    )


def _step(
    ops: _Operators,
    linear: LinearPart,
    g: Nonlinearity,
    u: torch.Tensor,
    t: float,
    h: float,
    history: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step; returns ``u_{n+1}`` and ``g(u_n, t_n)`` (the value later steps keep)."""
    g_now = g(u, t)
    if ops.tableau.is_multistep:
        stages = [g_now, *history[: ops.tableau.stages - 1]]
    else:
        stages = [g_now]
        for i in range(1, ops.tableau.stages):
            value = linear.apply(ops.stage_exp[i], u)
            for j, a_ij in enumerate(ops.a[i]):
                if a_ij is not None:
                    value = value + linear.apply(a_ij, stages[j])
            stages.append(g(value, t + ops.nodes[i] * h))
    new = linear.apply(ops.step_exp, u)
    for b_i, stage in zip(ops.b, stages, strict=True):
        if b_i is not None:
            new = new + linear.apply(b_i, stage)
    return new, g_now


def integrate_erk(
    tableau: Tableau | str,
    linear: LinearPart,
    g: Nonlinearity,
    u0: torch.Tensor,
    t0: float,
    t_end: float,
    n_steps: int,
    progress: bool = False,
) -> torch.Tensor:
    """Integrate ``u' = L u + g(u, t)`` from ``t0`` to ``t_end`` in ``n_steps`` uniform steps.

    ``tableau`` is a :class:`~res_torch.tableau.Tableau` or a shipped tableau name, used at its
    default parameters. ``u0`` has the state on its last axis (leading axes are a batch).
    """
    if isinstance(tableau, str):
        tableau = load_tableau(tableau)
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise StepperError(f"n_steps must be a positive integer, got {n_steps!r}")
    if not t_end > t0:
        raise StepperError(f"need t_end > t0, got t0={t0}, t_end={t_end}")
    h = (t_end - t0) / n_steps
    methods = [load_tableau(name) for name in tableau.startup] + [tableau]
    for n, method in enumerate(methods[:-1]):
        if method.is_multistep and method.stages - 1 > n:
            raise StepperError(
                f"{tableau.name}: startup method {n + 1} ({method.name}) needs "
                f"{method.stages - 1} previous steps but only {n} exist"
            )
    operators = {m.name: _operators(m, linear, h) for m in methods}
    u, history = u0, []
    for n in tqdm(range(n_steps), disable=not progress, desc=tableau.name, leave=False):
        method = methods[min(n, len(methods) - 1)]
        u, g_now = _step(operators[method.name], linear, g, u, t0 + n * h, h, history)
        history.insert(0, g_now)
        del history[tableau.stages :]
    return u
