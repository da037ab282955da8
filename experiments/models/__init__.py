"""Small diffusion models trained on data bundled with installed packages.

``data`` (scikit-learn digits, scikit-image photo patches), ``unet`` (the network), ``edm``
(EDM preconditioning and loss), ``train`` (the training command), ``classifier`` (the digits
classifier whose features define the Fréchet Digits Distance), ``load`` (``load_denoiser``).
See docs/models.md.
"""
