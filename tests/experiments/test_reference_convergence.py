"""The DOP853 reference solver: accurate against exact solutions, convergence is checked, and
bad input or an unconverged reference raises instead of returning a number."""

import math

import pytest
import torch

from experiments.problems import get_problem, manufactured_problem
from experiments.reference import (
    ReferenceError,
    ReferenceNotConvergedError,
    converged_reference,
    solve_probability_flow,
)


@pytest.mark.parametrize("name", ["sine", "coupled"])
def test_reference_matches_manufactured_exact_solution(name):
    problem = manufactured_problem(name)
    solved, evaluations = solve_probability_flow(
        problem.denoiser, problem.x_start, problem.sigma_start, problem.sigma_end, 1e-12, 1e-12
    )
    assert evaluations > 0
    assert float((solved - problem.solution()).abs().max()) < 1e-10


def test_linear_ode_reference_is_exact():
    """D = 0: x(sigma_end) = (sigma_end / sigma_start) x(sigma_start) (pure decay e^{-h})."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    solved, _ = solve_probability_flow(lambda y, s: torch.zeros_like(y), x, 10.0, 0.1)
    torch.testing.assert_close(solved, x * 0.01, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["gmm_ode", "digits_exact_ode"])
def test_exact_denoiser_references_are_converged(name):
    problem = get_problem(name)
    solution = problem.solution()
    assert torch.isfinite(solution).all()
    assert 0 < problem.solution_accuracy() < 1e-8
    # the ODE moved the state: the reference is not the starting point scaled down
    assert float((solution - problem.x_start).abs().max()) > 1.0


def test_unconverged_reference_raises():
    problem = manufactured_problem("logistic")
    with pytest.raises(ReferenceNotConvergedError, match="not converged"):
        converged_reference(
            problem.denoiser,
            problem.x_start,
            problem.sigma_start,
            problem.sigma_end,
            rtol=1e-3,
            atol=1e-3,
            refinement=10,
            bound=1e-12,
        )


def test_converged_reference_reports_its_error_estimate():
    problem = manufactured_problem("sine")
    result = converged_reference(
        problem.denoiser, problem.x_start, problem.sigma_start, problem.sigma_end
    )
    actual = float((result.x - problem.solution()).abs().max())
    assert actual <= result.error_estimate <= 1e-8
    assert result.rtol == pytest.approx(1e-12)


def test_reference_bad_input():
    x = torch.zeros(2, 3, dtype=torch.float64)
    zero = lambda y, s: torch.zeros_like(y)  # noqa: E731
    with pytest.raises(ReferenceError, match="sigma_end < sigma_start"):
        solve_probability_flow(zero, x, 1.0, 2.0)
    with pytest.raises(ReferenceError, match="sigma_end < sigma_start"):
        solve_probability_flow(zero, x, 1.0, 0.0)
    with pytest.raises(ReferenceError, match="tolerances"):
        solve_probability_flow(zero, x, 1.0, 0.5, rtol=0.0)
    with pytest.raises(ReferenceError, match="refinement"):
        converged_reference(zero, x, 1.0, 0.5, refinement=1.0)


def test_failed_integration_raises():
    x = torch.ones(1, 1, dtype=torch.float64)

    def blows_up(y, sigma):
        return y**3 * 1e6 + 0 * sigma[:, None]

    with pytest.raises(ReferenceError):
        solve_probability_flow(blows_up, x, 1.0, math.exp(-5))


def test_reference_progress_is_monotone_and_ends_at_one():
    problem = manufactured_problem("sine")
    reported: list[float] = []
    converged_reference(
        problem.denoiser,
        problem.x_start,
        problem.sigma_start,
        problem.sigma_end,
        rtol=1e-8,
        atol=1e-8,
        refinement=10,
        bound=1e-5,
        progress=reported.append,
    )
    assert reported == sorted(reported) and reported[-1] == 1.0
    assert any(0 < f < 0.5 for f in reported) and any(0.5 < f < 1 for f in reported)
