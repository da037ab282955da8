"""Putting the res samplers into ComfyUI's stock sampler menus.

ComfyUI builds its KSampler menu from lists in ``comfy.samplers``: ``KSAMPLER_NAMES`` (the names
served by ``ksampler(name)``) and ``SAMPLER_NAMES = KSAMPLER_NAMES + ["ddim", "uni_pc",
"uni_pc_bh2"]``, which is the very list ``KSampler.SAMPLERS`` that the KSampler and
KSamplerSelect nodes offer. ``ksampler(name)`` resolves a name as
``getattr(comfy.k_diffusion.sampling, "sample_" + name)`` and wraps it in ``KSAMPLER``. So a
sampler is added by appending its name to those lists, in place (other modules hold references
to them), and setting the ``sample_<name>`` attribute, which is what other node packs
(RES4LYF, ...) do too.
"""

from __future__ import annotations

from .methods import menu_name, methods
from .sampler import comfy_sampler

__all__ = ["register"]


def register() -> list[str]:
    """Add every res_torch method to ComfyUI's sampler lists and ``k_diffusion.sampling``;
    idempotent. Returns the menu names. Needs ComfyUI (imports ``comfy`` here, not before)."""
    import comfy.k_diffusion.sampling as k_sampling
    import comfy.samplers as samplers

    lists = {id(names): names for names in (samplers.KSAMPLER_NAMES, samplers.SAMPLER_NAMES,
                                            samplers.KSampler.SAMPLERS)}  # fmt: skip
    added = []
    for method in methods():
        name = menu_name(method)
        setattr(k_sampling, f"sample_{name}", comfy_sampler(method))
        for names in lists.values():
            if name not in names:
                names.append(name)
        added.append(name)
    return added
