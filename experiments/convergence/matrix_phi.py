"""Matrix phi functions ``phi_k(Z)`` of a square matrix ``Z`` via one augmented exponential.

With the standard convention ``phi_0(Z) = e^Z``, ``phi_k(Z) = ∫_0^1 e^{(1-θ)Z} θ^{k-1}/(k-1)! dθ``
(``docs/tableau_format.md``), the exponential of the ``(p+1) n``-square block matrix

    W = [[Z, I, 0, ..., 0],
         [0, 0, I, ..., 0],
         ...
         [0, 0, 0, ..., I],
         [0, 0, 0, ..., 0]]

has first block row ``[phi_0(Z), phi_1(Z), ..., phi_p(Z)]`` (Sidje, ACM TOMS 24 (1998) 130–156,
Thm 1; Al-Mohy & Higham, SIAM J. Sci. Comput. 33 (2011) 488–511, eq. (2.11)). ``scipy.linalg.expm``
(scaling and squaring with Padé approximants, Al-Mohy & Higham 2009) evaluates it accurately also
for the stiff arguments ``||Z|| >> 1`` of a discretised Laplacian, where the recurrence
``phi_{k+1}(Z) = Z^{-1}(phi_k(Z) - I/k!)`` would be ill-conditioned for small ``||Z||``.

:class:`MatrixPhiCache` computes all ``phi_0..phi_p`` of ``scale * h * L`` with one ``expm`` per
distinct argument and keeps them, so that a convergence sweep over many tableaux pays for each
``(scale, h)`` once.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

__all__ = ["MatrixPhiCache", "MatrixPhiError", "matrix_phi_functions"]


class MatrixPhiError(ValueError):
    """A matrix phi function was requested for an invalid argument."""


def matrix_phi_functions(z: torch.Tensor, p: int) -> list[torch.Tensor]:
    """``[phi_0(Z), ..., phi_p(Z)]`` of a square matrix ``z`` from one augmented ``expm``.

    Computed in float64 (scipy) and returned in ``z``'s dtype and device.
    """
    if not isinstance(p, int) or isinstance(p, bool) or p < 0:
        raise MatrixPhiError(f"p must be an integer >= 0, got {p!r}")
    if z.ndim != 2 or z.shape[0] != z.shape[1]:
        raise MatrixPhiError(f"Z must be a square matrix, got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise MatrixPhiError("Z has non-finite entries")
    n = z.shape[0]
    zz = z.detach().to("cpu", torch.float64).numpy()
    w = np.zeros(((p + 1) * n, (p + 1) * n))
    w[:n, :n] = zz
    identity = np.eye(n)
    for block in range(p):
        w[block * n : (block + 1) * n, (block + 1) * n : (block + 2) * n] = identity
    top = scipy.linalg.expm(w)[:n]
    return [
        torch.from_numpy(top[:, k * n : (k + 1) * n].copy()).to(device=z.device, dtype=z.dtype)
        for k in range(p + 1)
    ]


class MatrixPhiCache:
    """``phi_k(scale * h * L)`` for a fixed matrix ``L``, one ``expm`` per distinct ``scale * h``.

    ``p`` is the largest ``k`` ever requested (all of ``phi_0..phi_p`` come out of the same
    exponential, so asking for several ``k`` at one argument costs nothing extra).
    """

    def __init__(self, linear: torch.Tensor, p: int = 5) -> None:
        if linear.ndim != 2 or linear.shape[0] != linear.shape[1]:
            raise MatrixPhiError(f"L must be a square matrix, got shape {tuple(linear.shape)}")
        self.linear = linear
        self.p = p
        self._cache: dict[float, list[torch.Tensor]] = {}

    def __call__(self, k: int, argument: float) -> torch.Tensor:
        """``phi_k(argument * L)``; ``argument`` is ``scale * h``."""
        if not 0 <= k <= self.p:
            raise MatrixPhiError(f"phi_{k} requested but this cache holds k = 0..{self.p}")
        key = float(argument)
        if key not in self._cache:
            self._cache[key] = matrix_phi_functions(key * self.linear, self.p)
        return self._cache[key][k]

    def __len__(self) -> int:
        return len(self._cache)
