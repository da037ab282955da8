"""Adaptive step size from an embedded exponential Runge–Kutta pair, PI control in ``lambda``.

:func:`sample_res_adaptive` has the signature of k-diffusion's ``sample_dpm_adaptive``
(Crowson's DPM-Solver-12/23 with a PID controller) and integrates the probability-flow ODE from
``sigma_max`` to ``sigma_min`` in ``lambda = -log sigma``. A step of size ``h`` from ``x_n`` runs
the tableau's stages and forms, with the numbers of :func:`res_torch.coefficients.erk_steps` (the
one coefficient source, ``Tableau.evaluate(..., embedded=True)``)::

    x_{n+1} = e^{-h} x_n + h sum_i b_i(h) D_i            (order p)
    err     = h sum_i (b_i(h) - bhat_i(h)) D_i           (x_{n+1} minus the order p - 1 update)
    E       = RMS(err / delta),  delta = max(atol, rtol max(|x_n|, |x_{n+1}|))   (elementwise)

``E`` is k-diffusion's norm (the RMS over every entry of the batch; k-diffusion scales by the
embedded value and the previous step's embedded value, which differ from ``x_{n+1}``, ``x_n``
by the error estimates). The controller (Söderlind's digital filter, in k-diffusion's
``PIDStepSizeController`` form) turns ``e_n = 1/(E_n + 1e-8)`` into the step factor::

    rho = e_n^{b1} e_{n-1}^{b2} e_{n-2}^{b3},  b1 = (kP + kI + kD)/p,  b2 = -(kP + 2 kD)/p,
    b3 = kD/p,  factor = 1 + atan(rho - 1),  h <- factor h,  accepted iff factor >= accept_safety

(``e_{n-1}, e_{n-2}``: the last accepted steps', ``e_n`` before the first; the defaults
``kP = kD = 0, kI = 1`` give the elementary controller ``(1/E)^{1/p}``). A rejected step keeps
its first denoiser value ``D(x_n, sigma_n)``, which does not depend on ``h``, so it costs
``s - 1`` evaluations (k-diffusion evaluates it again). The run ends with the denoising step
``x = D(x, sigma_min)`` of the fixed-step samplers' final step to 0 (k-diffusion's returns ``x``
at ``sigma_min``). Pairs: RES-3S (order 3) with RES-2S on its first two stages (``order=3``,
the default), RES-2S with exponential Euler (``order=2``), or any single-step tableau with
``b_embedded`` (``method=``; ``res_theory.embedded`` derives them).

Host cost: each attempted step computes its coefficients anew (``phi`` of 1-element float64
tensors): about 5-9 ms for RES-3S and 2-4 ms for RES-2S on the development CPU, against
0.2-0.6 ms per step of k-diffusion's closed forms; small beside a network's evaluations, the
larger part of the run time for a cheap exact denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from res_torch.checks import integer, real
from res_torch.coefficients import StepCoefficients, erk_steps
from res_torch.errors import (
    NoiseError,
    NonFiniteSampleError,
    SampleError,
    SigmasError,
    StepSizeError,
)
from res_torch.grid import make_grid
from res_torch.methods import method_of
from res_torch.steppers import Denoiser, _Evaluator, check_flags, check_model
from res_torch.tableau import Tableau, TableauError

__all__ = ["ADAPTIVE_PAIRS", "PIDController", "StepSizeError", "sample_res_adaptive"]

ADAPTIVE_PAIRS = {2: "res_2s", 3: "res_3s"}
"""The tableau of each ``order`` (its ``b_embedded`` gives the order ``order - 1`` estimate)."""
END_TOLERANCE = 1e-5
"""A step that would stop less than this short of ``lambda(sigma_min)`` goes all the way."""

GAIN_MAX = 1e3
"""The largest ``|kP|, |kI|, |kD|``: beyond a few units the controller only switches between
its saturated factors ``1 - pi/4`` and ``1 + pi/2``; the bound keeps ``log rho`` finite."""
LOG_RHO_MAX = 50.0
"""``log rho`` is clipped to ``[-50, 50]``: ``atan(e^50 - 1)`` is ``pi/2`` to float64."""


class PIDController:
    """The step-size controller of the module docstring (``order``: ``p`` of the pair)."""

    def __init__(
        self,
        h: float,
        pcoeff: float,
        icoeff: float,
        dcoeff: float,
        order: int,
        accept_safety: float,
    ) -> None:
        self.h, self.accept_safety = h, accept_safety
        self.exponents = (
            (pcoeff + icoeff + dcoeff) / order,
            -(pcoeff + 2 * dcoeff) / order,
            dcoeff / order,
        )
        self.accepted: list[float] = []  # log e_{n-1}, log e_{n-2}

    def propose(self, error: float) -> bool:
        """Update ``h`` from the error norm of the last attempt; whether to accept it. ``rho``
        is formed in logarithms and clipped to ``e^{+-LOG_RHO_MAX}`` (where ``atan`` has
        saturated), so large gains or errors cannot overflow."""
        log_e = -math.log(error + 1e-8)
        history = (self.accepted + [log_e, log_e])[:2]
        b1, b2, b3 = self.exponents
        log_rho = b1 * log_e + b2 * history[0] + b3 * history[1]
        rho = math.exp(min(max(log_rho, -LOG_RHO_MAX), LOG_RHO_MAX))
        factor = 1 + math.atan(rho - 1)
        self.h *= factor
        accept = factor >= self.accept_safety
        if accept:
            self.accepted = [log_e, history[0]]
        return accept


def _affine(start: torch.Tensor, weights: Sequence[float], values: list[torch.Tensor]):
    """``start + sum_j weights_j values_j``, accumulated in ``start`` (a tensor made here)."""
    for weight, value in zip(weights, values, strict=False):
        if weight != 0.0:
            start.add_(value, alpha=weight)
    return start


def _embedded_step(
    evaluate: Callable, x: torch.Tensor, first: torch.Tensor, step: StepCoefficients
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_{n+1}`` and ``err`` of one step (``first = D(x_n, sigma_n)``)."""
    values = [first]
    for i, sigma in enumerate(step.sigmas[1:]):
        u = _affine(x * step.stage_decay[i], step.stage_weights[i], values)
        values.append(evaluate(u, sigma))
    x_next = _affine(x * step.decay, step.weights, values)
    difference = [w - e for w, e in zip(step.weights, step.weights_embedded, strict=True)]
    return x_next, _affine(torch.zeros_like(x), difference, values)


