"""RES schedulers for Hugging Face diffusers (optional: ``pip install 'res-torch[diffusers]'``).

:class:`RESMultistepScheduler` and :class:`RESSinglestepScheduler` run any ``res-tableau`` method
(``docs/tableau_format.md``) inside a diffusers denoising loop. The method is solved in the
variance-exploding form of ``docs/MATH.md`` §1, in ``lambda = -log sigma`` with step
``h = log(sigma_n / sigma_{n+1})``::

    U_i     = e^{-c_i h} x_n + h sum_{j<i} a_ij(h) D(U_j, sigma_n e^{-c_j h})
    x_{n+1} = e^{-h}     x_n + h sum_i    b_i(h)  D(U_i, sigma_n e^{-c_i h})

read from the shared tables of :mod:`res_torch.coefficients` (the ones the samplers run; no
coefficient is evaluated here) and applied with :func:`res_torch.reference.stage_input` and
:func:`res_torch.reference.step_output`. Any method of :data:`res_torch.METHODS` runs the same
way (``ipndm``, ``ipndm_v``, ``deis`` in their ``eps`` form). The last step to ``sigma = 0`` is
the denoiser output ``x = D(x, sigma_{N-1})``.

With ``eta > 0`` (config) the schedulers sample the reverse SDE instead, as ``res_torch``'s samplers
do with ``noise_type="sde"`` (:mod:`res_torch.grid`; SDE-DPM-Solver++, Lu et al. 2022): the
coefficients are evaluated at ``h = (1 + eta) log(sigma_n / sigma_{n+1})``, the stages stay at
``sigma_n e^{-c_i log(sigma_n / sigma_{n+1})}``, and each step except the last adds noise of
standard deviation ``s_noise sigma_{n+1} sqrt(1 - e^{-2 eta log(sigma_n / sigma_{n+1})})``, drawn
from the ``generator`` passed to :meth:`step` (for ``dpmpp_2m``: k-diffusion's
``sample_dpmpp_2m_sde``, midpoint form).

The ``sample`` a pipeline hands to :meth:`step` lives in the model's own scale, as in diffusers'
``DPMSolverMultistepScheduler`` and ``FlowMatchEulerDiscreteScheduler`` (``init_noise_sigma = 1``,
:meth:`scale_model_input` is the identity):

* discrete DDPM models (``prediction_type`` ``"epsilon"``, ``"v_prediction"``, ``"sample"``):
  ``x_vp = alpha x`` with ``alpha = 1/sqrt(1 + sigma^2)``, ``sigma^2 = (1 - abar)/abar``; the
  network is called at the *fractional* timestep ``t(sigma)`` interpolated in ``log sigma``
  (:class:`res_torch.adapters.DiscreteSchedule`), the same as
  :class:`res_torch.adapters.DiscreteEpsDenoiser` does, so a scheduler loop and
  ``res_torch``'s samplers on the wrapped network agree.
* flow matching (``"flow_prediction"`` or ``"flow"``): ``x_t = (1 - t) x``, ``sigma = t/(1 - t)``,
  timestep ``t * num_train_timesteps``, velocity ``v = eps - x_0``, ``D = x_t - t v``. A flow
  schedule that starts at ``t = 1`` (``sigma = inf``, where ``lambda`` is undefined) starts at
  the first finite time instead: ``t = 1 - 1/num_train_timesteps`` (the first flow time of
  diffusers' ``DPMSolverMultistepScheduler(use_flow_sigmas=True)``), or the schedule's next
  time when that already lies above it (one step fewer; ``docs/diffusers.md`` says why).

A repeated noise level (a step of length zero, the identity; diffusers' schedulers run it, e.g.
DDPM grids of 1000 or more steps) appears once, so every step count diffusers accepts runs.

``scheduler.timesteps`` holds what the network is called with, ``scheduler.sigmas`` the noise level
of each of those calls and then the final one, in the model's convention as diffusers'
schedulers have them (VE ``sigma`` for DDPM models, flow time ``t`` for flow models), and
``scheduler.ve_sigmas`` the grid in VE noise levels, one per step, ending in 0 (what
``res_torch``'s samplers take). Config keys of the DDPM/DDIM/DPM-Solver/Euler/FlowMatch
schedulers are accepted, so ``RESMultistepScheduler.from_config(pipe.scheduler.config)`` works.
DPM-Solver's keys keep their meaning (``docs/diffusers.md`` has the table): ``solver_order``
picks the RES method of that order when no ``tableau`` is given, ``algorithm_type`` the ODE or
(``sde-*``) the SDE with ``eta = 1``, ``lower_order_final``/``euler_at_final`` lower the order of
the last steps by DPMSolverMultistepScheduler's rule, ``thresholding`` clamps ``D`` as
``_threshold_sample`` does. ``from_config`` warns once (:class:`res_torch.errors.
IgnoredConfigWarning`) naming every key it ignores whose value asks for something else than
these schedulers do, and refuses the config of an EDM-preconditioned network. ``step`` computes
in float32 for float16/bfloat16 inputs, as DPM-Solver does.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
    from diffusers.utils import BaseOutput
except ImportError as exc:  # pragma: no cover - exercised by a test that hides diffusers
    raise ImportError(
        "res_torch.diffusers needs the optional dependency 'diffusers' "
        "(install it with: pip install 'res-torch[diffusers]'); "
        "the rest of res_torch works without it"
    ) from exc

from res_torch.adapters import DiscreteSchedule, denoised_from_output
from res_torch.checks import integer
from res_torch.coefficients import Coefficients, coefficients
from res_torch.errors import IgnoredConfigWarning, NonFiniteSampleError, SchedulerError
from res_torch.grid import StepGrid, make_grid
from res_torch.methods import Method, cached_tableau, method_of
from res_torch.noise import default_noise_sampler
from res_torch.reference import (
    corrected_output,
    corrected_values,
    prediction,
    stage_input,
    step_output,
)
from res_torch.schedules import (
    DIFFUSERS_SPACINGS,
    MAX_TRAIN_TIMESTEPS,
    alphas_cumprod_from_betas,
    discrete_timesteps,
    get_sigmas_beta,
    get_sigmas_exponential,
    get_sigmas_karras,
)
from res_torch.tableau import Tableau, is_path, parse_tableau, read_document

__all__ = [
    "RESMultistepScheduler",
    "RESSchedulerOutput",
    "RESSinglestepScheduler",
    "alphas_cumprod_from_betas",
]

_VP_PREDICTIONS = ("epsilon", "v_prediction", "sample")
_FLOW_PREDICTIONS = ("flow_prediction", "flow")
_ALGORITHMS = ("dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver", "deis")
_VARIANCE_TYPES = (None, "learned", "learned_range", "fixed_small", "fixed_small_log",
                   "fixed_large", "fixed_large_log")  # fmt: skip
_LOWER_ORDER_BELOW = 15
"""``lower_order_final`` acts on runs of fewer steps (DPMSolverMultistepScheduler's rule)."""

_IGNORED: dict[str, tuple[tuple[Any, ...], str]] = {
    "solver_type": (("midpoint", "logrho", "bh1", "bh2"), "the tableau sets the update"),
    "clip_sample": ((False,), "D is not clipped; thresholding=True clamps it"),
    "stochastic_sampling": ((False,), "use eta > 0 for the SDE"),
    "interpolation_type": (("linear",), "noise levels are interpolated in log sigma"),
    "timestep_type": (("discrete",), "the network gets timesteps t(sigma)"),
    "predict_x0": ((True,), "RES integrates the data prediction"),
    "disable_corrector": (([],), "the tableau sets the update"),
    "solver_p": ((None,), "the tableau sets the update"),
}
"""Config keys of diffusers' compatible schedulers that the RES schedulers ignore: the values
with no effect here (DPMSolverMultistepScheduler's defaults, or values diffusers maps to them),
and why any other value is ignored. Any other key outside ``__init__`` is reported too."""
_EDM_KEYS = ("sigma_data", "sigma_schedule")
"""Keys only the schedulers of EDM-preconditioned networks have (EDMEuler, EDMDPMSolver,
CosineDPMSolver, consistency models): such a network is not a DDPM or flow model, so
``from_config`` refuses its config rather than run it on a beta schedule it was not trained on."""
_NO_EFFECT = ("skip_prk_steps", "set_alpha_to_one", "clip_sample_range", "args")
"""Keys that configure another scheduler's own stepping (PNDM's Runge–Kutta steps, DDIM's last
alpha) or only refine an ignored key; never reported."""


SHIFT_MAX = 1e3
"""The largest flow time shift (pipelines use 1..10; at 1e3 the grid of a 1000-step model
ends at t = 0.5, beyond it every time rounds to 1)."""
MU_MAX = 100.0
"""The largest ``|mu|`` of a flow model's dynamic shift (``e^mu`` scales the times; pipelines
use ``mu`` around 0.5..1.2)."""


def _levels(values: Any, what: str) -> np.ndarray:
    """``sigmas`` or ``timesteps`` passed to ``set_timesteps`` as a 1-d float64 array. A tensor
    may be on any device and require grad, as pipelines build them (NumPy reads neither)."""
    try:
        values = _on_host(values) if torch.is_tensor(values) else values
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchedulerError(f"{what} must be a 1-d list of numbers ({exc})") from None
    if array.ndim != 1 or array.size == 0:
        raise SchedulerError(f"{what} must be a non-empty 1-d list, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SchedulerError(f"{what} must be finite, got {_clipped(array)}")
    return array


_INTEGER_OPTIONS = ("num_train_timesteps", "steps_offset", "base_image_seq_len",
                    "max_image_seq_len")  # fmt: skip
_REAL_OPTIONS = ("beta_start", "beta_end", "rho", "shift", "flow_shift", "eta", "s_noise",
                 "dynamic_thresholding_ratio", "sample_max_value",
                 "lambda_min_clipped")  # fmt: skip
_OPTIONAL_REAL_OPTIONS = ("sigma_min", "sigma_max", "shift_terminal", "base_shift", "max_shift")
_RESPACING_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                      "use_lu_lambdas")  # fmt: skip
_BOOLEAN_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                    "use_lu_lambdas", "rescale_betas_zero_snr", "use_flow_sigmas",
                    "use_dynamic_shifting", "invert_sigmas", "lower_order_final",
                    "euler_at_final", "thresholding")  # fmt: skip


