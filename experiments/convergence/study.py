"""Empirical convergence orders of every tableau on every test problem, against the theory.

For each convergence problem (:mod:`experiments.problems`) and method (a shipped
``res-tableau``), the error
``||x_N - x(T)||_max`` (max norm over batch and components) is measured for uniform step
counts ``N`` (uniform in ``lambda = -log sigma`` for diffusion ODEs, in ``t`` for the PDE) and
the order is the least-squares slope of ``log error`` on ``log h`` over the asymptotic range
(:func:`experiments.convergence.slopes.fit_slope`: finest ``window`` points above the error floor).

Which prediction applies (``docs/MATH.md`` §3, Hochbruck & Ostermann 2005):

* diffusion ODEs (``L = -1``, bounded): every method converges with its **classical** order as
  ``h -> 0``; the measured slope must equal it within ``tolerance``;
* the parabolic PDE (``||h L|| >> 1``, unbounded as the mesh is refined): only the **stiff**
  order is guaranteed, as a lower bound uniform in ``||L||``; the measured slope must be at
  least the stiff order minus ``tolerance`` and may exceed it (order reduction is a statement
  about the worst case; how much a method loses on one problem is measured, not predicted).

The ``tolerance`` (default 0.3) allows for the ``O(h)`` relative size of the next error term in
a 4-point fit over a factor 8 in ``h``. Diffusion ODEs are integrated by the library's samplers
(``res_torch.sample``) or, with ``integrator="stepper"``, by the independent
:func:`experiments.convergence.erk_stepper.integrate_erk`; the PDE always by the latter
(matrix phi functions).

Command line (writes ``errors.csv``, ``slopes.csv``, ``slopes.json`` and one ``PROBLEM.png`` per
problem to ``--out``)::

    python -m experiments.convergence [--quick] [--out results/convergence]
        [--problems NAME ...] [--methods NAME ...] [--integrator sampler|stepper]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiments.convergence.erk_stepper import MatrixLinearPart, ScalarLinearPart, integrate_erk
from experiments.convergence.slopes import (
    DEFAULT_WINDOW,
    MIN_POINTS,
    SlopeFit,
    SlopeFitError,
    fit_slope,
)
from experiments.experiment_runner import at_least, positive_real, writable_folder
from experiments.problems import (
    CONVERGENCE_PROBLEMS,
    ConvergenceProblem,
    DiffusionProblem,
    SamplingProblem,
    get_problem,
)
from experiments.problems.base import Denoiser
from res_torch import sample
from res_torch.errors import ResError
from res_torch.tableau import available_tableaux, load_tableau

__all__ = [
    "DEFAULT_TOLERANCE",
    "ConvergenceError",
    "ConvergenceResult",
    "PredictedOrders",
    "convergence_study",
    "error_floor",
    "main",
    "measure_errors",
    "predicted_orders",
    "run_convergence",
]

DEFAULT_TOLERANCE = 0.3
INTEGRATORS = ("sampler", "stepper")
ROUNDOFF_FACTOR = 1e3


class ConvergenceError(ValueError):
    """A convergence study was requested with invalid problems, methods or step counts."""


@dataclass(frozen=True)
class PredictedOrders:
    """The orders ``res_theory`` wrote into a tableau's ``order`` object (None if absent)."""

    stiff: int | None
    scalar: int | None
    classical: int | None


def predicted_orders(method: str) -> PredictedOrders:
    """Stiff, scalar (``L = -1``) and classical order of the shipped tableau ``method``."""
    _check_methods([method])
    document = json.loads(
        (resources.files("res_torch") / "tableaux" / f"{method}.json").read_text()
    )
    order = document.get("order") or {}
    return PredictedOrders(
        stiff=order.get("stiff_order"),
        scalar=order.get("scalar_order"),
        classical=order.get("classical_order"),
    )


def _check_methods(methods: Sequence[str]) -> None:
    known = available_tableaux()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConvergenceError(
            f"unknown method(s) {unknown}; available tableaux: {', '.join(known) or 'none'}"
        )


def _check_steps(steps: Sequence[int]) -> tuple[int, ...]:
    steps = tuple(steps)
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in steps):
        raise ConvergenceError(f"step counts must be positive integers, got {steps}")
    if len(set(steps)) < MIN_POINTS:
        raise ConvergenceError(
            f"a slope fit needs at least {MIN_POINTS} distinct step counts, got {steps}"
        )
    return tuple(sorted(set(steps)))


