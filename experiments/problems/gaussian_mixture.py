"""A Gaussian mixture with its exact (closed-form) denoiser, and its probability-flow problem.

Data ``x_0 ~ sum_k w_k N(mu_k, Sigma_k)`` in ``R^d``, noised as ``x = x_0 + sigma eps``
(variance exploding / EDM). Then ``x ~ sum_k w_k N(mu_k, Sigma_k + sigma^2 I)`` and the posterior
mean (the optimal denoiser, Karras et al. 2022 eq. (2)) is, by Bayes' rule for each component and
the conditional-Gaussian formula (Bishop, *Pattern Recognition and Machine Learning*, §2.3.3),

    D(x, sigma) = sum_k r_k(x) [mu_k + Sigma_k (Sigma_k + sigma^2 I)^{-1} (x - mu_k)],
    r_k(x)      = softmax_k( log w_k + log N(x; mu_k, Sigma_k + sigma^2 I) ).

With ``Sigma_k = U_k diag(s_k) U_k^T`` every inverse and determinant is diagonal in the eigenbasis,
and the softmax is evaluated with logsumexp. Tweedie's formula ``D = x + sigma^2 grad log p_sigma``
(Efron 2011) gives an independent check (:meth:`GaussianMixture.log_density`).
"""

from __future__ import annotations

import math
from functools import cache

import torch

from experiments.problems.base import DiffusionProblem, ProblemError
from experiments.reference import converged_reference

__all__ = ["GaussianMixture", "gaussian_mixture_problem"]

SIGMA_START = 20.0
SIGMA_END = 0.05
STEPS = (8, 16, 32, 64, 128, 256, 512)
QUICK_STEPS = (64, 128, 256, 512)


