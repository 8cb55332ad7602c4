"""Argument checks shared by the whole package: is a value an integer, a number, a true/false flag?

A bool is never a number here (Python's True would otherwise pass as 1); numpy integers and floats
count as ints and numbers. The `is_*` predicates are for callers that word their own message; the
`check_*` functions raise `error` (ValueError by default, or a module's own subclass) naming the
argument (`name`: the parameter or config key) and the bad value, and return the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np

from unifiedseg.utils.names import suggest


def is_int(value: Any) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (int, float, numpy number), not a bool; inf and NaN included."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A real number that is neither inf nor NaN, not a bool."""
    return is_number(value) and math.isfinite(value)


def check_int(value: Any, name: str, *, minimum: int = 0, error: type[Exception] = ValueError) -> Any:
    """`value` if it is an integer >= `minimum`, else `error` naming `name` and the value."""
    if not is_int(value):
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise error(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(value: Any, name: str, *, minimum: float | None = 0.0, strictly_above: bool = False,
                 error: type[Exception] = ValueError) -> float:
    """`value` as a float if it is a finite number >= `minimum` (> with strictly_above; no bound with
    minimum=None), else `error` naming `name` and the value."""
    if not is_finite_number(value):
        raise error(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strictly_above else value < minimum):
        raise error(f"{name} must be {'>' if strictly_above else '>='} {minimum}, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str, *, error: type[Exception] = ValueError) -> bool:
    """`value` if it is True or False (not 0, 1 or a string), else `error` naming `name` and the value."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {value!r}")
    return value


def check_keys(cfg, valid: Sequence[str], where: str, *, error: type[Exception] = ValueError) -> None:
    """`error` naming the first key of the mapping `cfg` not in `valid` (with the closest valid one) and
    listing the valid keys."""
    for key in cfg:
        if key not in valid:
            raise error(f"{where}: unknown key {key!r}{suggest(str(key), list(valid))}; valid keys: {', '.join(valid)}")
