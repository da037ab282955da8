"""Reliability on careless input (issue #11): small and zero step ratios, the ``c2`` bound, model
and noise-sampler outputs, callables, the ``meta`` device."""

from __future__ import annotations

import importlib
import json
import math
from importlib import resources

import pytest
import torch

from res_torch.coefficients import NODE_SPACING_MIN, coefficients
from res_torch.errors import (
    DeviceError,
    ModelOutputError,
    NoiseError,
    SigmasError,
    TableauError,
)
from res_torch.grid import make_grid
from res_torch.nfe import nfe
from res_torch.reference import sample_reference
from res_torch.samplers import sample
from res_torch.schedules import get_sigmas_karras

coefficients_module = importlib.import_module("res_torch.coefficients")
DESIGNED = [
    "res_pc4_sigma", "res_pc4_logsigma", "res_pc4_rho7", "res_pc3_rho7", "res_pc3_grid",
    "res_pc4_grid", "res_pc2_lambda",
]  # fmt: skip
DIFFERENCING = ["res_2m", "res_3m", "dpmpp_2m", "dpmpp_3m", "ipndm_v", "deis", *DESIGNED]
"""The multistep methods whose weights divide by node spacings (iPNDM's are fixed)."""


def _near_repeat(sigmas: list[float], at: int, gap: float) -> list[float]:
    """``sigmas`` with ``sigmas[at] (1 - gap)`` inserted after ``sigmas[at]``."""
    return sigmas[: at + 1] + [sigmas[at] * (1 - gap)] + sigmas[at + 1 :]


def _sample(model, x, sigmas, method, **options):
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    return sample(model, x, sigmas, method=method, disable=True, **options)


# --- small and zero step ratios -------------------------------------------------------------


