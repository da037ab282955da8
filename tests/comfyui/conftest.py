"""The node pack under a stand-in ``comfy`` package (``fake_comfy/``), fresh for every test.

ComfyUI loads a custom-node folder as a package named after the folder; the fixture does the
same with ``comfyui/`` under the name ``res_torch_nodes``, after putting the stand-in ``comfy``
first on ``sys.path``. Everything is removed again afterwards, so the registration of one test
never leaks into another.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "comfyui"
FAKE = Path(__file__).resolve().parent / "fake_comfy"
PACK_NAME = "res_torch_nodes"


def _forget_modules() -> None:
    for name in list(sys.modules):
        if name == "comfy" or name.startswith(("comfy.", PACK_NAME)):
            del sys.modules[name]


def import_pack() -> ModuleType:
    """Import ``comfyui/`` as ComfyUI does: a package named after its folder."""
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, PACK / "__init__.py", submodule_search_locations=[str(PACK)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def comfy():
    """``SimpleNamespace(pack, samplers, sampling, model_sampling)`` under the stand-in."""
    _forget_modules()
    sys.path.insert(0, str(FAKE))
    try:
        pack = import_pack()
        import comfy.k_diffusion.sampling as sampling
        import comfy.model_sampling as model_sampling
        import comfy.samplers as samplers

        def guider(model_sampling, apply):
            """A guider around a model whose ``apply(x, sigma)`` is the denoised x_0."""
            model = samplers.BaseModel(model_sampling, apply)
            return samplers.CFGGuider(samplers.ModelPatcher(model))

        yield SimpleNamespace(
            pack=pack,
            samplers=samplers,
            sampling=sampling,
            model_sampling=model_sampling,
            guider=guider,
        )
    finally:
        sys.path.remove(str(FAKE))
        _forget_modules()


@dataclass(frozen=True)
class Gaussian:
    """Data ``N(mu, s^2)`` per coordinate. VE: ``D(y, sigma) = mu + s^2/(s^2 + sigma^2)
    (y - mu)``, and the probability-flow ODE moves ``y - mu`` by the factor
    ``sqrt((s^2 + sigma_1^2)/(s^2 + sigma_0^2))``. Flow: ``D(x, t) = D_VE(x/(1-t), t/(1-t))``."""

    mu: float = 0.3
    s: float = 0.7

    def ve(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.reshape(-1, *([1] * (y.ndim - 1)))
        return self.mu + self.s**2 / (self.s**2 + sigma**2) * (y - self.mu)

    def flow(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``D_VE(x/(1-t), t/(1-t))`` multiplied out: finite at ``t = 1`` (``D = mu``), as a
        flow network's ``x - t v``."""
        t = t.reshape(-1, *([1] * (x.ndim - 1)))
        gain = self.s**2 * (1 - t) / (self.s**2 * (1 - t) ** 2 + t**2)
        return self.mu + gain * (x - (1 - t) * self.mu)

    def ode_ve(self, y0: torch.Tensor, sigma_0: float, sigma_1: float) -> torch.Tensor:
        ratio = math.sqrt((self.s**2 + sigma_1**2) / (self.s**2 + sigma_0**2))
        return self.mu + (y0 - self.mu) * ratio


@pytest.fixture
def gaussian() -> Gaussian:
    return Gaussian()


@pytest.fixture
def noise() -> torch.Tensor:
    """Initial noise of a batch of two 3x4x4 latents, float64 (comparisons to rounding)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((2, 3, 4, 4), generator=generator, dtype=torch.float64)
