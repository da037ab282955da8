"""The one coefficient source: (method, parameters, grid) -> float64 tables of every step.

Every method is run as the same general step (the descriptor's ``prediction`` says what ``Y``
is: ``D`` or ``eps = (x - D)/sigma``; :class:`StepCoefficients` holds the numbers of one step)::

    Y_1     = Y(x_n, sigmas[0])                              (sigmas[0] = sigma_hat_n)
    U_i     = stage_decay[i-2] x_n + sum_{j<i} stage_weights[i-2][j] Y_j
    Y_i     = Y(U_i, sigmas[i-1])                                         (i = 2..s)
    x_{n+1} = decay x_n + sum_{i<=s} weights[i-1] Y_i + sum_{j=1}^{k-1} weights[s+j-1] Y_{n-j}

where ``Y_{n-j}`` is the first-stage value of step ``n - j`` (the history of a multistep
method; at a ``guessed`` step ``Y_1`` is ``Y`` of ``D = 0``, not evaluated) and a *denoising*
step (to ``sigma = 0``) returns ``D(x_n, sigma_hat_n)``. A step with
a ``corrector`` (UniC-style, no extra evaluation) takes that result as the predictor
``x^p``, evaluates ``Y_new = Y(x^p, sigma_hat_{n+1})`` and returns
``x_{n+1} = decay x_n + sum_j corrector[j] (V_j, then Y_new)``; ``Y_new`` (and its ``D``) is
also the next step's first value, which is not evaluated again. Correctors are allowed only
where no noise is added between the two evaluations (no step noise at ``n``, no churn at
``n + 1``). Single-step
exponential Runge–Kutta steps have ``s`` stages and no history, multistep steps one stage and
``k - 1`` history values; which ``k`` a step uses (start-up, warm start) is decided here, per
step, from the grid. The fast loop (:func:`res_torch.steppers.run`), the reference loop
(:mod:`res_torch.reference`) and the diffusers schedulers all read these tables; nothing else
evaluates a coefficient. Families (:data:`BUILDERS`):

* ``erk`` (Hochbruck & Ostermann 2010, eq. 2.20, ``L = -1``): ``decay = e^{-h}``,
  ``weights = h b(h)``, ``stage_decay = e^{-c h}``, ``stage_weights = h A(h)``, stages at
  ``sigma_hat e^{-c lambda_step}`` (``h``, ``lambda_step``: :mod:`res_torch.grid`); a
  tableau with ``b_embedded`` also gets ``weights_embedded = h b_embedded(h)`` (the error
  estimate of :mod:`res_torch.adaptive`).
* ``multistep``: ``weights = h b(h; c)`` with history nodes ``c_j = (lambda_{n-j+1} -
  lambda_n)/lambda_step_n`` at the actual ``lambda = -log sigma_hat`` of the stored values; the
  first steps use the tableau's ``startup`` methods (a single-step one runs all its stages). A
  stored value closer than :data:`NODE_SPACING_MIN` to the last node used is passed over
  (:func:`history_offsets`; its weight is 0), and a step left with too few runs the lower order.
* ``sigma_rk``: Euler and EDM-Heun in ``sigma`` written in this affine form
  (:func:`sigma_rk_step`).
* ``adams``: ``x_{n+1} = x_n + sum_j w_j eps_{n-j}`` with ``k_n = min(n + 1, k)`` values (only
  those since noise last entered the run, :func:`noise_free_values`)
  (:func:`adams_weights`; iPNDM-v and DEIS pass over values as ``multistep`` does).
* ``lagrange``: ``Y`` (``eps`` or ``D``) interpolated in ``sigma``, ``log sigma``, ``sigma^(1/7)``
  or the grid's own variable (:func:`grid_exponents`) through
  ``k_n = min(n + 1, k)`` values and integrated exactly against the step's exact form, with a
  corrector through the new point (:func:`interpolation_weights`, ``docs/designed_methods.md``);
  a free-start method's first step has a guessed first value instead of an evaluation
  (:func:`free_first_step`, ``StepCoefficients.guessed``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from res_torch.checks import integer
from res_torch.errors import TableauError, UnknownMethodError, UnknownParameterError
from res_torch.grid import StepGrid
from res_torch.methods import Method, cached_tableau, method_of
from res_torch.tableau import Tableau

__all__ = [
    "BUILDERS",
    "NODE_SPACING_MIN",
    "Builder",
    "Coefficients",
    "StepCoefficients",
    "adams_weights",
    "coefficients",
    "erk_steps",
    "free_first_step",
    "grid_exponents",
    "history_offsets",
    "interpolated_values",
    "interpolation_weights",
    "lagrange_integrals",
    "noise_free_values",
    "power_variable",
    "sigma_rk_step",
    "uniformising_exponent",
]


@dataclass(frozen=True)
class StepCoefficients:
    """The float64 numbers of one step (module docstring): ``sigmas`` of the ``s`` evaluations,
    ``stage_decay`` and ``stage_weights`` of stages 2..s, ``decay`` and ``weights`` (over the
    ``s`` stage values, then the history values ``Y_{n-1}, Y_{n-2}, ...``)."""

    sigmas: tuple[float, ...]
    decay: float = 0.0
    weights: tuple[float, ...] = (1.0,)
    stage_decay: tuple[float, ...] = ()
    stage_weights: tuple[tuple[float, ...], ...] = ()
    denoising: bool = False
    corrector: tuple[float, ...] = ()
    """Corrector weights over the stage values, history values and ``Y_new`` (empty: none)."""
    weights_embedded: tuple[float, ...] = ()
    """``h b_embedded(h)`` over the ``s`` stage values: the embedded lower-order update is
    ``decay x_n + sum_i weights_embedded[i] Y_i`` (empty: the tableau has no ``b_embedded``)."""
    linearisation: float | None = None
    """After a correction, the next step's values: ``None`` keeps ``D(x^p)`` and ``Y(x^p)``
    (PEC); a number ``c`` gives ``D = D(x^p) + c (x_{n+1} - x^p)`` and ``Y`` from it at
    ``x_{n+1}`` (the denoiser linearised with Jacobian ``c I``)."""
    guessed: bool = False
    """The first value is not evaluated but taken from ``D = 0`` (``Y = x_n/sigma_n`` for
    ``eps``): the free first step (:func:`free_first_step`)."""

    @property
    def stages(self) -> int:
        return len(self.sigmas)

    @property
    def history(self) -> int:
        """How many previous steps' values the update (or corrector) reads."""
        corrector = len(self.corrector) - 1 if self.corrector else 0
        return max(len(self.weights), corrector) - len(self.sigmas)