def _check_config_types(config: Mapping[str, Any]) -> None:
    """The numeric options of ``__init__`` are numbers and the flags booleans (a tampered
    ``scheduler_config.json`` may hold anything, and the string ``"false"`` is true):
    integers where diffusers uses them as counts, reals elsewhere."""
    for name in _BOOLEAN_OPTIONS:
        if not isinstance(config[name], bool | np.bool_):
            raise SchedulerError(f"{name} must be true or false, got {config[name]!r:.60}")
    for name in _INTEGER_OPTIONS:
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise SchedulerError(f"{name} must be an integer, got {value!r:.60}")
    for name in _REAL_OPTIONS + _OPTIONAL_REAL_OPTIONS:
        value = config[name]
        if value is None and name in _OPTIONAL_REAL_OPTIONS:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise SchedulerError(f"{name} must be a real number, got {value!r:.60}")
    if not 2 <= config["num_train_timesteps"] <= MAX_TRAIN_TIMESTEPS:
        raise SchedulerError(
            f"num_train_timesteps must lie in [2, {MAX_TRAIN_TIMESTEPS}], "
            f"got {config['num_train_timesteps']}"
        )
    if not 0 <= config["steps_offset"] < config["num_train_timesteps"]:
        raise SchedulerError(
            f"steps_offset must lie in [0, num_train_timesteps), got {config['steps_offset']}"
        )
    for name in ("shift", "flow_shift"):
        if not 0 < config[name] <= SHIFT_MAX:
            raise SchedulerError(f"{name} must lie in (0, {SHIFT_MAX:g}], got {config[name]}")
    terminal = config["shift_terminal"]
    if terminal is not None and not 0 <= terminal < 1:  # 0 or None: no terminal shift
        raise SchedulerError(f"shift_terminal must lie in [0, 1), got {terminal}")
    parameters = config["tableau_parameters"]
    if parameters is not None and not (
        isinstance(parameters, Mapping) and all(isinstance(k, str) for k in parameters)
    ):
        raise SchedulerError(
            f"tableau_parameters must map parameter names to numbers, got {parameters!r:.60}"
        )
    betas = config["trained_betas"]
    if betas is not None:
        try:
            betas = np.asarray(betas)
        except (TypeError, ValueError) as error:
            raise SchedulerError(f"trained_betas must be a list of numbers ({error})") from None
        if betas.dtype.kind not in "iuf" or betas.ndim != 1 or not np.all(np.isfinite(betas)):
            shown = str(betas.reshape(-1)[:4].tolist())[:60]
            raise SchedulerError(f"trained_betas must be a 1-d list of finite numbers, got {shown}")
    if betas is not None and len(betas) != config["num_train_timesteps"]:
        raise SchedulerError(
            f"trained_betas has {len(betas)} values for num_train_timesteps="
            f"{config['num_train_timesteps']}; they must agree"
        )


def _tableau_source(tableau: Any) -> tuple[str | Tableau | None, Any]:
    """What :func:`method_of` reads for the ``tableau`` option, and what the config keeps.

    A method or tableau name (or ``None``) is both. A path to a ``res-tableau`` file is read
    once and the config keeps the file's document, so that ``save_pretrained`` writes the
    method itself, not a path that need not exist (or may hold another file) where the config
    is loaded again; only a tableau whose start-up methods are files beside it keeps its path,
    as the document alone would not find them. A document (a saved config's) is validated as a
    file is (:func:`res_torch.tableau.parse_tableau`)."""
    if tableau is None or (isinstance(tableau, str) and not is_path(tableau)):
        return tableau, tableau
    if isinstance(tableau, Mapping):
        return parse_tableau(dict(tableau), "scheduler config 'tableau'"), tableau
    if not isinstance(tableau, str | os.PathLike):
        raise SchedulerError(
            f"tableau must be a method name, a path or a res-tableau document, got {tableau!r:.60}"
        )
    document = read_document(tableau)
    path = Path(tableau)
    loaded = replace(parse_tableau(document, str(path)), folder=path.resolve().parent)
    if any((path.parent / f"{name}.json").is_file() for name in loaded.startup):
        return str(path), str(path)
    return loaded, document


def _sigmas_dtype(device: str | torch.device | None) -> torch.dtype:
    """The dtype of ``scheduler.sigmas`` after ``set_timesteps(device=device)``: float64, the
    grid's own precision, except float32 for Apple's ``mps``, which has no float64 (pipelines
    move ``sigmas`` to the latents' device, e.g. LTX's ``scheduler.sigmas.to(latents.device)``)."""
    on_mps = device is not None and torch.device(device).type == "mps"
    return torch.float32 if on_mps else torch.float64


def _on_host(values: torch.Tensor) -> torch.Tensor:
    """``values`` detached on the host; a ``meta`` tensor, which has no values, is a
    :class:`SchedulerError` (torch raises ``NotImplementedError``)."""
    if values.device.type == "meta":
        raise SchedulerError("a tensor on the meta device has no values to read")
    return values.detach().cpu()


