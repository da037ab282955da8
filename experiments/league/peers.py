"""The league's peers, each driven on exactly the caller's grid ``sigmas`` (ending in 0).

* diffusers multistep schedulers (:func:`sample_diffusers`): the EDM denoiser is the scheduler's
  ``"sample"`` (data) prediction in the variance-preserving scaling ``x_vp = x / sqrt(1 + sigma^2)``
  (the model is called at ``x_vp sqrt(1 + sigma^2)``); the scheduler's ``sigmas`` are replaced
  by the grid after ``set_timesteps`` and at every step the scheduler's own sigma is asserted to
  equal the grid's (:class:`PeerGridError` otherwise). ``UniPCMultistepScheduler`` (bh1, bh2;
  orders 2, 3), ``DEISMultistepScheduler`` (orders 2, 3), ``DPMSolverMultistepScheduler``
  (DPM-Solver++ 2M, 3M), all with their defaults ``lower_order_final=True`` and
  ``final_sigmas_type="zero"``. The step to 0 is the data prediction at the last level for
  all of them; the driver returns it itself, because two schedulers cannot take that step in
  diffusers 0.42: DEIS has no ``final_sigmas_type`` and its first-order update is
  ``0 * inf = nan`` there, UniPC bh1 has ``B(h) = h = -inf``; for the others the scheduler's
  own last step returns exactly the same tensor (a test checks it). The existing
  :func:`experiments.peers.sample_unipc` is this driver for one scheduler.
* k-diffusion's ``sampling.py`` (``pip install --no-deps k-diffusion``), loaded on its own
  without the package's optional imports (:func:`load_k_diffusion_sampling`); deterministic
  samplers only (the ancestral/SDE ones at ``eta = 0`` with a zero noise sampler).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

__all__ = [
    "DIFFUSERS_PEERS",
    "K_DIFFUSION_PEERS",
    "PeerGridError",
    "load_k_diffusion_sampling",
    "sample_diffusers",
    "sample_k_diffusion",
]

Denoiser = Callable[..., torch.Tensor]


class PeerGridError(ValueError):
    """A peer would step on other noise levels than the grid it was given, or is unavailable."""


DIFFUSERS_PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    "unipc_bh1_2": ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh1"}),
    "unipc_bh1_3": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh1"}),
    "unipc_bh2_2": ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2"}),
    "unipc_bh2_3": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh2"}),
    "deis_2": ("DEISMultistepScheduler", {"solver_order": 2}),
    "deis_3": ("DEISMultistepScheduler", {"solver_order": 3}),
    "dpmsolver_2m": ("DPMSolverMultistepScheduler", {"solver_order": 2}),
    "dpmsolver_3m": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
}
"""League name -> (diffusers scheduler class, its configuration besides the common one)."""


def _check_grid(sigmas: torch.Tensor) -> None:
    if sigmas.ndim != 1 or sigmas.numel() < 2 or float(sigmas[-1]) != 0.0:
        raise PeerGridError("sigmas must be a 1-D grid of >= 2 levels ending in 0")
    if not bool((sigmas[:-1] > sigmas[1:]).all()):
        raise PeerGridError("sigmas must be strictly decreasing")


@torch.no_grad()
def sample_diffusers(
    name: str, model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, keep_last: bool = False
) -> torch.Tensor:
    """Sample from ``x`` at ``sigmas[0]`` with the diffusers peer ``name`` (module docstring):
    ``len(sigmas) - 1`` denoiser evaluations. ``keep_last=True`` lets the scheduler take the
    step to 0 itself (not possible for DEIS)."""
    import diffusers

    _check_grid(sigmas)
    class_name, config = DIFFUSERS_PEERS[name]
    final = {} if class_name == "DEISMultistepScheduler" else {"final_sigmas_type": "zero"}
    scheduler = getattr(diffusers, class_name)(
        prediction_type="sample", lower_order_final=True, **final, **config
    )
    n_steps = sigmas.numel() - 1
    scheduler.set_timesteps(n_steps)
    grid = sigmas.detach().to(device="cpu", dtype=torch.float64)
    scheduler.sigmas = grid.clone()
    scheduler.timesteps = torch.arange(n_steps - 1, -1, -1, device=x.device)
    x_vp = x * (1 + grid[0] ** 2).rsqrt().to(x)
    ones = x.new_ones([x.shape[0]])
    for i in range(n_steps):
        if i > 0 and scheduler.step_index != i:
            raise PeerGridError(f"{name}: scheduler at step {scheduler.step_index}, grid at {i}")
        if not torch.equal(scheduler.sigmas.to(torch.float64), grid):
            raise PeerGridError(f"{name}: the scheduler changed its sigmas at step {i}")
        sigma = float(grid[i])
        denoised = model(x_vp * (1 + sigma**2) ** 0.5, sigma * ones)
        if i == n_steps - 1 and not keep_last:
            return denoised
        x_vp = scheduler.step(denoised, scheduler.timesteps[i], x_vp).prev_sample
    return x_vp  # alpha = 1 at sigma = 0


@cache
def load_k_diffusion_sampling() -> types.ModuleType:
    """``k_diffusion/sampling.py`` alone, its optional imports (torchdiffeq, torchsde and the
    package's ``utils``) stubbed while it loads; :class:`PeerGridError` if not installed."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise PeerGridError("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    path = f"{spec.submodule_search_locations[0]}/sampling.py"
    package = types.ModuleType("k_diffusion")
    package.__path__ = []
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    stubs = {
        "k_diffusion": package,
        "k_diffusion.utils": utils,
        "torchdiffeq": types.SimpleNamespace(odeint=None),
        "torchsde": types.SimpleNamespace(BrownianTree=None),
    }
    added = [name for name in stubs if name not in sys.modules]
    sys.modules.update({name: stubs[name] for name in added})
    try:
        module_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:  # the stubs must not fool later imports (diffusers probes for torchsde)
        for name in added:
            del sys.modules[name]
    return module


K_DIFFUSION_PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    "k_euler": ("sample_euler", {}),
    "k_heun": ("sample_heun", {}),
    "k_dpm_2": ("sample_dpm_2", {}),
    "k_lms": ("sample_lms", {}),
    "k_dpmpp_2m": ("sample_dpmpp_2m", {}),
    "k_dpmpp_2s": ("sample_dpmpp_2s_ancestral", {"eta": 0.0}),
    "k_dpmpp_3m": ("sample_dpmpp_3m_sde", {"eta": 0.0}),
}
"""League name -> (k-diffusion sampler function, its keyword arguments)."""


@torch.no_grad()
def sample_k_diffusion(
    name: str, model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor
) -> torch.Tensor:
    """Sample with k-diffusion's sampler ``name`` on ``sigmas``; the sigmas it passes to the
    model are asserted to be grid levels (the steps' starts and, for 2-stage samplers, their
    own intermediate levels are not checked against the grid, only the step starts)."""
    _check_grid(sigmas)
    function_name, options = K_DIFFUSION_PEERS[name]
    sampler = getattr(load_k_diffusion_sampling(), function_name)
    starts: list[float] = []

    def callback(info: dict[str, Any]) -> None:
        starts.append(float(info["sigma"]))

    if "eta" in options:  # it draws noise even at eta = 0 (scaled by 0): give it zeros
        options = {**options, "noise_sampler": lambda sigma, sigma_next: torch.zeros_like(x)}
    out = sampler(model, x, sigmas, disable=True, callback=callback, **options)
    if starts != [float(s) for s in sigmas[:-1]]:
        raise PeerGridError(f"{name} stepped from {starts}, grid {sigmas[:-1].tolist()}")
    return out
