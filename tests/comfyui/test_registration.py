"""The node pack registers every res_torch method the way ComfyUI builds its sampler menus."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import res_torch

PACK = Path(__file__).resolve().parents[2] / "comfyui"
STOCK = ["euler", "heun", "dpmpp_2m", "res_multistep"]


def all_methods() -> set[str]:
    return {"auto"} | set(res_torch.SAMPLERS) | set(res_torch.available_tableaux())


def test_every_method_and_tableau_is_in_the_stock_menus(comfy):
    samplers, sampling = comfy.samplers, comfy.sampling
    names = {"res_torch_" + m for m in all_methods()}
    assert set(comfy.pack.REGISTERED) == names
    assert len(comfy.pack.REGISTERED) == len(all_methods()) >= 18
    for name in names:
        assert name in samplers.KSAMPLER_NAMES
        assert name in samplers.SAMPLER_NAMES
        assert callable(getattr(sampling, f"sample_{name}"))
    assert samplers.KSampler.SAMPLERS is samplers.SAMPLER_NAMES  # lists extended in place
    assert samplers.KSAMPLER_NAMES[: len(STOCK)] == STOCK  # stock entries untouched, first
    assert samplers.SAMPLER_NAMES[len(STOCK) : len(STOCK) + 3] == ["ddim", "uni_pc", "uni_pc_bh2"]


def test_stock_samplers_of_the_same_name_are_not_replaced(comfy):
    """res_torch's ``euler``/``heun``/``dpmpp_2m`` appear under the prefix; ComfyUI's stay."""
    stock_euler = comfy.sampling.sample_euler
    assert comfy.sampling.sample_euler.__module__ == "comfy.k_diffusion.sampling"
    comfy.pack.registry.register()
    assert comfy.sampling.sample_euler is stock_euler
    assert comfy.sampling.sample_res_torch_euler is not stock_euler


def test_registration_is_idempotent(comfy):
    before = list(comfy.samplers.SAMPLER_NAMES), list(comfy.samplers.KSAMPLER_NAMES)
    comfy.pack.registry.register()
    comfy.pack.registry.register()
    assert before == (comfy.samplers.SAMPLER_NAMES, comfy.samplers.KSAMPLER_NAMES)
    assert len(set(comfy.samplers.SAMPLER_NAMES)) == len(comfy.samplers.SAMPLER_NAMES)


@pytest.mark.parametrize("method", sorted(all_methods()))
def test_menu_entry_runs_through_comfys_lookup(comfy, gaussian, noise, method):
    """``sampler_object(name)`` -> ``KSAMPLER(getattr(sampling, "sample_" + name))`` -> the
    result of ``res_torch.sample`` on the same model and noise (a VE model is passed as is)."""
    ms = comfy.model_sampling.ModelSamplingVE()
    sigmas = res_torch.get_sigmas_karras(6, 0.03, 14.6)
    sampler = comfy.samplers.sampler_object(f"res_torch_{method}")
    assert isinstance(sampler, comfy.samplers.KSAMPLER)
    out = comfy.guider(ms, gaussian.ve).sample(
        noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True
    )
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2)  # KSAMPLER's max_denoise noise scaling
    expected = res_torch.sample(gaussian.ve, x, sigmas, method=method, disable=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_importing_the_pack_outside_comfyui_registers_nothing():
    """Without ``comfy`` the pack imports (nodes defined, nothing registered, no comfy)."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('res_torch_nodes', r'{PACK}/__init__.py',"
        f" submodule_search_locations=[r'{PACK}'])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['res_torch_nodes'] = m\n"
        "spec.loader.exec_module(m)\n"
        "print(m.REGISTERED, sorted(m.NODE_CLASS_MAPPINGS), 'comfy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] ['ResTorchSampler'] False"


def test_pack_without_res_torch_says_how_to_install_it():
    code = (
        "import importlib.util, sys\n"
        "sys.modules['res_torch'] = None  # as if not installed\n"
        f"spec = importlib.util.spec_from_file_location('res_torch_nodes', r'{PACK}/__init__.py',"
        f" submodule_search_locations=[r'{PACK}'])\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "ImportError: the res_torch node pack needs the res_torch library" in out.stderr


@pytest.mark.parametrize("folder", ["res_torch", "res_theory"])
def test_a_node_folder_named_like_the_library_says_to_rename_it(folder):
    # older ComfyUI versions import custom_nodes/<folder> under the folder's name
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('{folder}', r'{PACK}/__init__.py',"
        f" submodule_search_locations=[r'{PACK}'])\n"
        f"m = importlib.util.module_from_spec(spec); sys.modules['{folder}'] = m\n"
        "spec.loader.exec_module(m)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert f"ImportError: rename the node folder custom_nodes/{folder}" in out.stderr


def test_a_node_folder_named_res_torch_on_the_path_says_to_rename_it(tmp_path):
    # newer ComfyUI versions import a folder under its path; with custom_nodes on sys.path the
    # pack's own `import res_torch` then finds the folder instead of the library
    nodes = tmp_path / "custom_nodes"
    shutil.copytree(PACK, nodes / "res_torch")
    path = nodes / "res_torch"
    code = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, r'{nodes}')\n"
        f"name = r'{path}'.replace('.', '_x_')\n"
        f"spec = importlib.util.spec_from_file_location(name, r'{path}/__init__.py',"
        f" submodule_search_locations=[r'{path}'])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules[name] = m\n"
        "spec.loader.exec_module(m)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "ImportError: rename the node folder custom_nodes/res_torch" in out.stderr
    assert "needs the res_torch library" not in out.stderr


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in top))
    return found


def test_pack_imports_comfy_only_lazily_and_only_res_torch_of_the_project():
    for path in PACK.glob("*.py"):
        for module, at_top in _imports(path):
            assert module not in {"res_theory", "experiments", "paper_figures", "sympy"}, path
            assert not (module == "comfy" and at_top), f"{path.name} imports comfy at import time"


def test_pack_doctests(comfy):
    import doctest

    for module in (comfy.pack.methods, comfy.pack.flow):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
