"""``load_denoiser(spec)``: one entry point for every denoiser the experiments can sample from.

Every result is a callable ``D(x, sigma) -> denoised`` in k-diffusion's convention (``sigma`` a
tensor of shape ``(batch,)``), the form ``res_torch``'s samplers take. Spec strings:

============================  ===============================================================
``"digits"``                  the bundled EDM model of scikit-learn's 8x8 digits
                              (``experiments/checkpoints/edm_digits.pt``)
``"patches32"``               the bundled EDM model of 32x32 photo patches
                              (``experiments/checkpoints/edm_patches32.pt``)
``"path/to/file.pt"``         a checkpoint written by ``python -m experiments.models.train``
``"package.module:name"``     ``name`` in an importable module: an ``nn.Module`` instance or
                              any callable ``D(x, sigma)`` is used as it is; a class, or a
                              callable with no required arguments, is a *factory* and is
                              called once to build the denoiser
``"path/to/diffusers_dir"``   an unconditional diffusers ``UNet2DModel`` with its scheduler
                              config: either a pipeline folder (``unet/`` + ``scheduler/``) or
                              a model folder holding ``config.json`` and
                              ``scheduler_config.json``. ``prediction_type`` "epsilon" ->
                              ``res_torch.adapters.DiscreteEpsDenoiser``, "v_prediction" ->
                              ``DiscreteVDenoiser``; a ``FlowMatch*`` scheduler ->
                              ``FlowDenoiser`` (timestep scale ``num_train_timesteps``)
============================  ===============================================================

``bundled_dataset(name, split)`` returns the data a bundled model was trained on (``"train"``)
or its held-out split (``"test"``), in the model's ``[-1, 1]`` pixel scale.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.experiment_runner import StoredFileError
from experiments.models.data import Split, digits, image_patches
from experiments.models.edm import EDMDenoiser
from experiments.models.train import CHECKPOINT_FORMAT
from experiments.models.unet import UNetConfig

__all__ = [
    "BUNDLED_MODELS",
    "CHECKPOINT_DIR",
    "CheckpointError",
    "ModelSpecError",
    "bundled_dataset",
    "load_checkpoint",
    "load_denoiser",
]

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
BUNDLED_MODELS = {"digits": "edm_digits.pt", "patches32": "edm_patches32.pt"}
PATCHES32_HELD_OUT_SEED = 1

Denoiser = Callable[..., torch.Tensor]


class ModelSpecError(ValueError):
    """A spec string that names no loadable denoiser."""


class CheckpointError(StoredFileError):
    """A checkpoint file that is unreadable or not a ``res-edm-denoiser`` checkpoint."""


def load_checkpoint(path: str | Path, device: torch.device | str | None = None) -> EDMDenoiser:
    """The EMA denoiser stored by ``experiments.models.train`` at ``path`` (eval mode, frozen)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT!r} checkpoint")
    try:
        model = EDMDenoiser(UNetConfig(**checkpoint["unet_config"]), checkpoint["sigma_data"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: inconsistent checkpoint contents: {error}") from error
    model.metadata = checkpoint.get("metadata", {})
    model = model.eval().requires_grad_(False)
    return model if device is None else model.to(device)


def bundled_dataset(name: str, split: Split = "test", count: int = 1024) -> torch.Tensor:
    """Images of bundled model ``name`` ("digits": the whole split, ``count`` ignored;
    "patches32": ``count`` deterministic crops of the split)."""
    if name == "digits":
        return digits(split)
    if name == "patches32":
        seed = PATCHES32_HELD_OUT_SEED if split == "test" else 0
        return image_patches(count, split, seed=seed)
    raise ModelSpecError(f"unknown bundled model {name!r}; choose from {sorted(BUNDLED_MODELS)}")


def _from_import(spec: str) -> Denoiser:
    module_name, _, attribute = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelSpecError(f"{spec!r}: cannot import module {module_name!r}: {error}") from error
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ModelSpecError(f"{spec!r}: module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelSpecError(f"{spec!r} is a {type(obj).__name__}, not a callable")
    if isinstance(obj, type) or (not isinstance(obj, nn.Module) and _is_factory(obj)):
        obj = obj()
        if not callable(obj):
            raise ModelSpecError(f"factory {spec!r} returned a non-callable {type(obj).__name__}")
    return obj


def _is_factory(function: Callable) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    return not required


class _UNet2DNetwork(nn.Module):
    """``(x, t) -> unet(x, t).sample`` for a diffusers ``UNet2DModel``."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, return_dict=False)[0]


def _diffusers_files(folder: Path) -> tuple[Path, Path] | None:
    """``(unet_folder, scheduler_config_file)`` of a diffusers folder, or None."""
    for unet_dir, scheduler in (
        (folder / "unet", folder / "scheduler" / "scheduler_config.json"),
        (folder, folder / "scheduler_config.json"),
    ):
        if (unet_dir / "config.json").is_file() and scheduler.is_file():
            return unet_dir, scheduler
    return None


def _from_diffusers(unet_dir: Path, scheduler_file: Path) -> nn.Module:
    from diffusers import UNet2DModel

    from res_torch.adapters import DiscreteEpsDenoiser, DiscreteVDenoiser, FlowDenoiser
    from res_torch.diffusers import alphas_cumprod_from_betas

    class_name = json.loads((unet_dir / "config.json").read_text()).get("_class_name")
    if class_name != "UNet2DModel":
        raise ModelSpecError(
            f"{unet_dir}: only unconditional diffusers UNet2DModel folders are supported, "
            f"found {class_name!r}"
        )
    config = json.loads(scheduler_file.read_text())
    net = _UNet2DNetwork(UNet2DModel.from_pretrained(unet_dir))
    if "FlowMatch" in str(config.get("_class_name", "")):
        return FlowDenoiser(net, timestep_scale=config.get("num_train_timesteps", 1000))
    alphas_cumprod = alphas_cumprod_from_betas(
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        beta_start=config.get("beta_start", 0.0001),
        beta_end=config.get("beta_end", 0.02),
        beta_schedule=config.get("beta_schedule", "linear"),
        trained_betas=config.get("trained_betas"),
    )
    prediction = config.get("prediction_type", "epsilon")
    if prediction == "epsilon":
        return DiscreteEpsDenoiser(net, alphas_cumprod)
    if prediction == "v_prediction":
        return DiscreteVDenoiser(net, alphas_cumprod)
    raise ModelSpecError(
        f"{scheduler_file}: prediction_type {prediction!r} is not supported "
        "(use 'epsilon', 'v_prediction' or a FlowMatch scheduler)"
    )


def load_denoiser(spec: str | Path, device: torch.device | str | None = None) -> Denoiser:
    """Resolve ``spec`` (see the module docstring) to a denoiser ``D(x, sigma)``.

    ``nn.Module`` results are put in eval mode with gradients off and moved to ``device`` when
    one is given. Raises ``ModelSpecError`` for a spec that names nothing loadable and
    ``CheckpointError`` for a damaged checkpoint.
    """
    if not isinstance(spec, str | Path):
        raise TypeError(f"spec must be a str or Path, got {type(spec).__name__}")
    text = str(spec)
    if text in BUNDLED_MODELS:
        model: Denoiser = load_checkpoint(CHECKPOINT_DIR / BUNDLED_MODELS[text], device)
    elif Path(text).is_dir():
        files = _diffusers_files(Path(text))
        if files is None:
            raise ModelSpecError(
                f"{text} is a folder but not a diffusers model: expected unet/config.json + "
                "scheduler/scheduler_config.json, or config.json + scheduler_config.json"
            )
        model = _from_diffusers(*files)
    elif Path(text).is_file() or text.endswith(".pt"):
        model = load_checkpoint(text, device)
    elif ":" in text and not text.startswith(":") and not text.endswith(":"):
        model = _from_import(text)
    else:
        raise ModelSpecError(
            f"unknown denoiser spec {text!r}: expected one of {sorted(BUNDLED_MODELS)}, a .pt "
            "checkpoint path, 'module.path:callable', or a diffusers model folder"
        )
    if isinstance(model, nn.Module):
        model = model.eval().requires_grad_(False)
        if device is not None:
            model = model.to(device)
    return model
