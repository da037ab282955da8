"""Generic exponential steppers in data-prediction (denoiser) form, driven by coefficient tables.

With ``lambda = -log sigma``, ``h = lambda_to - lambda_from`` and the denoiser ``D``, the
probability-flow ODE ``dx/dlambda = -x + D(x, e^{-lambda})`` is stepped by an explicit
exponential Runge–Kutta method (Hochbruck & Ostermann 2010, eq. 2.20; ``docs/tableau_format.md``
with ``L = -1``)::

    U_i     = e^{-c_i h} x_n + h sum_{j<i} a_ij D(U_j, sigma_n e^{-c_j h})
    x_{n+1} = e^{-h}     x_n + h sum_i    b_i  D(U_i, sigma_n e^{-c_i h})

A multistep method has one stage; its other "stages" are the denoiser values stored at the
previous ``j - 1`` steps, at nodes ``c_j = (lambda_{n-j+1} - lambda_n) / h_n`` taken from the
actual ``lambda`` of those evaluations (so variable step ratios are exact), and it begins with the
tableau's ``startup`` methods. A start-up method may be a multistep tableau or a single-step one
with any number of stages; a single-step start-up step runs all its stages (as
:func:`run_singlestep` would on that step) and stores its first stage value ``D(x_n, sigma_n)``
(node ``lambda_n``) as the history value of the step. Starting values of local error
``O(h^{p})`` keep the global order ``p`` of a ``p``-th order multistep method (e.g. RES-3M starts
with a RES-2S step; Hairer, Nørsett & Wanner, *Solving ODEs I*, sect. III.2). A step to
``sigma = 0`` returns the denoiser output (1 NFE).

All coefficients of a run are computed once, in float64 on the host (:meth:`Tableau.evaluate`),
and moved to the sample's device once; the loops contain no host-device synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import trange

from res_torch.grid import StepGrid
from res_torch.noise import NoiseSampler
from res_torch.tableau import Tableau, TableauError, load_tableau

__all__ = [
    "Denoiser",
    "MultistepCoefficients",
    "NonFiniteSampleError",
    "SinglestepCoefficients",
    "erk_coefficients",
    "multistep_coefficients",
    "run_multistep",
    "run_singlestep",
]

Denoiser = Callable[..., torch.Tensor]


class NonFiniteSampleError(ValueError):
    """The sample became NaN or infinite (usually: the model returned NaN/inf)."""


@dataclass(frozen=True)
class SinglestepCoefficients:
    """Float64 coefficients of an ``s``-stage single-step method on an ``N``-step grid::

        U_i     = stage_decay[n, i] x_n + sum_{j<i} stage_weights[n, i, j] D_j
        D_i     = D(U_i, stage_sigma[n, i])
        x_{n+1} = decay[n] x_n + sum_i weights[n, i] D_i

    (for an exponential method ``decay = e^{-h}``, ``weights = h b``, ``stage_decay = e^{-c h}``,
    ``stage_weights = h A``). ``stage_used[i][j]`` / ``weight_used[i]`` say which entries are
    structurally non-zero; the others are skipped. Denoising steps are not in these tables.
    """

    decay: torch.Tensor
    weights: torch.Tensor
    stage_decay: torch.Tensor
    stage_weights: torch.Tensor
    stage_sigma: torch.Tensor
    stage_used: tuple[tuple[bool, ...], ...]
    weight_used: tuple[bool, ...]

    @property
    def stages(self) -> int:
        return self.weights.shape[1]


@dataclass(frozen=True)
class MultistepCoefficients:
    """Float64 coefficients of a multistep method on an ``N``-step grid::

        x_{n+1} = decay[n] x_n + sum_{j < used[n]} weights[n, j] D_{n-j}

    where ``D_{n-j}`` is the denoiser value of step ``n - j`` (``D_n`` the current one) and
    ``used[n]`` the number of values the method of step ``n`` (start-up or main) needs.
    A step whose method (``methods[n]``) is a key of ``singlestep`` is instead a step of that
    multi-stage single-step start-up method, with the coefficients ``singlestep[methods[n]]``
    (on the whole grid; its rows here are zero and ``used[n]`` is 1: the history value it
    leaves is its first stage value ``D_n``).
    """

    decay: torch.Tensor
    weights: torch.Tensor
    used: tuple[int, ...]
    methods: tuple[str, ...]
    singlestep: Mapping[str, SinglestepCoefficients]


def erk_coefficients(
    tableau: Tableau, grid: StepGrid, values: Mapping[str, float] | None = None
) -> SinglestepCoefficients:
    """Coefficients of a single-step tableau on ``grid`` (``Tableau.evaluate`` at every ``h``)."""
    if tableau.is_multistep:
        raise TableauError(f"{tableau.name!r} is a multistep method; use multistep_coefficients")
    n, s = grid.steps, tableau.stages
    finite = ~torch.tensor(grid.denoising, dtype=torch.bool)
    h = grid.h[finite]
    step = grid.lambda_step[finite]
    c, a, b = tableau.evaluate(h, dict(values or {}))
    decay = torch.zeros(n, dtype=torch.float64)
    weights = torch.zeros(n, s, dtype=torch.float64)
    stage_decay = torch.ones(n, s, dtype=torch.float64)
    stage_weights = torch.zeros(n, s, s, dtype=torch.float64)
    stage_sigma = grid.sigma_hat[:, None].expand(n, s).clone()
    decay[finite] = torch.exp(-h)
    weights[finite] = h[:, None] * b
    stage_decay[finite] = torch.exp(-c * h[:, None])
    stage_weights[finite] = h[:, None, None] * a
    stage_sigma[finite] = grid.sigma_hat[finite][:, None] * torch.exp(-c * step[:, None])
    weights[~finite, 0] = 1.0
    return SinglestepCoefficients(
        decay=decay,
        weights=weights,
        stage_decay=stage_decay,
        stage_weights=stage_weights,
        stage_sigma=stage_sigma,
        stage_used=tuple(tuple(bool(entry) for entry in row) for row in tableau.a),
        weight_used=tuple(bool(entry) for entry in tableau.b),
    )


def multistep_coefficients(
    tableau: Tableau,
    grid: StepGrid,
    values: Mapping[str, float] | None = None,
    load: Callable[[str], Tableau] = load_tableau,
) -> MultistepCoefficients:
    """Coefficients of a multistep tableau (with its start-up methods) on ``grid``.

    Start-up methods are multistep tableaux or single-step ones; those with more than one stage
    get :func:`erk_coefficients` on the whole grid (``MultistepCoefficients.singlestep``). The
    history nodes of step ``n`` are ``c_j = (lambda_{n-j+1} - lambda_n) / h_n`` with
    ``lambda_m = -log sigma_hat_m`` the point of step ``m``'s denoiser evaluation and ``h_n`` the
    step in ``lambda`` (``grid.lambda_step``).
    """
    values = dict(values or {})
    fixed = set(values) & set(tableau.history_parameters)
    if fixed:
        raise TableauError(
            f"{sorted(fixed)} are history nodes of {tableau.name!r}; they are set from the grid"
        )
    n = grid.steps
    startup = tableau.startup_tableaux(load)
    methods = [startup[m] if m < len(startup) else tableau for m in range(n)]
    for m, method in enumerate(methods):
        needs = method.stages if method.is_multistep else 1
        if needs > m + 1:
            raise TableauError(
                f"{method.name!r} needs {needs - 1} previous values at step {m} of {tableau.name!r}"
            )
    singlestep = {
        method.name: erk_coefficients(method, grid)
        for method in methods
        if not method.is_multistep and method.stages > 1
    }
    smax = max(1 if method.name in singlestep else method.stages for method in methods)
    h = grid.h
    lam = grid.lambda_hat
    denoising = grid.denoising
    decay = torch.zeros(n, dtype=torch.float64)
    weights = torch.zeros(n, smax, dtype=torch.float64)
    for name in dict.fromkeys(method.name for method in methods):
        steps = [m for m in range(n) if methods[m].name == name and not denoising[m]]
        if not steps or name in singlestep:
            continue
        method = methods[steps[0]]
        index = torch.tensor(steps)
        hs = h[index]
        step_values: dict[str, Any] = dict(values) if method is tableau else {}
        for j, parameter in enumerate(method.history_parameters, start=1):
            step_values[parameter] = (lam[index - j] - lam[index]) / grid.lambda_step[index]
        _, _, b = method.evaluate(hs, step_values)
        decay[index] = torch.exp(-hs)
        weights[index, : method.stages] = hs[:, None] * b
    used = [
        1 if denoising[m] or methods[m].name in singlestep else methods[m].stages for m in range(n)
    ]
    weights[torch.tensor(denoising, dtype=torch.bool), 0] = 1.0
    return MultistepCoefficients(
        decay=decay,
        weights=weights,
        used=tuple(used),
        methods=tuple(method.name for method in methods),
        singlestep=singlestep,
    )


def _coefficient_dtype(x: torch.Tensor) -> torch.dtype:
    """Coefficients are applied in at least float32 (half-precision scalars lose too much)."""
    return torch.promote_types(x.dtype, torch.float32)


def _on_device(table: torch.Tensor, x: torch.Tensor) -> list:
    """``table`` moved to ``x``'s device once, as nested lists of 0-d tensors (views)."""
    moved = table.to(device=x.device, dtype=_coefficient_dtype(x))

    def split(t: torch.Tensor) -> list:
        return list(t.unbind(0)) if t.ndim == 1 else [split(row) for row in t.unbind(0)]

    return split(moved)


