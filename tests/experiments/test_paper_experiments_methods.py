"""The compared methods, problems and references of the paper's experiments, end to end on the
exact Gaussian-mixture denoiser (small batches; the trained networks are covered by the
figure-pipeline test)."""

from __future__ import annotations

import pytest
import torch

from experiments.diffusion.defect import REFERENCE_STEPS, defect_rows, defect_steps
from experiments.diffusion.methods import (
    METHODS,
    MethodError,
    attainable_budgets,
    attainable_nfe,
    build_sigmas,
    get_method,
    run_method,
)
from experiments.diffusion.scoring import reference_batch
from experiments.problems import ProblemError, get_problem


def test_unknown_method_is_named_in_error() -> None:
    with pytest.raises(MethodError, match="unknown method 'res_9z'.*res_2s"):
        get_method("res_9z")


def test_unknown_problem_is_named_in_error() -> None:
    with pytest.raises(ProblemError, match="unknown problem 'imagenet'.*digits"):
        get_problem("imagenet")


@pytest.mark.parametrize(
    ("name", "smallest"),
    [("ddim", 2), ("res_2s", 3), ("res_3s", 4), ("heun", 3), ("unipc", 2), ("res_2m", 2)],
)
def test_nfe_too_small_for_method(name: str, smallest: int) -> None:
    assert attainable_nfe(name, smallest) == smallest
    with pytest.raises(MethodError, match="too small"):
        attainable_nfe(name, smallest - 1)
    with pytest.raises(MethodError, match="too small"):
        run_method(name, lambda x, s: x, torch.zeros(1, 2), smallest - 1)


def test_budgets_round_down_to_attainable() -> None:
    assert attainable_nfe("res_2s", 10) == 9
    assert attainable_nfe("res_3s", 9) == 7
    assert attainable_budgets("res_3s", (12, 3, 5, 9, 10)) == {4: 5, 7: 9, 10: 10}
    with pytest.raises(MethodError, match="nearest budget below is 9"):
        build_sigmas("res_2s", 10)


@pytest.mark.parametrize("name", list(METHODS))
def test_grid_spends_the_budget(name: str) -> None:
    calls = []

    def counting(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return 0.5 * x / (1 + sigma.view(-1, 1) ** 2)

    nfe = attainable_nfe(name, 13)
    run_method(name, counting, torch.randn(3, 4, dtype=torch.float64), nfe)
    assert len(calls) == nfe


def test_reference_is_converged_and_checked() -> None:
    problem = get_problem("gmm")
    ref = reference_batch(problem, batch=8, seed=3, rtol=1e-7, bound=1e-5)
    assert ref.error_estimate <= 1e-5
    assert ref.x.shape == (8, *problem.shape)
    with pytest.raises(ValueError, match="not converged"):
        reference_batch(problem, batch=8, seed=3, rtol=1e-3, bound=1e-14)


def test_defect_falls_with_nfe_for_every_method_on_exact_denoiser() -> None:
    rows = defect_rows(
        "gmm",
        list(METHODS),
        (7, 13, 25, 49),
        batch=8,
        seed=0,
        device=torch.device("cpu"),
        reference_rtol=1e-7,
    )
    for name in METHODS:
        defects = [r["defect"] for r in rows if r["method"] == name]
        assert len(defects) >= 3, name
        assert defects[-1] < defects[0] / 4, (name, defects)
        assert all(r["reference_error"] < r["defect"] / 10 for r in rows if r["method"] == name)


class CountingBar:
    """A stand-in for a tqdm bar: records every ``update``."""

    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        self.updates.append(n)


def test_defect_progress_advances_during_the_reference_and_per_cell() -> None:
    methods, nfes = ("ddim", "res_2s"), (5, 9)
    bar = CountingBar()
    rows = defect_rows(
        "gmm", methods, nfes, batch=4, seed=11, device=torch.device("cpu"), progress=bar
    )
    assert sum(bar.updates) == defect_steps(methods, nfes) == REFERENCE_STEPS + len(rows)
    # the reference solve reports in several steps, not in one jump at its end
    assert len(bar.updates) > len(rows) + 2
    again = CountingBar()  # a reference solved before advances its share at once
    defect_rows("gmm", methods, nfes, batch=4, seed=11, device=torch.device("cpu"), progress=again)
    assert again.updates == [REFERENCE_STEPS] + [1] * len(rows)
