"""The reference loop: the readable statement of every method (k-diffusion style).

One update per line, allocating freely, reading the tables of :mod:`res_torch.coefficients`;
the tests use it as the oracle of the fast in-place loop (:func:`res_torch.steppers.run`), and
the diffusers schedulers advance with its :func:`stage_input` and :func:`step_output`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from res_torch.coefficients import Coefficients, StepCoefficients
from res_torch.errors import ModelOutputError, NoiseError, ResError
from res_torch.grid import StepGrid
from res_torch.noise import NoiseSampler

__all__ = [
    "checked_noise_sampler",
    "checked_output",
    "corrected_output",
    "corrected_values",
    "prediction",
    "sample_reference",
    "stage_input",
    "step_output",
    "validated_output",
]


def checked_output(
    value: Any, x: torch.Tensor, what: str = "model", error: type[ResError] = ModelOutputError
) -> torch.Tensor:
    """``value``, returned by the model (or a noise sampler) for the sample ``x``, as a tensor
    of ``x``'s dtype; ``error`` unless it is a floating-point tensor of ``x``'s shape on ``x``'s
    device (an int tensor would be truncated, a ``(1, d)`` one broadcast over the batch). The
    usual case costs three attribute comparisons and no synchronisation."""
    if (
        torch.is_tensor(value)
        and value.dtype == x.dtype
        and value.shape == x.shape
        and value.device == x.device
    ):
        return value
    return validated_output(value, x, what, error).to(x.dtype)  # e.g. half under autocast


def validated_output(
    value: Any, x: torch.Tensor, what: str = "model", error: type[ResError] = ModelOutputError
) -> torch.Tensor:
    """``value`` unchanged (its dtype kept) unless it is not a floating-point tensor of ``x``'s
    shape on ``x``'s device (``error``; the checks of :func:`checked_output`)."""
    if not torch.is_tensor(value):
        raise error(f"{what} returned {type(value).__name__}, expected a tensor of shape "
                    f"{tuple(x.shape)}")  # fmt: skip
    if value.shape != x.shape:
        raise error(f"{what} returned shape {tuple(value.shape)}, expected {tuple(x.shape)}")
    if not value.is_floating_point():
        raise error(f"{what} returned dtype {value.dtype}, expected a floating-point tensor")
    if value.device != x.device:
        raise error(f"{what} returned a tensor on {value.device}, expected {x.device}")
    return value


def checked_noise_sampler(sampler: NoiseSampler, x: torch.Tensor) -> NoiseSampler:
    """``sampler`` with its draws checked by :func:`checked_output` (:class:`NoiseError`)."""

    def draw(sigma: Any, sigma_next: Any) -> torch.Tensor:
        return checked_output(sampler(sigma, sigma_next), x, "noise_sampler", NoiseError)

    return draw


def prediction(kind: str, x: torch.Tensor, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
    """The stored value ``Y``: ``D`` (``"denoised"``) or ``eps = (x - D)/sigma`` (``"noise"``)."""
    return denoised if kind == "denoised" else (x - denoised) / sigma


def stage_input(step: StepCoefficients, i: int, x: torch.Tensor, values: Sequence) -> torch.Tensor:
    """``U_i = stage_decay x_n + sum_j stage_weights_j Y_j`` (stage ``i >= 1``, from 0)."""
    u = step.stage_decay[i - 1] * x
    for weight, value in zip(step.stage_weights[i - 1], values, strict=False):
        u = u + weight * value
    return u


def step_output(step: StepCoefficients, x: torch.Tensor, values: Sequence) -> torch.Tensor:
    """``x_{n+1} = decay x_n + sum_j weights_j V_j``, ``V`` = stage values, then history."""
    x_next = step.decay * x
    for weight, value in zip(step.weights, values, strict=False):
        x_next = x_next + weight * value
    return x_next


def corrected_output(
    step: StepCoefficients, x: torch.Tensor, values: Sequence, new: torch.Tensor
) -> torch.Tensor:
    """``x_{n+1} = decay x_n + sum_j corrector_j V_j + corrector_new Y_new``."""
    *weights, weight_new = step.corrector
    x_next = step.decay * x
    for weight, value in zip(weights, values, strict=False):
        x_next = x_next + weight * value
    return x_next + weight_new * new


def corrected_values(
    step: StepCoefficients,
    kind: str,
    x_corrected: torch.Tensor,
    x_predicted: torch.Tensor,
    denoised: torch.Tensor,
    value: torch.Tensor,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next step's ``(D, Y)`` after a correction: ``(D(x^p), Y(x^p))`` (PEC), or with
    ``step.linearisation = c`` ``D = D(x^p) + c (x_{n+1} - x^p)`` and ``Y`` from it at
    ``x_{n+1}``."""
    if step.linearisation is None:
        return denoised, value
    linearised = denoised + step.linearisation * (x_corrected - x_predicted)
    return linearised, prediction(kind, x_corrected, linearised, sigma)


def sample_reference(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    grid: StepGrid,
    table: Coefficients,
    noise_sampler: NoiseSampler | None = None,
    extra_args: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Run ``table`` on ``grid`` (draws noise in the same order as the fast loop)."""
    extra_args, s_in, history = dict(extra_args or {}), x.new_ones(x.shape[0]), []
    if noise_sampler is not None:
        noise_sampler = checked_noise_sampler(noise_sampler, x)
    pending = None  # (D, Y) evaluated at the predicted point of a corrected step
    for n, step in enumerate(table.steps):
        if grid.churn_noise[n] > 0:
            x = x + grid.churn_noise[n].item() * noise_sampler(grid.sigma_hat[n], grid.sigma[n])
        if pending is not None:
            (denoised, first), pending = pending, None
        else:
            if step.guessed:  # the free first step: D taken as 0, no evaluation
                denoised = torch.zeros_like(x)
            else:
                denoised = checked_output(model(x, step.sigmas[0] * s_in, **extra_args), x)
            first = prediction(table.prediction, x, denoised, step.sigmas[0])
        if step.denoising:
            x = denoised
        else:
            values = [first]
            for i in range(1, step.stages):
                u = stage_input(step, i, x, values)
                denoised_i = checked_output(model(u, step.sigmas[i] * s_in, **extra_args), u)
                values.append(prediction(table.prediction, u, denoised_i, step.sigmas[i]))
            x_next = step_output(step, x, values + history)
            if step.corrector:
                sigma_new = table.steps[n + 1].sigmas[0]
                denoised_new = checked_output(model(x_next, sigma_new * s_in, **extra_args), x_next)
                new = prediction(table.prediction, x_next, denoised_new, sigma_new)
                x_corrected = corrected_output(step, x, values + history, new)
                pending = corrected_values(step, table.prediction, x_corrected, x_next,
                                           denoised_new, new, sigma_new)  # fmt: skip
                x_next = x_corrected
            x = x_next
            history = [values[0], *history][: table.history]
        if grid.step_noise[n] > 0:
            x = x + grid.step_noise[n].item() * noise_sampler(grid.sigma[n], grid.sigma_next[n])
    return x