class _AffineRow:
    """One row of a method over all steps: ``out = a_n x + sum_{j in columns} w_nj D_j``.

    Where the weights of a step sum to ``1 - a_n`` (consistency: ``h sum_i b_i = 1 - e^{-h}``,
    and likewise the row sums of ``A``) and there are at most two terms, the row is applied as
    linear interpolations, ``lerp(D_1, x, a)`` or ``lerp(lerp(D_1, D_2, w_2/(1 - a)), x, a)``,
    which read and write memory fewer times than ``a x`` followed by one ``addcmul_`` per term.
    Otherwise (and for denoising steps) it is ``a x`` plus ``addcmul_``. Which form each step
    uses is decided on the host before the loop.
    """

    def __init__(
        self, decay: torch.Tensor, weights: torch.Tensor, columns: list[int], x: torch.Tensor
    ) -> None:
        self.columns = columns
        used = weights[:, columns]
        complement = 1 - decay
        consistent = (used.sum(-1) - complement).abs() <= 1e-14
        self.as_lerp = (consistent & (complement > 0)).tolist() if len(columns) in (1, 2) else []
        last = used[:, -1] if columns else torch.zeros_like(decay)
        ratio = last / complement.clamp_min(torch.finfo(torch.float64).tiny)
        self.decay = _on_device(decay, x)
        self.weights = _on_device(weights, x)
        self.ratio = _on_device(ratio, x)

    def __call__(
        self, i: int, x: torch.Tensor, values: list[torch.Tensor], out: torch.Tensor | None
    ) -> torch.Tensor:
        """The row at step ``i``, written into ``out`` (which aliases none of the inputs) or
        into a new tensor when ``out`` is None."""
        columns = self.columns
        if self.as_lerp and self.as_lerp[i]:
            if len(columns) == 1:
                return torch.lerp(values[columns[0]], x, self.decay[i], out=out)
            mixed = torch.lerp(values[columns[0]], values[columns[1]], self.ratio[i], out=out)
            return mixed.lerp_(x, self.decay[i])
        result = torch.mul(x, self.decay[i], out=out)
        for j in columns:
            result.addcmul_(self.weights[i][j], values[j])
        return result


