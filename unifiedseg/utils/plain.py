"""Plain Python values from config nodes, for builders and constructors that take ordinary dicts and lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def to_plain(value: Any) -> Any:
    """`value` with every mapping turned into a dict and every list-like but a string into a list, all the
    way down (OmegaConf's DictConfig and ListConfig included; their interpolations are resolved as they
    are read). Anything else is returned as it is."""
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [to_plain(item) for item in value]
    return value
