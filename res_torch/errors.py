"""The error classes of ``res_torch``: every bad input raises a :class:`ResError`.

Each class names what was wrong; all derive from :class:`ResError` (itself a ``ValueError``), so
``except res_torch.ResError`` catches every input error the library raises, and nothing else.
Messages are short: what is wrong and, where it helps, what is accepted. Arguments of the wrong
kind (a model that is not callable, an ``x`` that is not a floating-point tensor) raise
``TypeError``, as Python does.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "DeviceError",
    "ExpressionError",
    "IgnoredConfigWarning",
    "ModelOutputError",
    "NFEBudgetError",
    "NoiseError",
    "NonFiniteSampleError",
    "PhiError",
    "ResError",
    "SampleError",
    "ScheduleError",
    "SchedulerError",
    "SigmasError",
    "StepSizeError",
    "TableauError",
    "UnknownMethodError",
    "UnknownParameterError",
]


class ResError(ValueError):
    """Base class of every input error raised by ``res_torch``."""


class SigmasError(ResError):
    """The noise levels are not a valid sampling schedule."""


class ScheduleError(ResError):
    """Invalid schedule parameters."""


class NoiseError(ResError):
    """Stochastic-sampling options a method cannot run (e.g. an SDE form it does not have)."""


class StepSizeError(ResError):
    """Invalid adaptive step-size options, or an adaptive run that cannot reach ``sigma_min``
    (step size below ``h_min``, more than ``max_steps`` steps)."""


class NFEBudgetError(ResError):
    """An NFE budget that the method cannot spend exactly."""


class TableauError(ResError):
    """A tableau file is malformed, inconsistent, or asked for with invalid parameters."""


class ExpressionError(TableauError):
    """An expression string is not in the res-tableau grammar or names an unknown parameter."""


class UnknownParameterError(TableauError, TypeError):
    """A keyword that is neither a shared sampler option nor a parameter of the method (e.g. a
    misspelt ``s_chrun``). Also a ``TypeError``, as Python raises for an unexpected keyword
    argument (k-diffusion's samplers do)."""


class PhiError(ResError):
    """A phi function asked for with an index outside ``0 <= k <= K_MAX``."""


class UnknownMethodError(ResError):
    """A method name that is neither a named sampler nor a shipped tableau."""


class SampleError(ResError):
    """The sample ``x`` cannot be stepped: no batch dimension, or no values where they are
    needed."""


class AdapterError(ResError):
    """A model adapter asked for with a schedule, prediction type or noise level it cannot
    convert."""


class DeviceError(ResError):
    """A tensor on a device the request cannot use (the ``meta`` device has no values)."""


class ModelOutputError(ResError):
    """The model (or noise sampler) returned something that is not a floating-point tensor of
    the sample's shape on the sample's device."""


class NonFiniteSampleError(ResError):
    """The sample became NaN or infinite (usually: the model returned NaN/inf)."""


class SchedulerError(ResError):
    """A diffusers scheduler configuration or call the RES schedulers cannot run."""


class IgnoredConfigWarning(UserWarning):
    """A diffusers config key the RES schedulers do not honour (the warning names it)."""