class _SinglestepUpdate:
    """The stages and update of a single-step method (:class:`SinglestepCoefficients`) at a
    non-denoising step ``i``, given the first stage value ``D_1 = D(x_n, stage_sigma[i, 0])``::

        U_i = stage_decay[i] x_n + sum_j stage_weights[i, j] D_j,   D_i = D(U_i, stage_sigma[i])
        x_{n+1} = decay x_n + sum_i weights[i] D_i
    """

    def __init__(self, coefficients: SinglestepCoefficients, x: torch.Tensor) -> None:
        s = coefficients.stages
        self.stage_rows = [
            _AffineRow(
                coefficients.stage_decay[:, stage],
                coefficients.stage_weights[:, stage],
                [j for j in range(stage) if coefficients.stage_used[stage][j]],
                x,
            )
            for stage in range(1, s)
        ]
        self.update = _AffineRow(
            coefficients.decay,
            coefficients.weights,
            [j for j in range(s) if coefficients.weight_used[j]],
            x,
        )
        self.stage_sigma = _on_device(coefficients.stage_sigma, x)

    def __call__(
        self,
        i: int,
        x: torch.Tensor,
        first: torch.Tensor,
        evaluate: _Evaluator,
        workspace: _Workspace,
        live: list[torch.Tensor],
    ) -> torch.Tensor:
        """``x_{n+1}``; ``live`` are further tensors whose memory must not be overwritten."""
        denoised = [first]
        for stage, row in enumerate(self.stage_rows, start=1):
            u = row(i, x, denoised, workspace.take([x, *denoised, *live]))
            denoised.append(evaluate(u, self.stage_sigma[i][stage]))
        return self.update(i, x, denoised, workspace.take([x, *denoised, *live]))


