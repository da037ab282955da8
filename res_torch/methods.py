"""What a sampling method *is*: one frozen :class:`Method` descriptor per method.

A descriptor names the method's *family* (its coefficient builder,
:data:`res_torch.coefficients.BUILDERS`, turns it into tables), its tableau if it has one, and
answers the questions the rest of the package asks: evaluations per step and of the start-up steps
(:meth:`Method.step_costs`, read by :mod:`res_torch.nfe`), the stepping variable (``"lambda"``
for exponential integrators, ``"sigma"`` for Euler/Heun/Adams methods), the stored prediction
(``"denoised"`` ``D`` or ``"noise"`` ``eps = (x - D)/sigma``), the order and the noise types it
supports. :data:`METHODS` lists the named ones; :func:`method_of` also describes any tableau.

>>> method_of("res_3m").startup, method_of("res_3m").stages, method_of("res_3m").step_costs(4)
(('res_2s', 'res_2m'), 1, [2, 1, 1, 1])
>>> METHODS["ipndm"].prediction, METHODS["ipndm"].variable, METHODS["ipndm"].history
('noise', 'sigma', 3)
>>> method_of("krogstad").stages
4
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from res_torch.errors import UnknownMethodError
from res_torch.tableau import Tableau, TableauError, available_tableaux, is_path, load_tableau

__all__ = [
    "FREE_START_SIGMA",
    "METHODS",
    "InterpolatedMethod",
    "Method",
    "cached_tableau",
    "method_of",
    "methods_table",
]


def cached_tableau(name_or_path: str) -> Tableau:
    """:func:`load_tableau`, parsed once per version of its source: a shipped name once per
    process, a file path again whenever the file's size, modification time or inode changes
    (an edited or replaced file is read anew, not served from the cache)."""
    return _parsed(name_or_path, _file_version(name_or_path))


def _file_version(name_or_path: str) -> tuple[int, ...]:
    """``(inode, size, mtime_ns)`` of the file a tableau path names, ``()`` for a shipped name
    or a path that does not exist (whose loading then raises the error)."""
    if not is_path(name_or_path):
        return ()
    try:
        stat = os.stat(name_or_path)
    except OSError:
        return ()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _parsed(name_or_path: str, version: tuple[int, ...]) -> Tableau:
    return load_tableau(name_or_path)


@dataclass(frozen=True)
class Method:
    """A sampling method as data.

    ``stages``: evaluations of one main (non-final, non-start-up) step; ``history``: previous
    predictions a main step uses; ``startup``: the methods (tableau names) of the first steps
    (``multistep`` family) — the ``adams`` family starts at lower order instead (``history``
    grows as ``min(n, history)``); ``order``: the order of convergence of the main steps;
    ``noise_types``: the per-step noise types it supports (churn works with every method).
    """

    name: str
    family: str
    title: str
    order: int
    stages: int = 1
    history: int = 0
    startup: tuple[str, ...] = ()
    variable: str = "lambda"
    prediction: str = "denoised"
    tableau: Tableau | None = field(default=None, repr=False, compare=False)
    noise_types: tuple[str, ...] = ("ancestral", "sde")
    free_start: bool = False
    """Whether the first step of a run from pure noise takes no evaluation of its own
    (:meth:`InterpolatedMethod.starts_free`)."""

    @property
    def is_multistep(self) -> bool:
        return self.family in ("multistep", "adams")

    @property
    def default_noise_type(self) -> str:
        """The ``noise_type`` that ``eta`` uses when none is given: ``"sde"`` for the
        ``multistep`` family (exponential Adams tableaux: ``res_2m``, ``res_3m``,
        ``dpmpp_2m``, ...), whose history carries denoiser values across the injected noise,
        which k-diffusion's ancestral steps bias at coarse steps (measured on data
        ``N(0.3, 0.7^2)``, Karras grid 14.6 -> 0.03, ``eta = 1``: RES-2M's sample std is 2.06
        at 10 steps with ``"ancestral"``, 0.89 with ``"sde"``, 0.7 exact); ``"ancestral"`` for
        every other method (single-step ones, and the others restart their history where noise
        enters)."""
        return "sde" if self.family == "multistep" else "ancestral"

    def step_costs(self, steps: int, sigmas: Sequence[float] | None = None) -> list[int]:
        """Evaluations of the first ``steps`` non-final steps (a final step to 0 costs 1);
        ``sigmas``, the run's noise levels, where the cost depends on them (a free first step,
        :meth:`InterpolatedMethod.starts_free`)."""
        startup = self.tableau.startup_tableaux(cached_tableau) if self.tableau else ()
        costs = [1 if t.is_multistep else t.stages for t in startup[:steps]]
        return costs + [self.stages] * (steps - len(costs))


FREE_START_SIGMA = 10.0
"""Smallest second noise level ``sigma_1`` at which a free-start method takes its first step
without an evaluation (:meth:`InterpolatedMethod.starts_free`). The free step evaluates the
denoiser at ``r x_0`` (``r = sigma_1/sigma_0``) instead of at the true ``x_1 = r x_0 + (1 - r)
D``; the difference ``(1 - r) D`` enters through the denoiser's gain there, ``Cov[x_0 | x] /
sigma_1^2`` (second-order Tweedie), at most ``1/sigma_1^2 = 1 %`` for data of unit scale, the
scale diffusion models are trained on (EDM's ``sigma_data = 0.5``, latents scaled to unit
variance). Runs from pure noise start far above it (EDM 80, flow models at ``t -> 1``; Stable
Diffusion's 14.6 reaches it with its second level from about 20 steps on); img2img and the
later parts of a split schedule start below it and take an evaluated first step. The
assumption is not checked: for data far from unit scale (pixels in 0..255, latents without
their scaling factor) use the evaluated methods (``res_pc3_grid``). Measured on the league's
testbeds with their data scaled 4x and 10x (``python -m experiments.league.designs
--data-scale K``, the tables in ``docs/designed_methods.md``): at 10x the free methods fall
behind the ``_grid`` ones at every budget."""


@dataclass(frozen=True)
class InterpolatedMethod(Method):
    """A ``lagrange``-family method: the stored prediction ``Y`` (``prediction``: ``eps`` or
    ``D``) interpolated by a polynomial in ``interpolation`` (``"sigma"``, ``"log_sigma"``,
    ``"rho7"`` or ``"grid"``: ``sigma^p`` with ``p`` per step from the grid,
    :func:`res_torch.coefficients.grid_exponents`) through the last ``k_n = min(n + 1,
    history + 1)`` values (in the noise form those since noise last entered the run; the data
    form reuses ``D`` across noise as RES-2M does, and with ``eta`` its ancestral samples share
    RES-2M's ancestral bias, :attr:`Method.default_noise_type`) and integrated
    exactly; with ``corrector``, a UniC-style corrector through the new point (no extra
    evaluation) where it is a contraction (``docs/designed_methods.md``).
    ``linearisation_scale`` ``s`` (``None``: PEC) sets the next step's values after a
    correction from the denoiser linearised with Jacobian ``s^2/(s^2 + sigma^2)``, exact for
    data ``N(mu, s^2 I)``; ``s = 0`` keeps ``D(x^p)`` and recomputes ``eps`` at the corrected
    point (:class:`res_torch.coefficients.StepCoefficients`). ``free_start``: the first step
    takes no evaluation of its own where :meth:`starts_free` (the free first step,
    ``docs/designed_methods.md``)."""

    interpolation: str = "sigma"
    corrector: bool = False
    linearisation_scale: float | None = None

    @property
    def is_multistep(self) -> bool:
        return True

    def starts_free(self, sigmas: Sequence[float], stochastic: bool = False) -> bool:
        """Whether a run over ``sigmas`` takes the free first step: a ``free_start`` method, an
        ODE run (``stochastic`` False: no ``eta``, no churn at any level, whatever ``s_noise``;
        :attr:`res_torch.grid.StepGrid.ode`), a second step to follow and ``sigmas[1] >=
        FREE_START_SIGMA``. The step from ``sigma_0`` to ``sigma_1`` then
        predicts ``x^p = (sigma_1/sigma_0) x_0`` (the denoiser taken as 0, the analytic first
        step of Zhou et al. 2024), evaluates ``D_1 = D(x^p, sigma_1)`` (the second step's
        first value) and returns ``x_1 = (sigma_1/sigma_0) x_0 + (1 - sigma_1/sigma_0) D_1``:
        the exact step for a denoiser constant over it, as it nearly is where ``sigma`` is far
        above the data's scale.

        >>> METHODS["res_pc3_free"].starts_free([80.0, 24.0, 1.0, 0.0])
        True
        >>> METHODS["res_pc3_free"].starts_free([2.0, 1.0, 0.5, 0.0])  # img2img: evaluated
        False
        """
        return (
            self.free_start and not stochastic and len(sigmas) >= 3
            and float(sigmas[1]) >= FREE_START_SIGMA
        )  # fmt: skip

    def step_costs(self, steps: int, sigmas: Sequence[float] | None = None) -> list[int]:
        costs = [1] * steps
        if steps and sigmas is not None and self.starts_free(sigmas):
            costs[0] = 0
        return costs


def _from_tableau(tableau: Tableau) -> Method:
    order = tableau.stiff_order or tableau.classical_order or 1
    if tableau.is_multistep:
        return Method(
            tableau.name, "multistep", tableau.title, order, 1, tableau.stages - 1,
            tuple(t.name for t in tableau.startup_tableaux(cached_tableau)), tableau=tableau,
        )  # fmt: skip
    return Method(tableau.name, "erk", tableau.title, order, tableau.stages, tableau=tableau)


_ADAMS = dict(family="adams", variable="sigma", prediction="noise", noise_types=("ancestral",))
_IN_SIGMA = dict(family="sigma_rk", variable="sigma", noise_types=("ancestral",))
_INTERPOLATED_NOISE = dict(
    family="lagrange", variable="sigma", prediction="noise", noise_types=("ancestral",),
    corrector=True, linearisation_scale=0.0,
)  # fmt: skip

METHODS: dict[str, Method] = {
    "euler": Method("euler", title="Euler in sigma (k-diffusion sample_euler)", order=1,
                    **_IN_SIGMA),
    "heun": Method("heun", title="EDM Heun in sigma (Karras et al. 2022, Alg. 1)", order=2,
                   stages=2, **_IN_SIGMA),
    "ipndm": Method("ipndm", title="iPNDM: Adams-Bashforth on eps in sigma, fixed coefficients "
                    "(Zhang & Chen 2023, DEIS paper)", order=4, history=3, **_ADAMS),
    "ipndm_v": Method("ipndm_v", title="iPNDM-v: variable-step Adams-Bashforth on eps in sigma "
                      "(Zhou et al. 2023)", order=4, history=3, **_ADAMS),
    "deis": Method("deis", title="DEIS tAB: eps extrapolated by Lagrange polynomials in "
                   "log sigma, integrated exactly in sigma (Zhang & Chen 2023)", order=3,
                   history=2, **_ADAMS),
    "res_pc4_sigma": InterpolatedMethod(
        "res_pc4_sigma", title="eps interpolated in sigma (4 values), contractive corrector",
        order=5, history=3, interpolation="sigma", **_INTERPOLATED_NOISE),
    "res_pc4_logsigma": InterpolatedMethod(
        "res_pc4_logsigma", title="eps interpolated in log sigma (4 values), contractive "
        "corrector", order=5, history=3, interpolation="log_sigma", **_INTERPOLATED_NOISE),
    "res_pc4_rho7": InterpolatedMethod(
        "res_pc4_rho7", title="eps interpolated in sigma^(1/7) (4 values), contractive corrector",
        order=5, history=3, interpolation="rho7", **_INTERPOLATED_NOISE),
    "res_pc3_rho7": InterpolatedMethod(
        "res_pc3_rho7", title="eps interpolated in sigma^(1/7) (3 values), contractive corrector",
        order=4, history=2, interpolation="rho7", **_INTERPOLATED_NOISE),
    "res_pc3_grid": InterpolatedMethod(
        "res_pc3_grid", title="eps interpolated in the grid's own variable sigma^p (3 values), "
        "contractive corrector", order=4, history=2, interpolation="grid", **_INTERPOLATED_NOISE),
    "res_pc4_grid": InterpolatedMethod(
        "res_pc4_grid", title="eps interpolated in the grid's own variable sigma^p (4 values), "
        "contractive corrector", order=5, history=3, interpolation="grid", **_INTERPOLATED_NOISE),
    "res_ab3_grid": InterpolatedMethod(
        "res_ab3_grid", title="eps extrapolated in the grid's own variable sigma^p (3 values), "
        "no corrector", order=3, history=2, interpolation="grid",
        **{**_INTERPOLATED_NOISE, "corrector": False}),
    "res_pc3_free": InterpolatedMethod(
        "res_pc3_free", title="res_pc3_grid with a free first step (its evaluation at sigma_1)",
        order=4, history=2, interpolation="grid", free_start=True, **_INTERPOLATED_NOISE),
    "res_pc4_free": InterpolatedMethod(
        "res_pc4_free", title="res_pc4_grid with a free first step (its evaluation at sigma_1)",
        order=5, history=3, interpolation="grid", free_start=True, **_INTERPOLATED_NOISE),
    "res_ab3_free": InterpolatedMethod(
        "res_ab3_free", title="res_ab3_grid with a free first step (its evaluation at sigma_1)",
        order=3, history=2, interpolation="grid", free_start=True,
        **{**_INTERPOLATED_NOISE, "corrector": False}),
    "res_pc2_lambda": InterpolatedMethod(
        "res_pc2_lambda", title="D interpolated in lambda (2 values: RES-2M), exponential "
        "Adams-Moulton corrector (PEC)", order=3, history=1, interpolation="log_sigma",
        corrector=True, family="lagrange", prediction="denoised", noise_types=("ancestral",)),
}  # fmt: skip
"""The named methods that are not plain tableaux; every shipped tableau is described by
:func:`method_of` (its descriptor is read from the tableau file)."""


@functools.lru_cache(maxsize=128)
def _described(name_or_path: str, version: tuple[int, ...]) -> Method:
    try:
        return _from_tableau(_parsed(name_or_path, version))
    except TableauError as exc:
        known = sorted(set(METHODS) | set(available_tableaux()))
        raise UnknownMethodError(
            f"unknown method {name_or_path!r}; known: {', '.join(known)} ({exc})"
        ) from None


def method_of(method: str | Path | Tableau | Method) -> Method:
    """The descriptor of a named method, a shipped tableau name, a tableau path or object."""
    if isinstance(method, Method):
        return method
    if isinstance(method, Tableau):
        return _from_tableau(method)
    if not isinstance(method, str | Path):
        raise TypeError(f"method must be a name, a path or a Tableau, got {method!r}")
    if method in METHODS:  # looked up each time: a family added at run time is found
        return METHODS[method]
    return _described(str(method), _file_version(str(method)))


def methods_table() -> str:
    """A Markdown table of every method ``sample(method=...)`` runs: the named methods of
    :data:`METHODS`, then the shipped tableaux, one row per descriptor (``docs/methods.md`` holds
    its output; a test keeps the two equal)."""
    rows = [
        "| method | family | variable | prediction | order | evaluations/step | history "
        "| start-up | noise types | title |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [*METHODS, *available_tableaux()]:
        m = method_of(name)
        startup = ", ".join(m.startup) or ("lower order" if m.history else "")
        if m.free_start:
            startup = f"free first step, {startup}"
        rows.append(
            f"| `{m.name}` | {m.family} | {m.variable} | {m.prediction} | {m.order} | {m.stages} "
            f"| {m.history} | {startup} | {', '.join(m.noise_types)} | {m.title} |"
        )
    return "\n".join(rows) + "\n"
