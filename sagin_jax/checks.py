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


SEED_LIMIT = 2 ** 32
"""Seeds are unsigned 32-bit integers (``jax.random.key`` and the generator's seed streams)."""


def check_seed(label: str, v) -> None:
    """ValueError "``label`` must be an integer in [0, 2**32)" unless ``v`` is a seed."""
    if not is_int(v) or not 0 <= v < SEED_LIMIT:
        raise ValueError(f"{label} must be an integer in [0, 2**32), got {v!r}")


def where_prefix(path) -> str:
    """``"path: "`` for an error message about a file (empty when there is no file)."""
    return f"{path}: " if path is not None else ""


def one_line(err: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(err).split())
