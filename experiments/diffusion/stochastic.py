"""Experiment 4 of the paper: stochastic sampling with churn (EDM Algorithm 2 / paper Alg. 2).

Each step first raises the noise level, ``sigma_hat = sigma_i (1 + gamma_i)`` with
``gamma_i = min(S_churn / N, sqrt(2) - 1)`` for ``sigma_i`` in ``[S_tmin, S_tmax]`` (else 0), and
adds fresh noise ``x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps``, then takes one ODE
step from ``sigma_hat`` to ``sigma_{i+1}`` (Karras et al. 2022, Alg. 2). At the small step
counts studied here ``S_churn / N`` reaches the cap ``sqrt(2) - 1`` already for ``S_churn``
around ``0.4 N``, so the churn values swept are small. The paper swaps EDM's
Heun step for RES (Zhang, Song & Chen 2023, Sec. 4.3). A stochastic sampler has no
same-noise ODE reference, so the metric is sample quality: the Fréchet distance to the data
set (:func:`experiments.problems.sampling.frechet_to_data`) against NFE at fixed churn, every
method getting the same initial noise and the same churn-noise generator seed.

Run: ``python -m experiments.diffusion.stochastic [--quick] [--device cuda] [--out DIR]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.diffusion.methods import attainable_budgets, get_method, run_method
from experiments.diffusion.scoring import frechet_to_data
from experiments.experiment_runner import experiment_main
from experiments.problems import get_problem

__all__ = ["StochasticConfig", "main", "run_stochastic"]

NAME = "stochastic"

STOCHASTIC_METHODS = ("heun", "dpmpp_2s", "res_2s")


@dataclass(frozen=True)
class StochasticConfig:
    """Problems with sample counts, methods, NFE budgets and churn settings (EDM's)."""

    problems: tuple[tuple[str, int], ...]
    methods: tuple[str, ...]
    nfes: tuple[int, ...]
    churns: tuple[float, ...]
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.0
    seed: int = 2

    @classmethod
    def quick(cls) -> StochasticConfig:
        return cls((("digits", 128),), STOCHASTIC_METHODS, (9,), (10.0,))

    @classmethod
    def full(cls) -> StochasticConfig:
        return cls(
            (("digits", 256),),
            STOCHASTIC_METHODS,
            (7, 9, 13, 17, 25),
            (0.0, 2.0, 5.0),
        )


def run_stochastic(config: StochasticConfig, device: torch.device) -> list[dict[str, Any]]:
    """Rows ``{problem, method, nfe, s_churn, frechet}``."""
    for name in config.methods:
        get_method(name)
    rows: list[dict[str, Any]] = []
    grid = [(p, n, c) for p, n in config.problems for c in config.churns]
    cells = sum(len(attainable_budgets(name, config.nfes)) for name in config.methods)
    bar = tqdm(total=len(grid) * cells, desc="stochastic sampling")
    for problem_name, samples, churn in grid:
        bar.set_postfix_str(f"{problem_name}, S_churn {churn:g}")
        problem = get_problem(problem_name, device)
        generator = torch.Generator().manual_seed(config.seed)
        noise = torch.randn((samples, *problem.shape), generator=generator, dtype=torch.float64).to(
            device=device, dtype=torch.float64
        )
        for name in config.methods:
            for nfe in attainable_budgets(name, config.nfes):
                churn_noise = torch.Generator(device=device).manual_seed(config.seed + 1)
                out = run_method(
                    name,
                    problem.denoiser,
                    noise,
                    nfe,
                    s_churn=churn,
                    s_tmin=config.s_tmin,
                    s_tmax=config.s_tmax,
                    s_noise=config.s_noise,
                    generator=churn_noise,
                )
                rows.append(
                    {
                        "problem": problem_name,
                        "kind": problem.kind,
                        "method": name,
                        "nfe": nfe,
                        "s_churn": churn,
                        "samples": samples,
                        "frechet": frechet_to_data(problem, out),
                    }
                )
                bar.update()
    bar.close()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    experiment_main(
        NAME, StochasticConfig, run_stochastic, argv, description=__doc__, module=__spec__.name
    )


if __name__ == "__main__":
    main()
