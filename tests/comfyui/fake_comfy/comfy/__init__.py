"""A minimal stand-in for ComfyUI's ``comfy`` package: only the sampling call contract that the
res_torch node pack relies on (``comfy/samplers.py``, ``comfy/k_diffusion/sampling.py``,
``comfy/model_sampling.py``), written for the tests; not ComfyUI's code."""
