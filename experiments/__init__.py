"""Experiments: convergence slopes and the paper's diffusion-model experiments.

* :mod:`experiments.problems` -- the one registry of test problems (convergence ODEs and
  sampling denoisers), :func:`experiments.problems.get_problem`;
* :mod:`experiments.convergence` -- convergence orders on semilinear problems
  (``python -m experiments.convergence``);
* :mod:`experiments.diffusion` -- the paper's sampler comparisons at equal NFE
  (``python -m experiments.diffusion.NAME``);
* :mod:`experiments.models` -- the small EDM networks trained here and the loader;
* shared tools: :mod:`experiments.reference` (converged ODE references),
  :mod:`experiments.frechet` (feature spaces, Fréchet distance),
  :mod:`experiments.experiment_runner` (configured runs, cached tables, command lines).
"""
