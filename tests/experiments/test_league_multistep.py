"""The league's multistep family: weights against textbook formulas, orders of convergence."""

import math

import numpy as np
import pytest
import torch

from experiments.league.multistep import (
    MultistepDesign,
    lagrange_weights,
    sample_multistep,
    step_coefficients,
)
from experiments.problems.gaussian_mixture import GaussianMixture
from res_torch import get_sigmas_exponential

F64 = torch.float64
ADAMS_BASHFORTH = {
    1: [1.0],
    2: [3 / 2, -1 / 2],
    3: [23 / 12, -16 / 12, 5 / 12],
    4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_noise_form_in_sigma_on_equal_steps_is_adams_bashforth(k):
    step = -0.25
    nodes = [3.0 - step * j for j in range(k)]  # sigma_n = 3, history above it
    w = lagrange_weights(3.0, 3.0 + step, nodes, "noise", "sigma")
    assert np.allclose(w / step, ADAMS_BASHFORTH[k], rtol=1e-14, atol=1e-14)


def test_data_form_weights_are_the_res_multistep_ones():
    """Data form in lambda with nodes sigma_n, sigma_{n-1}: RES-2M's weights
    h (phi_1 + phi_2/r), -h phi_2/r with r = h_prev/h (MATH.md sect. 4)."""
    s_prev, s_n, s_next = 5.0, 2.0, 0.7
    h, h_prev = math.log(s_n / s_next), math.log(s_prev / s_n)
    phi1 = -math.expm1(-h) / h
    phi2 = (1 - phi1) / h
    r = h_prev / h
    w = lagrange_weights(s_n, s_next, [s_n, s_prev], "denoised", "log_sigma")
    assert np.allclose(w, [h * (phi1 + phi2 / r), -h * phi2 / r], rtol=1e-13)


def test_bad_designs_are_rejected():
    with pytest.raises(ValueError, match="variable"):
        MultistepDesign("x", "noise", "time", 2)
    with pytest.raises(ValueError, match="prediction"):
        MultistepDesign("x", "velocity", "sigma", 2)
    with pytest.raises(ValueError, match="corrector"):
        MultistepDesign("x", "noise", "sigma", 2, linearised_history=0.5)
    with pytest.raises(ValueError, match="sigma_from > sigma_to"):
        lagrange_weights(1.0, 2.0, [1.0], "noise", "sigma")


def _gaussian() -> GaussianMixture:
    generator = torch.Generator().manual_seed(3)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, dtype=F64, generator=generator))
    covariance = rotation @ torch.diag(torch.tensor([0.3, 0.8, 1.3, 2.0], dtype=F64) ** 2)
    covariance = covariance @ rotation.T
    means = torch.randn(1, 4, dtype=F64, generator=generator)
    return GaussianMixture(torch.ones(1, dtype=F64), means, ((covariance + covariance.T) / 2)[None])


DESIGNS = [
    MultistepDesign("ab2", "noise", "sigma", 2),
    MultistepDesign("ab3", "noise", "log_sigma", 3),
    MultistepDesign("ab4_rho", "noise", "rho7", 4),
    MultistepDesign("res3", "denoised", "log_sigma", 3),
    MultistepDesign("pc2", "noise", "sigma", 2, True, linearised_history=0.0),
    MultistepDesign("pc3", "noise", "log_sigma", 3, True, linearised_history=0.5),
    MultistepDesign("pc4", "noise", "sigma", 4, True, linearised_history=0.0),
    MultistepDesign("dpc2", "denoised", "log_sigma", 2, True),
]


def _trajectory(gaussian: GaussianMixture, x0: torch.Tensor, s0: float, sigma: float):
    vectors, values, mu = gaussian.eigenvectors[0], gaussian.eigenvalues[0], gaussian.means[0]
    z = (x0 - mu) @ vectors
    return mu + (z * ((values + sigma**2) / (values + s0**2)).sqrt()) @ vectors.T


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: d.name)
def test_local_error_order_with_exact_history(design):
    """One step from exact history values on the closed-form trajectory: local error
    O(h^{k+1}) for a k-value predictor, O(h^{k+2}) with the corrector (PEC)."""
    gaussian, s0 = _gaussian(), 4.0
    x0 = gaussian.means + s0 * torch.randn(
        2, 4, dtype=F64, generator=torch.Generator().manual_seed(0)
    )
    k = design.order
    errors = []
    for h in (0.1, 0.05, 0.025):
        levels = [s0 * math.exp(-h * j) for j in range(k + 1)]  # k history levels, then target
        states = [_trajectory(gaussian, x0, s0, s) for s in levels]

        def y(x, s):
            d = gaussian.denoiser(x, torch.full((2,), s, dtype=F64))
            return (x - d) / s if design.prediction == "noise" else d

        history = [y(states[k - 1 - j], levels[k - 1 - j]) for j in range(k)]
        step = step_coefficients(
            MultistepDesign("x", design.prediction, design.variable, k, design.corrector),
            levels,
        )[-1]
        x_n, s_next = states[k - 1], levels[k]
        x = step.a * x_n + sum(w * v for w, v in zip(step.w, history, strict=True))
        if step.v:
            new = y(x, s_next)
            x = (
                step.a * x_n
                + step.v[0] * new
                + sum(w * v for w, v in zip(step.v[1:], history, strict=True))
            )
        errors.append(float((x - states[k]).abs().max()))
    slope = math.log2(errors[-2] / errors[-1])
    expected = k + 2 if design.corrector else k + 1
    assert slope == pytest.approx(expected, abs=0.3), (errors, slope)


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: d.name)
def test_global_order_with_free_warm_start(design):
    """Final denoised estimate against the closed form on grids uniform in lambda
    (sigma 10 -> 0.1). The free warm start's first step (Euler; Euler + trapezoid corrector)
    has local error O(h^2) (O(h^3)), which caps the global order at 2 (3 with the corrector),
    as for iPNDM; higher orders show in the local-error test above."""
    gaussian, s0, s1 = _gaussian(), 10.0, 0.1
    x0 = gaussian.means + s0 * torch.randn(
        3, 4, dtype=F64, generator=torch.Generator().manual_seed(0)
    )
    exact = gaussian.denoiser(_trajectory(gaussian, x0, s0, s1), torch.full((3,), s1, dtype=F64))
    errors = []
    for n in (48, 96, 192):
        out = sample_multistep(design, gaussian.denoiser, x0, get_sigmas_exponential(n + 1, s1, s0))
        errors.append(float((out - exact).abs().max()))
    slope = math.log2(errors[-2] / errors[-1])
    expected = min(design.order + design.corrector, 2 + design.corrector)
    assert slope == pytest.approx(expected, abs=0.35), (errors, slope)