def _host_float64(values: Any) -> torch.Tensor:
    """``values`` (numbers, or a tensor on any device) as a flat float64 CPU tensor. A tensor is
    moved to the host first: one on ``mps`` cannot be converted to float64 where it is."""
    try:
        if torch.is_tensor(values):
            return _on_host(values).flatten().to(torch.float64)
        return torch.as_tensor(values, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError) as error:
        raise SchedulerError(f"timesteps must be numbers, got {values!r:.40} ({error})") from None


def _checked_device(device: Any) -> torch.device | None:
    """``set_timesteps``'s ``device`` as a ``torch.device``, checked to hold tensors before the
    scheduler changes any state: a misspelt name, or ``"cuda"`` on a build without CUDA, is a
    :class:`SchedulerError`, not a ``RuntimeError`` or ``AssertionError`` halfway through."""
    if device is None:
        return None
    try:
        checked = torch.device(device)
        torch.empty(0, device=checked)
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise SchedulerError(
            f"device {device!r:.40} cannot hold tensors ({str(error):.60})"
        ) from None
    return checked


def _clipped(values: Any, k: int = 6) -> str:
    """A short listing of ``values``: the first ``k`` entries and how many more."""
    listed = np.asarray(values).reshape(-1).tolist()
    shown = ", ".join(f"{v:.6g}" for v in listed[:k])
    return f"[{shown}{f', ... ({len(listed) - k} more)' if len(listed) > k else ''}]"


def _values_per_step(method: Method) -> int:
    """DPM-Solver's "order" of a method: the values a step combines (multistep: the current one
    and ``history`` previous ones; single-step: its stages)."""
    return method.history + 1 if method.is_multistep else method.stages


def _standard_normal(
    x: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None
) -> torch.Tensor:
    """Standard normal noise like ``x`` from ``generator``, or from one generator per sample
    (a list, as diffusers' ``randn_tensor`` takes it)."""
    if not isinstance(generator, list | tuple):
        return default_noise_sampler(x, generator)(None, None)
    if len(generator) != x.shape[0]:
        raise SchedulerError(
            f"got {len(generator)} generators for a batch of {x.shape[0]}; pass one per sample"
        )
    return torch.cat([default_noise_sampler(x[i : i + 1], g)(None, None)
                      for i, g in enumerate(generator)])  # fmt: skip


