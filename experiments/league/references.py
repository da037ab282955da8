"""Converged reference solutions of the league's testbeds, cached on disk by configuration.

A reference is the probability-flow ODE solved from ``x = sigma_max * noise`` (seeded standard
normal noise) to ``sigma_min`` (the grid's range, :func:`experiments.league.run.schedule_range`) by
:func:`experiments.reference.converged_reference` (DOP853 in ``lambda = -log sigma`` at ``rtol
= atol`` and ten times tighter; it raises unless the two agree to ``bound`` in max norm),
followed by the final denoising step ``x = D(x, sigma_min)``: exactly what every sampler in the
league computes on its grid. Files live in ``cache_dir`` as ``league-ref-<key>.pt``; the key
hashes the testbed name, batch, seed, tolerances, range and the code fingerprint
(:func:`experiments.experiment_runner.code_fingerprint`: the Python files of the three
packages, the tableaux and the checkpoints), so editing a problem, a denoiser, the solver or a
checkpoint invalidates the references.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.experiment_runner import StoredFileError, code_fingerprint, replaced_whole
from experiments.league.testbeds import Testbed

__all__ = [
    "SIGMA_MAX",
    "SIGMA_MIN",
    "LeagueReference",
    "ReferenceFileError",
    "league_reference",
    "reference_key",
]

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


class ReferenceFileError(StoredFileError):
    """A cached ``league-ref-*.pt`` file that is unreadable or not the reference it is named
    for (truncated, edited, of another shape)."""


@dataclass(frozen=True)
class LeagueReference:
    """Noise (float64), the reference sample ``x`` and the reference's error estimate."""

    noise: torch.Tensor
    x: torch.Tensor
    error_estimate: float


def reference_key(
    testbed: Testbed,
    batch: int,
    seed: int,
    rtol: float,
    bound: float,
    sigma_max: float = SIGMA_MAX,
    sigma_min: float = SIGMA_MIN,
) -> str:
    """Short hash of everything a reference depends on."""
    payload = {
        "testbed": testbed.name,
        "batch": batch,
        "seed": seed,
        "rtol": rtol,
        "bound": bound,
        "sigmas": [sigma_max, sigma_min],
        "code": code_fingerprint(),  # the denoisers' code and checkpoints, the solver
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def league_reference(
    testbed: Testbed,
    *,
    batch: int,
    seed: int = 0,
    rtol: float | None = None,
    bound: float | None = None,
    cache_dir: Path | None = None,
    sigma_max: float = SIGMA_MAX,
    sigma_min: float = SIGMA_MIN,
) -> LeagueReference:
    """The reference of ``batch`` samples of ``testbed`` for ``seed`` (solved or read back),
    from ``x = sigma_max * noise`` to ``sigma_min`` (default: the EDM range 80 -> 0.002).

    ``rtol`` defaults to the testbed's ``reference_rtol``, ``bound`` to ``1e3 * rtol``;
    ``cache_dir=None`` solves without caching.
    """
    from experiments.reference import converged_reference

    rtol = testbed.reference_rtol if rtol is None else rtol
    bound = 1e3 * rtol if bound is None else bound
    path = None
    if cache_dir is not None:
        key = reference_key(testbed, batch, seed, rtol, bound, sigma_max, sigma_min)
        path = Path(cache_dir) / f"league-ref-{key}.pt"
        if path.exists():
            return _read_reference(path, (batch, *testbed.shape))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((batch, *testbed.shape), generator=generator, dtype=torch.float64)
    solved = converged_reference(
        testbed.denoiser,
        noise * sigma_max,
        sigma_max,
        sigma_min,
        rtol=rtol,
        atol=rtol,
        refinement=10.0,
        bound=bound,
    )
    final = testbed.denoiser(solved.x, solved.x.new_full((batch,), sigma_min))
    reference = LeagueReference(noise, final, solved.error_estimate)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = {"noise": noise.cpu(), "x": final.cpu(), "error_estimate": solved.error_estimate}
        with replaced_whole(path) as partial:  # never a truncated file
            torch.save(stored, partial)  # on the CPU: read back on any machine
    return reference


def _read_reference(path: Path, shape: tuple[int, ...]) -> LeagueReference:
    """The reference stored at ``path`` by :func:`league_reference`, its noise and sample of
    ``shape``; :class:`ReferenceFileError` for a file that is not one."""
    redo = "delete it to solve the reference again"
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a damaged file
        raise ReferenceFileError(f"{path}: not a readable torch file ({error}); {redo}") from error
    keys = {"noise", "x", "error_estimate"}
    if not isinstance(stored, dict) or set(stored) != keys:
        found = sorted(stored) if isinstance(stored, dict) else type(stored).__name__
        raise ReferenceFileError(f"{path}: expected the keys {sorted(keys)}, found {found}; {redo}")
    noise, x, error = stored["noise"], stored["x"], stored["error_estimate"]
    for key, value in (("noise", noise), ("x", x)):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ReferenceFileError(
                f"{path}: {key} should be a tensor of shape {shape}, found {found}; {redo}"
            )
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise ReferenceFileError(f"{path}: {key} is not finite floating point; {redo}")
    if isinstance(error, bool) or not isinstance(error, int | float) or not math.isfinite(error):
        raise ReferenceFileError(f"{path}: error_estimate {error!r} is not a number; {redo}")
    return LeagueReference(noise, x, float(error))
