"""Regenerates every figure, table and RESULTS.md of the paper's experiments.

``python -m paper_figures [--quick] [--device cuda|cpu] [--out DIR] [--force] [--only NAME ...]``
(:mod:`paper_figures.__main__`); the pipeline is :mod:`paper_figures.pipeline`, the figures
:mod:`paper_figures.plots`, the RES-vs-DPM-Solver++ text :mod:`paper_figures.summary`.
"""
