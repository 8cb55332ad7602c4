"""Argument checks shared by the whole package: is a value an integer, a number, a true/false flag?

A bool is never a number here (Python's True would otherwise pass as 1); numpy integers and floats
count as ints and numbers. The `is_*` predicates are for callers that word their own message; the
`check_*` functions raise `error` (ValueError by default, or a module's own subclass) naming the
argument (`name`: the parameter or dotted config key) and the bad value, and return the value. Every
message reads `name: what is wrong`, so a config loader can place it under its file and section
(`keyed`), e.g. "optimizer.momentum: must be a number in [0, 1), got 'a'".
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
    if not is_int(value) or value < minimum:
        raise error(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(value: Any, name: str, *, minimum: float | None = 0.0, strictly_above: bool = False,
                 below: float | None = None, error: type[Exception] = ValueError) -> float:
    """`value` as a float if it is a finite number >= `minimum` (> with strictly_above; no bound with
    minimum=None) and < `below` (no bound with None), else `error` naming `name`, the range and the value."""
    if not (is_finite_number(value) and (minimum is None or (value > minimum if strictly_above else value >= minimum))
            and (below is None or value < below)):
        raise error(f"{name}: must be {_number_range(minimum, strictly_above, below)}, got {value!r}")
    return float(value)


def _number_range(minimum: float | None, strictly_above: bool, below: float | None) -> str:
    if minimum is None and below is None:
        return "a finite number"
    if below is None:
        return f"a number {'>' if strictly_above else '>='} {minimum:g}"
    if minimum is None:
        return f"a number < {below:g}"
    return f"a number in {'(' if strictly_above else '['}{minimum:g}, {below:g})"


def check_size_pair(value: Any, name: str, *, square: bool = True,
                    error: type[Exception] = ValueError) -> tuple[int, int]:
    """An image size as (height, width): a pair of positive ints, or (with `square`) one positive int for
    both sides; else `error` naming `name` and the value."""
    if square and is_int(value) and value > 0:
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    what = "a positive int or a pair of positive ints (h, w)" if square else "a (height, width) pair of positive ints"
    raise error(f"{name}: must be {what}, got {value!r}")


def check_bool(value: Any, name: str, *, error: type[Exception] = ValueError) -> bool:
    """`value` if it is True or False (not 0, 1 or a string), else `error` naming `name` and the value."""
    if not isinstance(value, bool):
        raise error(f"{name}: must be true or false, got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Sequence[Any], *, error: type[Exception] = ValueError) -> Any:
    """`value` if it is one of `choices`, else `error` naming `name`, the choices, the value and the closest
    choice."""
    if isinstance(value, (str, int, float, type(None))) and value in choices and not isinstance(value, bool):
        return value
    hint = suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
    raise error(f"{name}: must be one of {', '.join(str(c) for c in choices)}, got {value!r}{hint}")


def check_keys(cfg, valid: Sequence[str], where: str, *, note: str = "", error: type[Exception] = ValueError) -> None:
    """`error` naming the first key of the mapping `cfg` not in `valid` as `where.key`, with the closest valid
    one, and listing the valid keys (`note` says of what, e.g. " for type SGD").

    The error carries `unknown_key` (the dotted key), `valid_keys`, `key_hint` (the suggestion, or "") and
    `key_tail` (the list of valid keys), so that a caller that knows the other sections can suggest one of
    their keys instead (unifiedseg.config.loader)."""
    for key in cfg:
        if key not in valid:
            raise unknown_key_error(f"{where}.{key}", valid, f" (valid keys{note}: {', '.join(valid)})", error)


def unknown_key_error(dotted: str, valid: Sequence[str], tail: str, error: type[Exception] = ValueError) -> Exception:
    """The error for the unknown key `dotted` (see check_keys): `dotted: unknown key; did you mean 'x'?{tail}`
    with the closest of `valid`, carrying `unknown_key`, `valid_keys`, `key_hint` and `key_tail`."""
    hint = suggest(dotted.rpartition(".")[2], list(valid))
    err = error(f"{dotted}: unknown key{hint}{tail}")
    err.unknown_key, err.valid_keys, err.key_hint, err.key_tail = dotted, tuple(valid), hint, tail
    return err


def keyed(err: Exception, prefix: str, keys: Sequence[str], *, error: type[Exception] | None = None) -> Exception:
    """`err` (its message `name: reason` or `name[i]: reason` for a name in `keys`, or any other text)
    with its message placed under the dotted `prefix`: `prefix.name: reason`, or `prefix: text`."""
    message = str(err.args[0]) if err.args else str(err)
    dotted = any(message.startswith(key) and message[len(key):len(key) + 1] in (":", "[", ".") for key in keys)
    return (error or type(err))(f"{prefix}.{message}" if dotted else f"{prefix}: {message}")
