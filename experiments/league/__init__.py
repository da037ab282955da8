"""The sampler league (issue 10): res methods against every public peer, on exact and trained
denoisers, defect against NFE on the EDM Karras grid. Run ``python -m experiments.league``."""
