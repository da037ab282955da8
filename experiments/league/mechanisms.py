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
on the non-uniform coordinates).

:func:`denoiser_gain` measures along the same trajectories the largest eigenvalue of the
denoiser's Jacobian ``dD/dx``, which is ``Cov[x_0 | x] / sigma^2`` (the second-order Tweedie
identity for ``x = x_0 + sigma n``): symmetric, positive semi-definite, and at most ``I`` only
where the posterior's spread is below ``sigma``. The designed correctors act where their
fixed-point map contracts for every denoiser with ``0 <= dD/dx <= I``
(``docs/designed_methods.md``); the gain says where real denoisers leave that class (a
multimodal posterior at the noise level where the modes separate).

Run: ``python -m experiments.league.mechanisms``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

from experiments.league.references import SIGMA_MAX, SIGMA_MIN
from experiments.league.testbeds import get_testbed

__all__ = ["BANDS", "denoiser_gain", "derivative_norms", "jacobian_eigenvalue", "main"]

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


def jacobian_eigenvalue(
    denoiser, x: torch.Tensor, sigma: float, iterations: int = 50, seed: int = 0
) -> torch.Tensor:
    """Per sample, the largest eigenvalue of the symmetric ``dD/dx`` at ``(x, sigma)``: power
    iteration on Jacobian-vector products (``torch.func.jvp``), the Rayleigh quotient of the
    last iterate. Converges to the largest ``|eigenvalue|``, which is the largest eigenvalue
    because ``dD/dx`` is positive semi-definite (module docstring)."""
    sigmas = torch.full((x.shape[0],), sigma, dtype=x.dtype)
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    quotient = torch.zeros(x.shape[0], dtype=x.dtype)
    for _ in range(iterations):
        v = v / v.flatten(1).norm(dim=1).clamp_min(1e-300).view(-1, *[1] * (x.dim() - 1))
        _, jv = torch.func.jvp(lambda y: denoiser(y, sigmas), (x,), (v,))
        quotient = (jv * v).flatten(1).sum(dim=1)
        v = jv
    return quotient


def denoiser_gain(
    name: str, batch: int = 8, seed: int = 0, every: int = 20
) -> list[dict[str, Any]]:
    """Rows ``{testbed, band, mean_gain, max_gain}``: per band of ``sigma`` and sample, the
    largest eigenvalue of ``dD/dx`` (:func:`jacobian_eigenvalue`) over every ``every``-th point
    of the exact trajectories (those of :func:`derivative_norms`, same seed); its batch mean and
    its batch maximum (the sample that leaves ``dD/dx <= I`` furthest)."""
    testbed = get_testbed(name)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch, *testbed.shape), generator=generator, dtype=torch.float64)
    lam, states = _trajectory(testbed.denoiser, noise * SIGMA_MAX)
    gains = []
    for i in range(0, POINTS, every):
        x = torch.from_numpy(np.ascontiguousarray(states[i])).reshape(batch, *testbed.shape)
        gains.append(jacobian_eigenvalue(testbed.denoiser, x, math.exp(-lam[i])).numpy())
    sigma, top = np.exp(-lam[::every]), np.array(gains)  # (points, batch)
    rows = []
    for high, low in BANDS:
        inside = (sigma <= high) & (sigma >= low)
        per_sample = top[inside].max(axis=0)
        rows.append({"testbed": name, "band": f"{high:g}-{low:g}",
                     "mean_gain": float(per_sample.mean()),
                     "max_gain": float(per_sample.max())})  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m experiments.league.mechanisms", description=__doc__.splitlines()[0]
    ).parse_args(argv)
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
        gains = denoiser_gain(name)
        for key in ("mean_gain", "max_gain"):
            gain = {r["band"]: r[key] for r in gains}
            print(f"{'dD/dx ' + key:20s} " + " ".join(f"{gain[b]:11.3g}" for b in bands))


if __name__ == "__main__":
    main()
