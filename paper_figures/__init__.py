"""Regenerates every figure, table, RESULTS.md and README block of the paper's experiments.

``python -m paper_figures [--quick] [--device cuda|cpu] [--out DIR] [--force] [--only NAME ...]
[--redraw]`` (:mod:`paper_figures.__main__`); the pipeline and its registry of experiments is
:mod:`paper_figures.pipeline`, the figures :mod:`paper_figures.plots`, the RES-vs-DPM-Solver++
text and the league section of RESULTS.md :mod:`paper_figures.summary`, the README blocks
:mod:`paper_figures.tables` (rendering) and :mod:`paper_figures.readme` (markers;
``python -m paper_figures.readme``).
"""
