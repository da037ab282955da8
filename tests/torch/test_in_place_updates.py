"""The loop's fast path: lerp chains, in-place updates and cached device tables.

The updates ``a x + sum_j w_j D_j`` run as chains of in-place ``lerp_`` when that is safe and
well conditioned; these tests check the chain's algebra and rounding, that the fast path is the
one the shipped methods take, and that it never changes a result: against the path with a
callback (every iterate a fresh tensor), under autograd, and across dtypes and batch sizes.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from res_torch import SAMPLERS, get_sigmas_karras, sample
from res_torch.samplers import clear_plan_cache
from res_torch.steppers import LERP_AMPLIFICATION_LIMIT, lerp_chain

EPS = torch.finfo(torch.float64).eps


def chain_value(x: float, values: list[float], order: list[int], links: list[float]) -> float:
    """The chain evaluated as the loop does, in float64 (``lerp(y, D, t) = y + t (D - y)``)."""
    y = torch.tensor(x, dtype=torch.float64)
    for j, t in zip(order, links, strict=True):
        y = torch.lerp(y, torch.tensor(values[j], dtype=torch.float64), t)
    return float(y)


@settings(max_examples=300, deadline=None)
@given(
    decay=st.floats(1e-6, 1.0),
    shares=st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=4),
    x=st.floats(-10.0, 10.0),
    values=st.lists(st.floats(-10.0, 10.0), min_size=4, max_size=4),
)
def test_a_lerp_chain_computes_the_affine_combination_to_rounding(decay, shares, x, values):
    # weights w_j = (1 - a) s_j / sum(s): consistent by construction
    if abs(sum(shares)) < 1e-3:
        return
    weights = [(1 - decay) * s / sum(shares) for s in shares]
    chain = lerp_chain(decay, weights)
    if chain is None:
        return
    order, links = chain
    assert sorted(order) == list(range(len(weights)))
    exact = Fraction(decay) * Fraction(x) + sum(
        Fraction(w) * Fraction(v) for w, v in zip(weights, values, strict=False)
    )
    scale = abs(decay * x) + sum(abs(w * v) for w, v in zip(weights, values, strict=False))
    scale += max(abs(x), *map(abs, values))
    error = abs(Fraction(chain_value(x, values, order, links)) - exact)
    # each of K links rounds a few times; earlier errors grow by at most the accepted factor
    bound = 8 * len(weights) * LERP_AMPLIFICATION_LIMIT ** len(weights) * EPS * scale
    assert float(error) <= bound


def test_inconsistent_or_ill_conditioned_rows_get_no_chain():
    assert lerp_chain(0.5, [0.2, 0.2]) is None  # 0.4 != 1 - 0.5
    assert lerp_chain(0.5, []) is None
    # a = -0.6, w = (0.8, 0.8): in either order the second link amplifies by 1.8 / 0.2 = 9
    assert lerp_chain(-0.6, [0.8, 0.8]) is None
    assert lerp_chain(-0.6, [0.8, 0.8], limit=10.0) is not None


@settings(max_examples=300, deadline=None)
@given(decay=st.floats(0.0, 1.0), first=st.floats(-50.0, 50.0))
def test_every_consistent_two_term_row_has_a_chain(decay, first):
    # w_1 + w_2 = 1 - a < 1 puts one weight below 1/2; last in the chain it amplifies by at
    # most (1 + 1/2) / (1 - 1/2) = 3
    assert lerp_chain(decay, [first, (1 - decay) - first]) is not None


@pytest.mark.parametrize("h", [1e-6, 0.05, 0.3, 1.0, 1.6, 3.0, 10.0, 40.0])
@pytest.mark.parametrize("r", [0.1, 0.5, 1.0, 2.0, 10.0])
def test_the_two_term_rows_of_the_shipped_methods_always_take_the_chain(h, r):
    a = math.exp(-h)
    phi1 = -math.expm1(-h) / h
    phi2 = (1 - phi1) / h
    rows = {
        "res_2m": [h * (phi1 + phi2 / r), -h * phi2 / r],
        "dpmpp_2m": [h * phi1 * (1 + 1 / (2 * r)), -h * phi1 / (2 * r)],
    }
    for c2 in (0.1, 0.5, 1.0):
        rows[f"res_2s c2={c2}"] = [h * (phi1 - phi2 / c2), h * phi2 / c2]
        rows[f"dpmpp_2s c2={c2}"] = [h * phi1 * (1 - 1 / (2 * c2)), h * phi1 / (2 * c2)]
    for name, weights in rows.items():
        assert lerp_chain(a, weights) is not None, (name, h, r)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
@pytest.mark.parametrize(
    "options",
    [{}, {"s_churn": 5.0}, {"eta": 1.0, "noise_type": "ancestral"}],
    ids=["ode", "churn", "eta"],
)
def test_in_place_updates_give_the_same_samples_as_fresh_iterates(gaussian, method, options):
    if options.get("eta") and method in ("euler", "heun"):
        options = {**options, "noise_type": "ancestral"}
    sigmas = get_sigmas_karras(7, 0.002, 80.0, dtype=torch.float64)
    x = 80 * torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kwargs = dict(method=method, disable=True, **options)
    fast = sample(
        gaussian.denoiser, x, sigmas, generator=torch.Generator().manual_seed(2), **kwargs
    )
    fresh = sample(
        gaussian.denoiser, x, sigmas, generator=torch.Generator().manual_seed(2),
        callback=lambda info: None, **kwargs,
    )  # fmt: skip
    torch.testing.assert_close(fast, fresh, rtol=1e-13, atol=1e-13)


def test_callback_iterates_are_not_overwritten_later(gaussian):
    seen = []
    sigmas = get_sigmas_karras(6, 0.002, 80.0, dtype=torch.float64)
    x = 80 * torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sample(
        gaussian.denoiser, x, sigmas, method="res_2m", disable=True,
        callback=lambda info: seen.append((info["x"], info["x"].clone())),
    )  # fmt: skip
    assert all(torch.equal(kept, copy) for kept, copy in seen)


@pytest.mark.parametrize("method", ["res_2m", "res_2s", "res_3m", "heun"])
def test_gradients_flow_through_the_sampler(method):
    # a model with a parameter: autograd saves x for the backward pass, so the loop must not
    # overwrite it; the gradient must equal the one of the all-fresh (callback) path
    def run(with_callback: bool) -> torch.Tensor:
        scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

        def model(x, sigma):
            return scale * x * torch.tanh(x) / (1 + sigma[:, None] ** 2)

        x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        out = sample(
            model, x, get_sigmas_karras(5, 0.01, 10.0, dtype=torch.float64), method=method,
            disable=True, callback=(lambda info: None) if with_callback else None,
        )  # fmt: skip
        (grad,) = torch.autograd.grad(out.square().sum(), scale)
        return grad

    torch.testing.assert_close(run(False), run(True), rtol=1e-12, atol=0)


def test_cached_device_tables_follow_dtype_and_batch(gaussian):
    clear_plan_cache()
    sigmas = get_sigmas_karras(8, 0.002, 80.0, dtype=torch.float64)
    x = 80 * torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    reference = sample(gaussian.denoiser, x, sigmas, method="res_2s", disable=True)
    single = sample(gaussian.denoiser, x.float(), sigmas, method="res_2s", disable=True)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), reference, rtol=1e-5, atol=1e-4)
    first_two = sample(gaussian.denoiser, x[:2], sigmas, method="res_2s", disable=True)
    torch.testing.assert_close(first_two, reference[:2], rtol=1e-14, atol=1e-14)
    again = sample(gaussian.denoiser, x, sigmas, method="res_2s", disable=True)
    assert torch.equal(again, reference)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_inputs_the_model_received_are_never_written_later(gaussian, method):
    # a model (cache, hook, logger) may keep references to its inputs, as k-diffusion allows:
    # each must still hold the values it was called with when the run ends
    kept = []

    def keeping(x, sigma):
        kept.append((x, x.clone()))
        return gaussian.denoiser(x, sigma)

    sigmas = get_sigmas_karras(7, 0.002, 80.0, dtype=torch.float64)
    x = 80 * torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    out = sample(keeping, x, sigmas, method=method, disable=True)
    assert all(torch.equal(seen, copy) for seen, copy in kept)
    torch.testing.assert_close(
        out, sample(gaussian.denoiser, x, sigmas, method=method, disable=True), rtol=0, atol=0
    )


@pytest.mark.parametrize("method", ["res_2s", "res_2m", "ipndm", "res_pc4_grid"])
def test_a_run_under_inference_mode_leaves_the_cached_tables_usable_with_autograd(method):
    """ComfyUI samples under ``torch.inference_mode()``; the tables cached by that run must not
    be inference tensors, which a later run that records autograd could not save."""
    clear_plan_cache()
    sigmas = get_sigmas_karras(6, 0.01, 10.0, dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def model(x, sigma):
        return scale * x / (1 + sigma[:, None] ** 2)

    with torch.inference_mode():
        first = sample(model, x, sigmas, method=method, disable=True)
    out = sample(model, x, sigmas, method=method, disable=True)
    (grad,) = torch.autograd.grad(out.sum(), scale)
    assert torch.isfinite(grad) and torch.equal(out.detach(), first)


@pytest.mark.parametrize("method", ["res_2s", "res_2m", "res_pc4_grid"])
def test_a_model_or_callback_that_writes_into_its_sigma_changes_no_later_call(gaussian, method):
    """k-diffusion hands every call fresh noise levels; here they are cached tables, so a write
    into one (``sigma *= c`` in a model, in a callback) is undone before the loop reads it
    again: every call sees the schedule's level, and repeated runs agree."""
    sigmas = get_sigmas_karras(7, 0.002, 80.0, dtype=torch.float64)
    x = 80 * torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    seen: list[torch.Tensor] = []

    def writing(x, sigma):
        seen.append(sigma.clone())
        level = sigma.view(-1, 1)
        level /= 80.0  # the time this network wants, computed in place
        return gaussian.denoiser(x, level * 80.0)

    def scribbling(info):
        info["sigma_hat"].zero_()

    clean = sample(gaussian.denoiser, x, sigmas, method=method, disable=True)
    for _ in range(2):
        seen.clear()
        out = sample(writing, x, sigmas, method=method, disable=True, callback=scribbling)
        torch.testing.assert_close(out, clean, rtol=1e-15, atol=1e-13)
    clean_levels: list[torch.Tensor] = []
    sample(lambda y, s: clean_levels.append(s.clone()) or gaussian.denoiser(y, s), x, sigmas,
           method=method, disable=True)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(seen, clean_levels, strict=True))
