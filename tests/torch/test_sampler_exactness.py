"""Each method is exact where its order conditions hold identically in h.

For a denoiser that depends on lambda = -log(sigma) only, ``D = g(lambda)``, the ODE
``dx/dlambda = -x + g`` has the exact step ``x(lambda_b) = e^{-H} x(lambda_a) + ∫_0^H e^{-(H - t)}
g(lambda_a + t) dt``: a method whose ``psi_j`` vanish identically for ``j <= q`` reproduces it for
every polynomial ``g`` of degree ``< q`` (Hochbruck & Ostermann 2010; MATH.md §3).
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from res_torch import get_sigmas_exponential, sample
from res_torch.samplers import cached_tableau

# highest polynomial degree in lambda integrated exactly (psi_1..psi_{degree+1} vanish identically)
EXACT_DEGREE = {
    "ddim": 0,
    "euler": 0,
    "heun": 0,
    "dpmpp_2s": 0,
    "dpmpp_2m": 0,
    "res_2s": 1,
    "res_2m": 1,
    "res_3s": 2,
    "res_3m": 2,
}


def polynomial_model(coefficients):
    def model(x, sigma):
        lam = -torch.log(sigma).view(-1, *([1] * (x.ndim - 1)))
        return sum(c * lam**m for m, c in enumerate(coefficients)) * torch.ones_like(x)

    return model


def exact_flow(x, lam_a, lam_b, coefficients):
    """``e^{-H} x + ∫_0^H e^{-(H-t)} g(lam_a + t) dt`` with ``H = lam_b - lam_a``."""
    mpmath.mp.dps = 30
    big_h = lam_b - lam_a

    def integrand(t):
        return mpmath.exp(-(big_h - t)) * sum(
            c * (lam_a + t) ** m for m, c in enumerate(coefficients)
        )

    integral = float(mpmath.quad(integrand, [0, big_h]))
    return math.exp(-big_h) * x + integral


def startup_steps(method: str) -> int:
    if method in ("euler", "heun"):
        return 0
    tableau = cached_tableau(method)
    return len(tableau.startup)


def run_from_startup(method, degree, sigmas, coefficients=None):
    """Final x of a run, and the exact flow of the state after the start-up steps."""
    coefficients = coefficients or [0.4 - 0.3 * m for m in range(degree + 1)]
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    states = {}
    out = sample(
        polynomial_model(coefficients),
        x,
        sigmas,
        method=method,
        disable=True,
        callback=lambda info: states.setdefault(info["i"], info["x"]),
    )
    k = startup_steps(method)
    lam = (-torch.log(sigmas)).tolist()
    exact = exact_flow(states[k], lam[k], lam[-1], coefficients)
    return out, exact


@pytest.mark.parametrize("method", sorted(EXACT_DEGREE))
def test_method_is_exact_for_polynomials_up_to_its_degree(method):
    # unequal steps, so multistep history nodes vary from step to step
    sigmas = torch.tensor([20.0, 9.0, 5.0, 1.5, 0.9, 0.2, 0.05], dtype=torch.float64)
    for degree in range(EXACT_DEGREE[method] + 1):
        out, exact = run_from_startup(method, degree, sigmas)
        assert torch.allclose(out, exact, rtol=1e-12, atol=1e-12), (method, degree)


@pytest.mark.parametrize("method", sorted(m for m in EXACT_DEGREE if m not in ("euler", "heun")))
def test_exactness_degree_is_sharp(method):
    # one degree more is not integrated exactly (the check above can fail)
    sigmas = torch.tensor([20.0, 9.0, 5.0, 1.5, 0.9, 0.2, 0.05], dtype=torch.float64)
    out, exact = run_from_startup(method, EXACT_DEGREE[method] + 1, sigmas)
    assert (out - exact).abs().max() > 1e-6


@pytest.mark.parametrize("c2", [0.2, 0.5, 1.0])
def test_res_2s_is_exact_for_linear_denoisers_for_every_c2(c2):
    sigmas = get_sigmas_exponential(6, 0.05, 30.0)[:-1]
    coefficients = [0.7, -0.25]
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = sample(polynomial_model(coefficients), x, sigmas, method="res_2s", c2=c2, disable=True)
    lam = (-torch.log(sigmas)).tolist()
    assert torch.allclose(out, exact_flow(x, lam[0], lam[-1], coefficients), rtol=1e-12)
