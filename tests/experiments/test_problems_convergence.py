"""The convergence test problems: manufactured solutions solve their ODEs, the PDE's exact
solution solves the semi-discrete system, the exact denoisers are posterior means."""

import math

import pytest
import torch

from experiments.problems import (
    CONVERGENCE_PROBLEMS,
    PROBLEMS,
    SAMPLING_PROBLEMS,
    DiffusionProblem,
    EmpiricalDenoiser,
    GaussianMixture,
    ProblemError,
    SamplingProblem,
    SemilinearProblem,
    get_problem,
    hochbruck_ostermann_problem,
    manufactured_problem,
)
from experiments.problems.manufactured import MANUFACTURED
from experiments.problems.parabolic import laplacian_dirichlet


@pytest.mark.parametrize("name", list(MANUFACTURED))
def test_manufactured_solution_solves_its_ode(name):
    """d x*/d lambda (autograd) equals -x* + g(x*, lambda) along the trajectory."""
    problem = manufactured_problem(name)
    solution = MANUFACTURED[name]()
    batch = problem.x_start.shape[0]
    for lam0 in torch.linspace(0.0, 3.0, 7, dtype=torch.float64):
        lam = torch.full((batch, 1), float(lam0), dtype=torch.float64, requires_grad=True)
        x = solution.exact(lam)
        derivative = torch.cat(
            [
                torch.autograd.grad(x[:, j].sum(), lam, retain_graph=True)[0]
                for j in range(x.shape[1])
            ],
            dim=1,
        )
        x = x.detach()
        sigma = torch.exp(-lam0) * torch.ones(batch, dtype=torch.float64)
        rhs = -x + problem.denoiser(x, sigma)
        torch.testing.assert_close(derivative, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(MANUFACTURED))
def test_manufactured_nonlinearity_depends_on_x(name):
    """g really is nonlinear in x (else the problem would not probe the stages)."""
    problem = manufactured_problem(name)
    x = problem.x_start
    sigma = torch.full((x.shape[0],), 0.5, dtype=torch.float64)
    d0, d1, d2 = (problem.denoiser(x + s, sigma) for s in (0.0, 0.1, 0.2))
    assert float((d2 - 2 * d1 + d0).abs().max()) > 1e-4


def test_parabolic_exact_solution_solves_the_semidiscrete_system():
    """u*' = L u* + g(u*, t) at grid points, to round-off (central differences exact on
    quadratics)."""
    problem = hochbruck_ostermann_problem(120)
    for t in (0.0, 0.3, 1.0):
        u = problem.exact(t)
        residual = u - (problem.linear @ u + problem.g(u, t))  # u_t = u for x(1-x)e^t
        assert float(residual.abs().max()) < 1e-12 * float(problem.linear.abs().max())
    assert problem.u0.shape == (120,)
    assert float(problem.u0.abs().max()) < 0.26


def test_laplacian_eigenvalues_are_the_known_ones():
    n = 50
    eigenvalues = torch.linalg.eigvalsh(laplacian_dirichlet(n))
    k = torch.arange(1, n + 1, dtype=torch.float64)
    known = -4 * (n + 1) ** 2 * torch.sin(k * math.pi / (2 * (n + 1))) ** 2
    torch.testing.assert_close(eigenvalues, known.sort().values, rtol=1e-12, atol=1e-8)


def _mixture(seed: int = 0, dim: int = 16) -> GaussianMixture:
    return GaussianMixture.random(dim, 3, torch.Generator().manual_seed(seed))


def test_gmm_denoiser_matches_tweedie_formula():
    """D = x + sigma^2 grad log p_sigma (autograd on the logsumexp density)."""
    mixture = _mixture()
    x = 2 * torch.randn(6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for sigma in (0.05, 0.7, 5.0):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture.log_density(xr, sigma).sum(), xr)
        torch.testing.assert_close(mixture.denoiser(x, sigma), x + sigma**2 * grad)


def test_gmm_single_component_is_the_gaussian_posterior_mean():
    mean = torch.arange(16, dtype=torch.float64) / 8
    a = torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    cov = a @ a.T / 16 + 0.1 * torch.eye(16, dtype=torch.float64)
    mixture = GaussianMixture(torch.ones(1), mean[None], cov[None])
    x = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigma = 0.8
    expected = mean + (cov @ torch.linalg.solve(cov + sigma**2 * torch.eye(16), (x - mean).T)).T
    torch.testing.assert_close(mixture.denoiser(x, sigma), expected.to(torch.float64))


