"""Why methods win or lose: derivatives of the extrapolated quantities along exact trajectories.

A multistep method extrapolates a prediction ``Y`` in a variable ``u``; its local error is
``E_k(step) d^k Y / du^k`` (:mod:`res_theory.multistep_design`). Along converged trajectories
of a testbed (DOP853 in ``lambda`` with dense output, 2001 points uniform in ``lambda`` from
``sigma = 80`` to ``0.002``) this module measures, per band of ``sigma``, the batch mean of the
largest ``|d^k Y / du^k|`` (L2 norm over the sample) for

* ``D`` in ``lambda`` (the res/DPM-Solver++ data form),
* ``eps`` in ``sigma`` (iPNDM / Adams–Bashforth) and ``eps`` in ``log sigma`` (DEIS, the noise form
  of the exponential integrator; ``d/dlog sigma = -d/dlambda``),

and the step-scaled size ``|Y^{(k)}| du^k / k!`` with ``du`` the local spacing of the EDM Karras
grid at NFE 10 in that variable (the size of the k-th Taylor term over one step). Derivatives are
finite differences of the dense solution (``numpy.gradient``, second order, applied ``k`` times
on the non-uniform coordinates). Run: ``python -m experiments.league.mechanisms``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

from experiments.league.references import SIGMA_MAX, SIGMA_MIN
from experiments.league.testbeds import get_testbed

__all__ = ["BANDS", "derivative_norms", "main"]

BANDS: tuple[tuple[float, float], ...] = ((80, 10), (10, 1), (1, 0.1), (0.1, 0.01), (0.01, 0.002))
POINTS = 2001


def _trajectory(denoiser, x0: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``lambda`` grid and the states ``(points, batch, d)`` along the exact trajectories."""
    shape = x0.shape
    ones = torch.ones(shape[0], dtype=torch.float64)

    def rhs(lam: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(shape)
        return (-x + denoiser(x, math.exp(-lam) * ones)).reshape(-1).numpy()

    span = (-math.log(SIGMA_MAX), -math.log(SIGMA_MIN))
    solved = solve_ivp(rhs, span, x0.reshape(-1).numpy(), method="DOP853", rtol=1e-10,
                       atol=1e-10, dense_output=True)  # fmt: skip
    lam = np.linspace(*span, POINTS)
    return lam, solved.sol(lam).T.reshape(POINTS, shape[0], -1)


def _derivatives(values: np.ndarray, u: np.ndarray, orders: int) -> list[np.ndarray]:
    out, current = [], values
    for _ in range(orders):
        current = np.gradient(current, u, axis=0, edge_order=2)
        out.append(current)
    return out


def derivative_norms(
    name: str, batch: int = 8, seed: int = 0, orders: int = 3
) -> list[dict[str, Any]]:
    """Rows ``{testbed, quantity, k, band, norm, step_scaled}`` (module docstring)."""
    from res_torch import get_sigmas_karras

    testbed = get_testbed(name)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch, *testbed.shape), generator=generator, dtype=torch.float64)
    lam, states = _trajectory(testbed.denoiser, noise * SIGMA_MAX)
    sigma = np.exp(-lam)
    x = torch.from_numpy(states.reshape(POINTS * batch, *testbed.shape))
    sig = torch.from_numpy(np.repeat(sigma, batch))
    with torch.no_grad():
        d = testbed.denoiser(x, sig).reshape(POINTS, batch, -1).numpy()
    eps = (states - d) / sigma[:, None, None]
    grid = get_sigmas_karras(10)[:-1].numpy()
    spacing = {
        "lambda": np.abs(np.diff(np.log(grid))),
        "sigma": np.abs(np.diff(grid)),
    }
    quantities = {
        "D in lambda": (d, lam, "lambda"),
        "eps in sigma": (eps, sigma, "sigma"),
        "eps in log sigma": (eps, -lam, "lambda"),
    }
    rows = []
    for label, (values, u, kind) in quantities.items():
        for k, derivative in enumerate(_derivatives(values, u, orders), start=1):
            norms = np.linalg.norm(derivative, axis=-1)  # (points, batch)
            for high, low in BANDS:
                inside = (sigma <= high) & (sigma >= low)
                top = norms[inside].max(axis=0).mean()
                # local Karras spacing at the band's geometric middle
                middle = math.sqrt(high * low)
                index = int(np.clip(np.searchsorted(-grid, -middle) - 1, 0, len(grid) - 2))
                du = spacing[kind][index]
                rows.append({"testbed": name, "quantity": label, "k": k,
                             "band": f"{high:g}-{low:g}", "norm": float(top),
                             "step_scaled": float(top * du**k / math.factorial(k))})  # fmt: skip
    return rows


def main() -> None:
    for name in ("gmm", "gmm_sharp", "gmm_aniso", "kernel_digits", "kernel_patches"):
        rows = derivative_norms(name)
        print(f"\n{name}: step-scaled |Y^(k)| du^k/k! (NFE-10 Karras spacing), per sigma band")
        bands = [f"{a:g}-{b:g}" for a, b in BANDS]
        print(f"{'quantity':18s} k " + " ".join(f"{b:>11s}" for b in bands))
        for label in ("D in lambda", "eps in sigma", "eps in log sigma"):
            for k in (1, 2, 3):
                cells = {r["band"]: r["step_scaled"] for r in rows
                         if r["quantity"] == label and r["k"] == k}  # fmt: skip
                print(f"{label:18s} {k} " + " ".join(f"{cells[b]:11.3g}" for b in bands))


if __name__ == "__main__":
    main()