@dataclass(frozen=True)
class Coefficients:
    """The tables of a run: one :class:`StepCoefficients` per step of the grid; ``prediction``
    is ``"denoised"`` (``Y = D``) or ``"noise"`` (``Y = (x - D)/sigma``)."""

    prediction: str
    steps: tuple[StepCoefficients, ...]
    methods: tuple[str, ...]
    """The method each step runs (a start-up method's name at the start-up steps)."""

    @property
    def history(self) -> int:
        """How many previous first-stage values a run must keep."""
        return max((step.history for step in self.steps), default=0)


def _denoising(sigma_hat: float) -> StepCoefficients:
    return StepCoefficients(sigmas=(sigma_hat,), denoising=True)


def erk_steps(
    tableau: Tableau, grid: StepGrid, values: Mapping[str, float] | None = None
) -> list[StepCoefficients]:
    """The steps of a single-step exponential tableau on ``grid`` (``Tableau.evaluate`` at every
    finite ``h`` at once)."""
    if tableau.is_multistep:
        raise TableauError(f"{tableau.name!r} is a multistep method, not a single-step one")
    tableau.parameter_values(**dict(values or {}))  # checked even if no step evaluates them
    finite = [n for n, d in enumerate(grid.denoising) if not d]
    steps = [_denoising(s) for s in grid.sigma_hat.tolist()]
    if not finite:
        return steps
    index = torch.tensor(finite)
    h, step, start = grid.h[index], grid.lambda_step[index], grid.sigma_hat[index]
    embedded = tableau.b_embedded is not None
    c, a, b, *b_hat = tableau.evaluate(h, dict(values or {}), embedded=embedded)
    decay = torch.exp(-h).tolist()
    weights = (h[:, None] * b).tolist()
    weights_embedded = (h[:, None] * b_hat[0]).tolist() if embedded else [()] * len(finite)
    stage_decay = torch.exp(-c * h[:, None]).tolist()
    stage_weights = (h[:, None, None] * a).tolist()
    sigmas = (start[:, None] * torch.exp(-c * step[:, None])).tolist()
    for m, n in enumerate(finite):
        steps[n] = StepCoefficients(
            sigmas=tuple(sigmas[m]),
            decay=decay[m],
            weights=tuple(weights[m]),
            stage_decay=tuple(stage_decay[m][1:]),
            stage_weights=tuple(tuple(row[:i]) for i, row in enumerate(stage_weights[m]))[1:],
            weights_embedded=tuple(weights_embedded[m]),
        )
    return steps


NODE_SPACING_MIN = 1 / 64
"""Smallest node spacing, in units of the step, that a method may difference over.

A weight that divides by a node spacing ``r`` amplifies errors: RES-2M's weights ``h (phi_1 +
phi_2/r)`` and ``-h phi_2/r`` (``r = h_{n-1}/h_n``) have ``sum |w| = (1 - e^{-h}) (1 + 2 rho/r)``,
``rho = phi_2/phi_1`` in ``[1/2, 1)``, so an error ``delta`` in a stored value (the model's error,
rounding to the sample's dtype) reaches ``x_{n+1}`` multiplied by up to ``1 + 2/r`` instead of 1
(DDIM); RES-2S's ``b_2 = phi_2/c_2`` does the same with ``r = c_2`` (factor ``2/c_2 - 1``). At the
reported ``r = 1e-8`` that is ``2e8`` (float32, ``eps = 6e-8``: 94 % off); at ``r = 1e-4``, ``2e4``
(float16, ``eps = 4.9e-4``: 93 % off). The bound ``r >= 1/64`` caps the factor at ``1 + 2 * 64 =
129``: ``129 eps = 8e-6`` in float32, 6 % in float16 at the threshold. It lies below every spacing
of the regular grids (Karras ``rho`` 1 to 7, ODE, ancestral ``eta = 1``, SDE, churn up to ``s_churn
= 40``, 2 to 1000 steps: smallest ``0.021``, uniform-in-``sigma`` ancestral), so their tables are
unchanged (one exception, tested: ``res_pc4_logsigma`` on 5 uniform-in-``sigma`` ancestral steps, a
spacing of 0.015617 in ``log sigma``). The rule acts on the grid (float64), the same for every
dtype:

* multistep methods (``multistep``, ``lagrange``; ``adams`` except iPNDM, whose fixed
  coefficients do not depend on the grid, ``sum_j |AB_k[j]| <= 20/3``): a stored value whose
  node lies closer than the bound to the last node used (spacing ``(v_last - v_{n-j}) / (v_to -
  v_n)``, in the method's variable ``v``: ``lambda`` for exponential multistep, ``sigma`` for
  iPNDM-v, ``log sigma`` for DEIS, the interpolation variable for ``lagrange``) is passed
  over for the next older one (at most twice as many looked at as the method uses); with too
  few left the step runs the lower order (exponential multistep: the start-up method with that
  many values, DDIM for none; Adams and ``lagrange``: 1 + the values taken). A step whose
  length rounds to 0 in the variable uses no stored value. The nodes are the actual ones of
  the values used, so the step keeps its order conditions. Same evaluations, same NFE; regular
  grids take ``Y_{n-1}, Y_{n-2}, ...`` as before.
* single-step nodes: ``c_2 >= 1/64`` is the lower bound of the shipped ``c2`` parameters.

A zero-length step (a repeated sigma) is refused by :func:`res_torch.grid.validate_sigmas`.
"""


