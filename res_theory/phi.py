"""The phi functions of exponential integrators: symbolic (SymPy), series, and mpmath numerics.

Standard convention (Hochbruck & Ostermann, Acta Numerica 19 (2010), eq. (2.10))::

    phi_0(z) = e^z,
    phi_k(z) = ∫_0^1 e^{(1-θ) z} θ^{k-1}/(k-1)! dθ          (k ≥ 1),
    phi_{k+1}(z) = (phi_k(z) - 1/k!) / z,   phi_k(0) = 1/k!,
    phi_k(z) = Σ_{n≥0} z^n/(n+k)!  =  1F1(1; k+1; z)/k!.

The paper (Zhang, Song & Chen 2023, arXiv 2308.02157) writes ``φ_k(h)`` for the standard
``phi_k(-h)`` (diffusion sampling has ``L = -1``, ``Z = hL = -h``); :func:`paper_phi` gives it.

:func:`phi_mp` (mpmath, any precision) is the project's numeric ground truth.
"""

from __future__ import annotations

import math

import mpmath
import sympy as sp

__all__ = ["phi", "paper_phi", "phi_as_exp", "phi_series", "phi_mp", "PhiError"]


class PhiError(ValueError):
    """A phi function was asked for with an invalid index."""


def _check_index(k: object) -> int:
    if isinstance(k, sp.Integer):
        k = int(k)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise PhiError(f"phi_k needs an integer index k >= 0, got {k!r}")
    return k


class phi(sp.Function):  # noqa: N801  (mathematical name)
    """Symbolic ``phi_k(z)`` (standard); ``phi(0, z)`` is ``exp(z)``, ``phi(k, 0) = 1/k!``.

    Kept unevaluated otherwise, so tableau entries stay readable linear combinations.
    """

    nargs = 2

    @classmethod
    def eval(cls, k: sp.Expr, z: sp.Expr) -> sp.Expr | None:
        if k.is_Integer:
            kk = _check_index(k)
            if kk == 0:
                return sp.exp(z)
            if z.is_zero:
                return sp.Rational(1, math.factorial(kk))
        elif k.is_number:
            raise PhiError(f"phi_k needs an integer index k >= 0, got {k!r}")
        return None

    def _eval_rewrite_as_exp(self, k: sp.Expr, z: sp.Expr, **kwargs: object) -> sp.Expr:
        return phi_as_exp(int(k), z)

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        """Numeric value through :func:`phi_mp` (without this, ``sp.N`` fell back to an unrelated
        mpmath function of the same name and gave ``N(phi(2, -7/10)) = 1.5``)."""
        k, z = self.args
        if not (k.is_Integer and z.is_number):
            return None
        with mpmath.workprec(prec + 10):
            value = phi_mp(int(k), z._to_mpmath(prec + 10))
        return sp.Expr._from_mpmath(value, prec)


def paper_phi(k: int, h: sp.Expr) -> sp.Expr:
    """The paper's ``φ_k(h) = phi_k(-h)``: ``φ_1(h) = (1 - e^{-h})/h``, ``φ_2 = (1 - φ_1)/h``."""
    return phi(_check_index(k), -h)


def phi_as_exp(k: int, z: sp.Expr) -> sp.Expr:
    """``phi_k(z) = (e^z - Σ_{j<k} z^j/j!) / z^k`` (closed form; singular-looking at ``z = 0``)."""
    k = _check_index(k)
    return (sp.exp(z) - sum(z**j / sp.factorial(j) for j in range(k))) / z**k


def phi_series(k: int, z: sp.Expr, terms: int) -> sp.Expr:
    """Exact Taylor polynomial ``Σ_{n<terms} z^n/(n+k)!`` of ``phi_k`` at ``0``."""
    k = _check_index(k)
    if not isinstance(terms, int) or terms < 0:
        raise PhiError(f"terms must be a non-negative integer, got {terms!r}")
    return sum((z**n / sp.factorial(n + k) for n in range(terms)), sp.Integer(0))


def phi_mp(k: int, z: mpmath.mpf | mpmath.mpc | float | int) -> mpmath.mpf:
    """``phi_k(z)`` in mpmath at the current precision, via ``1F1(1; k+1; z)/k!``.

    The confluent hypergeometric representation has no cancellation at small ``z`` (it is the
    series itself), so it is accurate to the working precision everywhere.
    """
    k = _check_index(k)
    z = mpmath.mpmathify(z)
    if k == 0:
        return mpmath.exp(z)
    return mpmath.hyp1f1(1, k + 1, z) / mpmath.factorial(k)
