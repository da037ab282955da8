"""The argument rules shared by the public functions: one rule per kind of argument.

An *integer* is a Python or NumPy integer (anything with ``__index__``) but not a ``bool``; a
*real* is a finite Python or NumPy real number or a one-element tensor or array of one, but not
a ``bool``. Each
check names the argument and raises the caller's library error class.

>>> import numpy as np
>>> integer("nfe", np.int64(10), 1, 100, ValueError)
10
>>> integer("nfe", 2.0, 1, 100, ValueError)
Traceback (most recent call last):
ValueError: nfe must be an integer in [1, 100], got 2.0
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

__all__ = ["integer", "nonnegative", "positive", "real", "scalar"]


def integer(name: str, value: Any, low: int, high: int | None, error: type[Exception]) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (``high=None``: no upper bound), else
    ``error``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        span = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise error(
            f"{name} must be an integer {'in ' if high is not None else ''}{span}, "
            f"got {value!r:.40}"
        )
    return number


def scalar(value: Any) -> Any:
    """A one-element tensor or NumPy array as its Python number (a copy: a later in-place
    change of the tensor does not reach it); anything else unchanged."""
    if isinstance(value, numbers.Number):
        return value
    count = value.numel() if hasattr(value, "numel") else getattr(value, "size", None)
    return value.item() if count == 1 and hasattr(value, "item") else value


def real(name: str, value: Any, error: type[Exception], *, infinite: bool = False) -> float:
    """``value`` as a finite ``float`` (``infinite``: or ``+-inf``, a bound that is not
    there), else ``error``."""
    value = scalar(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) or (infinite and not math.isnan(value)))
    ):
        kind = "real number (inf for none)" if infinite else "finite real number"
        raise error(f"{name} must be a {kind}, got {value!r:.40}")
    return float(value)


def positive(name: str, value: Any, error: type[Exception]) -> float:
    """``value`` as a finite ``float > 0``, else ``error``."""
    value = real(name, value, error)
    if value <= 0:
        raise error(f"{name} must be finite and > 0, got {value}")
    return value


def nonnegative(name: str, value: Any, error: type[Exception]) -> float:
    """``value`` as a finite ``float >= 0``, else ``error``."""
    value = real(name, value, error)
    if value < 0:
        raise error(f"{name} must be finite and >= 0, got {value}")
    return value
