"""Experiments: convergence slopes and the paper's diffusion-model experiments."""