def error_floor(problem: ConvergenceProblem, evaluations: int = 0) -> float:
    """Errors at or below this are not trusted: the largest of 10x the reference's error
    estimate, ``1000 eps max(1, ||x(T)||_max)`` and, for a solve that made ``evaluations``
    evaluations (each applying matrix phi functions on the PDE), 10x the accumulated rounding
    bound ``evaluations eps max(1, ||x(T)||_max)`` (N operations of norm at most 1 each round by
    at most ``eps``: Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, ch. 3).
    On the stiff PDE the measured plateau of luan_ostermann5, 2.5e-13 at 2048 evaluations, is
    0.6x that bound; a fixed floor of 2.2e-13 let it into the fit (slope 1.7 instead of 5)."""
    solution = problem.solution()
    accuracy = problem.solution_accuracy() if isinstance(problem, DiffusionProblem) else 0.0
    eps = torch.finfo(torch.float64).eps
    scale = max(1.0, float(solution.abs().max()))
    return max(10 * accuracy, ROUNDOFF_FACTOR * eps * scale, 10 * evaluations * eps * scale)


class _CountingDenoiser:
    """Wraps a denoiser and counts its calls (one call = one NFE for the whole batch)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma)


def _solve(
    problem: ConvergenceProblem,
    method: str,
    n_steps: int,
    integrator: str,
    linear: MatrixLinearPart | None,
) -> tuple[torch.Tensor, int]:
    """The numerical solution at the final time and the number of evaluations of ``g``/``D``."""
    if isinstance(problem, DiffusionProblem):
        model = _CountingDenoiser(problem.denoiser)
        if integrator == "sampler":
            x = sample(model, problem.x_start, problem.sigmas(n_steps), method=method, disable=True)
        else:
            lam0, lam1 = -math.log(problem.sigma_start), -math.log(problem.sigma_end)

            def g(x: torch.Tensor, lam: float) -> torch.Tensor:
                sigma = math.exp(-lam) * x.new_ones(x.shape[0])
                return model(x, sigma)

            x = integrate_erk(
                method, ScalarLinearPart(-1.0), g, problem.x_start, lam0, lam1, n_steps
            )
        return x, model.calls
    calls = 0

    def counted(u: torch.Tensor, t: float) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return problem.g(u, t)

    linear = linear if linear is not None else MatrixLinearPart(problem.linear)
    u = integrate_erk(method, linear, counted, problem.u0, problem.t0, problem.t_end, n_steps)
    return u, calls


def measure_errors(
    problem: ConvergenceProblem,
    method: str,
    steps: Sequence[int],
    integrator: str = "sampler",
    linear: MatrixLinearPart | None = None,
) -> tuple[list[float], list[int]]:
    """Max-norm errors at the final time and evaluation counts, one per entry of ``steps``.

    ``linear`` (PDE only) is a shared :class:`MatrixLinearPart` of ``problem.linear`` so that
    several methods reuse its cached matrix phi functions.
    """
    if integrator not in INTEGRATORS:
        raise ConvergenceError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    _check_methods([method])
    solution = problem.solution()
    errors, evaluations = [], []
    for n in steps:
        x, calls = _solve(problem, method, n, integrator, linear)
        errors.append(float((x - solution).abs().max()))
        evaluations.append(calls)
    return errors, evaluations


@dataclass(frozen=True)
class ConvergenceResult:
    """Errors of one method on one problem, the fitted order and the prediction it is held to."""

    problem: str
    method: str
    regime: str
    n_steps: tuple[int, ...]
    h: tuple[float, ...]
    evaluations: tuple[int, ...]
    errors: tuple[float, ...]
    floor: float
    fit: SlopeFit | None
    fit_error: str | None
    predicted: PredictedOrders
    prediction_used: str
    tolerance: float

    @property
    def expected(self) -> int | None:
        """The order the measured slope is held to (classical or stiff, see module doc)."""
        return getattr(self.predicted, self.prediction_used)

    @property
    def agrees(self) -> bool | None:
        """Whether the slope meets the prediction; None when there is no fit or no prediction."""
        if self.fit is None or self.expected is None:
            return None
        if self.prediction_used == "stiff":
            return self.fit.slope >= self.expected - self.tolerance
        return abs(self.fit.slope - self.expected) <= self.tolerance

    def summary(self) -> dict:
        """One flat row for ``slopes.csv`` / ``slopes.json``."""
        fit = self.fit
        return {
            "problem": self.problem,
            "method": self.method,
            "regime": self.regime,
            "measured_order": None if fit is None else round(fit.slope, 4),
            "fit_h_min": None if fit is None else fit.h_min,
            "fit_h_max": None if fit is None else fit.h_max,
            "fit_points": None if fit is None else fit.n_points,
            "fit_error": self.fit_error,
            "stiff_order": self.predicted.stiff,
            "scalar_order": self.predicted.scalar,
            "classical_order": self.predicted.classical,
            "prediction_used": self.prediction_used,
            "expected": self.expected,
            "criterion": (
                f"slope >= {self.prediction_used} - {self.tolerance}"
                if self.prediction_used == "stiff"
                else f"|slope - {self.prediction_used}| <= {self.tolerance}"
            ),
            "agrees": self.agrees,
            "error_floor": self.floor,
        }


def _convergence_problem(name: str) -> ConvergenceProblem:
    """The convergence problem ``name`` of :mod:`experiments.problems`."""
    if name not in CONVERGENCE_PROBLEMS:
        raise ConvergenceError(
            f"unknown convergence problem {name!r}; available: {', '.join(CONVERGENCE_PROBLEMS)}"
        )
    problem = get_problem(name)
    if isinstance(problem, SamplingProblem):  # the registry's kinds are disjoint
        raise ConvergenceError(f"{name!r} is a sampling problem")
    return problem


def convergence_study(
    problem: ConvergenceProblem | str,
    method: str,
    steps: Sequence[int] | None = None,
    quick: bool = False,
    integrator: str = "sampler",
    window: int = DEFAULT_WINDOW,
    tolerance: float = DEFAULT_TOLERANCE,
    linear: MatrixLinearPart | None = None,
) -> ConvergenceResult:
    """Measure the errors of ``method`` on ``problem`` and fit the order.

    ``steps`` defaults to the problem's ``quick_steps`` (``quick=True``) or ``steps``. A fit that
    is impossible (too few points above the error floor) is recorded in ``fit_error``, not
    replaced by a number.
    """
    if isinstance(problem, str):
        problem = _convergence_problem(problem)
    steps = _check_steps(
        steps if steps is not None else (problem.quick_steps if quick else problem.steps)
    )
    predicted = predicted_orders(method)
    errors, evaluations = measure_errors(problem, method, steps, integrator, linear)
    if isinstance(problem, DiffusionProblem):
        span, regime, used = problem.lambda_span, "scalar L = -1 (diffusion ODE)", "classical"
    else:
        span, regime, used = problem.t_end - problem.t0, "stiff matrix L (parabolic PDE)", "stiff"
    h = tuple(span / n for n in steps)
    floor = error_floor(problem, 0 if isinstance(problem, DiffusionProblem) else max(evaluations))
    fit, fit_error = None, None
    try:
        fit = fit_slope(h, errors, floor=floor, window=window)
    except SlopeFitError as exc:
        fit_error = str(exc)
    return ConvergenceResult(
        problem=problem.name,
        method=method,
        regime=regime,
        n_steps=steps,
        h=h,
        evaluations=tuple(evaluations),
        errors=tuple(errors),
        floor=floor,
        fit=fit,
        fit_error=fit_error,
        predicted=predicted,
        prediction_used=used,
        tolerance=tolerance,
    )


def run_convergence(
    problems: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    quick: bool = False,
    out: Path | str | None = Path("results/convergence"),
    integrator: str = "sampler",
    window: int = DEFAULT_WINDOW,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: bool = True,
) -> list[ConvergenceResult]:
    """Every method on every problem (defaults: all of both); writes tables and plots to ``out``
    unless it is None."""
    problems = list(CONVERGENCE_PROBLEMS) if problems is None else list(problems)
    methods = available_tableaux() if methods is None else list(methods)
    unknown = [p for p in problems if p not in CONVERGENCE_PROBLEMS]
    if unknown:
        raise ConvergenceError(
            f"unknown convergence problem(s) {unknown}; "
            f"available: {', '.join(CONVERGENCE_PROBLEMS)}"
        )
    _check_methods(methods)
    if not methods:
        raise ConvergenceError("no methods to run (no tableaux are shipped in res_torch/tableaux)")
    results = []
    bar = tqdm(total=len(problems) * len(methods), desc="convergence", disable=not progress)
    for name in problems:
        problem = _convergence_problem(name)
        linear = None if isinstance(problem, DiffusionProblem) else MatrixLinearPart(problem.linear)
        for method in methods:
            bar.set_postfix_str(f"{name} / {method}")
            results.append(
                convergence_study(
                    problem, method, None, quick, integrator, window, tolerance, linear
                )
            )
            bar.update()
    bar.close()
    if out is not None:
        write_results(results, Path(out))
    return results


def write_results(results: Sequence[ConvergenceResult], out: Path) -> None:
    """``errors.csv`` (every measurement), ``slopes.csv``/``slopes.json`` (one row per problem and
    method) and a log-log plot ``PROBLEM.png`` per problem."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "errors.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["problem", "method", "n_steps", "h", "evaluations", "error"])
        for r in results:
            for row in zip(r.n_steps, r.h, r.evaluations, r.errors, strict=True):
                writer.writerow([r.problem, r.method, *row])
    rows = [r.summary() for r in results]
    if rows:
        with (out / "slopes.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    details = [
        {
            **r.summary(),
            "n_steps": r.n_steps,
            "h": r.h,
            "evaluations": r.evaluations,
            "errors": r.errors,
            "predicted": asdict(r.predicted),
        }
        for r in results
    ]
    (out / "slopes.json").write_text(json.dumps(details, indent=1))
    for problem in dict.fromkeys(r.problem for r in results):
        plot_problem([r for r in results if r.problem == problem], out / f"{problem}.png")


