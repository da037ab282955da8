"""Coefficients and updates stay accurate on extreme but legal grids: very long steps (the
quadrature of the designed methods and DEIS), very small noise levels (the grid variable),
tiny ``e^{-h}`` (the lerp chains) and very short steps (the step length in ``lambda``)."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from res_torch import sample
from res_torch.coefficients import (
    coefficients,
    grid_exponents,
    interpolation_weights,
    lagrange_integrals,
)
from res_torch.grid import make_grid
from res_torch.reference import sample_reference


@pytest.mark.parametrize("h", [8.0, 60.0, 100.0, 300.0, 690.0])
def test_quadrature_weights_stay_exact_for_long_steps(h):
    """Euler's weight ``sigma_to - sigma_from`` in each quadrature (one 24-point panel was off
    by 2.5e-9 at h = 100 and 19% at h = 690)."""
    sigma_to = math.exp(-h)
    exact = sigma_to - 1.0
    (noise,) = interpolation_weights([1.0], 1.0, sigma_to, "noise", "sigma")
    (denoised,) = interpolation_weights([1.0], 1.0, sigma_to, "denoised", "log_sigma")
    (deis,) = lagrange_integrals([1.0], 1.0, sigma_to, log=True)
    assert noise == pytest.approx(exact, rel=1e-15)
    assert deis == pytest.approx(exact, rel=1e-15)
    assert denoised == pytest.approx(1 - sigma_to, rel=1e-15)  # sigma_to int ds/s^2


@pytest.mark.parametrize("scale", [1e-8, 1e-14, 1e-60])
@pytest.mark.parametrize("method", ["res_pc4_grid", "res_pc3_grid"])
def test_grid_variable_weights_scale_with_the_grid(method, scale):
    """The noise-form weights are homogeneous of degree 1 in sigma and the exponents of
    degree 0: a grid scaled by 1e-60 has the same exponents and scaled weights (the Box-Cox
    variable's -1 cancelled below sigma 1e-16, and a window of such levels divided by 0)."""
    base = torch.linspace(3.0, 0.2, 9, dtype=torch.float64)
    reference, scaled = make_grid(base), make_grid(base * scale)
    assert grid_exponents(scaled, 4) == pytest.approx(grid_exponents(reference, 4), abs=1e-9)
    pairs = zip(
        coefficients(method, scaled).steps, coefficients(method, reference).steps, strict=True
    )
    for ours, theirs in pairs:
        assert [w / scale for w in ours.weights] == pytest.approx(theirs.weights, rel=1e-9)
        assert [w / scale for w in ours.corrector] == pytest.approx(theirs.corrector, rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [[1e20, 1.0], [1e8, 1.0], [80.0, 0.002]])
def test_an_update_keeps_the_decay_term_when_e_to_the_minus_h_is_tiny(dtype, levels):
    """DDIM's ``x' = a x + (1 - a) D`` with ``a = sigma_to/sigma_from``: the chain's first link
    carries ``a`` itself, not ``1 - t`` (which lost ``a x`` to rounding: 1e-20 for 2.0)."""
    sigma_from, sigma_to = levels
    x = torch.full((2, 3), sigma_from, dtype=dtype)
    sigmas = torch.tensor(levels, dtype=torch.float64)
    out = sample(lambda y, s: torch.ones_like(y), x, sigmas, method="ddim", disable=True)
    a = sigma_to / sigma_from
    exact = a * float(x[0, 0]) + (1 - a)
    assert out.double() == pytest.approx(torch.full((2, 3), exact, dtype=torch.float64),
                                         rel=4 * torch.finfo(dtype).eps)  # fmt: skip


def test_the_fast_loop_matches_the_reference_on_a_long_first_step_in_float32():
    model = lambda y, s: 0.3 + 0.49 / (0.49 + s.view(-1, 1) ** 2) * (y - 0.3)  # noqa: E731
    sigmas = torch.tensor([80.0, 0.002, 0.0], dtype=torch.float64)
    x = 80 * torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    fast = sample(model, x, sigmas, method="res_2s", disable=True)
    grid = make_grid(sigmas)
    oracle = sample_reference(model, x.double(), grid, coefficients("res_2s", grid))
    torch.testing.assert_close(fast.double(), oracle, rtol=1e-6, atol=1e-6)


def test_a_short_step_has_its_length_in_lambda_to_relative_accuracy():
    """``log1p((sigma - sigma_to)/sigma_to)``: a difference of logs at sigma = 1e100 carried
    an absolute error of eps |log sigma|, 1.6e-4 relative to a step of 1e-10."""
    high = 1e100
    low = high * math.exp(-1e-10)
    (step,) = make_grid([high, low]).lambda_step.tolist()
    with mpmath.workdps(40):
        exact = float(mpmath.log(mpmath.mpf(high) / mpmath.mpf(low)))
    assert step == pytest.approx(exact, rel=1e-14)
