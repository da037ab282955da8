"""phi functions of exponential integrators (standard convention), elementwise on tensors.

``phi_0(z) = e^z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``, ``phi_k(0) = 1/k!``, equivalently
``phi_k(z) = ∫_0^1 e^{(1-θ) z} θ^{k-1}/(k-1)! dθ`` (Hochbruck & Ostermann, Acta Numerica 19
(2010), eq. 2.10). The paper (Zhang, Song & Chen 2023) writes ``φ_k(h)`` for ``phi_k(-h)``.

Evaluation (in float64, rounded once to the input's dtype), chosen so that no formula subtracts
nearly equal numbers:

* ``0 <= z < 3 + k``: the Taylor series ``sum_n z^n/(n+k)!`` (all terms positive).
* ``-(4 + 2k) < z < 0`` (k >= 1): expanding ``e^{-θ z}`` in the integral gives the positive series
  ``phi_k(z) = e^z sum_n (-z)^n / (n! (k-1)! (n+k))`` (a Kummer function ``e^z M(k, k+1, -z)/k!``).
* beyond these switch points: the recurrence, which is well conditioned there because
  ``phi_j(z)`` is far from ``1/j!`` for every ``j < k``.

Every branch receives masked inputs, so gradients are finite everywhere (also at ``z = 0``).
Measured against 40-digit mpmath values (``tests/torch/test_phi.py``) on ``|z|`` in
[1e-12, 1e3] (both signs, where finite), and on 40000 points of [-45, 40] for the branch
regions: max error in float64 for k = 0 that of ``torch.exp`` (0.51 ulp on one CPU, 0.63 on
another: the vectorised exp differs by instruction set; 1 ulp is the bound tested), 3.0 / 4.4
/ 5.3 / 5.2 / 4.6 ulp for k = 1..5 and 6.7 ulp for k = 6 (the worst points lie in the
negative-series branch, ``z`` between -4 and -14); in float32 0.5 ulp (correctly rounded).
"""

from __future__ import annotations

import functools
import math

import torch

from res_torch.errors import PhiError

__all__ = ["K_MAX", "PhiError", "phi", "series_terms", "switch_point"]

K_MAX = 20
"""Largest phi index ``k`` accepted (tableau files: ``docs/tableau_format.md``). The series and
the recurrence stay accurate and cheap up to here (``tests/torch/test_tableau_validation.py``);
the methods in use need ``k <= 5``."""


def switch_point(k: int, sign: int) -> float:
    """``|z|`` from which on the recurrence replaces the series: ``3 + k`` for ``z > 0``,
    ``4 + 2k`` for ``z < 0`` (chosen by measurement: the recurrence's error amplification
    ``j! phi_j / |j! phi_j - 1|`` stays below ~1 there, and the series' rounding is smallest)."""
    return 3.0 + k if sign > 0 else 4.0 + 2.0 * k


def series_terms(k: int) -> int:
    """Number of series terms that reach float64 accuracy for ``|z|`` below the switch points.

    With ``T`` the larger switch point, every omitted term is below ``T^n/n!`` times the
    leading coefficient and the sum is at least that coefficient, so ``n`` with
    ``T^n/n! < 2^-60`` suffices (the tail is then geometric, ratio < 1/2).
    """
    limit = max(switch_point(k, 1), switch_point(k, -1))
    n, term = 0, 1.0
    while term >= 2.0**-60 or limit / (n + 1) >= 0.5:
        n += 1
        term *= limit / n
    return n


@functools.cache
def _series_coefficients(k: int, negative: bool) -> tuple[float, ...]:
    """Coefficients of the two series, lowest order first (see the module docstring)."""
    if negative:
        scale = math.factorial(k - 1)
        return tuple(1 / (math.factorial(n) * scale * (n + k)) for n in range(series_terms(k) + 1))
    return tuple(1 / math.factorial(k + n) for n in range(series_terms(k) + 1))


def _horner(coefficients: tuple[float, ...], t: torch.Tensor) -> torch.Tensor:
    total = torch.full_like(t, coefficients[-1])
    for coefficient in coefficients[-2::-1]:
        total = (total * t).add_(coefficient)
    return total


def _positive_series(k: int, z: torch.Tensor) -> torch.Tensor:
    """``sum_n z^n / (n+k)!`` by Horner, for ``0 <= z < 3 + k``."""
    return _horner(_series_coefficients(k, negative=False), z)


def _negative_series(k: int, z: torch.Tensor) -> torch.Tensor:
    """``e^z sum_n t^n / (n! (k-1)! (n+k))`` with ``t = -z``, for ``-(4+2k) < z <= 0``, k >= 1."""
    return torch.exp(z) * _horner(_series_coefficients(k, negative=True), -z)


def _recurrence(k: int, z: torch.Tensor) -> torch.Tensor:
    """``phi_{j+1} = (phi_j - 1/j!)/z`` from ``phi_0 = e^z``, beyond the switch points."""
    value = torch.exp(z)
    for j in range(k):
        value = (value - 1 / math.factorial(j)) / z
    return value


def phi(k: int, z: torch.Tensor | float) -> torch.Tensor:
    """``phi_k(z)`` elementwise, in the floating dtype of ``z`` (float64 for Python numbers and
    integer tensors).

    Computed in float64 and rounded once, so float32/float16/bfloat16 results are correctly
    rounded up to the float64 error (a few float64 ulp). Differentiable; the gradient at
    ``z = 0`` is ``phi_{k+1}(0) = 1/(k+1)!``. ``phi_k(z)`` is infinite for ``z`` above ~709.
    """
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= K_MAX:
        raise PhiError(f"phi_k needs an integer k >= 0 and <= {K_MAX}, got {k!r:.40}")
    if not torch.is_tensor(z):
        z = torch.as_tensor(z, dtype=torch.float64)
    dtype = z.dtype if z.is_floating_point() else torch.float64
    if z.is_complex():
        raise TypeError("phi is implemented for real arguments only")
    x = z.to(torch.float64)
    if k == 0:
        return torch.exp(x).to(dtype)
    upper, lower = switch_point(k, 1), -switch_point(k, -1)
    positive = (x >= 0) & (x < upper)
    negative = (x < 0) & (x > lower)
    far = ~(positive | negative)
    zero = torch.zeros_like(x)
    result = torch.where(positive, _positive_series(k, torch.where(positive, x, zero)), zero)
    result = torch.where(negative, _negative_series(k, torch.where(negative, x, zero)), result)
    far_input = torch.where(far, x, torch.full_like(x, upper))
    result = torch.where(far, _recurrence(k, far_input), result)
    return result.to(dtype)
