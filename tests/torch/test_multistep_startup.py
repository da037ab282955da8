"""Multistep methods with a multi-stage single-step start-up method (RES-3M starts with RES-2S)."""

from __future__ import annotations

import pytest
import torch

from res_torch import get_sigmas_karras, nfe, sample_erk
from res_torch.coefficients import coefficients, erk_steps
from res_torch.grid import make_grid
from res_torch.samplers import cached_tableau


def test_res_3m_coefficients_run_res_2s_at_step_0():
    sigmas = get_sigmas_karras(6, 0.002, 80.0, dtype=torch.float64)
    grid = make_grid(sigmas)
    table = coefficients("res_3m", grid)
    assert table.methods == ("res_2s", "res_2m", "res_3m", "res_3m", "res_3m", "res_3m")
    assert [(step.stages, step.history) for step in table.steps] == [
        (2, 0),
        (1, 1),
        (1, 2),
        (1, 2),
        (1, 2),
        (1, 0),
    ]
    assert table.steps[-1].denoising
    assert table.steps[0] == erk_steps(cached_tableau("res_2s"), grid)[0]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"eta": 1.0, "noise_type": "sde"},
        {"eta": 0.7, "noise_type": "ancestral"},
        {"s_churn": 2.0, "s_tmin": 30.0},  # churn at step 0 only (sigma_1 < 30 < sigma_0 = 80)
    ],
)
def test_first_step_of_res_3m_is_a_res_2s_step(gaussian, options):
    """Stages, churn and per-step noise of step 0 are those of the single-step sampler."""
    sigmas = get_sigmas_karras(6, 0.002, 80.0, dtype=torch.float64)
    assert sigmas[1] < 30.0
    x = 80 * torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    after_step_0 = {}
    for method in ("res_3m", "res_2s"):

        def keep(info, method=method):
            if info["i"] == 1:
                after_step_0[method] = info["x"].clone()

        sample_erk(
            gaussian.denoiser, x, sigmas, callback=keep, disable=True, tableau=method,
            generator=torch.Generator().manual_seed(6), **options,
        )  # fmt: skip
    assert torch.equal(after_step_0["res_3m"], after_step_0["res_2s"])


@pytest.mark.parametrize(
    ("steps", "final_zero", "expected"),
    [(1, True, 1), (2, True, 3), (3, True, 4), (6, True, 7), (1, False, 2), (4, False, 5)],
)
def test_res_3m_model_calls_count_the_res_2s_stage(gaussian, counting, steps, final_zero, expected):
    """``nfe = (N - 1) + 1 + 1`` over ``N >= 2`` steps ending in 0 (one extra evaluation for the
    second RES-2S stage); ``N + 1`` over ``N >= 1`` steps not ending in 0."""
    sigmas = get_sigmas_karras(steps + (0 if final_zero else 1), 0.002, 80.0)
    sigmas = sigmas if final_zero else sigmas[:-1]
    assert sigmas.numel() == steps + 1
    model = counting(gaussian.denoiser)
    sample_erk(model, torch.ones(2, 3, dtype=torch.float64), sigmas, disable=True, tableau="res_3m")
    assert model.calls == nfe("res_3m", sigmas) == expected