def _error_norm(
    err: torch.Tensor, x: torch.Tensor, x_next: torch.Tensor, rtol: float, atol: float
) -> float:
    delta = torch.maximum(x.abs(), x_next.abs()).mul_(rtol).clamp_min_(atol)
    return float(torch.linalg.vector_norm(err / delta) / math.sqrt(err.numel()))


def _tolerances(sigma_min: Any, sigma_max: Any, rtol: Any, atol: Any, h_min: Any):
    """``sigma_min, sigma_max, rtol, atol, h_min`` as checked floats."""
    low, high = (
        real("sigma_min", sigma_min, StepSizeError),
        real("sigma_max", sigma_max, StepSizeError),
    )
    if not 0 < low < high:
        raise SigmasError(f"need 0 < sigma_min < sigma_max, got {low} and {high}")
    numbers = [
        real(n, v, StepSizeError) for n, v in (("rtol", rtol), ("atol", atol), ("h_min", h_min))
    ]
    if min(numbers) <= 0:
        raise StepSizeError(f"rtol, atol, h_min must be > 0, got {numbers}")
    return low, high, *numbers


def _controller_options(
    h_init: Any, pcoeff: Any, icoeff: Any, dcoeff: Any, safety: Any, max_steps: Any
) -> tuple[float, list[float], float, int]:
    """``h_init, [pcoeff, icoeff, dcoeff], accept_safety`` as checked floats, ``max_steps`` as
    an ``int``."""
    h = real("h_init", h_init, StepSizeError)
    if h <= 0:
        raise StepSizeError(f"h_init must be > 0, got {h}")
    gains = [
        real(n, v, StepSizeError)
        for n, v in (("pcoeff", pcoeff), ("icoeff", icoeff), ("dcoeff", dcoeff))
    ]
    if max(abs(g) for g in gains) > GAIN_MAX:
        raise StepSizeError(f"pcoeff, icoeff, dcoeff must lie in [-{GAIN_MAX:g}, {GAIN_MAX:g}]")
    if sum(gains) <= 0:
        raise StepSizeError(f"pcoeff + icoeff + dcoeff must be > 0, got {sum(gains)}")
    safety = real("accept_safety", safety, StepSizeError)
    if not 0 < safety <= 1:
        raise StepSizeError(f"accept_safety must be in (0, 1], got {safety}")
    return h, gains, safety, integer("max_steps", max_steps, 1, None, StepSizeError)


def _pair(order: int | None, method: str | Path | Tableau | None) -> Tableau:
    """The tableau with ``b_embedded`` that ``order``/``method`` select."""
    if method is not None and order is not None:
        raise StepSizeError("pass order= (2 or 3) or method=, not both")
    if method is None:
        order = 3 if order is None else order
        if order not in ADAPTIVE_PAIRS:
            raise StepSizeError(f"order must be 2 or 3, got {order!r}")
        method = ADAPTIVE_PAIRS[order]
    described = method_of(method)
    tableau = described.tableau
    if described.family != "erk" or tableau is None:
        raise TableauError(f"{described.name!r} is not a single-step exponential tableau")
    if tableau.b_embedded is None:
        raise TableauError(f"tableau {tableau.name!r} has no b_embedded (no error estimate)")
    return tableau


