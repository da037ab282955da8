"""The adaptive sampler: convergence to the exact ODE solution as the tolerance shrinks, exact
NFE and accept/reject bookkeeping, the embedded weights against the 30-digit test vectors, the
controller against k-diffusion's, bad input."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest
import torch

from res_torch import (
    NoiseError,
    ResError,
    SigmasError,
    StepSizeError,
    TableauError,
    get_sigmas_karras,
    load_tableau,
    sample_res_3s,
    sample_res_adaptive,
)
from res_torch.adaptive import PIDController
from res_torch.coefficients import erk_steps
from res_torch.grid import make_grid

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def _start(dtype=torch.float64, batch=8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return SIGMA_MAX * torch.randn(batch, 3, 4, generator=generator, dtype=dtype)


def _exact(gaussian, x0: torch.Tensor) -> torch.Tensor:
    """The ODE solution at sigma_min followed by the final denoising step."""
    x = gaussian.exact(x0, SIGMA_MAX, SIGMA_MIN)
    return gaussian.denoiser(x, x.new_full((x.shape[0],), SIGMA_MIN))


def _error(out: torch.Tensor, exact: torch.Tensor) -> float:
    return float((out - exact).flatten(1).norm(dim=1).mean())


@pytest.mark.parametrize("order", [2, 3])
def test_error_shrinks_in_proportion_to_the_tolerance(gaussian, order):
    """Tolerance proportionality: the controller keeps the order-(p-1) local error estimate
    ``~ h^p`` at the tolerance and the order-p solution is propagated, so the global error
    ``~ h^p ~ tol``: slope 1 in log-log (atol scaled with rtol)."""
    x0 = _start()
    exact = _exact(gaussian, x0)
    tolerances = [1e-2, 1e-3, 1e-4]
    errors = []
    for rtol in tolerances:
        out = sample_res_adaptive(
            gaussian.denoiser, x0, SIGMA_MIN, SIGMA_MAX, order=order, rtol=rtol, atol=rtol / 6.4,
            disable=True,
        )  # fmt: skip
        errors.append(_error(out, exact))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))
    slope = math.log(errors[0] / errors[-1]) / math.log(tolerances[0] / tolerances[-1])
    assert 0.7 <= slope <= 1.3, (errors, slope)
    assert errors[-1] < 1e-3 * float(exact.flatten(1).norm(dim=1).mean())


MIXTURE_MEAN, MIXTURE_STD = 1.0, 0.1


def _mixture(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact denoiser of ``(N(-m, s^2) + N(m, s^2))/2`` per coordinate (``m = 1, s = 0.1``): with
    ``v = s^2 + sigma^2`` the posterior weights are ``(1 +- tanh(m x/v))/2``, so ``D = (s^2/v) x
    + (sigma^2/v) m tanh(m x/v)`` (a nonlinear ODE)."""
    variance = MIXTURE_STD**2 + sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
    mean = MIXTURE_MEAN * torch.tanh(MIXTURE_MEAN * x / variance)
    return (MIXTURE_STD**2 * x + (variance - MIXTURE_STD**2) * mean) / variance


def test_converges_on_a_nonlinear_mixture_ode():
    """Against fixed-step RES-3S on 1000 Karras steps (which agrees with 500 steps to 1e-6):
    the error falls with the tolerance at roughly slope 1."""
    x0 = SIGMA_MAX * torch.randn(8, 6, generator=torch.Generator().manual_seed(0),
                                 dtype=torch.float64)  # fmt: skip
    references = [
        sample_res_3s(_mixture, x0, get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX), disable=True)
        for n in (500, 1000)
    ]
    assert _error(references[0], references[1]) < 1e-6
    tolerances = [1e-3, 1e-4, 1e-5]
    errors = [
        _error(
            sample_res_adaptive(
                _mixture, x0, SIGMA_MIN, SIGMA_MAX, rtol=rtol, atol=rtol / 6.4, disable=True
            ),
            references[1],
        )  # fmt: skip
        for rtol in tolerances
    ]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))
    slope = math.log(errors[0] / errors[-1]) / math.log(tolerances[0] / tolerances[-1])
    assert 0.7 <= slope <= 1.3, (errors, slope)


def test_third_order_pair_needs_fewer_evaluations_than_the_second(gaussian, counting):
    x0 = _start()
    spent = []
    for order in (2, 3):
        model = counting(gaussian.denoiser)
        sample_res_adaptive(model, x0, SIGMA_MIN, SIGMA_MAX, order=order, rtol=1e-4,
                            atol=1e-4 / 6.4, disable=True)  # fmt: skip
        spent.append(model.calls)
    assert spent[1] < spent[0] / 2, spent


