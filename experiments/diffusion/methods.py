"""The samplers the paper's experiments compare, behind one call: ``run_method(name, ...)``.

Every method integrates the EDM probability-flow ODE ``dx/dsigma = (x - D(x, sigma))/sigma``
(MATH.md section 1) from ``sigma_max`` to ``sigma_min`` on a grid that ``res_torch.sigmas_for_nfe``
builds for a budget of network evaluations (NFE, the final denoising evaluation
``x = D(x, sigma_min)`` counted), then takes that final step. A budget a method cannot spend
exactly (NFE 10 for a 2-stage method) is rounded down by :func:`attainable_nfe`; the tables
record the budget actually spent. The res_torch methods are named by
their tableau/sampler names; ``"unipc"`` is diffusers' UniPC driven by
:func:`experiments.diffusion.peers.sample_unipc` on the grid of a one-evaluation-per-step
method, so it
spends exactly ``nfe`` evaluations too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from res_torch.methods import Method as MethodDescriptor
from res_torch.methods import method_of

__all__ = [
    "DETERMINISTIC_METHODS",
    "METHODS",
    "Method",
    "MethodError",
    "attainable_budgets",
    "attainable_nfe",
    "build_sigmas",
    "get_method",
    "run_method",
]

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0

# UniPC spends one evaluation per step, like DPM-Solver++(2M): it gets that method's grid.
_GRID_OF = {"unipc": "dpmpp_2m"}


class MethodError(ValueError):
    """Unknown method, or a budget/option the method cannot honour."""


@dataclass(frozen=True)
class Method:
    """A compared sampler: ``name`` (the res_torch/diffusers name), its plot ``label`` and
    colour group ``family`` (``"res"``, ``"dpmpp"`` or ``"other"``). What the method *is*
    (stages, start-up, NFE cost) is its res_torch descriptor, :attr:`descriptor`; a peer that
    res_torch does not ship (``"unipc"``) is described by the method whose grid it gets."""

    name: str
    label: str
    family: str

    @property
    def descriptor(self) -> MethodDescriptor:
        """The res_torch descriptor (:func:`res_torch.method_of`) of the method or its grid."""
        return method_of(_GRID_OF.get(self.name, self.name))

    @property
    def single_step(self) -> bool:
        """Whether the method keeps no history (line styles of the figures)."""
        return not self.descriptor.is_multistep


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ddim", "DDIM", "other"),
        Method("dpmpp_2s", "DPM-Solver++(2S)", "dpmpp"),
        Method("res_2s", "RES-2S", "res"),
        Method("dpmpp_2m", "DPM-Solver++(2M)", "dpmpp"),
        Method("res_2m", "RES-2M", "res"),
        Method("res_3s", "RES-3S", "res"),
        Method("heun", "EDM Heun", "other"),
        Method("unipc", "UniPC (diffusers)", "other"),
    )
}
DETERMINISTIC_METHODS: tuple[str, ...] = tuple(METHODS)


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``; :class:`MethodError` listing the known names."""
    try:
        return METHODS[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def attainable_nfe(name: str, nfe: int) -> int:
    """The largest budget ``<= nfe`` that method ``name`` spends exactly with at least one step
    before the final denoising evaluation (``res_torch.sigmas_for_nfe`` knows every method's
    per-step and start-up costs: ``s k + 1`` for ``s`` evaluations per step and ``k`` steps).
    Raises :class:`MethodError` when not even one step fits."""
    from res_torch import NFEBudgetError, sigmas_for_nfe

    if not isinstance(nfe, int) or isinstance(nfe, bool):
        raise MethodError(f"nfe must be an integer, got {nfe!r}")
    grid_method = get_method(name).descriptor.name

    def fits(budget: int) -> bool:
        try:
            return len(sigmas_for_nfe(budget, grid_method)) >= 3
        except NFEBudgetError:
            return False

    for budget in range(nfe, 1, -1):
        if fits(budget):
            return budget
    smallest = next((b for b in range(max(nfe, 2), nfe + 64) if fits(b)), None)
    needed = f"at least {smallest}" if smallest is not None else f"more than {nfe + 63}"
    raise MethodError(
        f"NFE {nfe} is too small for {name}: one step and the final denoising step need {needed}"
    )


def attainable_budgets(name: str, nfes: Sequence[int]) -> dict[int, int]:
    """``{spent: requested}``: the distinct budgets :func:`attainable_nfe` makes of ``nfes``
    for method ``name`` (ascending), each with the smallest requested budget that gives it;
    requested budgets too small for the method are left out."""
    budgets: dict[int, int] = {}
    for nfe in sorted(nfes):
        try:
            budgets.setdefault(attainable_nfe(name, nfe), nfe)
        except MethodError:
            continue
    return dict(sorted(budgets.items()))


def build_sigmas(
    name: str,
    nfe: int,
    *,
    schedule: str = "karras",
    rho: float = 7.0,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The noise-level grid (ending in 0) on which method ``name`` spends exactly ``nfe``
    evaluations, from ``res_torch.sigmas_for_nfe``. ``schedule`` is ``"karras"`` (EDM's
    ``rho`` schedule; ``rho = 1`` is uniform in sigma), ``"uniform"`` (uniform in sigma) or
    ``"exponential"`` (uniform in ``lambda = -log sigma``; ``rho`` ignored). Raises
    :class:`MethodError` when ``nfe`` is not a budget the method can spend exactly
    (:func:`attainable_nfe` gives one that is)."""
    from res_torch import sigmas_for_nfe

    if attainable_nfe(name, nfe) != nfe:
        raise MethodError(
            f"{name} cannot spend exactly NFE {nfe}; the nearest budget below is "
            f"{attainable_nfe(name, nfe)}"
        )
    try:
        return sigmas_for_nfe(
            nfe,
            get_method(name).descriptor.name,
            schedule=schedule,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            rho=rho if schedule == "karras" else None,
            device=device,
        )
    except ValueError as err:
        raise MethodError(f"method {name!r} at NFE {nfe}: {err}") from err


def run_method(
    name: str,
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    nfe: int,
    *,
    schedule: str = "karras",
    rho: float = 7.0,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    **options: float | torch.Generator,
) -> torch.Tensor:
    """Sample from ``x = sigma_max * noise`` with method ``name`` at budget ``nfe``.

    ``options`` go to the sampler (``c2`` for the 2-stage single-step methods, churn options
    ``s_churn, s_tmin, s_tmax, s_noise, generator`` for stochastic sampling).
    """
    sigmas = build_sigmas(
        name,
        nfe,
        schedule=schedule,
        rho=rho,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        device=noise.device,
    ).to(noise.dtype)
    x = noise * sigmas[0]
    if name == "unipc":
        from experiments.diffusion.peers import sample_unipc

        if options:
            raise MethodError(f"unipc takes no options, got {sorted(options)}")
        return sample_unipc(model, x, sigmas, disable=True)
    from res_torch import sample

    return sample(model, x, sigmas, method=name, disable=True, **options)
