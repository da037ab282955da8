"""The distribution: the wheel's metadata and files, and a base install in a fresh venv.

The base distribution (``pip install res-torch``) needs torch, numpy and tqdm only; the
fresh-venv test installs the built wheel next to ``torch==2.13.0`` (no system site-packages)
and checks that importing res_torch and sampling loads no SymPy, SciPy or matplotlib. It takes
about two minutes (installing torch), so it is ``slow``; ``.ci/run`` runs it as its own step.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "res_torch", "res_theory"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(wheel, build log): built from a copy of the sources, so the checkout stays clean."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name)
    log = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(source)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp / "dist").glob("*.whl")
    return wheel, log.stdout + log.stderr


def metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_wheel_is_res_torch_with_an_spdx_licence_and_no_build_warnings(built):
    wheel, log = built
    meta = metadata(wheel)
    assert meta["Name"] == "res-torch"
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert "License" not in meta  # no legacy licence field next to the SPDX expression
    assert re.findall(r"\b\w+Warning\b", log) == []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    tableaux = {n for n in names if n.startswith("res_torch/tableaux/") and n.endswith(".json")}
    folder = ROOT / "res_torch" / "tableaux"
    shipped = {f"res_torch/tableaux/{p.relative_to(folder)}" for p in folder.rglob("*.json")}
    assert tableaux == shipped and len(shipped) >= 17  # 16 tableaux and the JSON Schema
    assert {n.split("/")[0] for n in names if not n.startswith("res_torch-")} == {
        "res_torch", "res_theory"
    }  # fmt: skip


def test_base_requirements_are_torch_numpy_tqdm_and_extras_hold_the_rest(built):
    meta = metadata(built[0])
    requires = meta.get_all("Requires-Dist")
    base = sorted(re.match(r"[\w.-]+", r)[0] for r in requires if "extra ==" not in r)
    assert base == ["numpy", "torch", "tqdm"]
    extras = set(meta.get_all("Provides-Extra"))
    assert extras == {"theory", "diffusers", "experiments", "figures", "dev", "all"}

    def extra(name: str) -> str:
        return " ".join(r for r in requires if f'extra == "{name}"' in r)

    assert "sympy" in extra("theory") and "mpmath" in extra("theory")
    for package in ("scipy", "matplotlib", "scikit-learn", "scikit-image"):
        assert package in extra("experiments")
    assert "diffusers" in extra("diffusers")
    assert "jsonschema" in extra("dev") and "pytest" in extra("dev")
    assert all(name in extra("all") for name in extras - {"all"})


CHECK = """
import importlib.util, sys
import torch, res_torch
model = lambda x, sigma: 0.3 + 0.49 / (0.49 + sigma[:, None] ** 2) * (x - 0.3)
sigmas = res_torch.get_sigmas_karras(8, 0.03, 14.6)
x = 14.6 * torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
out = res_torch.sample(model, x, sigmas, method="res_2m", disable=True)
sde = res_torch.sample(model, x, sigmas, method="res_3s", eta=1.0, noise_type="sde",
                       generator=torch.Generator().manual_seed(1), disable=True)
assert torch.isfinite(out).all() and torch.isfinite(sde).all()
loaded = sorted(m for m in ("sympy", "scipy", "matplotlib", "res_theory", "diffusers")
                if m in sys.modules)
installed = sorted(m for m in ("scipy", "matplotlib", "sklearn", "skimage", "diffusers")
                   if importlib.util.find_spec(m) is not None)
print("loaded", loaded, "installed", installed, res_torch.__file__)
"""


@pytest.mark.slow
def test_base_install_in_a_fresh_venv_needs_only_torch(built, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=1200)
    install = subprocess.run([*pip, str(built[0])], capture_output=True, text=True, check=True,
                             timeout=600)  # fmt: skip
    assert re.findall(r"\b\w+Warning\b", install.stdout + install.stderr) == []
    out = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, check=True,
                         cwd=tmp_path, timeout=300)  # fmt: skip
    assert out.stdout.startswith("loaded [] installed [] "), out.stdout
    assert str(venv) in out.stdout  # the installed package, not the checkout