@pytest.mark.parametrize(("order", "stages"), [(2, 2), (3, 3)])
def test_every_model_call_is_counted(gaussian, counting, order, stages):
    """``nfe`` is the model's call count: ``s - 1`` stage evaluations per attempt, one first
    evaluation per accepted step (a rejected attempt reuses it) and the final denoising step.
    ``h_init = 5`` forces rejections; the callback sees every attempt."""
    model = counting(gaussian.denoiser)
    seen = []
    x, info = sample_res_adaptive(
        model, _start(), SIGMA_MIN, SIGMA_MAX, order=order, rtol=1e-3, atol=1e-4, h_init=5.0,
        disable=True, return_info=True, callback=seen.append,
    )  # fmt: skip
    assert x.shape == _start().shape
    assert info["nfe"] == model.calls
    assert info["n_reject"] >= 1
    assert info["steps"] == info["n_accept"] + info["n_reject"] == len(seen)
    assert info["nfe"] == info["n_accept"] + (stages - 1) * info["steps"] + 1
    assert sum(s["accept"] for s in seen) == info["n_accept"]
    assert [s["i"] for s in seen] == list(range(info["steps"]))
    assert seen[-1]["sigma"] == SIGMA_MIN
    accepted = [s["sigma"] for s in seen if s["accept"]]
    assert all(b < a for a, b in zip([SIGMA_MAX, *accepted], accepted, strict=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(gaussian, dtype):
    x0 = _start(dtype)
    out = sample_res_adaptive(gaussian.denoiser, x0, SIGMA_MIN, SIGMA_MAX, rtol=1e-3,
                              atol=1e-4, disable=True)  # fmt: skip
    assert out.dtype == dtype
    exact = _exact(gaussian, x0.double())
    assert _error(out.double(), exact) < 1e-2 * float(exact.flatten(1).norm(dim=1).mean())


@pytest.mark.parametrize("name", ["res_2s", "res_3s"])
def test_embedded_weights_match_the_30_digit_test_vectors(name):
    """``StepCoefficients.weights_embedded / h`` (the sampler's numbers) against the file's
    mpmath test vectors of ``b_embedded`` (50-digit computation, 30 digits stored)."""
    document = json.loads((resources.files("res_torch") / "tableaux" / f"{name}.json").read_text())
    vectors = document["test_vectors"]
    assert {k: v for k, v in vectors["parameters"].items()} == {
        p["name"]: p["default"] for p in document["parameters"]
    }
    for n, z in enumerate(vectors["Z"]):
        h = -float(z)
        step = erk_steps(load_tableau(name), make_grid([1.0, math.exp(-h)]))[0]
        for got, exact in zip(step.weights_embedded, vectors["b_embedded"], strict=True):
            assert got / h == pytest.approx(float(exact[n]), rel=1e-14, abs=1e-16)
        for got, exact in zip(step.weights, vectors["b"], strict=True):
            assert got / h == pytest.approx(float(exact[n]), rel=1e-14, abs=1e-16)


def test_evaluate_embedded_needs_b_embedded():
    h = torch.tensor([0.5])
    c, a, b, b_hat = load_tableau("res_3s").evaluate(h, {"c2": 0.4}, embedded=True)
    assert b_hat.shape == b.shape and float(b_hat[0, 2]) == 0.0
    assert torch.allclose(b_hat.sum(-1), b.sum(-1), rtol=1e-14)  # both sum to phi_1
    with pytest.raises(TableauError, match="no b_embedded"):
        load_tableau("dpmpp_2s").evaluate(h, embedded=True)
    assert erk_steps(load_tableau("dpmpp_2s"), make_grid([1.0, 0.5]))[0].weights_embedded == ()


def test_controller_matches_k_diffusion():
    """Same h and accept decisions as k-diffusion's PIDStepSizeController on an error
    sequence with rejections, with all three gains nonzero."""
    peers = pytest.importorskip("experiments.league.peers")
    try:
        sampling = peers.load_k_diffusion_sampling()
    except peers.PeerGridError:
        pytest.skip("k-diffusion is not installed")
    ours = PIDController(0.05, 0.2, 0.7, 0.1, 3, 0.81)
    theirs = sampling.PIDStepSizeController(0.05, 0.2, 0.7, 0.1, 3, 0.81)
    decisions = []
    for error in [0.3, 2.0, 5.0, 0.9, 0.01, 1.1, 3.0, 0.5]:
        decisions.append(ours.propose(error))
        assert decisions[-1] == theirs.propose_step(error)
        assert ours.h == pytest.approx(theirs.h, rel=1e-14)
    assert True in decisions and False in decisions


def _call(gaussian, **kwargs):
    arguments = {"model": gaussian.denoiser, "x": _start(batch=1), "sigma_min": SIGMA_MIN,
                 "sigma_max": SIGMA_MAX, "disable": True, **kwargs}  # fmt: skip
    return sample_res_adaptive(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sigma_min": 0.0}, SigmasError, "0 < sigma_min < sigma_max"),
        ({"sigma_min": 90.0}, SigmasError, "0 < sigma_min < sigma_max"),
        ({"sigma_max": math.nan}, StepSizeError, "finite"),
        ({"sigma_min": "a"}, StepSizeError, "must be a finite real number"),
        ({"rtol": 0.0}, StepSizeError, "> 0"),
        ({"atol": -1.0}, StepSizeError, "> 0"),
        ({"h_init": 0.0}, StepSizeError, "> 0"),
        ({"h_init": -0.1}, StepSizeError, "> 0"),
        ({"icoeff": 0.0}, StepSizeError, "pcoeff"),
        ({"icoeff": 1e300}, StepSizeError, "must lie in"),
        ({"pcoeff": 1e308, "icoeff": 1e308}, StepSizeError, "must lie in"),
        ({"accept_safety": 1.5}, StepSizeError, "accept_safety"),
        ({"max_steps": 0}, StepSizeError, "max_steps"),
        ({"order": 4}, StepSizeError, "order must be 2 or 3"),
        ({"order": 3, "method": "res_3s"}, StepSizeError, "not both"),
        ({"method": "dpmpp_2s"}, TableauError, "no b_embedded"),
        ({"method": "res_2m"}, TableauError, "not a single-step"),
        ({"method": "nope"}, ResError, "unknown method"),
        ({"c2": 0.9}, TableauError, "outside"),
        ({"c4": 0.5}, TableauError, "no parameter"),
        ({"eta": 1.0}, NoiseError, "eta must be 0"),
    ],
)
def test_bad_input_raises(gaussian, kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(gaussian, **kwargs)


def test_saturating_gains_still_control_the_step(gaussian):
    """Gains at the bound make ``log rho`` of order 1e4: clipped, not an ``OverflowError``. The
    integral controller then only multiplies ``h`` by ``1 + pi/2`` or ``1 - pi/4`` and still
    finishes; a derivative gain that large rejects every step after a very accurate one (its
    ``e_{n-1}^{b2}`` is 0), which ends in the library's step-size error."""
    assert torch.isfinite(_call(gaussian, max_steps=2000, icoeff=1e3)).all()
    with pytest.raises(StepSizeError, match="h_min"):
        _call(gaussian, max_steps=2000, pcoeff=1e3, dcoeff=1e3)


def test_runs_that_cannot_finish_raise(gaussian):
    with pytest.raises(StepSizeError, match="did not reach sigma_min"):
        _call(gaussian, rtol=1e-3, atol=1e-4, max_steps=3)
    with pytest.raises(StepSizeError, match="h_min"):
        _call(gaussian, rtol=1e-12, atol=1e-12, h_min=0.01)

    def broken(x, sigma):
        return torch.full_like(x, math.nan)

    with pytest.raises(ResError, match="non-finite"):
        _call(gaussian, model=broken)


def test_method_and_parameters(gaussian, counting):
    """``method=`` runs any tableau with b_embedded; ``c2`` reaches the tableau."""
    x0 = _start()
    exact = _exact(gaussian, x0)
    runs = [
        sample_res_adaptive(
            gaussian.denoiser,
            x0,
            SIGMA_MIN,
            SIGMA_MAX,
            rtol=1e-4,
            atol=1e-5,
            disable=True,
            method="res_3s",
            **p,
        )  # fmt: skip
        for p in ({}, {"c2": 0.4, "c3": 0.9})
    ]
    assert not torch.equal(runs[0], runs[1])
    for out in runs:
        assert _error(out, exact) < 1e-3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(gaussian):
    x0 = _start()
    cpu = sample_res_adaptive(gaussian.denoiser, x0, SIGMA_MIN, SIGMA_MAX, disable=True,
                              return_info=True)  # fmt: skip
    gpu = sample_res_adaptive(gaussian.denoiser, x0.cuda(), SIGMA_MIN, SIGMA_MAX, disable=True,
                              return_info=True)  # fmt: skip
    assert gpu[0].device.type == "cuda" and gpu[1] == cpu[1]
    assert torch.allclose(gpu[0].cpu(), cpu[0], rtol=1e-10, atol=1e-10)