def history_offsets(nodes: Sequence[float], end: float, wanted: int) -> list[int]:
    """The history values a step differences over, as offsets ``j`` (value ``Y_{n-j}``).

    ``nodes = (v_n, v_{n-1}, ...)`` are the nodes of the step and of the stored values in the
    method's variable, ``end`` the step's end ``v_to``. Walking back from ``v_n``, a value is
    taken if its spacing from the last node taken, ``(v_last - v_{n-j}) / (v_to - v_n)``, is at
    least :data:`NODE_SPACING_MIN` (signed: a node on the wrong side is passed over, as is NaN),
    until ``wanted`` are taken or ``2 wanted`` values are looked at. On a regular grid the
    result is ``[1, ..., wanted]``.

    >>> history_offsets([0.0, -1.0, -2.0], 1.0, 2), history_offsets([0.0, -1e-8, -1.0], 1.0, 1)
    ([1, 2], [2])
    """
    taken: list[int] = []
    last, step = nodes[0], end - nodes[0]
    if step == 0:  # a step that rounds to zero length in the variable: no spacing is safe
        return taken
    for j in range(1, min(len(nodes), 2 * wanted + 1)):
        if len(taken) == wanted:
            break
        if (last - nodes[j]) / step >= NODE_SPACING_MIN:
            taken.append(j)
            last = nodes[j]
    return taken


def _looked_at(values: Sequence[float], n: int, available: int, k: int) -> list[float]:
    """``values[n], values[n-1], ...``: the stored values :func:`history_offsets` looks at for a
    step with ``k`` values (``2 (k - 1)`` back), of the ``available`` ones it may use."""
    return [values[n - j] for j in range(min(available - 1, 2 * k - 2) + 1)]


def _placed(weights: Sequence[float], back: Sequence[int]) -> list[float]:
    """``weights`` over ``Y_n`` and the values ``Y_{n-j}``, ``j`` in ``back``, placed at the
    history positions ``0, 1, 2, ...`` (0 for a value passed over)."""
    placed = [weights[0]] + [0.0] * max(back, default=0)
    for j, weight in zip(back, weights[1:], strict=True):
        placed[j] = weight
    return placed


def _lower_order(startup: Sequence[Tableau], values: int) -> Tableau:
    """The one-evaluation method of the run's start-up chain ``startup`` (the main tableau's,
    whose entry ``k`` needs at most ``k`` history values) for ``values`` history values (DDIM
    in place of a multi-stage single-step one)."""
    lower = startup[values]
    return lower if lower.is_multistep or lower.stages == 1 else cached_tableau("ddim")


def _multistep(
    tableau: Tableau, grid: StepGrid, values: Mapping[str, float], one_evaluation_startup: bool
) -> tuple[list[StepCoefficients], list[str]]:
    """Steps of a multistep tableau with its start-up methods (module docstring); a history
    value closer than :data:`NODE_SPACING_MIN` is replaced by an older one, or the step runs
    the lower order (:func:`history_offsets`)."""
    values = dict(values)
    fixed = set(values) & set(tableau.history_parameters)
    if fixed:
        raise TableauError(
            f"{sorted(fixed)} are history nodes of {tableau.name!r}; they are set from the grid"
        )
    tableau.parameter_values(**values)  # checked even if no step evaluates them
    startup = list(tableau.startup_tableaux(cached_tableau))
    if one_evaluation_startup:  # a start that cannot add evaluations: DDIM for multi-stage ones
        ddim = cached_tableau("ddim")
        startup = [t if t.is_multistep or t.stages == 1 else ddim for t in startup]
    n_steps = grid.steps
    methods = [startup[m] if m < len(startup) else tableau for m in range(n_steps)]
    for m, method in enumerate(methods):
        if method.is_multistep and method.stages > m + 1:
            raise TableauError(
                f"{method.name!r} needs {method.stages - 1} previous values at step {m} of "
                f"{tableau.name!r}"
            )
    steps = [_denoising(s) for s in grid.sigma_hat.tolist()]
    lam, denoising = grid.lambda_hat, grid.denoising
    lam_list, step_list = lam.tolist(), grid.lambda_step.tolist()
    offsets: list[list[int]] = [[] for _ in range(n_steps)]
    for m, method in enumerate(methods):
        if method.is_multistep and not denoising[m]:
            nodes = _looked_at(lam_list, m, m + 1, method.stages)
            offsets[m] = history_offsets(nodes, nodes[0] + step_list[m], method.stages - 1)
            if len(offsets[m]) < method.stages - 1:
                methods[m] = _lower_order(startup, len(offsets[m]))
    # grouped by identity: two start-up files may carry the same "name"
    for group in dict.fromkeys(id(method) for method in methods):
        index = [m for m in range(n_steps) if id(methods[m]) == group and not denoising[m]]
        if not index:
            continue
        method = methods[index[0]]
        if not method.is_multistep:
            single = erk_steps(method, grid)
            for m in index:
                steps[m] = single[m]
            continue
        at = torch.tensor(index)
        h = grid.h[at]
        back = torch.tensor([offsets[m] for m in index])
        step_values: dict = dict(values) if method is tableau else {}
        for j, parameter in enumerate(method.history_parameters):
            step_values[parameter] = (lam[at - back[:, j]] - lam[at]) / grid.lambda_step[at]
        _, _, b = method.evaluate(h, step_values)
        weights = (h[:, None] * b).tolist()
        for m, decay, w, s in zip(
            index, torch.exp(-h).tolist(), weights, grid.sigma_hat[at].tolist(), strict=True
        ):
            placed = [w[0]] + [0.0] * max(offsets[m], default=0)
            for j, weight in zip(offsets[m], w[1:], strict=True):
                placed[j] = weight
            steps[m] = StepCoefficients(sigmas=(s,), decay=decay, weights=tuple(placed))
    return steps, [method.name for method in methods]


