"""Type predicates shared by every validation layer (configs, scenario files, experiment files,
CLI flags): one definition of "an integer" and "a number" for the whole package.

``bool`` is an ``int`` subclass in Python; a JSON ``true`` is never a valid count or capacity, so
it is refused here.
"""
from __future__ import annotations

import math
import numbers


def is_int(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A real number (int or float, Python or numpy), not a bool. May be NaN or infinite."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_finite_number(v) -> bool:
    """A real number that is neither NaN nor infinite."""
    return is_number(v) and math.isfinite(float(v))