def _threshold(sample: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding (Saharia et al. 2022) exactly as diffusers'
    ``DDPMScheduler._threshold_sample``: per sample ``s = clamp(quantile(|x|, ratio), 1,
    max_value)``, ``x -> clamp(x, -s, s)/s`` (in float32 for half inputs)."""
    if sample.numel() == 0:
        return sample  # nothing to clamp (reshape(0, -1) is ambiguous)
    batch = sample.shape[0]
    flat = sample.reshape(batch, -1)
    flat = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(sample.shape).to(sample.dtype)


@dataclass
class RESSchedulerOutput(BaseOutput):
    """``prev_sample``: the input of the next network call (model scale);
    ``pred_original_sample``: the denoised estimate ``D`` of this call."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _spaced(v_max: float, v_min: float, n: int, config: Any) -> np.ndarray | None:
    """``n`` decreasing noise levels spaced as diffusers does (the schedules of
    :mod:`res_torch.schedules`: Karras ``rho``, exponential for ``use_exponential_sigmas`` and
    ``use_lu_lambdas``, beta), or ``None`` for no respacing. ``config.sigma_min``/``sigma_max``
    override the given ends."""
    v_min = v_min if config.sigma_min is None else float(config.sigma_min)
    v_max = v_max if config.sigma_max is None else float(config.sigma_max)
    if config.use_karras_sigmas:
        spaced = get_sigmas_karras(n, v_min, v_max, rho=float(config.rho))
    elif config.use_exponential_sigmas or config.use_lu_lambdas:
        spaced = get_sigmas_exponential(n, v_min, v_max)
    elif config.use_beta_sigmas:
        spaced = get_sigmas_beta(n, v_min, v_max)
    else:
        return None
    return spaced[:-1].numpy()


class _RESScheduler(SchedulerMixin, ConfigMixin):
    """Configuration, noise schedule and model-output conversion shared by the RES schedulers."""

    _compatibles = [e.name for e in KarrasDiffusionSchedulers] + [
        "FlowMatchEulerDiscreteScheduler",
        "FlowMatchHeunDiscreteScheduler",
    ]
    _default_tableau = ""
    _by_solver_order: dict[int, str] = {}
    _one_call_per_step = False  # multistep: multi-stage start-up methods replaced by DDIM
    _stage_sigmas: torch.Tensor  # VE noise level of every entry of ``timesteps`` (set by _plan)
    _stages: list[tuple[int, int]]  # (step, stage) of every entry of ``timesteps`` (set by _plan)

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        tableau: str | None = None,
        tableau_parameters: dict[str, float] | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_lu_lambdas: bool = False,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        rho: float = 7.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        final_sigmas_type: str = "zero",
        rescale_betas_zero_snr: bool = False,
        use_flow_sigmas: bool = False,
        shift: float = 1.0,
        flow_shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
        shift_terminal: float | None = None,
        invert_sigmas: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        eta: float = 0.0,
        s_noise: float = 1.0,
        solver_order: int | None = None,
        algorithm_type: str = "dpmsolver++",
        lower_order_final: bool = False,
        euler_at_final: bool = False,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        variance_type: str | None = None,
        lambda_min_clipped: float = -math.inf,
    ) -> None:
        _check_config_types(locals())
        if prediction_type not in _VP_PREDICTIONS + _FLOW_PREDICTIONS:
            raise SchedulerError(
                f"prediction_type must be one of {_VP_PREDICTIONS + _FLOW_PREDICTIONS}, "
                f"got {prediction_type!r}"
            )
        self.is_flow = prediction_type in _FLOW_PREDICTIONS
        if use_flow_sigmas and not self.is_flow:
            raise SchedulerError("use_flow_sigmas=True needs prediction_type='flow_prediction'")
        spacings = [use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas, use_lu_lambdas]
        if sum(bool(s) for s in spacings) > 1:
            raise SchedulerError(
                "at most one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas, "
                "use_lu_lambdas may be set"
            )
        if timestep_spacing not in DIFFUSERS_SPACINGS:
            raise SchedulerError(
                f"timestep_spacing must be 'linspace', 'leading' or 'trailing', "
                f"got {timestep_spacing!r}"
            )
        if final_sigmas_type not in ("zero", "sigma_min"):
            raise SchedulerError(
                f"final_sigmas_type must be 'zero' or 'sigma_min', got {final_sigmas_type!r}"
            )
        if time_shift_type not in ("exponential", "linear"):
            raise SchedulerError(
                f"time_shift_type must be 'exponential' or 'linear', got {time_shift_type!r}"
            )
        for name, value in (("eta", eta), ("s_noise", s_noise)):
            if not math.isfinite(value) or value < 0:
                raise SchedulerError(f"{name} must be finite and >= 0, got {value}")
        if invert_sigmas:
            raise SchedulerError(
                "invert_sigmas=True (Mochi) is not supported by the RES schedulers"
            )
        if rescale_betas_zero_snr:
            raise SchedulerError(
                "rescale_betas_zero_snr=True gives sigma_max = inf, where lambda = -log sigma is "
                "undefined; the RES schedulers do not support it"
            )
        if shift != 1.0 and flow_shift != 1.0 and shift != flow_shift:
            raise SchedulerError(
                f"shift={shift} and flow_shift={flow_shift} disagree; set only one"
            )
        if algorithm_type not in _ALGORITHMS:
            raise SchedulerError(
                f"algorithm_type must be one of {_ALGORITHMS}, got {algorithm_type!r}"
            )
        if variance_type not in _VARIANCE_TYPES:
            raise SchedulerError(
                f"variance_type must be one of {_VARIANCE_TYPES}, got {variance_type!r}"
            )
        if not 0 <= dynamic_thresholding_ratio <= 1:
            raise SchedulerError(
                f"dynamic_thresholding_ratio must lie in [0, 1], got {dynamic_thresholding_ratio}"
            )
        if not sample_max_value > 0:
            raise SchedulerError(f"sample_max_value must be > 0, got {sample_max_value}")
        if math.isnan(lambda_min_clipped):
            raise SchedulerError("lambda_min_clipped must not be NaN")

        by_order = self._by_order(solver_order)  # checks solver_order even with a tableau
        source, stored = _tableau_source(tableau)
        if stored is not tableau:
            self.register_to_config(tableau=stored)
        self.method = method_of(source or by_order)
        values = _values_per_step(self.method)
        order = min(values, max(self._by_solver_order))  # the order DPM-Solver's key can name
        if solver_order is None:  # a saved config names it, so DPM-Solver, UniPC, DEIS load it
            self.register_to_config(solver_order=order)
        elif tableau and order != solver_order:
            shown = repr(tableau) if isinstance(tableau, str) else repr(self.method.name)
            warnings.warn(
                f"{type(self).__name__}: tableau={shown} wins over solver_order="
                f"{solver_order} ({self.method.name} combines {values} values per step)",
                IgnoredConfigWarning,
                stacklevel=3,
            )
        self.tableau = self.method.tableau
        self._check_method()
        if algorithm_type in ("dpmsolver", "sde-dpmsolver"):  # "deis": DEIS's ODE, as DPM-Solver
            warnings.warn(
                f"{type(self).__name__}: algorithm_type={algorithm_type!r} runs as "
                f"{'sde-dpmsolver++' if algorithm_type.startswith('sde') else 'dpmsolver++'} "
                f"({self.method.name} integrates the data prediction D)",
                IgnoredConfigWarning,
                stacklevel=3,
            )
        # sde-dpmsolver(++) is the reverse SDE: the SDE form with eta = 1 unless eta is set
        self.eta = eta if eta > 0 or not algorithm_type.startswith("sde") else 1.0
        if self.eta > 0 and "sde" not in self.method.noise_types:
            raise SchedulerError(f"{self.method.name} steps in sigma and has no SDE form (eta > 0)")
        coefficients(self.method, make_grid([2.0, 1.0, 0.5, 0.0]), self._free_parameters())

        if self.is_flow:
            self.schedule: DiscreteSchedule | None = None
            self.alphas_cumprod = None
        else:
            alphas_cumprod = alphas_cumprod_from_betas(
                num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas
            )
            self.schedule = DiscreteSchedule(alphas_cumprod)
            self.alphas_cumprod = alphas_cumprod.to(torch.float32)
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0, dtype=torch.float64)
        self.ve_sigmas = torch.empty(0, dtype=torch.float64)
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._last_begin: int | None = None  # the largest begin index (set_timesteps)

    # ----------------------------------------------------------------- solver state
    def _check_method(self) -> None:
        raise NotImplementedError

    def _by_order(self, solver_order: int | None) -> str:
        """The method of DPM-Solver's ``solver_order`` (the class default for ``None``)."""
        if solver_order is None:
            return self._default_tableau
        if solver_order not in self._by_solver_order:
            raise SchedulerError(f"solver_order must be 1, 2 or 3, got {solver_order!r}")
        return self._by_solver_order[solver_order]

    def _lower(self, values: int) -> tuple[str | Method, dict]:
        """The method (and parameters) that runs a step of ``self.method`` with at most
        ``values`` values: a multistep tableau's own start-up method of that order (DDIM for
        a multi-stage one), an Adams method with ``max_order``, a ``lagrange`` one with
        ``values``, Euler for Heun, ``res_2s`` /
        DDIM for single-step tableaux."""
        method = self.method
        if method.family == "adams":
            return method, {"max_order": values}
        if method.family == "lagrange":
            return method, {"values": values}
        if method.family == "sigma_rk":
            return "euler", {}
        if method.is_multistep:  # the start-up tableau itself: its name may be a file's
            lower = method_of(method.tableau.startup_tableaux(cached_tableau)[values - 1])
            return ("ddim" if not lower.is_multistep and lower.stages > 1 else lower), {}
        return ("ddim" if values == 1 else "res_2s"), {}

    def _lowered_steps(self) -> dict[int, int]:
        """Step index -> the most values it may combine (``lower_order_final``: the last step
        1, the one before 2, for runs of fewer than 15 steps; ``euler_at_final``: the last 1)."""
        n, config, limits = self.num_inference_steps, self.config, {}
        if config.lower_order_final and n < _LOWER_ORDER_BELOW:
            limits = {n - 2: 2, n - 1: 1}
        if config.euler_at_final:
            limits[n - 1] = 1
        return {step: k for step, k in limits.items() if step >= 0}

    def _free_parameters(self) -> dict[str, float]:
        return dict(self.config.tableau_parameters or {})

    def _tables(self, start: int) -> tuple[StepGrid, Coefficients]:
        """The shared tables (:mod:`res_torch.coefficients`) of the run over ``sigmas[start:]``
        (with ``eta > 0``: the SDE form, ``noise_type="sde"``). Multi-stage start-up methods
        are replaced by DDIM (``one_evaluation_startup``) in the multistep scheduler, which makes
        one network call per step, and in any run that starts mid-schedule (it cannot add calls
        to ``timesteps``). A step of :meth:`_lowered_steps` that
        combines more values than allowed takes its table from the lower method's tables on
        the same grid (:meth:`_lower`)."""
        grid = make_grid(
            self.ve_sigmas[start:], eta=self.eta, s_noise=self.config.s_noise, noise_type="sde"
        )
        table = coefficients(
            self.method, grid, self._free_parameters(),
            one_evaluation_startup=self._one_call_per_step or start > 0,
        )  # fmt: skip
        steps, names = list(table.steps), list(table.methods)
        own = {self.method.name: self.method}  # names of a tableau file's methods: not shipped
        if self.method.tableau is not None:
            startup = self.method.tableau.startup_tableaux(cached_tableau)
            own.update({t.name: method_of(t) for t in startup})
        for n, values in self._lowered_steps().items():
            m = n - start
            if m < 0 or steps[m].denoising:
                continue
            running = own.get(names[m]) or method_of(names[m])
            if running.family != "adams" and _values_per_step(running) <= values:
                continue
            lower, parameters = self._lower(values)
            lowered = coefficients(lower, grid, parameters, one_evaluation_startup=True)
            steps[m], names[m] = lowered.steps[m], lowered.methods[m]
        return grid, Coefficients(table.prediction, tuple(steps), tuple(names))

    def _plan(self) -> None:
        """Lay out ``timesteps``: every evaluation of every step of the run from step 0."""
        grid, table = self._tables(0)
        self._stages = [(n, i) for n, step in enumerate(table.steps) for i in range(step.stages)]
        self._stage_sigmas = torch.tensor(
            [sigma for step in table.steps for sigma in step.sigmas], dtype=torch.float64
        )
        self._run = (0, grid, table)
        self._reset()

    def _start(self, index: int) -> None:
        """Start a run at ``timesteps[index]``, the first evaluation of a step."""
        n, i = self._stages[index]
        if i != 0:
            raise SchedulerError(
                f"timesteps[{index}] is stage {i + 1} of step {n}, not a step start"
            )
        self._step_index = index
        if n == 0:
            self._run = (0, *self._tables(0))
        else:
            grid, table = self._tables(n)
            listed = [m for m, _ in self._stages if m >= n]
            if [m for k, step in enumerate(table.steps) for m in [n + k] * step.stages] != listed:
                raise SchedulerError(
                    f"a run of {self.method.name!r} cannot start at step {n}: its evaluations "
                    "there differ from those listed in timesteps"
                )
            self._run = (n, grid, table)
        self._reset()

    def _reset(self) -> None:
        """Forget the solver state (a new run starts at ``step_index``)."""
        self._history: list[torch.Tensor] = []
        self._x_n: torch.Tensor | None = None
        self._values: list[torch.Tensor] = []
        self._corrector: tuple | None = None  # (step, x_n, values) of a step awaiting its D

    def _advance(
        self, x: torch.Tensor, denoised: torch.Tensor
    ) -> tuple[torch.Tensor, float, float]:
        """Take the VE state and this call's ``D``; return the next VE state, its sigma and the
        standard deviation of the SDE noise to add to it (0 within a step and for the ODE), by
        the reference loop's arithmetic (:mod:`res_torch.reference`)."""
        n, i = self._stages[self._step_index]
        start, grid, table = self._run
        step = table.steps[n - start]
        value = prediction(table.prediction, x, denoised, step.sigmas[i])
        if i == 0 and self._corrector is not None:  # the previous step's corrector, from this D
            previous, x_previous, inputs = self._corrector
            self._corrector = None
            corrected = corrected_output(previous, x_previous, inputs, value)
            denoised, value = corrected_values(
                previous, table.prediction, corrected, x, denoised, value, step.sigmas[0]
            )
            x = corrected
        if step.denoising:
            return denoised, 0.0, 0.0
        if i == 0:
            self._x_n, self._values = x, []
        elif self._x_n is None or len(self._values) != i:
            raise SchedulerError(f"{type(self).__name__}.step called out of stage order")
        self._values.append(value)
        if i + 1 < step.stages:
            return stage_input(step, i + 1, self._x_n, self._values), step.sigmas[i + 1], 0.0
        x_next = step_output(step, self._x_n, self._values + self._history)
        if step.corrector:  # hand back the predictor; the next call's D corrects this step
            self._corrector = (step, self._x_n, self._values + self._history)
        self._history = [self._values[0], *self._history][: table.history]
        return x_next, float(grid.sigma_next[n - start]), float(grid.step_noise[n - start])

    # ----------------------------------------------------------------- diffusers API
    @property
    def step_index(self) -> int | None:
        """Index into ``timesteps`` of the next :meth:`step` call."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]`` (pipelines call this for img2img).

        As diffusers' schedulers do, an index at or past the end of ``timesteps`` is accepted:
        img2img at strength 0 sets ``t_start * order`` with ``t_start`` the pipeline's step
        count, and its loop over ``timesteps[begin_index:]`` then makes no call (a :meth:`step`
        there raises, as DPM-Solver's, UniPC's and FlowMatch's do). Larger indices than such a
        ``t_start * order`` (:meth:`set_timesteps`) are refused, and negative ones.
        """
        if isinstance(begin_index, bool) or not isinstance(begin_index, numbers.Integral):
            raise SchedulerError(f"begin_index must be an int, got {begin_index!r:.60}")
        last = self._last_begin
        if not 0 <= begin_index <= (math.inf if last is None else last):
            bound = ">= 0" if last is None else f"in [0, {last}]"
            raise SchedulerError(f"begin_index must be {bound}, got {begin_index}")
        self._begin_index = int(begin_index)

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The identity: ``sample`` is already in the model's scale."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | np.ndarray | None = None,
        mu: float | None = None,
        timesteps: list[float] | np.ndarray | None = None,
    ) -> None:
        """Build the grid of ``num_inference_steps`` steps, or from ``sigmas`` / ``timesteps``.

        ``sigmas`` are VE noise levels for DDPM models (k-diffusion's convention) and flow times
        ``t`` for flow models (``FlowMatchEulerDiscreteScheduler``'s, shifted as there).
        ``timesteps`` are training timesteps for DDPM models (refused with a respacing option
        such as ``use_karras_sigmas``, as by DPM-Solver; custom ``sigmas`` are used as given, as
        by ``EulerDiscreteScheduler``); a flow model takes them as
        FlowMatchEulerDiscreteScheduler does without ``sigmas``, as the flow times ``timesteps /
        num_train_timesteps``, shifted as ``sigmas`` are (the network is then called at the
        shifted times, where FlowMatch calls it at the timesteps as given and warns that the two
        may disagree; without a shift they are the same). A trailing ``0`` in ``sigmas`` or
        flow ``timesteps`` is allowed; the final noise level comes from ``final_sigmas_type``
        either way. ``mu`` is the resolution-dependent time shift of flow models
        (``use_dynamic_shifting=True``): ``t -> e^mu/(e^mu + 1/t - 1)`` (exponential) or
        ``mu/(mu + 1/t - 1)`` (linear); without dynamic shifting a flow model ignores it, as
        ``FlowMatchEulerDiscreteScheduler`` does (flow pipelines always pass one).

        Afterwards ``timesteps`` lists the network's timestep of every call, ``sigmas`` the
        noise level of every call and then the final one, in the model's convention as
        diffusers' schedulers have them (VE ``sigma`` for DDPM models, flow time ``t`` for flow
        models; ``len(sigmas) = len(timesteps) + 1``), and ``ve_sigmas`` the run's grid, one VE
        noise level per step and the final one: what ``res_torch``'s samplers take.
        ``timesteps`` (float32) are on ``device``; ``sigmas`` and ``ve_sigmas`` stay on the
        host, in float64 (``sigmas`` in float32 for an ``mps`` device, which has no float64).
        Bad arguments raise :class:`SchedulerError` before anything changes, so the previous
        schedule stays usable.
        """
        if sigmas is not None and timesteps is not None:
            raise SchedulerError("pass either sigmas or timesteps, not both")
        device = _checked_device(device)  # every check before the first change of state
        if num_inference_steps is None and sigmas is None and timesteps is None:
            raise SchedulerError("set_timesteps needs num_inference_steps, sigmas or timesteps")
        if mu is not None and (
            isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not abs(mu) <= MU_MAX
        ):
            raise SchedulerError(
                f"mu must be a real number in [-{MU_MAX}, {MU_MAX}], got {mu!r:.60}"
            )
        if mu is not None and not self.config.use_dynamic_shifting:
            if not self.is_flow or self.config.use_flow_sigmas:  # DPM-Solver asserts this
                raise SchedulerError("mu is only used with use_dynamic_shifting=True")
            mu = None  # as FlowMatchEulerDiscreteScheduler: flow pipelines always pass mu
        if self.config.use_dynamic_shifting and mu is None:
            raise SchedulerError("use_dynamic_shifting=True needs mu in set_timesteps")
        big_t = self.config.num_train_timesteps
        if num_inference_steps is not None:
            num_inference_steps = integer(
                "num_inference_steps", num_inference_steps, 1,
                big_t, SchedulerError,
            )  # fmt: skip
        grid = self._noise_levels(num_inference_steps, sigmas, mu, timesteps)
        self.ve_sigmas = torch.tensor(grid.tolist(), dtype=torch.float64)
        self.num_inference_steps = len(grid) - 1
        self._plan()
        self.timesteps = self._timesteps_of(self._stage_sigmas).to(device=device)
        levels = torch.cat([self._stage_sigmas, self.ve_sigmas[-1:]])
        levels = levels / (1 + levels) if self.is_flow else levels
        self.sigmas = levels.to(_sigmas_dtype(device))
        # img2img's largest begin index, t_start * order: t_start is at most the pipeline's step
        # count, the one asked for here or (retrieve_timesteps with sigmas) len(timesteps)
        self._last_begin = self.order * max(num_inference_steps or 0, len(self.timesteps))
        self._step_index = None
        self._begin_index = None

    def _noise_levels(
        self, n: int | None, sigmas: Any, mu: float | None, timesteps: Any
    ) -> np.ndarray:
        """The VE noise levels of the run, with the final one; a repeated level (a step of
        length zero, the identity, which diffusers' schedulers run) appears once."""
        if self.is_flow:
            ve = self._flow_grid(n, sigmas, mu, timesteps)
        else:
            ve = self._vp_grid(n, sigmas, timesteps)
        if self.config.final_sigmas_type == "zero":
            grid = np.append(ve, 0.0)
        else:  # "sigma_min": end at the smallest training noise level, no denoising step
            big_t = self.config.num_train_timesteps
            last = (
                float(self._flow_t_to_sigma(torch.tensor(1 / big_t)))
                if self.is_flow
                else self.schedule.sigma_min
            )
            grid = ve if math.isclose(ve[-1], last, rel_tol=1e-9) else np.append(ve, last)
        grid = grid[np.append(True, grid[1:] != grid[:-1])]
        if len(grid) < 2 or not np.all(np.diff(grid) < 0):
            raise SchedulerError(f"noise levels must decrease strictly, got {_clipped(grid)}")
        return grid

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> RESSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """Consume one network evaluation; return the input of the next one.

        ``generator`` (or a list of one per sample) draws the noise of a stochastic run (config
        ``eta > 0``, or an ``sde-*`` ``algorithm_type``) in the computing dtype, as DPM-Solver's
        ``randn_tensor`` does;
        ``variance_noise`` (standard normal, shaped like ``sample``) replaces the draw. Both are
        unused otherwise. float16/bfloat16 inputs are stepped in float32 and the results
        returned in the sample's dtype. With ``return_dict=False`` returns ``(prev_sample,
        pred_original_sample)``.
        """
        if self.num_inference_steps is None:
            raise SchedulerError("call set_timesteps before step")
        self._check_step_inputs(model_output, sample, variance_noise)
        if self._step_index is None:
            self._init_step_index(timestep)
        if self._step_index >= len(self._stage_sigmas):
            raise SchedulerError("all steps are done; call set_timesteps to sample again")
        if self.config.variance_type in ("learned", "learned_range"):
            if model_output.ndim < 2 or model_output.shape[1] != 2 * sample.shape[1]:
                raise SchedulerError(
                    f"variance_type={self.config.variance_type!r} needs twice the sample's "
                    f"channels in model_output, got {tuple(model_output.shape)} for "
                    f"{tuple(sample.shape)}"
                )
            model_output = model_output[:, : sample.shape[1]]  # the mean; the variance unused
        if model_output.shape != sample.shape:
            raise SchedulerError(
                f"model_output has shape {tuple(model_output.shape)}, the sample "
                f"{tuple(sample.shape)}; they must be equal"
            )
        # float16/bfloat16 are stepped in float32 (as DPMSolverMultistepScheduler does)
        dtype = torch.promote_types(
            torch.promote_types(sample.dtype, model_output.dtype), torch.float32
        )
        sigma = float(self._stage_sigmas[self._step_index])
        x = sample.to(dtype) / self._scale(sigma)
        denoised = self._denoised(model_output.to(dtype), x, sigma)
        if self.config.thresholding:
            denoised = _threshold(
                denoised, self.config.dynamic_thresholding_ratio, self.config.sample_max_value
            )
        x_next, sigma_next, noise = self._advance(x, denoised)
        if noise > 0:  # the SDE noise after a completed step, drawn as res_torch's samplers do
            if variance_noise is None:
                variance_noise = _standard_normal(x_next, generator)
            elif variance_noise.shape != sample.shape:
                raise SchedulerError(
                    f"variance_noise has shape {tuple(variance_noise.shape)}, the sample "
                    f"{tuple(sample.shape)}; they must be equal"
                )
            x_next = x_next + noise * variance_noise.to(x_next)
        self._step_index += 1
        prev = (x_next * self._scale(sigma_next)).to(sample.dtype)
        if self._step_index == len(self._stage_sigmas) and not bool(torch.isfinite(prev).all()):
            raise NonFiniteSampleError(
                "the sample contains NaN/inf after the last step: the model returned "
                "non-finite values"
            )
        denoised = denoised.to(sample.dtype)
        if not return_dict:
            return prev, denoised
        return RESSchedulerOutput(prev_sample=prev, pred_original_sample=denoised)

    def _check_step_inputs(self, model_output: Any, sample: Any, variance_noise: Any) -> None:
        """Tensors of a floating dtype on one device, the sample shaped like the run's state."""
        named = [("model_output", model_output), ("sample", sample)]
        if variance_noise is not None:
            named.append(("variance_noise", variance_noise))
        for name, value in named:
            if not torch.is_tensor(value) or not value.is_floating_point():
                kind = value.dtype if torch.is_tensor(value) else type(value).__name__
                raise SchedulerError(f"{name} must be a floating-point tensor, got {kind}")
        for name, value in named:  # every kind checked first: sample.device exists
            if value.device != sample.device:
                raise SchedulerError(
                    f"{name} is on {value.device}, the sample on {sample.device}; move them "
                    "to one device"
                )
        if sample.ndim < 1:
            raise SchedulerError("sample must have a batch dimension (ndim >= 1)")
        state = self._history[-1] if self._history else self._x_n
        if self._step_index is not None and state is not None and state.shape != sample.shape:
            raise SchedulerError(
                f"sample has shape {tuple(sample.shape)}, the run's earlier steps "
                f"{tuple(state.shape)}; call set_timesteps to start a new run"
            )

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The forward process at ``timesteps``, in model scale: ``alpha (x_0 + sigma eps)``.

        DDPM: ``sqrt(abar) x_0 + sqrt(1 - abar) eps`` (timesteps interpolated as in
        :class:`DiscreteSchedule`); flow: ``(1 - t) x_0 + t eps`` with ``t = timestep / T``.
        One timestep for the whole batch or one per sample; ``noise`` may broadcast to the
        samples' shape, as in diffusers, but not widen it (:meth:`_check_add_noise_inputs`).
        """
        t = _host_float64(timesteps)
        self._check_add_noise_inputs(original_samples, noise, t)
        big_t = self.config.num_train_timesteps
        if self.is_flow:
            flow_t = t / big_t
            if not bool(torch.all((flow_t >= 0) & (flow_t <= 1))):
                raise SchedulerError(f"flow timesteps must lie in [0, {big_t}], got {_clipped(t)}")
            signal, noise_scale = 1 - flow_t, flow_t
        else:
            if not bool(torch.all((t >= 0) & (t <= big_t - 1))):
                raise SchedulerError(f"timesteps must lie in [0, {big_t - 1}], got {_clipped(t)}")
            sigma = self.schedule.t_to_sigma(t)
            signal = (1 + sigma**2).rsqrt()
            noise_scale = sigma * signal
        shape = (-1, *([1] * (original_samples.ndim - 1)))
        signal = signal.to(original_samples).reshape(shape)
        noise_scale = noise_scale.to(original_samples).reshape(shape)
        return signal * original_samples + noise_scale * noise

    @staticmethod
    def _check_add_noise_inputs(original_samples: Any, noise: Any, timesteps: torch.Tensor) -> None:
        """Floating-point tensors on one device, ``noise`` broadcasting to the samples' shape,
        and 1 or batch-many timesteps: anything else would be a ``RuntimeError`` from deep in
        torch, an integer sample silently rounded to 0, or a result of another shape."""
        for name, value in (("original_samples", original_samples), ("noise", noise)):
            if not torch.is_tensor(value) or not value.is_floating_point():
                kind = value.dtype if torch.is_tensor(value) else type(value).__name__
                raise SchedulerError(f"{name} must be a floating-point tensor, got {kind}")
        if noise.device != original_samples.device:
            raise SchedulerError(
                f"noise is on {noise.device}, the samples on {original_samples.device}; move "
                "them to one device"
            )
        shape = tuple(original_samples.shape)
        if not shape:
            raise SchedulerError("original_samples must have a batch dimension (ndim >= 1)")
        try:
            widened = torch.broadcast_shapes(noise.shape, original_samples.shape) != shape
        except RuntimeError:
            widened = True
        if widened:
            raise SchedulerError(
                f"noise has shape {tuple(noise.shape)}, the samples {shape}; noise must "
                "broadcast to the samples' shape"
            )
        if timesteps.numel() not in (1, shape[0]):
            raise SchedulerError(
                f"got {timesteps.numel()} timesteps for a batch of {shape[0]}; pass one, or "
                "one per sample"
            )

    def scale_noise(
        self, sample: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``FlowMatchEulerDiscreteScheduler.scale_noise``, which flow pipelines call for img2img
        and inpainting: :meth:`add_noise` of ``sample`` with ``noise`` at ``timestep``."""
        if noise is None:
            raise SchedulerError("scale_noise needs the noise to add")
        return self.add_noise(sample, noise, timestep)

    @classmethod
    def from_config(
        cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any
    ) -> Any:
        """As ``ConfigMixin.from_config``; a flow-matching config implies flow prediction.

        A config without ``prediction_type`` is a flow-matching one if its ``_class_name`` starts
        with ``FlowMatch`` or it has FlowMatch's ``shift`` key and no ``beta_schedule``. The
        config of an EDM-preconditioned network (:data:`_EDM_KEYS`) is a :class:`SchedulerError`.
        """
        if isinstance(config, Mapping) and "prediction_type" not in kwargs:
            keys = dict(config)
            class_name = keys.get("_class_name", "")
            flow_match = isinstance(class_name, str) and class_name.startswith("FlowMatch")
            if "prediction_type" not in keys and (
                flow_match or ("shift" in keys and "beta_schedule" not in keys)
            ):
                kwargs["prediction_type"] = "flow_prediction"
        if isinstance(config, Mapping):  # keys a config got by default are not its choice
            defaults = set(config.get("_use_default_values", ()))
            chosen = {**{k: v for k, v in config.items() if k not in defaults}, **kwargs}
            given = {**config, **kwargs}  # an EDM key marks the config even as a default
            edm = [f"{k}={given[k]!r:.30}" for k in _EDM_KEYS if k in given]
            if edm:
                raise SchedulerError(
                    f"{cls.__name__} runs DDPM and flow-matching models; this config is an "
                    f"EDM-preconditioned model's ({', '.join(edm)}): wrap the network in "
                    "res_torch.adapters.EDMDenoiser and use res_torch's samplers"
                )
            cls._warn_ignored(chosen)
        return super().from_config(config, return_unused_kwargs, **kwargs)

    @classmethod
    def _warn_ignored(cls, config: Mapping[str, Any]) -> None:
        """Warn once, naming every key of ``config`` that is not honoured and asks for
        something these schedulers do not do (:data:`_IGNORED`; unknown keys always)."""
        honoured = set(inspect.signature(cls.__init__).parameters)
        ignored = []
        for key, value in config.items():
            if key.startswith("_") or key in honoured or key in _NO_EFFECT:
                continue
            neutral, why = _IGNORED.get(key, ((), "not a RES scheduler option"))
            if not any(type(value) is type(n) and value == n for n in neutral):
                ignored.append(f"{key}={value!r} ({why})")
        if ignored:
            warnings.warn(
                f"{cls.__name__} ignores " + "; ".join(ignored), IgnoredConfigWarning, stacklevel=3
            )

    # ----------------------------------------------------------------- noise schedule
    def _vp_grid(self, n: int | None, sigmas: Any, timesteps: Any) -> np.ndarray:
        """Decreasing VE noise levels of a DDPM model's grid (without the final level)."""
        assert self.schedule is not None
        if sigmas is not None:
            ve = _levels(sigmas, "sigmas")
            ve = ve[:-1] if ve.size > 1 and ve[-1] == 0 else ve
            if n is not None and n != ve.size:
                raise SchedulerError(f"got {ve.size} sigmas for num_inference_steps={n}")
            if not np.all(ve > 0):
                raise SchedulerError(
                    f"sigmas must be positive (a final 0 is allowed), got {_clipped(ve)}"
                )
            return ve
        big_t = self.config.num_train_timesteps
        if timesteps is not None:
            respacing = [name for name in _RESPACING_OPTIONS if self.config[name]]
            if respacing:  # as DPMSolverMultistepScheduler and EulerDiscreteScheduler refuse
                raise SchedulerError(f"set_timesteps(timesteps=...) cannot be used with "
                                     f"{respacing[0]}=True")  # fmt: skip
            ts = _levels(timesteps, "timesteps")
            if not np.all((ts >= 0) & (ts <= big_t - 1)):
                raise SchedulerError(f"timesteps must lie in [0, {big_t - 1}], got {_clipped(ts)}")
        else:
            spaced = _spaced(self.schedule.sigma_max, self.schedule.sigma_min, n, self.config)
            if spaced is not None:
                return spaced
            # DPM-Solver's lambda_min_clipped: no timestep where -log sigma < lambda_min_clipped
            lambdas = -np.log(self.schedule.t_to_sigma(torch.arange(big_t)).numpy())
            last = big_t - int(np.sum(lambdas < self.config.lambda_min_clipped))
            if last < 1:
                raise SchedulerError(
                    f"lambda_min_clipped={self.config.lambda_min_clipped} clips every timestep "
                    f"(the largest lambda = -log sigma is {lambdas.max():.3g})"
                )
            spacing = self.config.timestep_spacing
            offset = int(self.config.steps_offset) if spacing == "leading" else 0  # as diffusers
            ts = discrete_timesteps(n, big_t, spacing, offset, last, raw=True).numpy()
        return self.schedule.t_to_sigma(torch.as_tensor(ts.copy())).numpy()

    def _flow_grid(
        self, n: int | None, sigmas: Any, mu: float | None, timesteps: Any
    ) -> np.ndarray:
        """Flow times as in ``FlowMatchEulerDiscreteScheduler.set_timesteps``, as VE sigmas.

        ``timesteps`` are taken as FlowMatch takes them without ``sigmas``: as the flow times
        ``timesteps / num_train_timesteps``, then shifted as ``sigmas`` are."""
        big_t = self.config.num_train_timesteps
        given = sigmas if timesteps is None else timesteps
        if given is not None:
            what, scale = ("sigmas", 1) if timesteps is None else ("timesteps", big_t)
            t = _levels(given, what) / scale
            t = t[:-1] if t.size > 1 and t[-1] == 0 else t
            if n is not None and n != t.size:
                raise SchedulerError(f"got {t.size} {what} for num_inference_steps={n}")
            if not np.all((t > 0) & (t <= 1)):
                raise SchedulerError(
                    f"flow {what} must lie in (0, {scale}] (a final 0 is allowed), "
                    f"got {_clipped(t * scale)}"
                )
        s = self.config.flow_shift if self.config.flow_shift != 1.0 else self.config.shift

        def static_shift(t: np.ndarray | float) -> np.ndarray | float:
            return s * t / (1 + (s - 1) * t)

        if given is None and self.config.use_flow_sigmas:
            # DPMSolverMultistepScheduler(use_flow_sigmas=True): from 1 - 1/T, shifted by
            # flow_shift, or by e^mu with dynamic shifting
            if mu is not None and self.config.time_shift_type != "exponential":
                raise SchedulerError(  # as DPMSolverMultistepScheduler, which asserts it
                    "use_flow_sigmas with a shift mu needs time_shift_type='exponential'"
                )
            s = s if mu is None else math.exp(mu)
            t = static_shift(np.linspace(1 - 1 / big_t, 0, n + 1)[:-1])
            spaced = _spaced(float(t[0]), float(t[-1]), len(t), self.config)
            return self._flow_t_to_sigma(torch.as_tensor(t if spaced is None else spaced)).numpy()
        if given is None:
            # FlowMatchEulerDiscreteScheduler's grid runs to its (statically shifted) sigma_min
            end = 1 / big_t if self.config.use_dynamic_shifting else static_shift(1 / big_t)
            t = np.linspace(1.0, end, n)
        if self.config.use_dynamic_shifting:  # mu is given: set_timesteps checked it
            if self.config.time_shift_type == "exponential":
                t = math.exp(mu) / (math.exp(mu) + (1 / t - 1))
            else:
                t = mu / (mu + (1 / t - 1))
        else:
            t = static_shift(t)
        if self.config.shift_terminal:
            one_minus = 1 - t
            t = 1 - one_minus / (one_minus[-1] / (1 - self.config.shift_terminal))
        spaced = _spaced(float(t[0]), float(t[-1]), len(t), self.config)
        t = np.asarray(t if spaced is None else spaced, dtype=np.float64)
        # t = 1 is sigma = inf (docs/diffusers.md): the run starts at the first finite time,
        # 1 - 1/T as DPM-Solver's flow sigmas, or the grid's next time if that lies above it
        if not np.all((t >= 0) & (t <= 1)):  # guards the shift arithmetic (checked options)
            raise SchedulerError(f"the shifted flow times leave [0, 1]: {_clipped(t)}")
        first = 1 - 1 / big_t
        finite = t[t < 1]
        if finite.size < t.size and (finite.size == 0 or finite[0] < first):
            finite = np.append(first, finite)
        return self._flow_t_to_sigma(torch.as_tensor(finite)).numpy()

    @staticmethod
    def _flow_t_to_sigma(t: torch.Tensor) -> torch.Tensor:
        return t / (1 - t)

    def _timesteps_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's timestep at VE noise level(s) ``sigma`` (float32)."""
        if self.is_flow:
            t = sigma / (1 + sigma) * self.config.num_train_timesteps
        else:
            t = self.schedule.sigma_to_t(sigma)
        return t.to(torch.float32)

    def _scale(self, sigma: float) -> float:
        """Model scale of the VE state: ``1/sqrt(1 + sigma^2)`` (DDPM), ``1/(1 + sigma)`` (flow)."""
        return 1 / (1 + sigma) if self.is_flow else 1 / math.sqrt(1 + sigma**2)

    def _denoised(self, model_output: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """``D`` from the network output at the VE state ``x`` and level ``sigma``
        (:func:`res_torch.adapters.denoised_from_output`)."""
        kind = "flow_prediction" if self.is_flow else self.config.prediction_type
        return denoised_from_output(kind, model_output, x, sigma)

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        if self._begin_index is not None:
            if self._begin_index >= len(self._stages):  # diffusers: an IndexError in step
                raise SchedulerError(
                    f"begin_index {self._begin_index} lies past the last of the "
                    f"{len(self._stages)} timesteps: there is no step to take"
                )
            self._start(self._begin_index)
            return
        try:
            t = float(torch.as_tensor(timestep).flatten()[0])
        except (TypeError, ValueError, RuntimeError, IndexError) as error:
            raise SchedulerError(
                f"timestep must be a number, got {timestep!r:.40} ({error})"
            ) from None
        starts = [k for k, (_, i) in enumerate(self._stages) if i == 0]
        matches = [k for k in starts if math.isclose(float(self.timesteps[k]), t, abs_tol=1e-4)]
        if not matches:
            raise SchedulerError(f"timestep {t} is not the start of a step of this schedule")
        self._start(matches[0])


class RESMultistepScheduler(_RESScheduler):
    """Multistep RES (``res_2m``, ``res_3m``, ``dpmpp_2m``, ... tableaux; also ``ipndm``,
    ``ipndm_v``, ``deis``): one network call per step, so ``timesteps[k]`` is step ``k`` (the
    pipelines' img2img slicing ``timesteps[t_start * order:]`` relies on it).

    Step ``n`` uses the stored values of the previous steps (:mod:`res_torch.coefficients`);
    the first steps use the method's start-up, with DDIM in place of a multi-stage single-step
    start-up method (``one_evaluation_startup``): ``res_3m`` starts with DDIM, RES-2M, as
    DPMSolverMultistepScheduler's third order starts with its first and second, where
    ``res_torch.sample_res_3m`` spends one more call on a RES-2S first step. A run that starts
    mid-schedule (``set_begin_index``, img2img) restarts the history there the same way.
    ``tableau_parameters`` sets free (non-history) parameters.
    """

    order = 1
    _one_call_per_step = True
    _default_tableau = "res_2m"
    _by_solver_order = {1: "ddim", 2: "res_2m", 3: "res_3m"}

    def _check_method(self) -> None:
        if self.method.stages != 1:
            raise SchedulerError(
                f"RESMultistepScheduler runs multistep or one-stage methods; "
                f"{self.method.name!r} is a {self.method.stages}-stage single-step method "
                "(use RESSinglestepScheduler)"
            )
        if self.method.free_start:
            raise SchedulerError(
                f"{self.method.name!r} takes its first step without an evaluation at the "
                "first timestep, which a diffusers pipeline's loop (one model call on the "
                "sample per timestep) cannot run; use its evaluated form (res_pc3_grid for "
                "res_pc3_free, res_pc4_grid for res_pc4_free, res_ab3_grid for res_ab3_free)"
            )


class RESSinglestepScheduler(_RESScheduler):
    """Single-step exponential Runge–Kutta RES (``res_2s`` with its ``c2``, ``res_3s``, ...).

    An ``s``-stage tableau makes ``s`` network calls per step; ``timesteps`` lists every stage
    (like diffusers' ``HeunDiscreteScheduler``) and each :meth:`step` call consumes one, returning
    the next stage input ``U_{i+1}`` or, after the last stage, ``x_{n+1}``. The final step to
    ``sigma = 0`` has one stage, ``x = D(x, sigma_{N-1})``. ``tableau_parameters`` sets the
    tableau's free parameters, e.g. ``{"c2": 1.0}``.
    """

    _default_tableau = "res_2s"
    _by_solver_order = {1: "ddim", 2: "res_2s", 3: "res_3s"}

    def _check_method(self) -> None:
        if self.method.is_multistep:
            raise SchedulerError(
                f"RESSinglestepScheduler runs single-step tableaux; {self.method.name!r} is "
                "multistep (use RESMultistepScheduler)"
            )
        self.order = self.method.stages