class _Workspace:
    """Three reusable buffers for the iterates and stage values, so the loop allocates nothing
    itself (on the CPU every fresh 3 MB tensor costs page faults). Disabled (every result a new
    tensor) when a callback may keep references to the iterates."""

    def __init__(self, x: torch.Tensor, enabled: bool) -> None:
        self.buffers = [torch.empty_like(x) for _ in range(3)] if enabled else []

    def take(self, live: list[torch.Tensor]) -> torch.Tensor | None:
        """A buffer sharing memory with none of ``live`` (model outputs may alias their input),
        or None."""
        taken = {t.untyped_storage().data_ptr() for t in live}
        for buffer in self.buffers:
            if buffer.untyped_storage().data_ptr() not in taken:
                return buffer
        return None


def _check_inputs(model: Any, x: Any, extra_args: Any) -> dict:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, sigma, **extra_args), got {model!r}")
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError("x must have a batch dimension (ndim >= 1)")
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise TypeError(f"extra_args must be a mapping, got {type(extra_args).__name__}")
    return dict(extra_args or {})


class _Evaluator:
    """Calls ``model(x, sigma * ones(batch), **extra_args)``, checks the output's shape and
    brings it to the sample's dtype."""

    def __init__(self, model: Denoiser, x: torch.Tensor, extra_args: dict) -> None:
        self.model, self.extra_args = model, extra_args
        self.s_in = x.new_ones([x.shape[0]])

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        denoised = self.model(x, sigma * self.s_in, **self.extra_args)
        if not torch.is_tensor(denoised) or denoised.shape != x.shape:
            shape = tuple(denoised.shape) if torch.is_tensor(denoised) else type(denoised).__name__
            raise ValueError(f"model returned {shape}, expected a tensor of shape {tuple(x.shape)}")
        return denoised.to(x.dtype)  # e.g. half-precision output under autocast


def _finish(x: torch.Tensor, check_finite: bool) -> torch.Tensor:
    """One check after the loop: NaN/inf anywhere makes the sum non-finite (summed in at least
    float32, which cannot overflow for finite samples of any sensible size)."""
    total = x.sum(dtype=_coefficient_dtype(x)) if check_finite else None
    if total is not None and not bool(torch.isfinite(total)):
        raise NonFiniteSampleError(
            "the sample contains NaN/inf: the model returned non-finite values (or the step "
            "sizes are too large for the dtype); pass check_finite=False to return it anyway"
        )
    return x