def sigma_rk_step(sigma_hat: float, sigma_to: float, heun: bool) -> StepCoefficients:
    """Euler / EDM-Heun in ``sigma`` for ``dx/dsigma = (x - D)/sigma`` in affine form. With
    ``r = sigma_to/sigma_hat`` and ``dt = sigma_to - sigma_hat``, Euler is ``x' = r x + (1 - r)
    D_1`` (identical to DDIM). Heun (Karras et al. 2022, Alg. 1): ``U = r x + (1 - r) D_1``,
    ``x' = x + dt/2 [(x - D_1)/sigma_hat + (U - D_2)/sigma_to] = r x + (dt (1 - r)/(2 sigma_to)
    - dt/(2 sigma_hat)) D_1 - dt/(2 sigma_to) D_2``."""
    r, dt = sigma_to / sigma_hat, sigma_to - sigma_hat
    if not heun:
        return StepCoefficients(sigmas=(sigma_hat,), decay=r, weights=(1 - r,))
    return StepCoefficients(
        sigmas=(sigma_hat, sigma_to),
        decay=r,
        weights=(dt * (1 - r) / (2 * sigma_to) - dt / (2 * sigma_hat), -dt / (2 * sigma_to)),
        stage_decay=(r,),
        stage_weights=((1 - r,),),
    )


_GAUSS = 24
"""Gauss–Legendre points per panel of :func:`lagrange_integrals` and
:func:`interpolation_weights` (exact for polynomial integrands)."""

PANEL_STEP = 8.0
"""Longest step, in ``log sigma``, that one Gauss–Legendre panel integrates. The integrands
carry ``e^{-h theta}``; for Euler's weight ``int_0^1 h e^{-h theta} d theta`` one
``_GAUSS``-point panel is at rounding level (4e-16) up to ``h = 8``, off by 1e-14 at ``h = 60``,
2.5e-9 at ``h = 100`` and 19% at ``h = 690`` (measured); a longer step is split into
``ceil(h/PANEL_STEP)`` equal panels (``tests/torch/test_extreme_steps.py``)."""


def _panel_rule(length: float) -> tuple[list[float], list[float]]:
    """Points in ``[0, 1]`` and weights (summing to 1) of the composite Gauss–Legendre rule
    for a step of ``length`` in ``log sigma``: :data:`PANEL_STEP`-long panels at most."""
    points, quad = _gauss_legendre()
    panels = max(1, math.ceil(abs(length) / PANEL_STEP))
    at = [(i + (p + 1) / 2) / panels for i in range(panels) for p in points]
    return at, [q / (2 * panels) for _ in range(panels) for q in quad]


def lagrange_integrals(
    nodes: Sequence[float], start: float, end: float, log: bool = False
) -> list[float]:
    """``w_j = int_start^end ell_j(s) ds`` for the Lagrange basis ``ell_j`` on ``nodes`` in the
    variable ``s`` (``log=False``) or ``u = log s`` (``log=True``: ``int ell_j(u) e^u du``), by
    composite Gauss–Legendre quadrature in float64 (:data:`PANEL_STEP`).

    >>> [round(w, 12) for w in lagrange_integrals([1.0, 2.0], 1.0, 0.5)]
    [-0.625, 0.125]
    """
    if log:
        a, b = math.log(start), math.log(end)
        points, quad = _panel_rule(b - a)
        u = [a + (b - a) * p for p in points]
        mass = [(b - a) * q * math.exp(v) for v, q in zip(u, quad, strict=True)]
        at = [math.log(node) for node in nodes]
    else:
        points, quad = _panel_rule(0.0)  # a polynomial: one panel is exact
        u = [start + (end - start) * p for p in points]
        mass = [(end - start) * q for q in quad]
        at = list(nodes)
    return _basis_integrals(at, u, mass)


def _basis_integrals(at: Sequence[float], u: Sequence[float], mass: Sequence[float]) -> list[float]:
    """``sum_i mass_i ell_j(u_i)`` for the Lagrange basis ``ell_j`` on the nodes ``at``: a
    quadrature rule (points ``u``, weights ``mass``) applied to each basis polynomial."""
    weights = []
    for j, node in enumerate(at):
        others = [o for i, o in enumerate(at) if i != j]
        weights.append(
            math.fsum(
                m * math.prod((v - o) / (node - o) for o in others)
                for v, m in zip(u, mass, strict=True)
            )
        )
    return weights


