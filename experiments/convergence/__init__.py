"""Convergence orders of exponential integrators on semilinear test problems.

* :mod:`~experiments.convergence.study` -- error against step size for every shipped tableau on
  every convergence problem of :mod:`experiments.problems`, fitted slopes against the theory;
* :mod:`~experiments.convergence.table` -- the study flattened into the figure run's table;
* :mod:`~experiments.convergence.erk_stepper` -- an independent exponential Runge--Kutta
  stepper for scalar and matrix linear parts;
* :mod:`~experiments.convergence.matrix_phi` -- matrix phi functions;
* :mod:`~experiments.convergence.slopes` -- least-squares order fits.

``python -m experiments.convergence [--quick] [--out DIR]`` runs the study
(:func:`experiments.convergence.study.main`).
"""