class GaussianMixture:
    """``sum_k weights_k N(means_k, covariances_k)`` in ``R^d`` with exact denoiser and sampler.

    ``weights (K,)`` positive (normalised here), ``means (K, d)``, ``covariances (K, d, d)``
    symmetric positive definite. Inputs of :meth:`denoiser` may have any shape ``(B, ...)`` with
    ``prod(...) = d``; dtype and device follow the inputs.
    """

    def __init__(
        self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor
    ) -> None:
        if means.ndim != 2:
            raise ProblemError(f"means must have shape (K, d), got {tuple(means.shape)}")
        k, d = means.shape
        if weights.shape != (k,) or not bool((weights > 0).all()):
            raise ProblemError(f"weights must be {k} positive numbers, got {weights}")
        if covariances.shape != (k, d, d):
            raise ProblemError(
                f"covariances must have shape ({k}, {d}, {d}), got {tuple(covariances.shape)}"
            )
        if not torch.allclose(covariances, covariances.transpose(1, 2)):
            raise ProblemError("covariances must be symmetric")
        eigenvalues, eigenvectors = torch.linalg.eigh(covariances.to(torch.float64))
        if not bool((eigenvalues > 0).all()):
            raise ProblemError("covariances must be positive definite")
        self.weights = weights.to(torch.float64) / weights.sum()
        self.means = means.to(torch.float64)
        self.covariances = covariances.to(torch.float64)
        self.eigenvalues = eigenvalues
        self.eigenvectors = eigenvectors

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def components(self) -> int:
        return self.means.shape[0]

    @classmethod
    def random(
        cls,
        dim: int = 16,
        components: int = 4,
        generator: torch.Generator | None = None,
        mean_scale: float = 2.0,
        std_range: tuple[float, float] = (0.1, 0.6),
    ) -> GaussianMixture:
        """Random mixture: means ``N(0, mean_scale^2 I)``, random rotations, eigen-stds in range."""
        if dim < 1 or components < 1:
            raise ProblemError(f"need dim >= 1 and components >= 1, got {dim}, {components}")
        lo, hi = std_range
        if not 0 < lo <= hi:
            raise ProblemError(f"std_range must satisfy 0 < low <= high, got {std_range}")
        kw = {"dtype": torch.float64, "generator": generator}
        means = mean_scale * torch.randn(components, dim, **kw)
        rotations, _ = torch.linalg.qr(torch.randn(components, dim, dim, **kw))
        stds = lo + (hi - lo) * torch.rand(components, dim, **kw)
        covariances = rotations @ torch.diag_embed(stds**2) @ rotations.transpose(1, 2)
        covariances = (covariances + covariances.transpose(1, 2)) / 2
        weights = 0.5 + torch.rand(components, **kw)
        return cls(weights, means, covariances)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` independent draws ``x_0`` of the mixture, shape ``(n, d)``, float64."""
        if n < 1:
            raise ProblemError(f"n must be >= 1, got {n}")
        kw = {"dtype": torch.float64, "generator": generator}
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, **kw) * self.eigenvalues[labels].sqrt()
        return self.means[labels] + (self.eigenvectors[labels] @ z.unsqueeze(-1)).squeeze(-1)

    def _noisy_components(
        self, x: torch.Tensor, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eigen-coordinates ``z (B, K, d)``, variances ``(B, K, d)`` and logits ``(B, K)``."""
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ProblemError(f"inputs have {flat.shape[1]} entries per sample, need {self.dim}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        means, vectors = self.means.to(x), self.eigenvectors.to(x)
        z = torch.einsum("kdj,bkd->bkj", vectors, flat[:, None, :] - means)
        variances = self.eigenvalues.to(x) + sigma**2
        log_normal = -0.5 * ((z**2 / variances) + variances.log()).sum(-1)
        log_normal = log_normal - 0.5 * self.dim * math.log(2 * math.pi)
        return z, variances, self.weights.to(x).log() + log_normal

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The exact posterior mean ``E[x_0 | x_0 + sigma eps = x]`` (module docstring)."""
        z, variances, logits = self._noisy_components(x, sigma)
        responsibilities = torch.softmax(logits, dim=-1)
        shrunk = z * (self.eigenvalues.to(x) / variances)
        means = self.means.to(x) + torch.einsum("kdj,bkj->bkd", self.eigenvectors.to(x), shrunk)
        return (responsibilities.unsqueeze(-1) * means).sum(1).reshape(x.shape)

    def log_density(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``log p_sigma(x)`` of the noised mixture, shape ``(B,)`` (logsumexp over components)."""
        return torch.logsumexp(self._noisy_components(x, sigma)[2], dim=-1)


def gaussian_mixture_problem(
    dim: int = 16,
    components: int = 4,
    batch: int = 8,
    seed: int = 0,
    sigma_start: float = SIGMA_START,
    sigma_end: float = SIGMA_END,
) -> DiffusionProblem:
    """The probability-flow ODE of :meth:`GaussianMixture.random` from ``sigma_start`` to
    ``sigma_end``, started at ``x_0 + sigma_start * eps`` for ``batch`` mixture draws ``x_0``;
    solution: a converged DOP853 reference (:func:`experiments.reference.converged_reference`).
    """
    if dim < 16:
        raise ProblemError(f"the Gaussian-mixture test uses dim >= 16, got {dim}")
    generator = torch.Generator().manual_seed(seed)
    mixture = GaussianMixture.random(dim, components, generator)
    noise = torch.randn(batch, dim, dtype=torch.float64, generator=generator)
    x_start = mixture.sample(batch, generator) + sigma_start * noise

    @cache
    def reference():
        return converged_reference(mixture.denoiser, x_start, sigma_start, sigma_end)

    return DiffusionProblem(
        name="gmm_ode",
        description=(
            f"probability-flow ODE of a {components}-component Gaussian mixture in R^{dim}, "
            f"exact denoiser, sigma {sigma_start:g} -> {sigma_end:g}"
        ),
        denoiser=mixture.denoiser,
        x_start=x_start,
        sigma_start=sigma_start,
        sigma_end=sigma_end,
        solution=lambda: reference().x,
        solution_accuracy=lambda: reference().error_estimate,
        steps=STEPS,
        quick_steps=QUICK_STEPS,
    )
