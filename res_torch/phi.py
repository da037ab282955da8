"""phi functions of exponential integrators (standard convention), elementwise on tensors.

``phi_0(z) = e^z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``, ``phi_k(0) = 1/k!``.
The paper's ``φ_k(h)`` is ``phi_k(-h)``. (Provisional implementation: Taylor series below
``|z| = 1``, recurrence above, evaluated in float64.)
"""

from __future__ import annotations

import math

import torch

__all__ = ["phi"]

_TERMS = 30


def phi(k: int, z: torch.Tensor) -> torch.Tensor:
    """``phi_k(z)`` elementwise, in the dtype of ``z`` (computed in float64)."""
    if k < 0:
        raise ValueError(f"phi_k needs k >= 0, got {k}")
    z = torch.as_tensor(z)
    dtype = z.dtype if z.is_floating_point() else torch.float64
    x = z.to(torch.float64)
    small = x.abs() < 1
    xs = torch.where(small, x, torch.zeros_like(x))
    series = torch.full_like(x, 1 / math.factorial(k + _TERMS))
    for n in range(_TERMS - 1, -1, -1):
        series = series * xs + 1 / math.factorial(k + n)
    xl = torch.where(small, torch.ones_like(x), x)
    rec = torch.exp(xl)
    for j in range(k):
        rec = (rec - 1 / math.factorial(j)) / xl
    return torch.where(small, series, rec).to(dtype)
