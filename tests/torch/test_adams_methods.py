"""iPNDM, iPNDM-v and DEIS (the ``adams`` family: ``x' = x + sum_j w_j eps_{n-j}`` in sigma):
weights against the published formulas, measured orders, NFE counting, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from res_torch import (
    METHODS,
    ResError,
    get_sigmas_karras,
    nfe,
    sample,
    sample_deis,
    sample_ipndm,
    sample_ipndm_v,
    sigmas_for_nfe,
)
from res_torch.coefficients import adams_weights, coefficients, lagrange_integrals
from res_torch.errors import TableauError
from res_torch.grid import make_grid

ADAMS = ["ipndm", "ipndm_v", "deis"]
NODES = [3.0, 4.1, 5.7, 8.2]  # sigma_n, sigma_{n-1}, ... (unequal steps)
SIGMA_TO = 2.2


def test_ipndm_uses_the_fixed_adams_bashforth_coefficients():
    dt = SIGMA_TO - NODES[0]
    expected = {
        1: [1.0],
        2: [3 / 2, -1 / 2],
        3: [23 / 12, -16 / 12, 5 / 12],
        4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
    }
    for k, ab in expected.items():
        assert adams_weights("ipndm", NODES[:k], SIGMA_TO) == pytest.approx(
            [dt * w for w in ab], rel=1e-15
        )


def _comfyui_ipndm_v_third_order(h_n, h_n_1, h_n_2, literal):
    """ComfyUI ``sample_ipndm_v`` (after zju-pi/diff-sampler), order 3, with ``h_n = t_next -
    t_cur``, ``h_n_1 = t_cur - t_prev``, ``h_n_2 = t_prev - t_prev2``. Its ``temp`` is written
    ``(1 - a * b) / 2`` with ``a = h_n/(3 (h_n + h_n_1))``, ``b = h_n (h_n + h_n_1)/(h_n_1
    (h_n_1 + h_n_2))``; ``literal=False`` reads it as ``(1 - a) b / 2``."""
    a = h_n / (3 * (h_n + h_n_1))
    b = (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))
    temp = (1 - a * b) / 2 if literal else (1 - a) * b / 2
    return [
        (2 + h_n / h_n_1) / 2 + temp,
        -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp,
        temp * h_n_1 / h_n_2,
    ]


def test_ipndm_v_matches_comfyui_variable_step_formulas():
    """Order 2 equals ComfyUI's ``ipndm_v`` exactly. Order 3 equals its formula read as
    ``temp = (1 - a) b / 2`` (the exact variable-step AB3 weights); the expression as written
    there (Python precedence: ``(1 - a b)/2``) agrees only on equal steps, where both are AB3."""
    t_cur, t_prev, t_prev2 = NODES[:3]
    h_n, h_n_1, h_n_2 = SIGMA_TO - t_cur, t_cur - t_prev, t_prev - t_prev2
    second = [(2 + h_n / h_n_1) / 2, -(h_n / h_n_1) / 2]
    got = adams_weights("ipndm_v", NODES[:2], SIGMA_TO)
    assert got == pytest.approx([h_n * c for c in second], rel=1e-13)
    third = _comfyui_ipndm_v_third_order(h_n, h_n_1, h_n_2, literal=False)
    got = adams_weights("ipndm_v", NODES[:3], SIGMA_TO)
    assert got == pytest.approx([h_n * c for c in third], rel=1e-13)
    literal = _comfyui_ipndm_v_third_order(h_n, h_n_1, h_n_2, literal=True)
    assert got != pytest.approx([h_n * c for c in literal], rel=1e-3)
    equal = _comfyui_ipndm_v_third_order(-0.5, -0.5, -0.5, literal=True)
    got = adams_weights("ipndm_v", [3.0, 3.5, 4.0], 2.5)
    assert got == pytest.approx([-0.5 * c for c in equal], rel=1e-13)
    assert got == pytest.approx(adams_weights("ipndm", [3.0, 3.5, 4.0], 2.5), rel=1e-13)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_ipndm_v_weights_are_exact_integrals_of_the_lagrange_basis(k):
    """Independent check (numpy polynomials): ``w_j = int ell_j(sigma) dsigma``."""
    nodes = NODES[:k]
    for j in range(k):
        others = [o for i, o in enumerate(nodes) if i != j]
        ell = np.polynomial.Polynomial.fromroots(others) if others else np.polynomial.Polynomial(1)
        ell = ell / ell(nodes[j])
        exact = ell.integ()(SIGMA_TO) - ell.integ()(nodes[0])
        assert adams_weights("ipndm_v", nodes, SIGMA_TO)[j] == pytest.approx(exact, rel=1e-13)


def test_deis_matches_the_diffusers_log_rho_formula_at_second_order():
    """diffusers ``DEISMultistepScheduler.multistep_deis_second_order_update`` (log-rho):
    ``ind_fn(t, b, c) = t (log t - log c - 1)/(log b - log c)``, ``coef1 = ind_fn(rho_t, rho_s0,
    rho_s1) - ind_fn(rho_s0, rho_s0, rho_s1)``, ``coef2`` with ``s0``, ``s1`` swapped."""

    def ind_fn(t, b, c):
        return t * (-math.log(c) + math.log(t) - 1) / (math.log(b) - math.log(c))

    rho_t, rho_s0, rho_s1 = SIGMA_TO, NODES[0], NODES[1]
    coef1 = ind_fn(rho_t, rho_s0, rho_s1) - ind_fn(rho_s0, rho_s0, rho_s1)
    coef2 = ind_fn(rho_t, rho_s1, rho_s0) - ind_fn(rho_s0, rho_s1, rho_s0)
    assert adams_weights("deis", NODES[:2], SIGMA_TO) == pytest.approx([coef1, coef2], rel=1e-13)


def test_deis_third_order_weights_are_exact_log_lagrange_integrals():
    """``int ell_j(u) e^u du = e^u (ell_j - ell_j' + ell_j'')`` in ``u = log sigma``."""
    u = [math.log(s) for s in NODES[:3]]
    ends = (math.log(NODES[0]), math.log(SIGMA_TO))
    for j in range(3):
        ell = np.polynomial.Polynomial.fromroots([o for i, o in enumerate(u) if i != j])
        ell = ell / ell(u[j])
        antiderivative = ell - ell.deriv() + ell.deriv(2)
        exact = math.exp(ends[1]) * antiderivative(ends[1]) - math.exp(ends[0]) * antiderivative(
            ends[0]
        )
        assert adams_weights("deis", NODES[:3], SIGMA_TO)[j] == pytest.approx(exact, rel=1e-13)


def test_order_one_of_every_adams_method_is_euler():
    for name in ADAMS:
        assert adams_weights(name, NODES[:1], SIGMA_TO) == pytest.approx([SIGMA_TO - NODES[0]])
    assert lagrange_integrals([2.0], 2.0, 1.0) == pytest.approx([-1.0], rel=1e-15)


def test_warm_start_raises_the_order_one_value_per_step():
    sigmas = get_sigmas_karras(8, 0.01, 60.0)
    for name in ADAMS:
        table = coefficients(name, make_grid(sigmas))
        order = METHODS[name].order
        assert [len(step.weights) for step in table.steps[:-1]] == [
            min(n + 1, order) for n in range(7)
        ]
        assert table.steps[-1].denoising
        limited = coefficients(name, make_grid(sigmas), {"max_order": 2})
        assert max(len(step.weights) for step in limited.steps) == 2


@pytest.mark.parametrize(("method", "order"), [("ipndm", 4), ("ipndm_v", 4), ("deis", 3)])
def test_local_order_of_the_main_step_with_exact_history(gaussian, method, order):
    """One step from exact history values has local error ``O(h^{p+1})`` (ipndm on equal
    steps, the variable-step methods on unequal ones)."""
    pattern = [0.0, 1.0, 2.0, 3.0, 4.0] if method == "ipndm" else [0.0, 0.7, 1.9, 3.0, 4.2]
    errors, sizes = [], [0.04, 0.02]
    for h in sizes:
        sigmas = torch.tensor([3.0 - p * h for p in pattern], dtype=torch.float64)
        step = coefficients(method, make_grid(sigmas)).steps[order - 1]
        assert len(step.weights) == order
        x0 = torch.tensor([[2.5]], dtype=torch.float64)
        states = [gaussian.exact(x0, 3.0, s.item()) for s in sigmas]
        x_next = step.decay * states[order - 1]
        for j, weight in enumerate(step.weights):
            n = order - 1 - j
            eps = (states[n] - gaussian.denoiser(states[n], sigmas[n].view(1))) / sigmas[n]
            x_next = x_next + weight * eps
        errors.append((x_next - states[order]).abs().item())
    local_order = math.log(errors[0] / errors[1]) / math.log(sizes[0] / sizes[1])
    assert local_order == pytest.approx(order + 1, abs=0.3)


@pytest.mark.parametrize("method", ADAMS)
def test_global_order_is_two_with_the_euler_warm_start(gaussian, method):
    """The first (Euler) step's local error ``O(h^2)`` limits the global order to 2 (as for
    any multistep method whose start-up is not of full order; measured on a geometric grid)."""
    x0 = torch.tensor([[12.5, -5.0]], dtype=torch.float64)
    errors = []
    for steps in (16, 32, 64):
        sigmas = torch.exp(torch.linspace(math.log(5.0), math.log(0.5), steps + 1))
        out = sample(gaussian.denoiser, x0, sigmas.double(), method=method, disable=True)
        errors.append((out - gaussian.exact(x0, 5.0, 0.5)).abs().max().item())
    measured = math.log2(errors[1] / errors[2])
    assert 1.8 < measured < 2.8
    assert errors[2] < 1e-4


@pytest.mark.parametrize("sampler", [sample_ipndm, sample_ipndm_v, sample_deis])
@pytest.mark.parametrize("final_zero", [True, False])
def test_model_calls_equal_the_nfe_count(gaussian, counting, sampler, final_zero):
    method = sampler.__name__.removeprefix("sample_")
    sigmas = get_sigmas_karras(6, 0.01, 60.0)
    sigmas = sigmas if final_zero else sigmas[:-1]
    model = counting(gaussian.denoiser)
    sampler(model, torch.ones(2, 3, dtype=torch.float64), sigmas, disable=True)
    assert model.calls == nfe(method, sigmas) == len(sigmas) - 1
    assert len(sigmas_for_nfe(7, method)) == 8  # 6 one-evaluation steps, the final one, 0


@pytest.mark.parametrize("method", ADAMS)
def test_bad_input_is_rejected(gaussian, method):
    x, sigmas = torch.ones(1, 2), get_sigmas_karras(4, 0.01, 60.0)
    for order in (0, METHODS[method].order + 1, 2.5, True):
        with pytest.raises(TableauError, match="max_order"):
            sample(gaussian.denoiser, x, sigmas, method=method, max_order=order)
    with pytest.raises(TableauError, match="no parameter"):
        sample(gaussian.denoiser, x, sigmas, method=method, c2=0.5)
    with pytest.raises(ResError, match="ancestral"):
        sample(gaussian.denoiser, x, sigmas, method=method, eta=1.0, noise_type="sde")


@pytest.mark.parametrize("order", [1, 2, 3])
def test_deis_equals_diffusers_deis_multistep_scheduler_on_its_sigmas(order):
    """diffusers' ``DEISMultistepScheduler`` (log-rho, ``lower_order_final=False``) on an eps
    network, and ``sample_deis`` on the scheduler's own VE sigmas (which end at the smallest
    training noise level, not 0) with the same network wrapped by ``DiscreteEpsDenoiser``: equal
    to ~1e-7 relative, the rounding of the float32 sigma table diffusers computes its
    coefficients from; the next lower order differs by > 1e-4, so the check discriminates."""
    diffusers = pytest.importorskip("diffusers")
    from res_torch.adapters import DiscreteEpsDenoiser

    scheduler = diffusers.DEISMultistepScheduler(solver_order=order, lower_order_final=False)
    scheduler.set_timesteps(8)

    def net(x, t):
        return 0.5 * torch.tanh(x) + 0.1 * x

    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = noise.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, t), t, x).prev_sample
    sigmas = scheduler.sigmas.double()
    model = DiscreteEpsDenoiser(net, scheduler.alphas_cumprod)
    x_ve = noise * math.sqrt(1 + sigmas[0].item() ** 2)
    scale = math.sqrt(1 + sigmas[-1].item() ** 2)

    def ours(max_order):
        return sample_deis(model, x_ve, sigmas, disable=True, max_order=max_order) / scale

    expected = ours(order)
    size = expected.abs().max()
    assert (x - expected).abs().max() <= 1e-6 * size
    if order > 1:
        assert (ours(order - 1) - expected).abs().max() > 1e-4 * size