@pytest.mark.parametrize("method", DIFFERENCING)
@pytest.mark.parametrize(
    ("dtype", "gap"),
    [(torch.float64, 1e-8), (torch.float32, 1e-8), (torch.float32, 1e-5),
     (torch.float16, 1e-4), (torch.bfloat16, 1e-3)],
)  # fmt: skip
def test_nearly_repeated_sigmas_cost_no_accuracy(gaussian, method, dtype, gap):
    # the case: 3, 3 (1 - 1e-8) made the next weights ~ +-3.6e10 (float32 94 % off)
    base = get_sigmas_karras(10, 0.002, 80.0).tolist()
    near = _near_repeat(base, 3, gap)
    x = 80 * torch.randn(4, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = _sample(gaussian.denoiser, x, base, method)  # float64, no near repeat
    same_grid = _sample(gaussian.denoiser, x, near, method)  # float64, same grid
    out = _sample(gaussian.denoiser, x.to(dtype), near, method).double()
    scale = reference.abs().max().item()
    # rounding is not amplified: within the 32 units of the half-precision test
    assert (out - same_grid).abs().max().item() <= 32 * torch.finfo(dtype).eps * scale
    # and the near repeat changes the result only by O(gap) (measured: <= 0.03 gap, and the
    # float64 floor at 1e-8): the passed-over value leaves the nodes of the schedule without it.
    # Not so for the designed methods: their value at the extra node is evaluated at the
    # corrected point of the step before (x^c, not x^p), which moves the result by the
    # corrector's size (local error), not by O(gap); their accuracy is checked below.
    if method not in DESIGNED:
        assert (same_grid - reference).abs().max().item() <= gap * scale
    exact = gaussian.exact(x, base[0], 0.0)
    assert (out - exact).norm() <= 1.01 * (reference - exact).norm() + 32 * torch.finfo(
        dtype
    ).eps * scale * math.sqrt(x.numel())


@pytest.mark.parametrize("method", DIFFERENCING)
def test_float16_rounded_near_repeats_are_accurate_and_exact_repeats_refused(gaussian, method):
    base = get_sigmas_karras(10, 0.002, 80.0).half().double().tolist()  # float16 values
    x = 80 * torch.randn(4, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # a gap of 3e-3 rounds to one or two float16 units: a node spacing below 1/64 of the step
    rounded = torch.tensor(_near_repeat(base, 3, 3e-3), dtype=torch.float64).half()
    assert 0 < rounded[3] - rounded[4] < 4e-3 * rounded[3]
    reference = _sample(gaussian.denoiser, x, rounded.double(), method)
    out = _sample(gaussian.denoiser, x.half(), rounded, method).double()
    tolerance = 32 * torch.finfo(torch.float16).eps * reference.abs().max().item()
    assert (out - reference).abs().max().item() <= tolerance
    # a gap below the float16 unit rounds to a repeated value: a zero-length step, refused
    repeated = torch.tensor(_near_repeat(base, 3, 1e-5), dtype=torch.float64).half()
    assert repeated[3] == repeated[4]
    with pytest.raises(SigmasError, match=r"sigmas\[3\] = sigmas\[4\].*zero-length step"):
        _sample(gaussian.denoiser, x.half(), repeated, method)


def test_a_too_close_value_is_passed_over_for_an_older_one():
    sigmas = _near_repeat(get_sigmas_karras(8, 0.002, 80.0).tolist(), 3, 1e-8)
    table = coefficients("res_2m", make_grid(sigmas))
    step = table.steps[4]  # its previous value lies 1e-8 of a step away
    assert table.methods[4] == "res_2m" and step.weights[1] == 0.0 and step.weights[2] != 0.0
    assert table.history == 2
    # no older value at the first multistep step: the step runs DDIM (first order)
    first = coefficients("res_2m", make_grid([80.0, 80.0 * (1 - 1e-8), 1.0, 0.0]))
    assert first.methods == ("ddim", "ddim", "res_2m")
    three = coefficients("res_3m", make_grid(sigmas))
    assert three.methods[4] == "res_3m" and three.steps[4].weights[1] == 0.0
    assert len(three.steps[4].weights) == 4  # Y_n, (skipped), Y_{n-2}, Y_{n-3}


def test_a_churn_window_that_puts_a_stored_value_inside_the_step_runs(gaussian):
    # churn from sigma_10 on only: sigma_hat_10 = 1.41 sigma_10 lies above sigma_9, so the
    # stored D_9 sits inside step 10 (was: TableauError "c2=0.34 is outside (-inf, 0)")
    sigmas = get_sigmas_karras(40, 0.002, 80.0)
    options = {"s_churn": 40.0, "s_tmax": float(sigmas[9]) * 1.0001, "s_noise": 0.0}
    grid = make_grid(sigmas, **options)
    assert grid.lambda_hat[9] < grid.lambda_hat[8]
    assert coefficients("res_2m", grid).methods[9] == "ddim"
    x = 80 * torch.randn(4, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for method in ("res_2m", "res_3m", "dpmpp_3m"):
        reference = _sample(gaussian.denoiser, x, sigmas, method, **options)
        out = _sample(gaussian.denoiser, x.float(), sigmas, method, **options).double()
        tolerance = 32 * torch.finfo(torch.float32).eps * reference.abs().max().item()
        assert (out - reference).abs().max().item() <= tolerance


@pytest.mark.parametrize("method", [*DIFFERENCING, "ipndm"])
def test_the_rule_keeps_the_evaluation_count(gaussian, counting, method):
    sigmas = _near_repeat(get_sigmas_karras(9, 0.002, 80.0).tolist(), 5, 1e-9)
    sigmas = _near_repeat(sigmas, 1, 1e-7)
    model = counting(gaussian.denoiser)
    _sample(model, torch.ones(2, 3, dtype=torch.float64), sigmas, method)
    assert model.calls == nfe(method, sigmas)


@pytest.mark.parametrize("method", ["res_2m", "dpmpp_2m"])
def test_two_value_weights_amplify_errors_at_most_1_plus_2_over_the_bound(method):
    # sum |w| / |sum w| = 1 + 2 rho / r, rho = phi_2/phi_1 < 1, r >= NODE_SPACING_MIN
    generator = torch.Generator().manual_seed(2)
    for _ in range(20):
        exponents = torch.empty(12, dtype=torch.float64).uniform_(-20, 1, generator=generator)
        log_steps = torch.exp(exponents)  # steps in lambda from e^-20 to e
        sigmas = (80.0 * torch.exp(-torch.cumsum(log_steps, 0))).tolist()
        table = coefficients(method, make_grid([80.0, *sigmas]))
        for step in table.steps:
            amplification = sum(map(abs, step.weights)) / abs(sum(step.weights))
            assert amplification <= 1 + 2 / NODE_SPACING_MIN


@pytest.mark.parametrize(
    ("rho", "sigma_min", "sigma_max"),
    [(7.0, 0.002, 80.0), (7.0, 0.0292, 14.61), (1.0, 0.002, 80.0)],
)
def test_regular_grids_give_bitwise_the_same_tables(monkeypatch, rho, sigma_min, sigma_max):
    options = [{}, {"eta": 1.0}, {"eta": 1.0, "noise_type": "sde"}, {"s_churn": 40.0}]
    cases = []
    for steps in (2, 3, 4, 5, 10, 30, 200):
        sigmas = get_sigmas_karras(steps, sigma_min, sigma_max, rho=rho)
        for option in options:
            grid = make_grid(sigmas, **option)
            for method in DIFFERENCING:
                if option.get("noise_type") == "sde" and method in ("ipndm_v", "deis", *DESIGNED):
                    continue
                if (method, rho, steps, option) == ("res_pc4_logsigma", 1.0, 5, {"eta": 1.0}):
                    continue  # a real close node: step 3 ends at sigma_down = 2e-7, so in log
                    # sigma its fourth value lies 0.015617 < 1/64 steps from the third
                cases.append((method, grid, coefficients(method, grid)))
    monkeypatch.setattr(coefficients_module, "NODE_SPACING_MIN", -math.inf)  # the rule off
    for method, grid, table in cases:
        assert coefficients(method, grid) == table, method  # float tuples compared exactly


def test_the_bound_is_the_shipped_c2_bound():
    from res_theory import library
    from res_theory.tableau import C2_MIN
    from res_theory.tableau import TableauError as TheoryTableauError

    assert NODE_SPACING_MIN == float(C2_MIN) == 1 / 64
    for name in ("res_2s", "dpmpp_2s", "res_3s"):
        (c2,) = [p for p in library.get(name).parameters if p.name == "c2"]
        c2.validate(C2_MIN)
        with pytest.raises(TheoryTableauError, match="c2"):
            c2.validate(0.01)
    for name in ("res_2s", "dpmpp_2s", "res_3s"):
        text = resources.files("res_torch.tableaux").joinpath(f"{name}.json").read_text()
        (c2,) = [p for p in json.loads(text)["parameters"] if p["name"] == "c2"]
        assert (c2["lower"], c2["lower_inclusive"]) == ("1/64", True)


# --- c2 bound ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["res_2s", "dpmpp_2s", "res_3s"])
@pytest.mark.parametrize("c2", [1e-9, 1e-5, 0.01])
def test_c2_below_the_bound_is_refused(gaussian, method, c2):
    with pytest.raises(TableauError, match=r"c2=.* is outside \[1/64"):
        _sample(gaussian.denoiser, torch.ones(1, 2), [2.0, 1.0, 0.0], method, c2=c2)


@pytest.mark.parametrize("method", ["res_2s", "dpmpp_2s", "res_3s"])
def test_c2_at_the_bound_runs_in_float16_and_float32(gaussian, method):
    sigmas = get_sigmas_karras(10, 0.002, 80.0)
    x = 80 * torch.randn(4, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = _sample(gaussian.denoiser, x, sigmas, method, c2=1 / 64)
    scale = reference.abs().max().item()
    for dtype in (torch.float32, torch.float16):
        out = _sample(gaussian.denoiser, x.to(dtype), sigmas, method, c2=1 / 64).double()
        # the stage weights amplify rounding by at most 2/c2 - 1 = 127 (RES-2S); earlier steps'
        # errors are damped by e^{-h} (measured: 9e-6 float32, 5e-2 float16 for RES-2S)
        assert (out - reference).abs().max().item() <= 127 * torch.finfo(dtype).eps * scale


# --- model and noise-sampler outputs, callables, meta ------------------------------------------


def _reference(model, x, sigmas, **noise):
    grid = make_grid(sigmas, **{k: v for k, v in noise.items() if k != "noise_sampler"})
    table = coefficients("res_2m", grid)
    return sample_reference(model, x, grid, table, noise.get("noise_sampler"))


BAD_OUTPUTS = [
    (lambda x, s: torch.ones_like(x, dtype=torch.int64), "dtype torch.int64"),
    (lambda x, s: x[:1], r"shape \(1, 3\), expected \(2, 3\)"),
    (lambda x, s: torch.empty_like(x, device="meta"), "on meta, expected cpu"),
    (lambda x, s: x.tolist(), "returned list"),
]


@pytest.mark.parametrize(("model", "message"), BAD_OUTPUTS)
def test_bad_model_output_is_refused_in_both_loops(model, message):
    x, sigmas = torch.ones(2, 3), get_sigmas_karras(4, 0.002, 80.0)
    with pytest.raises(ModelOutputError, match=message):
        sample(model, x, sigmas, method="res_2m", disable=True)
    with pytest.raises(ModelOutputError, match=message):
        _reference(model, x, sigmas)


@pytest.mark.parametrize(
    ("draw", "message"),
    [(lambda s, t: torch.randn(1, 3), r"shape \(1, 3\)"),
     (lambda s, t: torch.ones(2, 3, dtype=torch.int32), "dtype torch.int32")],
)  # fmt: skip
def test_bad_noise_is_refused_in_both_loops(gaussian, draw, message):
    # a (1, d) draw was broadcast: the same noise for every sample
    x, sigmas = torch.ones(2, 3), get_sigmas_karras(4, 0.002, 80.0)
    with pytest.raises(NoiseError, match=message):
        sample(gaussian.denoiser, x, sigmas, method="res_2m", eta=1.0, noise_sampler=draw,
               disable=True)  # fmt: skip
    with pytest.raises(NoiseError, match=message):
        _reference(gaussian.denoiser, x, sigmas, eta=1.0, noise_sampler=draw)


def test_noise_in_another_float_dtype_is_cast(gaussian):
    x, sigmas = torch.ones(2, 3), get_sigmas_karras(4, 0.002, 80.0)
    out = sample(gaussian.denoiser, x, sigmas, method="res_2m", eta=1.0, disable=True,
                 noise_sampler=lambda s, t: torch.zeros(2, 3, dtype=torch.float64))  # fmt: skip
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("options", "message"),
    [({"callback": "print"}, "callback must be callable"),
     ({"noise_sampler": 3}, "noise_sampler must be callable"),
     ({"noise_sampler": 3, "eta": 1.0}, "noise_sampler must be callable"),
     ({"generator": 5, "eta": 1.0}, "generator must be a torch.Generator")],
)  # fmt: skip
def test_non_callables_fail_before_the_first_model_call(gaussian, counting, options, message):
    model = counting(gaussian.denoiser)
    with pytest.raises(TypeError, match=message):
        sample(model, torch.ones(2, 3), get_sigmas_karras(4, 0.002, 80.0), method="res_2m",
               disable=True, **options)  # fmt: skip
    assert model.calls == 0


def test_meta_device_inputs_get_clear_errors(gaussian, counting):
    model = counting(lambda x, s: x * 0.5)
    sigmas = get_sigmas_karras(4, 0.002, 80.0)
    with pytest.raises(SigmasError, match="meta device"):
        sample(model, torch.ones(2, 3), sigmas.to("meta"), disable=True)
    with pytest.raises(DeviceError, match="check_finite=False"):
        sample(model, torch.empty(2, 3, device="meta"), sigmas, disable=True)
    assert model.calls == 0
    # a shape-only run with a seed (ComfyUI passes one) draws on the CPU and moves to meta
    out = sample(model, torch.empty(2, 3, device="meta"), sigmas, method="res_2m", eta=1.0,
                 extra_args={"seed": 1}, check_finite=False, disable=True)  # fmt: skip
    assert out.device.type == "meta"


def test_a_step_below_the_resolution_of_the_interpolation_variable_runs(gaussian):
    """1 -> 1 - 2^-52 is a step in sigma but not in sigma^(1/7): no node spacing there is safe
    (no stored value is used, no corrector), where it used to divide by zero."""
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigmas = torch.tensor([1.0, 1 - 2**-52, 0.5, 0.0], dtype=torch.float64)
    for method in ("auto", *DESIGNED):
        out = _sample(gaussian.denoiser, x, sigmas, method)
        reference = _sample(gaussian.denoiser, x, [1.0, 0.5, 0.0], "ddim")
        assert (out - reference).abs().max().item() < 1e-6, method
