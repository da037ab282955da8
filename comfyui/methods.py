"""Which res_torch methods the node pack offers, under which menu names, with which parameters.

``auto`` (``res_torch.sample(method="auto")``: the method recommended for the budget the sigmas
imply, :mod:`res_torch.recommend`), every named sampler of :data:`res_torch.SAMPLERS` and every
shipped tableau (:func:`res_torch.available_tableaux`) are offered. In ComfyUI's sampler menus a
method appears as ``MENU_PREFIX + method`` (``res_torch_res_2s``, ``res_torch_krogstad``, ...),
so that it never replaces a stock sampler of the same name (ComfyUI's own ``euler``, ``heun``,
``ddim``, ``dpmpp_2m``) nor one of another node pack (RES4LYF registers ``res_2m``, ``res_3s``,
...).

>>> menu_name("res_2s")
'res_torch_res_2s'
>>> method_of("res_torch_krogstad")
'krogstad'
>>> [p.name for p in free_parameters("res_3s")]
['c2', 'c3']
>>> free_parameters("res_2m")  # history nodes are set from the grid, not by the user
()
"""

from __future__ import annotations

import res_torch
from res_torch.tableau import Parameter

__all__ = ["AUTO", "MENU_PREFIX", "free_parameters", "menu_name", "method_of", "methods"]

MENU_PREFIX = "res_torch_"
AUTO = "auto"


def methods() -> list[str]:
    """The method names the pack offers: ``auto``, the named samplers, then the other shipped
    tableaux."""
    named = list(res_torch.SAMPLERS)
    return [AUTO, *named, *sorted(set(res_torch.available_tableaux()) - set(named))]


def menu_name(method: str) -> str:
    """The name under which ``method`` appears in ComfyUI's sampler lists."""
    return MENU_PREFIX + method


def method_of(name: str) -> str:
    """The res_torch method behind a menu name (inverse of :func:`menu_name`)."""
    if not name.startswith(MENU_PREFIX) or name[len(MENU_PREFIX) :] not in methods():
        raise res_torch.UnknownMethodError(f"{name!r} is not a res_torch menu name")
    return name[len(MENU_PREFIX) :]


def free_parameters(method: str) -> tuple[Parameter, ...]:
    """The user-set parameters of ``method`` (e.g. ``c2`` of RES-2S): the free parameters of its
    tableau; none for a method that is not a tableau (Euler, Heun) and for ``auto``."""
    if method == AUTO:
        return ()
    if method not in res_torch.available_tableaux():
        if method not in res_torch.SAMPLERS:
            known = ", ".join(methods())
            raise res_torch.UnknownMethodError(f"unknown method {method!r}; known: {known}")
        return ()
    tableau = res_torch.load_tableau(method)
    return tuple(p for p in tableau.parameters if p.role == "free")