def sample_res_adaptive(
    model: Denoiser,
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    order: int | None = None,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
    accept_safety: float = 0.81,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: Callable | None = None,
    return_info: bool = False,
    *,
    method: str | Path | Tableau | None = None,
    h_min: float = 1e-5,
    max_steps: int = 10_000,
    **params: float,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, int]]:
    """Sample from ``x`` at ``sigma_max`` with adaptive RES steps to ``sigma_min``, then denoise.

    Arguments as k-diffusion's ``sample_dpm_adaptive`` (module docstring for the formulas):
    ``order`` 3 (default, RES-3S with its RES-2S estimate) or 2 (RES-2S with exponential Euler);
    ``method`` instead names any single-step tableau with ``b_embedded``, ``params`` its free
    parameters (``c2=...``). ``h_init``: first step in ``lambda``. Only ODE sampling: ``eta``
    must be 0 (``s_noise``, ``noise_sampler`` are then unused). ``callback`` gets ``{'x', 'i',
    'sigma', 'sigma_hat', 'denoised', 'error', 'h', 'accept', 'steps', 'nfe', 'n_accept',
    'n_reject'}`` after every attempted step (``sigma``: where ``x`` now is; ``h``: the next
    proposed step). ``return_info``: also return ``{'steps', 'nfe', 'n_accept', 'n_reject'}``,
    ``nfe`` counting every model call (rejected steps and the final denoising step included).
    :class:`StepSizeError` if a step falls below ``h_min`` or ``max_steps`` attempts do not
    reach ``sigma_min``; :class:`NonFiniteSampleError` on a NaN/inf error estimate.
    """
    low, high, rtol, atol, h_min = _tolerances(sigma_min, sigma_max, rtol, atol, h_min)
    h, gains, safety, max_steps = _controller_options(
        h_init, pcoeff, icoeff, dcoeff, accept_safety, max_steps
    )
    if eta != 0:
        raise NoiseError("sample_res_adaptive samples the ODE only: eta must be 0")
    check_model(model)
    check_flags(disable, check_finite=True)
    if not isinstance(return_info, bool):
        raise TypeError(f"return_info must be True or False, got {return_info!r:.40}")
    if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim < 1:
        raise TypeError("x must be a floating-point tensor with a batch dimension")
    if x.numel() == 0 or x.device.type == "meta":
        raise SampleError("x must hold values: the step-size control measures the error on them")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(dict) or None, got {callback!r}")
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a mapping, got {type(extra_args).__name__}")
    tableau = _pair(order, method)
    tableau.parameter_values(**params)
    controller = PIDController(h, *gains, method_of(tableau).order, safety)
    call = _Evaluator(model, x, dict(extra_args or {}))
    info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
    lam, end, sigma, first = -math.log(high), -math.log(low), high, None
    with tqdm(disable=disable, unit="nfe") as bar:

        def evaluate(u: torch.Tensor, at: float) -> torch.Tensor:
            info["nfe"] += 1
            bar.update()
            return call(u, u.new_full((u.shape[0],), at))

        while lam < end:
            if info["steps"] >= max_steps:
                raise StepSizeError(f"{max_steps} steps did not reach sigma_min (at {sigma:.4g})")
            if controller.h < h_min:
                raise StepSizeError(f"step size {controller.h:.3g} < h_min at sigma {sigma:.4g}")
            lam_next = end if lam + controller.h >= end - END_TOLERANCE else lam + controller.h
            sigma_next = low if lam_next == end else math.exp(-lam_next)
            step = erk_steps(tableau, make_grid([sigma, sigma_next]), params)[0]
            first = evaluate(x, sigma) if first is None else first
            x_next, err = _embedded_step(evaluate, x, first, step)
            error = _error_norm(err, x, x_next, rtol, atol)
            if not math.isfinite(error):
                raise NonFiniteSampleError(f"non-finite error estimate at sigma {sigma:.4g}")
            accept = controller.propose(error)
            info["steps"] += 1
            info["n_accept" if accept else "n_reject"] += 1
            denoised = first
            if accept:
                x, lam, sigma, first = x_next, lam_next, sigma_next, None
            if callback is not None:
                callback(
                    {
                        "x": x,
                        "i": info["steps"] - 1,
                        "sigma": sigma,
                        "sigma_hat": sigma,
                        "denoised": denoised,
                        "error": error,
                        "h": controller.h,
                        "accept": accept,
                        **info,
                    }
                )
        x = evaluate(x, low)
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteSampleError("the final denoising call returned NaN/inf")
    return (x, dict(info)) if return_info else x
