"""res_torch samplers for ComfyUI (a custom-node folder; see docs/comfyui.md).

Install: ``pip install /path/to/res`` (the distribution ``res-torch``) into ComfyUI's Python,
then copy or symlink this folder into ``ComfyUI/custom_nodes/`` under any name except
``res_torch`` / ``res_theory``, e.g. ``custom_nodes/res_torch_nodes``: older ComfyUI versions
import a node folder under its folder name, and newer ones, which use its path, still find the
folder for ``import res_torch`` when ``custom_nodes`` is on ``sys.path``; either way it would
hide the library.

On import inside ComfyUI every res_torch method is added to the stock sampler menus as
``res_torch_<method>`` (:mod:`.registry`), and the node "res_torch Sampler" (:mod:`.nodes`)
gives a ``SAMPLER`` with the method's parameters for SamplerCustom. Outside ComfyUI (no
``comfy`` to import) nothing is registered and importing this package has no effect.
"""

from __future__ import annotations

_RENAME = "rename the node folder custom_nodes/"
if __name__ in ("res_torch", "res_theory"):  # the folder's name shadows the library
    raise ImportError(
        f"{_RENAME}{__name__} (it is imported under that name, which hides the library of that "
        "name), e.g. to res_torch_nodes"
    )
try:
    import res_torch  # noqa: F401
except ImportError as exc:  # ComfyUI shows this when it skips the folder
    if str(exc).startswith(_RENAME):  # `import res_torch` found this folder itself
        raise
    raise ImportError(
        "the res_torch node pack needs the res_torch library in ComfyUI's Python: "
        "python -m pip install /path/to/res (see docs/comfyui.md)"
    ) from exc

from .nodes import ResTorchSampler  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "REGISTERED"]

NODE_CLASS_MAPPINGS = {"ResTorchSampler": ResTorchSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"ResTorchSampler": "res_torch Sampler"}


def _register() -> list[str]:
    try:
        import comfy.k_diffusion.sampling  # noqa: F401
        import comfy.samplers  # noqa: F401
    except ImportError:  # imported outside ComfyUI
        return []
    from .registry import register

    return register()


REGISTERED: list[str] = _register()
"""The menu names added to ComfyUI's sampler lists at import (empty outside ComfyUI)."""
