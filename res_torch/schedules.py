"""Noise-level schedules: plain functions returning ``n`` decreasing sigmas followed by 0.

Names and formulas follow k-diffusion (``k_diffusion/sampling.py``) and EDM (Karras et al. 2022).
All return a tensor of shape ``(n + 1,)`` (default float64 on the CPU), computed on the CPU in
float64 and rounded once to ``dtype``, then moved to ``device``: the same grid on every device,
and a float32 grid within rounding of the exact one (k-diffusion computes in float32: its float32
Karras grid differs from this one by up to 2e-6 relative). A grid that is not finite, strictly
decreasing and inside the samplers' range in ``dtype`` is a :class:`ScheduleError`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from res_torch.checks import integer, positive, real
from res_torch.errors import AdapterError, ScheduleError
from res_torch.grid import SIGMA_MAX

__all__ = [
    "ScheduleError",
    "DIFFUSERS_SPACINGS",
    "DISCRETE_SPACINGS",
    "alphas_cumprod_from_betas",
    "discrete_timesteps",
    "get_sigmas_beta",
    "get_sigmas_discrete",
    "get_sigmas_exponential",
    "get_sigmas_flow",
    "get_sigmas_karras",
    "get_sigmas_polyexponential",
    "get_sigmas_uniform",
    "get_sigmas_vp",
]


MAX_STEPS = 100_000
"""The most nonzero noise levels a schedule makes, and the largest budget
:func:`res_torch.sigmas_for_nfe` takes (far beyond any sampling run: a bad ``n`` is refused
instead of allocating gigabytes)."""
MAX_TRAIN_TIMESTEPS = 100_000
"""The largest ``num_train_timesteps`` of a discrete-time model (trained models use 1000–4000)."""


def _check_n(n: Any) -> int:
    """``n``, the number of nonzero sigmas, as an ``int`` in ``[1, MAX_STEPS]``."""
    return integer("n (number of nonzero sigmas)", n, 1, MAX_STEPS, ScheduleError)


def _real(name: str, value: Any) -> float:
    return real(name, value, ScheduleError)


def _positive(name: str, value: Any) -> float:
    return positive(name, value, ScheduleError)


def _check_dtype(dtype: Any) -> None:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ScheduleError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")


def _check_range(sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
    low, high = _real("sigma_min", sigma_min), _real("sigma_max", sigma_max)
    if not 0 < low < high:
        raise ScheduleError(
            f"need finite 0 < sigma_min < sigma_max, got sigma_min={low}, sigma_max={high}"
        )
    return low, high


def _device(device: Any) -> torch.device:
    try:
        return torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as error:
        raise ScheduleError(f"device: {error}") from None


def _ramp(n: int, dtype: torch.dtype) -> torch.Tensor:
    """``i / (n - 1)`` for ``i = 0..n-1`` (just ``[0]`` when ``n = 1``), on the CPU."""
    return torch.linspace(0, 1, n, dtype=dtype)


def _finish(sigmas: torch.Tensor, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """``sigmas`` (computed on the CPU) in ``dtype``, then 0, on ``device``: refused unless they
    are finite, strictly decreasing and inside the samplers' range ``[1/SIGMA_MAX, SIGMA_MAX]``
    in ``dtype`` (parameters that overflow, or a range or step count that ``dtype`` cannot
    resolve)."""
    target = _device(device)
    exact, sigmas = sigmas.to(torch.float64), sigmas.to(dtype)
    if not (
        torch.isfinite(sigmas).all()
        and (sigmas > 0).all()  # not rounded to 0 in dtype
        and (sigmas[1:] < sigmas[:-1]).all()
        and 1 / SIGMA_MAX <= exact.min() <= exact.max() <= SIGMA_MAX  # the samplers' range
    ):
        shown = ", ".join(f"{v:.4g}" for v in sigmas[:3].tolist())
        raise ScheduleError(
            f"the parameters give no valid grid in {dtype} (finite, strictly decreasing, in "
            f"[{1 / SIGMA_MAX:g}, {SIGMA_MAX:g}]), got [{shown}, ...] ({len(sigmas)} levels, "
            f"min {sigmas.min().item():.4g})"
        )
    try:
        return torch.cat([sigmas, sigmas.new_zeros(1)]).to(target)
    except (RuntimeError, AssertionError) as error:  # a CPU-only torch asserts for "cuda"
        raise ScheduleError(f"device {target}: {error}") from None


def get_sigmas_karras(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """EDM (Karras et al. 2022, eq. 5): ``sigma_i = (sigma_max^{1/rho} + i/(n-1)
    (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho``, then 0."""
    n = _check_n(n)
    _check_dtype(dtype)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    rho = _positive("rho", rho)
    try:
        top, bottom = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    except OverflowError:
        raise ScheduleError(f"rho={rho} is too small for sigma_max={sigma_max}") from None
    return _finish((top + _ramp(n, torch.float64) * (bottom - top)) ** rho, device, dtype)


def get_sigmas_exponential(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Uniform in ``lambda = -log sigma``: ``sigma_i = exp(log sigma_max + i/(n-1)
    (log sigma_min - log sigma_max))``, then 0."""
    n = _check_n(n)
    _check_dtype(dtype)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    top, bottom = math.log(sigma_max), math.log(sigma_min)
    return _finish(torch.exp(top + _ramp(n, torch.float64) * (bottom - top)), device, dtype)


def get_sigmas_uniform(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Uniform in ``sigma`` (the paper's "suboptimal" schedule): ``sigma_i = sigma_max + i/(n-1)
    (sigma_min - sigma_max)``, then 0."""
    n = _check_n(n)
    _check_dtype(dtype)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    ramp = _ramp(n, torch.float64)
    return _finish(sigma_max + ramp * (sigma_min - sigma_max), device, dtype)


def get_sigmas_flow(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    shift: float = 3.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """A rectified-flow grid (SD3, Flux; Esser et al. 2024) in VE noise levels: flow times
    uniform in ``tau`` and shifted, ``t = shift tau/(1 + (shift - 1) tau)``, with ``sigma =
    t/(1 - t)``; since ``sigma = shift tau/(1 - tau)``, the grid is uniform in ``tau =
    sigma/(sigma + shift)`` between ``sigma_max`` and ``sigma_min``, then 0 (``shift = 3``: SD3's
    default; diffusers' ``FlowMatchEulerDiscreteScheduler`` with ``shift``, cut to the range)."""
    n = _check_n(n)
    _check_dtype(dtype)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    shift = _positive("shift", shift)
    top, bottom = sigma_max / (sigma_max + shift), sigma_min / (sigma_min + shift)
    tau = top + _ramp(n, torch.float64) * (bottom - top)  # 1 - tau cancels: in float64
    return _finish(shift * tau / (1 - tau), device, dtype)


def get_sigmas_beta(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    alpha: float = 0.6,
    beta: float = 0.6,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Beta schedule (Lee et al. 2024, "Beta sampling is all you need"; diffusers'
    ``use_beta_sigmas``): ``sigma_i = sigma_min + F^{-1}_{Beta(alpha, beta)}(1 - i/(n-1))
    (sigma_max - sigma_min)``, then 0. Needs scipy."""
    n = _check_n(n)
    _check_dtype(dtype)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    alpha, beta = _positive("alpha", alpha), _positive("beta", beta)
    try:
        import scipy.stats
    except ImportError:  # pragma: no cover - scipy comes with diffusers
        raise ScheduleError("the beta schedule needs scipy (pip install scipy)") from None
    ramp = _ramp(n, torch.float64).numpy()
    quantiles = torch.as_tensor(scipy.stats.beta.ppf(1 - ramp, alpha, beta), dtype=torch.float64)
    return _finish(sigma_min + quantiles * (sigma_max - sigma_min), device, dtype)


def get_sigmas_polyexponential(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """k-diffusion's polyexponential schedule: ``log sigma_i = log sigma_min + (1 - i/(n-1))^rho
    (log sigma_max - log sigma_min)``, then 0 (``rho = 1`` is the exponential schedule)."""
    n = _check_n(n)
    _check_dtype(dtype)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    rho = _positive("rho", rho)
    ramp = (1 - _ramp(n, torch.float64)) ** rho
    bottom, top = math.log(sigma_min), math.log(sigma_max)
    return _finish(torch.exp(bottom + ramp * (top - bottom)), device, dtype)


def get_sigmas_vp(
    n: int,
    beta_d: float = 19.9,
    beta_min: float = 0.1,
    eps_s: float = 1e-3,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """VP-SDE, uniform in time (Song et al. 2021; EDM Table 1): ``t_i = 1 + i/(n-1) (eps_s - 1)``,
    ``sigma_i = sqrt(exp(beta_d t_i^2 / 2 + beta_min t_i) - 1)``, then 0."""
    n = _check_n(n)
    _check_dtype(dtype)
    beta_d, beta_min, eps_s = (
        _real("beta_d", beta_d),
        _real("beta_min", beta_min),
        _real("eps_s", eps_s),
    )
    for name, value in (("beta_d", beta_d), ("beta_min", beta_min)):
        if value < 0:
            raise ScheduleError(f"{name} must be finite and >= 0, got {value}")
    if beta_d + beta_min <= 0:
        raise ScheduleError("beta_d + beta_min must be > 0")
    if not (0 < eps_s < 1):
        raise ScheduleError(f"eps_s must be in (0, 1), got {eps_s}")
    t = 1 + _ramp(n, torch.float64) * (eps_s - 1)
    return _finish(torch.sqrt(torch.expm1(beta_d * t**2 / 2 + beta_min * t)), device, dtype)


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> list[float]:
    """Nichol & Dhariwal 2021, eq. 17: ``abar(t) = cos^2((t + 0.008)/1.008 pi/2)`` and
    ``beta_i = min(1 - abar((i+1)/T)/abar(i/T), max_beta)`` (diffusers' ``betas_for_alpha_bar``)."""

    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    big_t = num_train_timesteps
    return [min(1 - abar((i + 1) / big_t) / abar(i / big_t), max_beta) for i in range(big_t)]


def alphas_cumprod_from_betas(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
    trained_betas: Any = None,
) -> torch.Tensor:
    """``abar_t = prod_{s<=t} (1 - beta_s)`` for diffusers' beta schedules (float64 tensor).

    Computed in float32 exactly as diffusers does (models were trained with those values), then
    widened to float64.

    ``linear``: ``beta`` linear from ``beta_start`` to ``beta_end``; ``scaled_linear``: ``sqrt
    beta`` linear (latent diffusion); ``squaredcos_cap_v2``: the cosine schedule of Nichol &
    Dhariwal 2021; ``trained_betas`` overrides all. Every ``beta`` must lie in ``[0, 1]`` (else
    ``abar`` leaves ``[0, 1]``), ``num_train_timesteps`` in ``[2, MAX_TRAIN_TIMESTEPS]``.
    """
    big_t = integer(
        "num_train_timesteps", num_train_timesteps, 2, MAX_TRAIN_TIMESTEPS, ScheduleError
    )
    beta_start, beta_end = _real("beta_start", beta_start), _real("beta_end", beta_end)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0 <= value <= 1:
            raise ScheduleError(f"{name} must lie in [0, 1], got {value}")
    if trained_betas is not None:
        try:
            betas = torch.as_tensor(np.asarray(trained_betas), dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ScheduleError(f"trained_betas must be a 1-d list of numbers ({error})") from None
        if betas.ndim != 1 or not 2 <= betas.numel() <= MAX_TRAIN_TIMESTEPS:
            raise ScheduleError(
                f"trained_betas must be 1-d with 2 to {MAX_TRAIN_TIMESTEPS} entries, got shape "
                f"{tuple(betas.shape)}"
            )
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, big_t, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        root = torch.linspace(beta_start**0.5, beta_end**0.5, big_t, dtype=torch.float32)
        betas = root**2
    elif beta_schedule == "squaredcos_cap_v2":
        betas = torch.tensor(_cosine_betas(big_t), dtype=torch.float32)
    else:
        raise ScheduleError(
            f"unknown beta_schedule {beta_schedule!r}; "
            "use 'linear', 'scaled_linear', 'squaredcos_cap_v2' or trained_betas"
        )
    if not bool(torch.all((betas >= 0) & (betas <= 1))):  # NaN too
        raise ScheduleError(
            f"betas must lie in [0, 1], got range [{betas.min().item():.4g}, "
            f"{betas.max().item():.4g}]"
        )
    return torch.cumprod(1 - betas, dim=0).to(torch.float64)


DIFFUSERS_SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing")
"""diffusers' ``timestep_spacing`` values (DPM-Solver's rules in :func:`discrete_timesteps`)."""
DISCRETE_SPACINGS: tuple[str, ...] = ("normal", "sgm_uniform", "simple", *DIFFUSERS_SPACINGS)
"""Timestep spacings of :func:`discrete_timesteps`: k-diffusion's and ComfyUI's (``normal``,
``sgm_uniform``, ``simple``) and :data:`DIFFUSERS_SPACINGS`."""


def discrete_timesteps(
    n: int,
    num_train_timesteps: int = 1000,
    spacing: str = "normal",
    steps_offset: int = 0,
    unclipped: int | None = None,
    raw: bool = False,
) -> torch.Tensor:
    """``n`` decreasing timesteps in ``[0, T - 1]`` (``T = num_train_timesteps``; float64).

    * ``normal``: ``linspace(T - 1, 0, n)``, fractional (k-diffusion's
      ``DiscreteSchedule.get_sigmas``, ComfyUI's ``normal`` scheduler);
    * ``sgm_uniform``: ``linspace(T - 1, 0, n + 1)`` without its last entry (ComfyUI);
    * ``simple``: ``T - 1 - floor(i T / n)`` for ``i = 0..n-1`` (ComfyUI's ``simple``: every
      ``T/n``-th training level from the top);
    * ``linspace``, ``leading`` (plus ``steps_offset``), ``trailing``: integer timesteps as
      diffusers' ``DPMSolverMultistepScheduler.set_timesteps`` computes them (DDIM's and
      Euler's ``trailing`` agree; their ``linspace`` and ``leading`` space ``n`` points, not
      ``n + 1``) over the first ``L = unclipped`` timesteps (default ``T``; DPM-Solver's
      ``lambda_min_clipped`` removes the others): ``round(linspace(0, L - 1, n + 1))``
      reversed without its last entry, ``i floor(L / (n + 1))`` for ``i = n..1``, and
      ``round(L - i T / n) - 1`` for ``i = 0..n-1``, clamped to ``[0, T - 1]``.

    ``raw=True`` returns DPM-Solver's list as it is, for the schedulers that reproduce it:
    repeated timesteps (n close to ``T``; the schedulers drop them), an extra last
    ``trailing`` entry (its float ``arange`` overshoots for some ``n``, e.g. 61 of 1000) and
    fewer than ``n`` entries for a clipped ``trailing``. Otherwise a spacing that cannot give
    ``n`` distinct timesteps is a :class:`ScheduleError`, as is a bad argument and a
    ``steps_offset`` that moves timesteps past ``T - 1`` (raw: past ``T``; Stable Diffusion's
    ``leading`` spacing with ``steps_offset=1`` reaches ``T``, which diffusers' sigma lookup
    clamps to ``T - 1``; a larger overshoot would silently shorten the run).

    >>> discrete_timesteps(4, 1000, "trailing").tolist()
    [999.0, 749.0, 499.0, 249.0]
    >>> discrete_timesteps(4, 1000, "simple").tolist()
    [999.0, 749.0, 499.0, 249.0]
    """
    n = _check_n(n)
    big_t = integer(
        "num_train_timesteps", num_train_timesteps, 2, MAX_TRAIN_TIMESTEPS, ScheduleError
    )
    if spacing not in DISCRETE_SPACINGS:
        raise ScheduleError(
            f"unknown timestep spacing {spacing!r}; known: {', '.join(DISCRETE_SPACINGS)}"
        )
    if unclipped is not None and spacing not in DIFFUSERS_SPACINGS:
        raise ScheduleError(f"unclipped applies to diffusers' spacings, not {spacing!r}")
    last = big_t if unclipped is None else integer("unclipped", unclipped, 1, big_t, ScheduleError)
    offset = integer("steps_offset", steps_offset, 0, big_t - 1, ScheduleError)
    if offset and spacing != "leading":
        raise ScheduleError(f"steps_offset shifts 'leading' timesteps only, not {spacing!r} ones")
    if spacing in ("simple", *DIFFUSERS_SPACINGS) and n > big_t and not raw:
        raise ScheduleError(f"{spacing!r} spacing has at most {big_t} distinct timesteps, n={n}")
    if spacing == "normal":
        ts = np.linspace(big_t - 1, 0, n)
    elif spacing == "sgm_uniform":
        ts = np.linspace(big_t - 1, 0, n + 1)[:-1]
    elif spacing == "simple":
        ts = big_t - 1 - np.floor(np.arange(n) * (big_t / n))
    elif spacing == "linspace":
        ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ts = (np.arange(n + 1) * (last // (n + 1))).round()[::-1][:-1] + offset
    else:  # trailing
        ts = np.arange(last, 0, -big_t / n).round() - 1
        ts = ts if raw else ts[:n]
    top = big_t if raw else big_t - 1  # raw: DPM-Solver's leading + 1 reaches T (clipped)
    if (offset or not raw) and ts.size and ts.max() > top:
        name = "T" if raw else "T - 1"
        raise ScheduleError(f"steps_offset={offset} moves timesteps past {name} = {top}")
    ts = np.clip(ts, 0, big_t - 1)
    if not raw and (ts.size != n or not np.all(np.diff(ts) < 0)):
        raise ScheduleError(
            f"{spacing!r} spacing gives {np.unique(ts).size} distinct timesteps, not n={n}, "
            f"over {big_t} training timesteps ({last} unclipped, offset {offset}); use fewer steps"
        )
    return torch.as_tensor(ts.copy(), dtype=torch.float64)


def get_sigmas_discrete(
    n: int,
    spacing: str = "normal",
    alphas_cumprod: torch.Tensor | None = None,
    steps_offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The noise levels of a discrete-time (DDPM) model at :func:`discrete_timesteps`
    ``(n, len(alphas_cumprod), spacing, steps_offset)``, then 0
    (:meth:`res_torch.adapters.DiscreteSchedule.get_sigmas`).

    ``sigma_t = sqrt((1 - abar_t) / abar_t)``, interpolated linearly in ``log sigma`` between
    integer timesteps (:class:`res_torch.adapters.DiscreteSchedule`, as k-diffusion and ComfyUI
    do). ``alphas_cumprod`` defaults to Stable Diffusion 1.x/2.x/XL's ``scaled_linear`` betas
    0.00085 -> 0.012 over 1000 steps (:func:`alphas_cumprod_from_betas`; sigma 14.61 ->
    0.0292; the table computed in float32, as diffusers does: ComfyUI's float64 table differs
    by up to 1.3e-5 relative); ``spacing="normal"`` is then k-diffusion's and ComfyUI's default
    grid for those models.

    >>> [round(s, 4) for s in get_sigmas_discrete(3).tolist()]
    [14.6146, 1.6156, 0.0292, 0.0]
    """
    _check_dtype(dtype)
    if alphas_cumprod is None:
        alphas_cumprod = alphas_cumprod_from_betas(1000, 0.00085, 0.012, "scaled_linear")
    from res_torch.adapters import DiscreteSchedule  # adapters imports this module

    try:
        table = DiscreteSchedule(torch.as_tensor(alphas_cumprod, dtype=torch.float64))
    except (AdapterError, TypeError, ValueError, RuntimeError) as error:
        raise ScheduleError(f"alphas_cumprod: {error}") from None
    return _finish(table.get_sigmas(n, spacing, steps_offset)[:-1], device, dtype)
