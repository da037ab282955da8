"""NFE counting (final denoising evaluation included) and NFE budgets -> schedules."""

from __future__ import annotations

import pytest
import torch

from res_torch import (
    SAMPLERS,
    NFEBudgetError,
    ScheduleError,
    UnknownMethodError,
    available_tableaux,
    evaluations_per_step,
    get_sigmas_discrete,
    get_sigmas_exponential,
    get_sigmas_karras,
    nfe,
    sigmas_for_nfe,
)
from res_torch.nfe import has_range

PER_STEP = {"ddim": 1, "euler": 1, "heun": 2, "res_2s": 2, "dpmpp_2s": 2, "res_3s": 3,
            "res_2m": 1, "res_3m": 1, "dpmpp_2m": 1, "dpmpp_3m": 1,
            "hochbruck_ostermann4": 5, "krogstad": 4}  # fmt: skip


@pytest.mark.parametrize(("method", "per_step"), sorted(PER_STEP.items()))
def test_evaluations_per_step(method, per_step):
    assert evaluations_per_step(method) == per_step


def test_counting_rule():
    sigmas = get_sigmas_karras(5, 0.002, 80.0)  # 5 steps, the last one to sigma = 0
    assert nfe("res_2s", sigmas) == 2 * 4 + 1
    assert nfe("heun", sigmas) == 2 * 4 + 1
    assert nfe("res_2m", sigmas) == 5
    assert nfe("res_3s", sigmas[:-1]) == 3 * 4  # no final denoising step


def test_paper_nfe_9_for_res_2s_is_four_steps_and_the_final_one():
    sigmas = sigmas_for_nfe(9, "res_2s")
    assert sigmas.numel() == 6 and sigmas[-1] == 0
    assert torch.equal(sigmas, get_sigmas_karras(5, 0.002, 80.0, 7.0))


@pytest.mark.parametrize("method", sorted(set(SAMPLERS) | set(available_tableaux())))
@pytest.mark.parametrize("budget", [10, 13, 25])
def test_sigmas_for_nfe_spends_the_budget_exactly_or_refuses(method, budget):
    per_step = evaluations_per_step(method)
    if (budget - 1) % per_step:
        with pytest.raises(NFEBudgetError, match="not attainable"):
            sigmas_for_nfe(budget, method)
    else:
        assert nfe(method, sigmas_for_nfe(budget, method)) == budget


def test_sigmas_for_nfe_passes_schedule_options():
    sigmas = sigmas_for_nfe(7, "res_2m", schedule="exponential", sigma_min=0.01, sigma_max=10.0)
    assert torch.allclose(sigmas, get_sigmas_exponential(7, 0.01, 10.0))
    vp = sigmas_for_nfe(5, "ddim", schedule="vp", beta_d=10.0)
    assert vp.numel() == 6
    assert sigmas_for_nfe(5, "ddim", schedule="polyexponential", rho=2.0).numel() == 6
    discrete = sigmas_for_nfe(9, "res_2s", schedule="discrete", spacing="trailing")
    assert torch.equal(discrete, get_sigmas_discrete(5, "trailing"))


@pytest.mark.parametrize("schedule", ["vp", "discrete"])
def test_a_range_for_a_schedule_with_its_own_range_is_an_error(schedule):
    with pytest.raises(ScheduleError, match="own range: no sigma_min"):
        sigmas_for_nfe(5, "ddim", schedule=schedule, sigma_min=0.01)
    with pytest.raises(ScheduleError, match="unknown schedule 'nope'"):
        has_range("nope")


def test_bad_budgets_and_methods_are_rejected():
    with pytest.raises(NFEBudgetError, match="nearest budgets are 9 and 11"):
        sigmas_for_nfe(10, "res_2s")
    with pytest.raises(NFEBudgetError, match=r"integer in \[1, "):
        sigmas_for_nfe(0, "ddim")
    with pytest.raises(UnknownMethodError, match="unknown method"):
        sigmas_for_nfe(5, "res_9s")
    with pytest.raises(ValueError, match="unknown schedule"):
        sigmas_for_nfe(5, "ddim", schedule="cosine")
    with pytest.raises(ValueError, match="has no rho"):
        sigmas_for_nfe(5, "ddim", schedule="uniform", rho=3.0)


def test_res_3m_budgets_include_its_res_2s_start_up_stage():
    # 1 step: the final denoising step; then 2 evaluations for the RES-2S step, 1 for each other
    assert sigmas_for_nfe(1, "res_3m").numel() == 2
    for budget in (3, 4, 9):
        sigmas = sigmas_for_nfe(budget, "res_3m")
        assert sigmas.numel() == budget  # budget - 1 nonzero sigmas + the final 0
        assert nfe("res_3m", sigmas) == budget
    with pytest.raises(NFEBudgetError, match="nearest budgets are 1 and 3"):
        sigmas_for_nfe(2, "res_3m")