def test_gmm_denoiser_is_the_conditional_mean_monte_carlo():
    """Orthogonality of the conditional mean: E[x0 - D(x)] = 0 and E[(x0 - D(x)) x^T] = 0 over
    joint draws, within 5 Monte-Carlo standard errors; a wrong denoiser (sigma misread) fails."""
    mixture = _mixture(seed=4)
    generator = torch.Generator().manual_seed(5)
    n, sigma = 200_000, 0.6
    x0 = mixture.sample(n, generator)
    x = x0 + sigma * torch.randn(x0.shape, dtype=torch.float64, generator=generator)

    def worst_z(denoised: torch.Tensor) -> float:
        residual = x0 - denoised
        products = torch.cat([residual, residual[:, :4] * x[:, :4]], dim=1)
        mean = products.mean(0)
        stderr = products.std(0) / math.sqrt(n)
        return float((mean / stderr).abs().max())

    assert worst_z(mixture.denoiser(x, sigma)) < 5.0
    assert worst_z(mixture.denoiser(x, 2 * sigma)) > 5.0


def test_gmm_sample_has_the_mixture_moments():
    mixture = _mixture(seed=6)
    samples = mixture.sample(100_000, torch.Generator().manual_seed(7))
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    torch.testing.assert_close(samples.mean(0), mean, atol=0.05, rtol=0)


def test_gmm_rejects_bad_parameters():
    with pytest.raises(ProblemError, match="positive definite"):
        GaussianMixture(torch.ones(1), torch.zeros(1, 2), -torch.eye(2)[None])
    with pytest.raises(ProblemError, match="weights"):
        GaussianMixture(-torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
    with pytest.raises(ProblemError, match="entries per sample"):
        _mixture().denoiser(torch.zeros(2, 5), 1.0)


def test_empirical_denoiser_is_the_softmax_posterior_mean():
    generator = torch.Generator().manual_seed(8)
    data = torch.randn(30, 1, 3, 3, dtype=torch.float64, generator=generator)
    denoiser = EmpiricalDenoiser(data)
    x = torch.randn(5, 1, 3, 3, dtype=torch.float64, generator=generator)
    for sigma in (0.05, 0.5, 10.0):
        flat, y = x.reshape(5, -1), data.reshape(30, -1)
        d2 = ((flat[:, None] - y[None]) ** 2).sum(-1)
        logw = -d2 / (2 * sigma**2)
        w = torch.exp(logw - logw.max(1, keepdim=True).values)
        expected = (w / w.sum(1, keepdim=True)) @ y
        torch.testing.assert_close(denoiser(x, sigma), expected.reshape(x.shape))
        # Tweedie: log p_sigma(x) = logsumexp(logw) + const
        xr = x.clone().requires_grad_(True)
        logp = torch.logsumexp(
            -((xr.reshape(5, 1, -1) - y[None]) ** 2).sum(-1) / (2 * sigma**2), dim=1
        )
        (grad,) = torch.autograd.grad(logp.sum(), xr)
        torch.testing.assert_close(denoiser(x, sigma), x + sigma**2 * grad)


def test_empirical_denoiser_stays_finite_at_tiny_sigma():
    data = torch.tensor([[0.0, 0.0], [10.0, 10.0]], dtype=torch.float64)
    denoised = EmpiricalDenoiser(data)(torch.tensor([[9.0, 9.5]], dtype=torch.float64), 1e-4)
    torch.testing.assert_close(denoised, data[1:])


def test_problem_registry_and_unknown_names():
    assert set(PROBLEMS) == set(CONVERGENCE_PROBLEMS) | set(SAMPLING_PROBLEMS)
    assert not set(CONVERGENCE_PROBLEMS) & set(SAMPLING_PROBLEMS)
    assert set(CONVERGENCE_PROBLEMS) >= {"hochbruck_ostermann", "gmm_ode", "digits_exact_ode"}
    assert isinstance(get_problem("manufactured_sine"), DiffusionProblem)
    assert isinstance(get_problem("hochbruck_ostermann"), SemilinearProblem)
    assert isinstance(get_problem("gmm"), SamplingProblem)
    assert [get_problem(name).name for name in CONVERGENCE_PROBLEMS] == list(CONVERGENCE_PROBLEMS)
    with pytest.raises(ProblemError, match="unknown problem 'nope'"):
        get_problem("nope")
    with pytest.raises(ProblemError, match="runs on the CPU"):
        get_problem("manufactured_sine", device="meta")
    with pytest.raises(ProblemError, match="unknown manufactured"):
        manufactured_problem("nope")
    with pytest.raises(ProblemError, match="at least 100"):
        hochbruck_ostermann_problem(50)


def test_gmm_ode_is_the_flow_of_the_gmm_sampling_problem():
    ode, sampling = get_problem("gmm_ode"), get_problem("gmm")
    x = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigma = torch.full((3,), 0.7, dtype=torch.float64)
    torch.testing.assert_close(ode.denoiser(x, sigma), sampling.denoiser(x, sigma))


def test_diffusion_problem_grid_is_uniform_in_lambda():
    problem = get_problem("gmm_ode")
    sigmas = problem.sigmas(16)
    steps = torch.diff(-torch.log(sigmas))
    torch.testing.assert_close(steps, torch.full_like(steps, problem.lambda_span / 16))
    assert sigmas[0] == problem.sigma_start and sigmas[-1] == problem.sigma_end
    assert problem.x_start.shape == (8, 16)
    with pytest.raises(ProblemError, match="n_steps"):
        problem.sigmas(0)