def plot_problem(results: Sequence[ConvergenceResult], path: Path) -> None:
    """Log-log error against step size, single-step and multistep methods in two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {name: load_tableau(name).kind for name in {r.method for r in results}}
    panels = [k for k in ("singlestep", "multistep") if k in kinds.values()]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    colours, markers = plt.get_cmap("tab20"), "osD^v<>"
    for ax, kind in zip(axes[0], panels, strict=True):
        chosen = [r for r in results if kinds[r.method] == kind]
        for index, r in enumerate(chosen):
            slope = "no fit" if r.fit is None else f"{r.fit.slope:.2f}"
            label = f"{r.method}: {slope} (pred. {r.prediction_used} {r.expected})"
            style = dict(color=colours(index % 20), marker=markers[index % len(markers)], ms=4)
            ax.loglog(r.h, r.errors, "-", label=label, **style)
        ax.axhline(results[0].floor, color="grey", ls=":", lw=1, label="error floor")
        ax.set_xlabel("step size h")
        ax.set_ylabel("max-norm error at final time")
        ax.set_title(f"{results[0].problem}: {kind}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.convergence", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer step counts (CI)")
    parser.add_argument("--out", type=Path, default=Path("results/convergence"))
    parser.add_argument(
        "--problems", nargs="+", help=f"default: all of {', '.join(CONVERGENCE_PROBLEMS)}"
    )
    parser.add_argument("--methods", nargs="+", help="tableau names; default: all shipped")
    parser.add_argument("--integrator", choices=INTEGRATORS, default="sampler")
    parser.add_argument(
        "--window", type=at_least(3), default=DEFAULT_WINDOW, help="points per slope fit (>= 3)"
    )
    parser.add_argument(
        "--tolerance", type=positive_real, default=DEFAULT_TOLERANCE, help="slope vs order"
    )
    args = parser.parse_args(argv)
    writable_folder(parser, args.out)
    try:
        results = run_convergence(
            args.problems,
            args.methods,
            args.quick,
            args.out,
            args.integrator,
            args.window,
            args.tolerance,
        )
    except (ConvergenceError, ResError) as err:  # an unknown problem or method name
        parser.error(str(err))
    print(
        f"{'problem':24s} {'method':22s} {'slope':>6s} {'stiff':>5s} {'scal.':>5s} "
        f"{'class.':>6s} {'used':>9s} agrees  fit range"
    )
    for r in results:
        p = r.predicted
        slope = "  --  " if r.fit is None else f"{r.fit.slope:6.2f}"
        span = r.fit_error if r.fit is None else f"h in [{r.fit.h_min:.3g}, {r.fit.h_max:.3g}]"
        print(
            f"{r.problem:24s} {r.method:22s} {slope} {p.stiff!s:>5s} {p.scalar!s:>5s} "
            f"{p.classical!s:>6s} {r.prediction_used:>9s} {r.agrees!s:6s} {span}"
        )
    print(f"tables and plots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