@functools.cache
def _gauss_legendre() -> tuple[list[float], list[float]]:
    """Nodes and weights of ``_GAUSS``-point Gauss–Legendre (Newton on ``P_n``)."""
    n, points, weights = _GAUSS, [], []
    for i in range(1, n + 1):
        x = math.cos(math.pi * (i - 0.25) / (n + 0.5))
        for _ in range(100):
            p0, p1 = 1.0, x
            for k in range(2, n + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            derivative = n * (x * p1 - p0) / (x * x - 1)
            dx = p1 / derivative
            x -= dx
            if abs(dx) < 1e-16:
                break
        points.append(x)
        weights.append(2 / ((1 - x * x) * derivative**2))
    return points, weights


_AB_FIXED = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
"""Adams–Bashforth coefficients for equal steps (iPNDM; k-diffusion/ComfyUI ``sample_ipndm``)."""


def adams_weights(name: str, nodes: Sequence[float], sigma_to: float) -> list[float]:
    """Weights ``w_j`` of ``x_{n+1} = x_n + sum_j w_j eps_{n-j}`` for the ``adams`` methods,
    with ``nodes = (sigma_n, sigma_{n-1}, ...)`` the noise levels of the ``k`` stored ``eps``:

    * ``ipndm``: ``w_j = (sigma_to - sigma_n) AB_k[j]``, the fixed equal-step coefficients;
    * ``ipndm_v``: ``w_j = int_{sigma_n}^{sigma_to} ell_j(sigma) dsigma`` (variable-step AB;
      equal to ComfyUI's ``ipndm_v`` at order 2; at order 3 its ``temp`` as written there,
      ``(1 - a b)/2``, is the exact weight only on equal steps, the exact one is ``(1 - a) b/2``;
      order 4 is the exact integral, not checked against ComfyUI's expression);
    * ``deis``: ``w_j = int_{sigma_n}^{sigma_to} ell_j(log sigma) dsigma`` (DEIS "log-rho").
    """
    if name == "ipndm":
        return [(sigma_to - nodes[0]) * w for w in _AB_FIXED[len(nodes)]]
    return lagrange_integrals(nodes, nodes[0], sigma_to, log=name == "deis")


def noise_free_values(grid: StepGrid) -> list[int]:
    """Per step ``n``, how many first-stage values of steps ``n, n-1, ...`` lie on the stretch
    of the run that no noise has entered since: ``n + 1`` for an ODE run, 1 after a step that
    adds noise (``step_noise``) or at a step that churns (``churn_noise``). The noise-form
    families (``adams``, ``lagrange``) extrapolate only these: a stored ``eps = (x - D)/sigma``
    holds the state ``x`` it was evaluated at, which added noise has since moved by an amount
    not small in the step, so the older values are not samples of one smooth ``eps`` along the
    trajectory (with EDM churn, keeping them made iPNDM-v and the designs diverge as the steps
    shrink; ``tests/torch/test_stochastic_sampling.py``)."""
    step_noise, churn = grid.step_noise.tolist(), grid.churn_noise.tolist()
    counts, count = [], 0
    for n in range(grid.steps):
        count = count + 1 if n > 0 and step_noise[n - 1] == 0 and churn[n] == 0 else 1
        counts.append(count)
    return counts


def _adams(method: Method, grid: StepGrid, order: int) -> list[StepCoefficients]:
    steps = []
    sigma_hat, sigma_to = grid.sigma_hat.tolist(), grid.sigma_to.tolist()
    v = [math.log(s) for s in sigma_hat] if method.name == "deis" else sigma_hat
    runs = zip(grid.denoising, noise_free_values(grid), strict=True)
    for n, (denoising, available) in enumerate(runs):
        if denoising:
            steps.append(_denoising(sigma_hat[n]))
            continue
        k = min(available, order)
        back = list(range(1, k))
        if method.name != "ipndm":  # NODE_SPACING_MIN: the Lagrange weights divide by spacings
            end = math.log(sigma_to[n]) if method.name == "deis" else sigma_to[n]
            back = history_offsets(_looked_at(v, n, available, k), end, k - 1)
        nodes = [sigma_hat[n - j] for j in [0, *back]]
        weights = _placed(adams_weights(method.name, nodes, sigma_to[n]), back)
        steps.append(StepCoefficients(sigmas=(sigma_hat[n],), decay=1.0, weights=tuple(weights)))
    return steps


_VARIABLES: dict[str, Callable[[float], float]] = {
    "sigma": lambda s: s,
    "log_sigma": math.log,
    "rho7": lambda s: s ** (1 / 7),
}
"""The fixed interpolation variables ``u(sigma)`` of the ``lagrange`` family (``"grid"``: each
step's own power of ``sigma``, :func:`grid_exponents`)."""


def power_variable(exponent: float, reference: float = 1.0) -> Callable[[float], float]:
    """The Box–Cox variable of ``sigma/reference``, ``u(sigma) = ((sigma/reference)^p - 1)/p``
    for ``p = exponent > 0``, ``log(sigma/reference)`` for ``p = 0`` (its limit), computed as
    ``expm1(p log(sigma/reference))/p`` so that it stays accurate as ``p -> 0``. An affine image
    of ``sigma^p``, so the interpolation weights are those of ``sigma^p``; ``reference`` is the
    smallest level in use, so that ``u >= 0`` and the ``-1`` cancels nothing (with
    ``reference = 1`` every ``u`` of ``sigma < 1e-16`` at ``p = 1`` rounds to ``-1``)."""
    if exponent == 0:
        return math.log if reference == 1 else lambda s: math.log(s / reference)
    return lambda s: math.expm1(exponent * math.log(s / reference)) / exponent


_EXPONENT_TOL = 1e-13


def uniformising_exponent(sigmas: Sequence[float]) -> float:
    """The ``p`` in ``[0, 1]`` for which the positive ``sigmas`` (decreasing) are most evenly
    spaced in ``u = sigma^p`` (``log sigma`` at 0): the minimiser of the squared second
    differences of ``u`` relative to its range, ``sum_i (u_{i+1} - 2 u_i + u_{i-1})^2 /
    (u_0 - u_N)^2``. A Karras grid (``sigma_i^(1/rho)`` equally spaced) gives ``1/rho``, the
    exponential grid 0, the uniform grid 1 (to ``1e-12``); fewer than three values give
    ``1/7``, the EDM default. Golden-section search after a scan of 101 points, so a grid with
    several local minima gets the best scanned one refined.

    >>> karras = [(80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    ...           for i in range(10)]
    >>> round(uniformising_exponent(karras), 10)
    0.1428571429
    """
    if len(sigmas) < 3:
        return 1 / 7

    def unevenness(p: float) -> float:
        var = power_variable(p, min(sigmas))
        u = [var(s) for s in sigmas]
        span = u[0] - u[-1]  # up to 1e300 (sigma/reference at p = 1): scaled before squaring
        if span == 0:
            return math.inf
        triples = zip(u, u[1:], u[2:], strict=False)
        return math.fsum(((a - 2 * b + c) / span) ** 2 for a, b, c in triples)

    scan = [i / 100 for i in range(101)]
    best = min(range(101), key=lambda i: unevenness(scan[i]))
    lo, hi = scan[max(best - 1, 0)], scan[min(best + 1, 100)]
    golden = (math.sqrt(5) - 1) / 2
    while hi - lo > _EXPONENT_TOL:
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if unevenness(a) <= unevenness(b):
            hi = b
        else:
            lo = a
    p = (lo + hi) / 2
    return min((p, 0.0, 1.0), key=unevenness) if best in (0, 100) else p


def grid_exponents(
    grid: StepGrid, values: int, available: Sequence[int] | None = None
) -> list[float]:
    """Per step, the exponent ``p_n`` of the ``"grid"`` variable ``u = sigma^p_n`` of a
    noise-form ``lagrange`` method with at most ``values`` values: :func:`uniformising_exponent`
    of the step's own levels, ``sigma_hat`` of the values it uses and its end ``sigma_to``, with
    the next positive ``sigma_to`` added while fewer than three. The values are chosen as
    :func:`history_offsets` chooses them, in ``log sigma`` (scale-free before ``p`` is known),
    among those since noise last entered the run (:func:`noise_free_values`); the step uses
    exactly these. The nodes of each step are so equally spaced in ``u`` as a power can make
    them (exactly on Karras, exponential and uniform grids without noise, where ``p_n`` is
    ``1/rho``, 0 and 1 at every step), and the extrapolation has the weights of equal steps; a
    grid whose spacing law changes along it (a flow grid, uniform in ``sigma/(sigma + shift)``:
    ``p`` near 1 at its end) gets the variable of each part. Denoising steps get ``nan``.
    ``available``: the values each step may use (default :func:`noise_free_values`; a method's
    own, :func:`interpolated_values`)."""
    if available is None:
        available = noise_free_values(grid)
    return [p for p, _ in _grid_choices(grid, values, available)]


def interpolated_values(method: Method, grid: StepGrid) -> list[int]:
    """Per step, how many stored values (its own first value and those before it) a
    ``lagrange`` method may interpolate: in the noise form those since noise last entered the run
    (:func:`noise_free_values`), in the data form all; after a free first step
    (:meth:`~res_torch.methods.InterpolatedMethod.starts_free`) not the first step's guess."""
    if method.prediction == "noise":
        available = noise_free_values(grid)
    else:
        available = list(range(1, grid.steps + 1))
    if _starts_free(method, grid):
        available = [1, *(max(a - 1, 1) for a in available[1:])]
    return available


def _starts_free(method: Method, grid: StepGrid) -> bool:
    sigmas = [grid.sigma[0].item(), *grid.sigma_next.tolist()]  # the caller's schedule
    return method.starts_free(sigmas, stochastic=not grid.ode)


def _grid_choices(
    grid: StepGrid, values: int, available: Sequence[int]
) -> list[tuple[float, list[int]]]:
    """``(p_n, history offsets)`` per step (:func:`grid_exponents`)."""
    sigma_hat, sigma_to = grid.sigma_hat.tolist(), grid.sigma_to.tolist()
    choices: list[tuple[float, list[int]]] = []
    for n, denoising in enumerate(grid.denoising):
        if denoising:
            choices.append((math.nan, []))
            continue
        k = min(available[n], values)
        logs = [math.log(s) for s in _looked_at(sigma_hat, n, available[n], k)]
        back = history_offsets(logs, math.log(sigma_to[n]), k - 1)
        window = [sigma_hat[n - j] for j in [*back[::-1], 0]] + [sigma_to[n]]
        spacing = NODE_SPACING_MIN * math.log(sigma_hat[n] / sigma_to[n])
        for s in sigma_to[n + 1 :]:
            if len(window) >= 3 or s <= 0:
                break
            if math.log(window[-1] / s) >= spacing:
                window.append(s)
        choices.append((uniformising_exponent(window), back))
    return choices


def interpolation_weights(
    nodes: Sequence[float],
    sigma_from: float,
    sigma_to: float,
    prediction: str,
    variable: str | Callable[[float], float],
) -> list[float]:
    """``w_j`` of the ``lagrange`` family's step ``sigma_from -> sigma_to`` (``0 < sigma_to <
    sigma_from``): the exact integral of the Lagrange basis ``ell_j`` on ``u(nodes)`` against the
    step's exact form (``docs/designed_methods.md``; ``res_theory.multistep_design``),

    * ``prediction="noise"``: ``x' = x + int eps dsigma``, ``w_j = int_{sigma_from}^{sigma_to}
      ell_j(u(s)) ds``;
    * ``prediction="denoised"``: ``x' = (sigma_to/sigma_from) x + sigma_to int D/s^2 ds``,
      ``w_j = sigma_to int_{sigma_to}^{sigma_from} ell_j(u(s)) / s^2 ds``,

    with ``u = sigma`` (``variable="sigma"``), ``u = log sigma`` (``"log_sigma"``; in
    ``lambda = -log sigma`` for the data form), ``u = sigma^(1/7)`` (``"rho7"``, the variable
    in which the EDM grid is uniform) or a given function ``u``. Computed by composite
    ``_GAUSS``-point Gauss–Legendre in ``theta`` (:data:`PANEL_STEP`), ``sigma(theta) =
    sigma_from e^{-h theta}``, ``h = log(sigma_from/sigma_to)``: the integrands are entire in
    ``theta`` (exponential polynomials), and the rule's error is below float64 rounding.

    >>> [round(w, 12) for w in interpolation_weights([2.0, 3.0], 2.0, 1.0, "noise", "sigma")]
    [-1.5, 0.5]
    """
    h = math.log(sigma_from / sigma_to)
    points, quad = _panel_rule(h)
    levels = [sigma_from * math.exp(-h * p) for p in points]
    if prediction == "noise":
        mass = [-h * q * s for q, s in zip(quad, levels, strict=True)]
    else:
        mass = [sigma_to * h * q / s for q, s in zip(quad, levels, strict=True)]
    var = _VARIABLES[variable] if isinstance(variable, str) else variable
    return _basis_integrals([var(s) for s in nodes], [var(s) for s in levels], mass)


def free_first_step(sigma_from: float, sigma_to: float, prediction: str) -> StepCoefficients:
    """The free first step from ``sigma_from`` to ``sigma_to`` (``r = sigma_to/sigma_from``):
    predictor ``x^p = r x_0`` (the first value guessed from ``D = 0``, the analytic first step
    of Zhou et al. 2024), then the corrector through ``D_1 = D(x^p, sigma_to)``, the next
    step's first value, ``x_1 = r x_0 + (1 - r) D_1``: the data form's exact step ``x_1 = r x_0
    + sigma_to int_{sigma_to}^{sigma_from} D/s^2 ds`` for ``D`` constant at ``D_1``. In the
    noise form, with the guess ``Y_0 = x_0/sigma_from`` and ``Y_1 = (x^p - D_1)/sigma_to``
    and ``d = sigma_to - sigma_from``: predictor ``x_0 + d Y_0``, corrector ``x_0 + d (1 - r)
    Y_0 + d r Y_1``. ``D_1`` is handed on unchanged (``linearisation = 0``). The corrector's
    weight on ``Y_1`` times its Lipschitz bound is ``1 - r < 1``: it contracts
    (``docs/designed_methods.md``; the exact solution in ``res_theory.multistep_design``).

    >>> step = free_first_step(80.0, 20.0, "denoised")
    >>> step.decay, step.weights, step.corrector
    (0.25, (0.75,), (0.0, 0.75))
    """
    r = sigma_to / sigma_from
    if prediction == "noise":
        d = sigma_to - sigma_from
        decay, weights, corrector = 1.0, (d,), (d * (1 - r), d * r)
    else:
        decay, weights, corrector = r, (1 - r,), (0.0, 1 - r)
    return StepCoefficients(
        sigmas=(sigma_from,), decay=decay, weights=weights, corrector=corrector,
        linearisation=0.0, guessed=True,
    )  # fmt: skip


def _lagrange(method: Method, grid: StepGrid, values: int) -> list[StepCoefficients]:
    """Steps of a ``lagrange`` method (:class:`res_torch.methods.InterpolatedMethod`) with at
    most ``values`` predictor values; correctors where no noise comes in between."""
    sigma_hat, sigma_to = grid.sigma_hat.tolist(), grid.sigma_to.tolist()
    quiet, churn = (grid.step_noise == 0).tolist(), (grid.churn_noise > 0).tolist()
    # the stored eps hold the state they were evaluated at; D is reused across noise (as RES-2M)
    available, free = interpolated_values(method, grid), _starts_free(method, grid)
    if method.interpolation == "grid":
        choices = _grid_choices(grid, values, available)
    else:
        choices = [(None, None)] * grid.steps
    steps = []
    for n, (denoising, (p, back)) in enumerate(zip(grid.denoising, choices, strict=True)):
        if denoising:
            steps.append(_denoising(sigma_hat[n]))
            continue
        if n == 0 and free:
            steps.append(free_first_step(sigma_hat[0], sigma_to[0], method.prediction))
            continue
        k = min(available[n], values)
        u = _VARIABLES[method.interpolation] if p is None else power_variable(p, sigma_to[n])
        if back is None:  # NODE_SPACING_MIN, in the interpolation variable
            window = [u(s) for s in _looked_at(sigma_hat, n, available[n], k)]
            back = history_offsets(window, u(sigma_to[n]), k - 1)
        nodes = [sigma_hat[n - j] for j in [0, *back]]
        weights = _placed(
            interpolation_weights(nodes, sigma_hat[n], sigma_to[n], method.prediction, u),
            back,
        )
        decay = 1.0 if method.prediction == "noise" else sigma_to[n] / sigma_hat[n]
        corrector, linearisation = (), None
        resolved = u(sigma_to[n]) != u(sigma_hat[n])  # the corrector's new node is distinct
        if method.corrector and resolved and n + 1 < grid.steps and quiet[n] and not churn[n + 1]:
            *old, new = interpolation_weights(
                [*nodes, sigma_to[n]], sigma_hat[n], sigma_to[n], method.prediction, u
            )
            corrector = [*_placed(old, back), new]
            # the corrector only where x -> base + v_new Y(x) contracts: |v_new| L < 1 with the
            # Lipschitz bound L = 1/sigma of eps = (x - D)/sigma (L = 1 for D), 0 <= dD/dx <= I
            lipschitz = 1 / sigma_to[n] if method.prediction == "noise" else 1.0
            if abs(corrector[-1]) * lipschitz >= 1:
                corrector = []
        scale = method.linearisation_scale
        if corrector and scale is not None:
            linearisation = scale**2 / (scale**2 + sigma_to[n] ** 2) if scale > 0 else 0.0
        steps.append(
            StepCoefficients(
                sigmas=(sigma_hat[n],), decay=decay, weights=tuple(weights),
                corrector=tuple(corrector), linearisation=linearisation,
            )
        )  # fmt: skip
    return steps


def _check_order(method: Method, params: Mapping[str, float]) -> int:
    unknown = set(params) - {"max_order"}
    if unknown:
        raise UnknownParameterError(
            f"{method.name} has no parameter(s) {sorted(unknown)}; it has max_order"
        )
    order = params.get("max_order", method.order)
    order = integer(f"{method.name}: max_order", order, 1, method.order, TableauError)
    return order


Builder = Callable[[Method, StepGrid, dict, bool], tuple[list[StepCoefficients], list[str]]]
"""``(method, grid, params, one_evaluation_startup) -> (one StepCoefficients per step, the name of
the method each step runs)``."""


def _erk_builder(method: Method, grid: StepGrid, params: dict, _: bool):
    return erk_steps(method.tableau, grid, params), [method.name] * grid.steps


def _multistep_builder(method: Method, grid: StepGrid, params: dict, one_evaluation: bool):
    return _multistep(method.tableau, grid, params, one_evaluation)


def _sigma_rk_builder(method: Method, grid: StepGrid, params: dict, _: bool):
    if params:
        raise UnknownParameterError(f"{method.name} has no parameters, got {sorted(params)}")
    heun = method.stages == 2
    steps = [
        _denoising(s) if d else sigma_rk_step(s, t, heun)
        for s, t, d in zip(
            grid.sigma_hat.tolist(), grid.sigma_to.tolist(), grid.denoising, strict=True
        )
    ]
    return steps, [method.name] * grid.steps


def _adams_builder(method: Method, grid: StepGrid, params: dict, _: bool):
    return _adams(method, grid, _check_order(method, params)), [method.name] * grid.steps


def _lagrange_builder(method: Method, grid: StepGrid, params: dict, _: bool):
    unknown = set(params) - {"values"}
    if unknown:
        raise UnknownParameterError(
            f"{method.name} has no parameter(s) {sorted(unknown)}; it has values"
        )
    most = method.history + 1
    values = params.get("values", most)
    values = integer(f"{method.name}: values", values, 1, most, TableauError)
    return _lagrange(method, grid, values), [method.name] * grid.steps


BUILDERS: dict[str, Builder] = {
    "erk": _erk_builder,
    "multistep": _multistep_builder,
    "sigma_rk": _sigma_rk_builder,
    "adams": _adams_builder,
    "lagrange": _lagrange_builder,
}
"""The coefficient builder of each method family (``Method.family``): ``erk`` single-step
exponential Runge–Kutta tableaux, ``multistep`` exponential multistep tableaux with start-up
methods, ``sigma_rk`` Euler/Heun in ``sigma``, ``adams`` linear multistep on ``eps`` in
``sigma`` (iPNDM, iPNDM-v, DEIS) with warm start ``k_n = min(n + 1, k)``, ``lagrange`` the
designed interpolation methods with corrector (:func:`interpolation_weights`). A new family adds
its builder here (or registers it at run time)."""


def _check_correctors(steps: Sequence[StepCoefficients], grid: StepGrid) -> None:
    step_noise, churn = grid.step_noise.tolist(), grid.churn_noise.tolist()
    for n, step in enumerate(steps):
        if not step.corrector:
            continue
        if n + 1 >= len(steps) or step.denoising or step_noise[n] > 0 or churn[n + 1] > 0:
            raise TableauError(
                f"step {n} has a corrector but its predicted point is not the next step's "
                "first evaluation (last step, or noise added in between)"
            )


def coefficients(
    method: str | Tableau | Method,
    grid: StepGrid,
    params: Mapping[str, float] | None = None,
    *,
    one_evaluation_startup: bool = False,
) -> Coefficients:
    """The tables of ``method`` (a name, tableau or descriptor) with ``params`` on ``grid``.

    ``params``: a tableau's free parameters (``c2=0.5``, checked against their intervals) or
    ``max_order`` of an ``adams`` method. ``one_evaluation_startup`` replaces multi-stage
    single-step start-up methods by DDIM (for a start where no evaluation can be added, as a
    diffusers run that begins mid-schedule).

    >>> from res_torch.grid import make_grid
    >>> table = coefficients("res_2m", make_grid([10.0, 1.0, 0.0]))
    >>> table.methods, [step.history for step in table.steps], table.steps[1].denoising
    (('ddim', 'res_2m'), [0, 0], True)
    """
    described = method_of(method)
    if described.family not in BUILDERS:
        raise UnknownMethodError(
            f"no coefficient builder for family {described.family!r} of {described.name!r}; "
            f"known: {', '.join(BUILDERS)}"
        )
    build = BUILDERS[described.family]
    steps, names = build(described, grid, dict(params or {}), one_evaluation_startup)
    _check_correctors(steps, grid)
    return Coefficients(described.prediction, tuple(steps), tuple(names))
