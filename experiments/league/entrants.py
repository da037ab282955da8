"""Everything the league compares, behind one signature: ``run(model, x, sigmas) -> sample``.

An :class:`Entrant` is a sampler with its ``family`` (``"res"``: this project's methods;
``"peer"``: published methods as users get them elsewhere), the res_torch method whose NFE rule
builds its grid (``grid_method``: one evaluation per step for multistep methods, two for the
2-stage single-step ones; :func:`res_torch.sigmas_for_nfe`) and its run function. Every entrant
is driven on the EDM Karras grid (rho = 7, 80 -> 0.002, then 0) that ``sigmas_for_nfe`` builds
for its budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from experiments.league.peers import (
    DIFFUSERS_PEERS,
    K_DIFFUSION_PEERS,
    sample_diffusers,
    sample_k_diffusion,
)

__all__ = ["ENTRANTS", "Entrant", "LEAGUE_DESIGNS", "get_entrant"]

Run = Callable[[Callable[..., torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Entrant:
    """A league sampler (module docstring)."""

    name: str
    family: str
    grid_method: str
    run: Run


def _res_torch(method: str, model, x, sigmas):
    from res_torch import sample

    return sample(model, x, sigmas, method=method, disable=True)


LEAGUE_DESIGNS: tuple[str, ...] = (
    "res_pc3_grid", "res_pc4_grid", "res_pc4_logsigma", "res_pc3_free", "res_pc4_free",
    "res_ab3_free",
)  # fmt: skip
"""The designed methods (res_torch samplers; ``docs/designed_methods.md``)."""


def _entrants() -> dict[str, Entrant]:
    entrants = [
        Entrant(m, "res", m, partial(_res_torch, m))
        for m in ("res_2m", "res_3m", "res_2s", "res_3s", *LEAGUE_DESIGNS)
    ]
    entrants += [
        Entrant(n, "peer", "res_2m", partial(sample_diffusers, n)) for n in DIFFUSERS_PEERS
    ]
    two_stage = {"k_heun": "heun", "k_dpm_2": "heun", "k_dpmpp_2s": "res_2s"}
    entrants += [
        Entrant(n, "peer", two_stage.get(n, "res_2m"), partial(sample_k_diffusion, n))
        for n in K_DIFFUSION_PEERS
    ]
    # iPNDM, iPNDM-v (Zhou et al. 2023, as ComfyUI offers them) and DEIS-tAB (Zhang & Chen)
    # are published methods: peers, although res_torch ships them (res_torch.sample_ipndm, ...).
    entrants += [
        Entrant(n, "peer", "res_2m", partial(_res_torch, m))
        for n, m in (("ipndm", "ipndm"), ("ipndm_v", "ipndm_v"), ("deis_tab", "deis"))
    ]
    return {e.name: e for e in entrants}


ENTRANTS: dict[str, Entrant] = _entrants()


def get_entrant(name: str) -> Entrant:
    """The :class:`Entrant` called ``name``; ``KeyError`` listing the known names."""
    try:
        return ENTRANTS[name]
    except KeyError:
        raise KeyError(f"unknown entrant {name!r}; known: {', '.join(ENTRANTS)}") from None
