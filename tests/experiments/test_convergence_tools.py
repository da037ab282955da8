"""Building blocks of the convergence study: matrix phi functions, the slope fit, the generic
exponential stepper (checked against closed forms and against the library's samplers)."""

import math

import pytest
import torch

from experiments.convergence.erk_stepper import (
    MatrixLinearPart,
    ScalarLinearPart,
    StepperError,
    integrate_erk,
)
from experiments.convergence.matrix_phi import MatrixPhiCache, MatrixPhiError, matrix_phi_functions
from experiments.convergence.slopes import SlopeFitError, fit_slope, local_slopes
from experiments.problems import get_problem
from experiments.problems.parabolic import laplacian_dirichlet
from res_torch import phi
from res_torch.samplers import sample
from res_torch.tableau import available_tableaux


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 0.25])
def test_matrix_phi_of_stiff_laplacian_matches_eigendecomposition(scale):
    """phi_k(a L) = V phi_k(a Lambda) V^T (symmetric Dirichlet Laplacian), ||a L|| up to 1e4."""
    linear = laplacian_dirichlet(100)
    eigenvalues, vectors = torch.linalg.eigh(linear)
    computed = matrix_phi_functions(scale * linear, 4)
    for k, matrix in enumerate(computed):
        expected = vectors @ torch.diag(phi(k, scale * eigenvalues)) @ vectors.T
        assert float((matrix - expected).abs().max()) < 1e-13 * max(
            1.0, float(expected.abs().max())
        )


def test_matrix_phi_of_non_normal_matrix_matches_series():
    """A nilpotent Jordan-like matrix: phi_k(Z) = sum_j Z^j/(j+k)! terminates exactly."""
    z = torch.diag(torch.tensor([2.0, -3.0, 0.5], dtype=torch.float64), 1)
    for k, matrix in enumerate(matrix_phi_functions(z, 3)):
        expected = sum(torch.linalg.matrix_power(z, j) / math.factorial(j + k) for j in range(4))
        torch.testing.assert_close(matrix, expected, rtol=1e-14, atol=1e-14)


def test_matrix_phi_cache_computes_each_argument_once():
    cache = MatrixPhiCache(laplacian_dirichlet(10), p=3)
    a = cache(2, 0.01)
    assert cache(1, 0.01) is not None and len(cache) == 1
    assert cache(2, 0.01) is a
    cache(0, 0.02)
    assert len(cache) == 2
    with pytest.raises(MatrixPhiError, match="holds k = 0..3"):
        cache(4, 0.01)


def test_matrix_phi_bad_input():
    with pytest.raises(MatrixPhiError, match="square"):
        matrix_phi_functions(torch.zeros(2, 3), 1)
    with pytest.raises(MatrixPhiError, match="p must be"):
        matrix_phi_functions(torch.zeros(2, 2), -1)
    with pytest.raises(MatrixPhiError, match="non-finite"):
        matrix_phi_functions(torch.full((2, 2), math.nan), 1)


def test_fit_slope_recovers_known_order_and_uses_the_finest_window():
    h = [2.0**-k for k in range(2, 9)]
    errors = [3 * x**3 * (1 + 2 * x) for x in h]  # next term O(h^4)
    fit = fit_slope(h, errors, window=4)
    assert fit.n_points == 4 and fit.h_min == h[-1] and fit.h_max == h[3]
    assert abs(fit.slope - 3) < 0.3
    assert abs(fit_slope(h, [x**2 for x in h]).slope - 2) < 1e-12
    assert local_slopes([0.1, 0.05], [1e-2, 2.5e-3]) == pytest.approx([2.0])


def test_fit_slope_drops_points_below_the_floor():
    h = [2.0**-k for k in range(1, 8)]
    errors = [max(x**4, 1e-9) for x in h]
    fit = fit_slope(h, errors, floor=1e-8)
    assert fit.h_min == 2.0**-6 and fit.h_max == 2.0**-3  # 2^-7 is below the floor
    assert abs(fit.slope - 4) < 1e-9


def test_fit_slope_refuses_too_few_points():
    with pytest.raises(SlopeFitError, match="at least 3"):
        fit_slope([0.1, 0.05], [1e-2, 2.5e-3])
    with pytest.raises(SlopeFitError, match="above the floor"):
        fit_slope([0.1, 0.05, 0.025], [1e-2, 1e-12, 1e-13], floor=1e-10)
    with pytest.raises(SlopeFitError, match="at least 3"):
        fit_slope([0.1, 0.05, 0.025], [1e-2, math.nan, math.inf])
    with pytest.raises(SlopeFitError, match="positive"):
        fit_slope([0.1, -0.05, 0.025], [1, 1, 1])
    with pytest.raises(SlopeFitError, match="errors"):
        fit_slope([0.1, 0.05], [1.0])


def test_stepper_exponential_euler_on_the_pde_is_the_closed_form():
    """ddim with matrix L: u_{n+1} = e^{hL} u_n + h phi_1(hL) g(u_n, t_n)."""
    problem = get_problem("hochbruck_ostermann")
    h = 0.25
    linear = MatrixLinearPart(problem.linear)
    expected = problem.u0
    for n in range(4):
        expected = linear.phi(0, h) @ expected + h * linear.phi(1, h) @ problem.g(expected, n * h)
    computed = integrate_erk("ddim", linear, problem.g, problem.u0, 0.0, 1.0, 4)
    torch.testing.assert_close(computed, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("method", available_tableaux())
def test_stepper_agrees_with_the_library_sampler(method):
    """Two independent implementations of every tableau on a diffusion ODE (L = -1)."""
    problem = get_problem("manufactured_coupled")
    lam0, lam1 = -math.log(problem.sigma_start), -math.log(problem.sigma_end)
    ours = integrate_erk(method, ScalarLinearPart(-1.0), problem.g, problem.x_start, lam0, lam1, 12)
    theirs = sample(
        problem.denoiser, problem.x_start, problem.sigmas(12), method=method, disable=True
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-11, atol=1e-12)


def test_stepper_bad_input():
    problem = get_problem("manufactured_sine")
    linear = ScalarLinearPart(-1.0)
    with pytest.raises(StepperError, match="n_steps"):
        integrate_erk("ddim", linear, problem.g, problem.x_start, 0.0, 1.0, 0)
    with pytest.raises(StepperError, match="t_end > t0"):
        integrate_erk("ddim", linear, problem.g, problem.x_start, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="unknown tableau"):
        integrate_erk("nope", linear, problem.g, problem.x_start, 0.0, 1.0, 3)