class _GridNoise:
    """The churn and per-step noise of a run (:class:`StepGrid`), scales on the device once.

    Churn (EDM Algorithm 2) raises the noise level from ``sigma_i`` to ``sigma_hat_i`` and draws
    ``noise_sampler(sigma_hat_i, sigma_i)``; the step's ancestral/SDE noise draws
    ``noise_sampler(sigma_i, sigma_{i+1})``: disjoint intervals, so a Brownian-tree sampler gives
    independent draws.
    """

    def __init__(self, grid: StepGrid, x: torch.Tensor, sampler: NoiseSampler | None) -> None:
        self.churn_scale = _on_device(grid.churn_noise, x)
        self.step_scale = _on_device(grid.step_noise, x)
        self.has_churn = (grid.churn_noise > 0).tolist()
        self.has_step_noise = (grid.step_noise > 0).tolist()
        if (any(self.has_churn) or any(self.has_step_noise)) and sampler is None:
            raise ValueError("a stochastic run needs a noise_sampler")
        self.sampler = sampler

    def churn(self, i: int, x: torch.Tensor, sigma: Any, sigma_hat: Any) -> torch.Tensor:
        if not self.has_churn[i]:
            return x
        return x + self.churn_scale[i] * self.sampler(sigma_hat, sigma)

    def step(self, i: int, x: torch.Tensor, sigma: Any, sigma_next: Any) -> torch.Tensor:
        if not self.has_step_noise[i]:
            return x
        return x + self.step_scale[i] * self.sampler(sigma, sigma_next)


def run_singlestep(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    grid: StepGrid,
    coefficients: SinglestepCoefficients,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run a single-step method (see :class:`SinglestepCoefficients`) over ``grid``.

    ``sigmas`` is the caller's schedule tensor (passed through to ``callback``).
    """
    evaluate = _Evaluator(model, x, _check_inputs(model, x, extra_args))
    step = _SinglestepUpdate(coefficients, x)
    stage_sigma = step.stage_sigma
    noise = _GridNoise(grid, x, noise_sampler)
    denoising = grid.denoising
    workspace = _Workspace(x, enabled=callback is None)
    for i in trange(grid.steps, disable=disable):
        x = noise.churn(i, x, sigmas[i], stage_sigma[i][0])
        denoised = evaluate(x, stage_sigma[i][0])
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": stage_sigma[i][0],
                 "denoised": denoised}
            )  # fmt: skip
        x = denoised if denoising[i] else step(i, x, denoised, evaluate, workspace, [])
        x = noise.step(i, x, sigmas[i], sigmas[i + 1])
    return _finish(x, check_finite)


def run_multistep(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    grid: StepGrid,
    coefficients: MultistepCoefficients,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: NoiseSampler | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Run a multistep method (see :class:`MultistepCoefficients`) over ``grid``: one
    denoiser evaluation per step, at ``sigma_hat``, except for the steps of multi-stage
    single-step start-up methods, which evaluate all their stages."""
    evaluate = _Evaluator(model, x, _check_inputs(model, x, extra_args))
    rows = {
        used: _AffineRow(coefficients.decay, coefficients.weights, list(range(used)), x)
        for used in set(coefficients.used)
    }
    singlestep = {
        name: _SinglestepUpdate(table, x) for name, table in coefficients.singlestep.items()
    }
    step_singlestep = [singlestep.get(name) for name in coefficients.methods]
    sigma_hat = _on_device(grid.sigma_hat, x)
    noise = _GridNoise(grid, x, noise_sampler)
    denoising = grid.denoising
    workspace = _Workspace(x, enabled=callback is None)
    keep = max(coefficients.used) - 1
    history: list[torch.Tensor] = []
    for i in trange(grid.steps, disable=disable):
        x = noise.churn(i, x, sigmas[i], sigma_hat[i])
        denoised = evaluate(x, sigma_hat[i])
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat[i],
                 "denoised": denoised}
            )  # fmt: skip
        if denoising[i]:
            x = denoised
        elif step_singlestep[i] is not None:
            x = step_singlestep[i](i, x, denoised, evaluate, workspace, history)
        else:
            values = [denoised, *history]
            x = rows[coefficients.used[i]](i, x, values, workspace.take([x, *values]))
        if keep:
            history = [denoised, *history[: keep - 1]]
        x = noise.step(i, x, sigmas[i], sigmas[i + 1])
    return _finish(x, check_finite)
