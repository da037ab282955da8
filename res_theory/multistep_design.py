"""Order conditions, weights and error constants of the league's exact-integration multistep family.

A step of the probability-flow ODE from ``sigma_n`` to ``sigma_{n+1} = sigma_n e^{-h}`` is
parametrised by ``theta in [0, 1]``, ``sigma(theta) = sigma_n e^{-h theta}`` (``lambda`` linear in
``theta``). Both exact step forms (``docs/MATH.md`` §1) are integrals against a density
``rho(theta)``:

    noise (Y = eps):  x_{n+1} = x_n        + int_0^1 rho Y dtheta,  rho = -h sigma_n e^{-h theta}
    data  (Y = D):    x_{n+1} = e^{-h} x_n + int_0^1 rho Y dtheta,  rho = h e^{-h (1 - theta)}

A method replaces ``Y`` by its values at nodes ``theta = c_j`` (``c_0 = 0`` the current point,
``c_j < 0`` history, ``c = 1`` the new point of a corrector): ``int rho Y ~ sum_j w_j Y(c_j)``. With
``Y`` viewed as a function of an interpolation variable ``u(theta)`` the **order conditions**
are exactness for polynomials in ``u``:

    C_q:  sum_j w_j u(c_j)^q = int_0^1 rho(theta) u(theta)^q dtheta,    q = 0, ..., m - 1,

``m`` the number of nodes; they determine the weights (a Vandermonde system: the Lagrange
weights ``w_j = int rho l_j(u)``). Variables: ``u = theta`` (``lambda`` or ``log sigma``,
equivalent since Lagrange interpolation is invariant under affine maps), ``u = e^{-h theta}``
(``sigma / sigma_n``), ``u = e^{-h theta / 7}`` (``(sigma / sigma_n)^{1/7}``, the variable in
which the EDM rho = 7 grid is uniform) and ``u = e^{-h p theta}`` for any ``p > 0`` (the
``"grid"`` variable of ``res_torch``, ``p`` per step from the grid). The **error constant** is
the first unmet condition,

    E_m = (int_0^1 rho u^m dtheta - sum_j w_j u(c_j)^m) / m!,

the coefficient of ``d^m Y / du^m`` in the step's local error (interpolation remainder with a
constant ``m``-th derivative). For the data form in ``lambda``, ``C_q`` for ``q < m`` is
equivalent to the stiff conditions ``psi_1 = ... = psi_m = 0`` of ``res_theory.conditions``
with ``b_j = w_j / h`` (``res_theory.derive.quadrature_weights``; a test checks it), so those
members are the exponential Adams (RES ``kM``) methods, with corrector the exponential
Adams–Moulton ones.

Everything is exact SymPy; :func:`evaluate` gives numbers at any precision (mpmath) for
checking float implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import mpmath
import sympy as sp

__all__ = [
    "FORMS",
    "VARIABLES",
    "MultistepDesignError",
    "StepFamily",
    "error_constant",
    "evaluate",
    "free_first_step",
    "moment",
    "numeric_weights",
    "order_condition_residuals",
    "weights",
]

h, theta, sigma_n = sp.symbols("h theta sigma_n", positive=True)

FORMS = ("noise", "denoised")
VARIABLES = ("lambda", "sigma", "rho7", "power")


class MultistepDesignError(ValueError):
    """Unknown form or variable, or nodes that do not define a method."""


@dataclass(frozen=True)
class StepFamily:
    """The extrapolated prediction ``form`` (``"noise"`` or ``"denoised"``) and the
    interpolation ``variable`` (``"lambda"``, ``"sigma"``, ``"rho7"`` or ``"power"``:
    ``(sigma/sigma_n)^p`` with ``p = exponent``, a positive rational)."""

    form: str
    variable: str
    exponent: sp.Rational | None = None

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise MultistepDesignError(f"form must be one of {FORMS}, got {self.form!r}")
        if self.variable not in VARIABLES:
            raise MultistepDesignError(
                f"variable must be one of {VARIABLES}, got {self.variable!r}"
            )
        if (self.variable == "power") != (self.exponent is not None):
            raise MultistepDesignError("an exponent is given with variable='power' and only then")
        if self.exponent is not None and not (
            isinstance(self.exponent, sp.Rational) and self.exponent > 0
        ):
            raise MultistepDesignError(f"exponent must be a positive Rational, got {self.exponent}")

    def density(self) -> sp.Expr:
        """``rho(theta)`` (module docstring)."""
        if self.form == "noise":
            return -h * sigma_n * sp.exp(-h * theta)
        return h * sp.exp(-h * (1 - theta))

    def u(self, at: sp.Expr) -> sp.Expr:
        """The interpolation variable at ``theta = at``."""
        if self.variable == "lambda":
            return sp.sympify(at)
        scale = {"sigma": 1, "rho7": sp.Rational(1, 7)}.get(self.variable, self.exponent)
        return sp.exp(-h * scale * at)


@cache
def moment(family: StepFamily, q: int) -> sp.Expr:
    """``int_0^1 rho(theta) u(theta)^q dtheta`` in closed form."""
    if q < 0:
        raise MultistepDesignError(f"moment index must be >= 0, got {q}")
    integrand = sp.expand(family.density() * family.u(theta) ** q)
    return sp.simplify(sp.integrate(integrand, (theta, 0, 1)))


def weights(family: StepFamily, nodes: Sequence[sp.Expr]) -> tuple[sp.Expr, ...]:
    """The weights ``w_j`` that satisfy ``C_0 .. C_{m-1}`` for the ``m`` distinct ``nodes``
    (``theta`` values), as exact expressions in ``h``, ``sigma_n`` and the nodes."""
    nodes = tuple(sp.sympify(c) for c in nodes)
    if not nodes or len(set(nodes)) != len(nodes):
        raise MultistepDesignError(f"nodes must be distinct and non-empty, got {nodes}")
    m = len(nodes)
    u = [family.u(c) for c in nodes]
    matrix = sp.Matrix(m, m, lambda q, j: u[j] ** q)
    rhs = sp.Matrix([moment(family, q) for q in range(m)])
    return tuple(matrix.LUsolve(rhs))


def order_condition_residuals(
    family: StepFamily, nodes: Sequence[sp.Expr], w: Sequence[sp.Expr], up_to: int
) -> tuple[sp.Expr, ...]:
    """``C_q`` residuals ``sum_j w_j u(c_j)^q - int rho u^q`` for ``q = 0 .. up_to - 1``."""
    u = [family.u(sp.sympify(c)) for c in nodes]
    return tuple(
        sum(wj * uj**q for wj, uj in zip(w, u, strict=True)) - moment(family, q)
        for q in range(up_to)
    )


def error_constant(family: StepFamily, nodes: Sequence[sp.Expr]) -> sp.Expr:
    """``E_m`` of the weights for ``nodes`` (module docstring)."""
    m = len(nodes)
    residual = order_condition_residuals(family, nodes, weights(family, nodes), m + 1)[m]
    return -residual / sp.factorial(m)


def free_first_step(form: str) -> tuple[sp.Expr, tuple[sp.Expr, ...], tuple[sp.Expr, ...]]:
    """``(decay, predictor weights, corrector weights)`` of the free first step from ``sigma_n``
    to ``sigma_n e^{-h}`` as exact expressions in ``h`` and ``sigma_n``.

    The step takes no evaluation at ``sigma_n``: its value there is the guess ``D = 0`` (``Y_0 =
    x_0/sigma_n`` in the noise form), the predictor is the one-node step with it (``x^p =
    e^{-h} x_0``), and the corrector is the data form with the new point as its only node
    (:func:`weights` of the denoised form for ``nodes = [1]``: ``1 - e^{-h}``), ``x_1 = e^{-h}
    x_0 + (1 - e^{-h}) D_1``, exact for a denoiser constant over the step. In the noise form the
    corrector is written over ``(Y_0, Y_1 = (x^p - D_1)/sigma_{n+1})`` with decay 1: the guess
    ``Y_0 = x_0/sigma_n`` absorbs the rest of ``x_0``'s coefficient.

    >>> free_first_step("denoised")
    (exp(-h), (1 - exp(-h),), (0, 1 - exp(-h)))
    """
    if form not in FORMS:
        raise MultistepDesignError(f"form must be one of {FORMS}, got {form!r}")
    (w_new,) = weights(StepFamily("denoised", "lambda"), [1])
    decay = sp.exp(-h)
    if form == "denoised":
        return decay, (1 - decay,), (sp.Integer(0), sp.simplify(w_new))
    x0, y0, y1 = sp.symbols("x_0 Y_0 Y_1")
    sigma_to, step = sigma_n * decay, sigma_n * (decay - 1)
    predicted = x0 + step * y0
    corrected = decay * x0 + w_new * (predicted - sigma_to * y1)
    rest = sp.expand((corrected - x0).subs(x0, sigma_n * y0))
    if sp.simplify(rest.subs({y0: 0, y1: 0})) != 0:
        raise MultistepDesignError("the free step's corrector is not linear in (Y_0, Y_1)")
    corrector = tuple(sp.factor(rest.coeff(y)) for y in (y0, y1))
    return sp.Integer(1), (step,), corrector


def numeric_weights(
    family: StepFamily,
    nodes: Sequence[object],
    step: object,
    level: object = 1,
    digits: int = 40,
) -> list[mpmath.mpf]:
    """The weights of :func:`weights` at ``h = step``, ``sigma_n = level`` (numbers or decimal
    strings, read exactly): the order conditions ``C_0 .. C_{m-1}`` with the exact moments
    (:func:`moment`) solved at ``digits`` significant digits (fast where the symbolic solve of
    :func:`weights` is slow; a test checks that both agree)."""
    nodes = tuple(sp.Rational(str(c)) for c in nodes)
    if not nodes or len(set(nodes)) != len(nodes):
        raise MultistepDesignError(f"nodes must be distinct and non-empty, got {nodes}")
    subs = {h: sp.Rational(str(step)), sigma_n: sp.Rational(str(level))}
    m = len(nodes)
    with mpmath.workdps(digits + 10):
        u = [mpmath.mpf(sp.N(family.u(c).subs(subs), digits + 10)) for c in nodes]
        rhs = [mpmath.mpf(sp.N(moment(family, q).subs(subs), digits + 10)) for q in range(m)]
        matrix = mpmath.matrix([[uj**q for uj in u] for q in range(m)])
        solution = mpmath.lu_solve(matrix, mpmath.matrix(rhs))
        return [+solution[j] for j in range(m)]


def evaluate(expr: sp.Expr, values: dict[sp.Symbol, object], digits: int = 40) -> sp.Float:
    """``expr`` at ``values`` (numbers or decimal strings, read exactly as decimals) with
    ``digits`` significant digits; ``phi_k`` terms are evaluated by ``res_theory.phi.phi_mp``."""
    from res_theory.phi import phi, phi_mp

    subs = {k: sp.Rational(str(v)) for k, v in values.items()}
    value = expr.subs(subs)
    with mpmath.workdps(digits + 10):
        value = value.replace(
            lambda e: isinstance(e, phi),
            lambda e: sp.Float(
                phi_mp(int(e.args[0]), mpmath.mpf(sp.N(e.args[1], digits + 10))), digits + 10
            ),
        )
    return sp.Float(sp.N(value, digits), digits)
