"""The semilinear parabolic test problem of Hochbruck & Ostermann (2005), finite differences.

Hochbruck & Ostermann, "Explicit exponential Runge–Kutta methods for semilinear parabolic
problems", SIAM J. Numer. Anal. 43 (2005) 1069–1090, Section 5 (the example also used by
Luan & Ostermann 2014):

    u_t = u_xx + 1/(1 + u^2) + Phi(x, t),   x in (0, 1),  t in [0, 1],   u(0, t) = u(1, t) = 0,

with ``Phi`` chosen so that ``u(x, t) = x (1 - x) e^t`` is the exact solution:
``Phi = u_t - u_xx - 1/(1 + u^2) = x (1 - x) e^t + 2 e^t - 1/(1 + u^2)``.

Space is discretised by second-order central differences on ``n`` interior points
``x_i = i dx``, ``dx = 1/(n + 1)``: ``L = tridiag(1, -2, 1) / dx^2``. Because the central second
difference of a quadratic is exact, ``u(x_i, t)`` solves the semi-discrete system
``u' = L u + g(u, t)``, ``g(u, t) = 1/(1 + u^2) + Phi(x_i, t)``, *exactly*: measured errors are
pure time-integration errors. ``||L|| ≈ 4 (n + 1)^2`` (``4·10^4`` for ``n = 100``), so ``||h L||``
is large for every step size used: this is the regime of the *stiff* order conditions.
"""

from __future__ import annotations

import torch

from experiments.problems.base import ProblemError, SemilinearProblem

__all__ = ["hochbruck_ostermann_problem", "laplacian_dirichlet"]

STEPS = (4, 8, 16, 32, 64, 128, 256, 512)
QUICK_STEPS = (8, 16, 32, 64, 128, 256)


def laplacian_dirichlet(n: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """``tridiag(1, -2, 1) / dx^2`` on ``n`` interior points of ``(0, 1)``, ``dx = 1/(n + 1)``."""
    if n < 3:
        raise ProblemError(f"need at least 3 interior grid points, got {n}")
    dx = 1.0 / (n + 1)
    main = torch.full((n,), -2.0, dtype=dtype, device=device)
    off = torch.ones(n - 1, dtype=dtype, device=device)
    return (torch.diag(main) + torch.diag(off, 1) + torch.diag(off, -1)) / dx**2


def hochbruck_ostermann_problem(
    n: int = 100, device: torch.device | str | None = None
) -> SemilinearProblem:
    """The Hochbruck–Ostermann (2005) problem on ``n`` interior points, ``t in [0, 1]``."""
    if n < 100:
        raise ProblemError(f"the parabolic test needs at least 100 interior points, got {n}")
    x = torch.arange(1, n + 1, dtype=torch.float64, device=device) / (n + 1)
    shape = x * (1 - x)

    def exact(t: float) -> torch.Tensor:
        return shape * torch.exp(torch.as_tensor(t, dtype=torch.float64, device=x.device))

    def g(u: torch.Tensor, t: float) -> torch.Tensor:
        et = torch.exp(torch.as_tensor(t, dtype=u.dtype, device=u.device))
        star = shape.to(u) * et
        forcing = star + 2 * et - 1 / (1 + star**2)
        return 1 / (1 + u**2) + forcing

    return SemilinearProblem(
        name="hochbruck_ostermann",
        description=(
            f"u_t = u_xx + 1/(1+u^2) + Phi on (0,1), Dirichlet, u = x(1-x)e^t; "
            f"central differences, {n} interior points (Hochbruck & Ostermann 2005)"
        ),
        linear=laplacian_dirichlet(n, device=device),
        g=g,
        u0=exact(0.0),
        t0=0.0,
        t_end=1.0,
        exact=exact,
        steps=STEPS,
        quick_steps=QUICK_STEPS,
    )
