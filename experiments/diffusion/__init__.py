"""The paper's experiments: samplers compared on diffusion denoisers at equal NFE.

* :mod:`~experiments.diffusion.methods` -- the compared samplers and their NFE budgets;
* :mod:`~experiments.diffusion.peers` -- diffusers' UniPC as an external peer;
* :mod:`~experiments.diffusion.scoring` -- converged reference batches, the defect, the
  Fréchet distance to a problem's data;
* :mod:`~experiments.diffusion.defect`, :mod:`~experiments.diffusion.quality`,
  :mod:`~experiments.diffusion.schedule_robustness`, :mod:`~experiments.diffusion.stochastic`,
  :mod:`~experiments.diffusion.residuals` -- one experiment each (``python -m
  experiments.diffusion.NAME [--quick] [--device cuda] [--out DIR]``).

The problems they run on are the sampling problems of :mod:`experiments.problems`.
"""
