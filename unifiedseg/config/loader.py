"""Load a YAML config: `_base_` inheritance (deep merge), dotted `key=value` overrides, and every section
checked before anything is built; the resolved config written to the work dir.

    _base_: ../_base_/mseg.yaml      # a path or a list of paths, relative to this file; merged in order
    data:
      batch_size: 4                  # dicts merge key by key; lists and values replace
    optimizer:
      _delete_: true                 # MMSeg's marker: replace the base's dict instead of merging
      type: AdamW
      lr: 1e-3                       # numbers as people write them (see below)

`load_config` checks, in order: the keys of the schema's sections (an unknown key names the closest valid
one, or the section that has it: train.lr -> optimizer.lr), their types, and then every section's values
(unifiedseg.config.checks: the builders' own `check_*` functions for model, loss, optimizer, schedule, swa,
clip_grad, data.sampling and data.augmentation). Each error reads `FILE: section.key: what is wrong`;
nothing is checked again while training runs.

Numbers: YAML 1.1 (PyYAML) reads `1e-3`, `5e-4`, `1e6` or `-2e-1` as strings (its floats need a dot and a
signed exponent). Such a string, where the schema expects a number or in a builder's section, is read as
the number: an int when its value is whole (`1e6` -> 1000000, for num_examples or min_kept), else a float.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from unifiedseg.config.schema import Config
from unifiedseg.paths import find_config
from unifiedseg.utils.checks import unknown_key_error
from unifiedseg.utils.fileio import atomic_write_text, read_yaml_mapping

BASE_KEY = "_base_"
# Sections checked by their own builders rather than by the schema (unifiedseg.config.checks.SECTION_KEYS).
FREE_SECTIONS = ("model", "loss", "optimizer", "schedule", "swa", "clip_grad")
DELETE_KEY = "_delete_"
# A number in exponent notation, which YAML 1.1 leaves a string unless it has a dot and a signed exponent.
EXPONENT_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names the file and the dotted key."""


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config at `path` with its bases and `overrides` (`a.b=value`, value parsed as YAML), checked.

    A relative `path` that does not exist from the working directory is looked up among the shipped
    configs (`config/train/demo/unified.yaml` works from anywhere; unifiedseg.paths.find_config)."""
    raw = _load_with_bases(find_config(path), chain=())
    for override in overrides:
        _apply_override(raw, override)
    raw = _with_numbers(raw, Config)
    problems = _unknown_keys(raw, Config, prefix="")
    if problems:
        raise ConfigError("\n".join(f"{path}: {problem}" for problem in problems))
    try:
        # A builder-checked section given in the config replaces the schema's default as a whole
        # (a default SGD momentum must not leak into a configured AdamW).
        cfg = OmegaConf.merge(OmegaConf.structured(Config), {k: v for k, v in raw.items() if k not in FREE_SECTIONS})
        for key in FREE_SECTIONS:
            if key in raw:
                cfg[key] = raw[key]
    except (OmegaConfBaseException, TypeError) as err:
        raise ConfigError(f"{path}: {getattr(err, 'full_key', None) or 'config'}: {_type_message(err)}") from None
    from unifiedseg.config.checks import check_sections  # the builders' modules: torch, timm, OpenCV

    problems = [_with_hint_elsewhere(err) for err in check_sections(cfg)]
    if problems:
        raise ConfigError("\n".join(f"{path}: {problem}" for problem in problems))
    return cfg


# OmegaConf's words for a value a typed field cannot hold, and what the field holds in ours.
_CONVERSION = re.compile(r"Value '(?P<value>.*)' of type '(?P<type>\w+)' could not be converted to (?P<target>\w+)")
_EXPECTED = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _type_message(err: Exception) -> str:
    """`must be an integer, got 'many'` for OmegaConf's conversion errors, else its first line."""
    message = str(err).splitlines()[0]
    match = _CONVERSION.fullmatch(message)
    if match is None or match["target"] not in _EXPECTED:
        return message
    value = repr(match["value"]) if match["type"] == "str" else match["value"]
    return f"must be {_EXPECTED[match['target']]}, got {value}"


def dump_config(cfg: DictConfig, path: str | os.PathLike) -> None:
    """Write the resolved config (what actually ran) atomically."""
    atomic_write_text(Path(path), OmegaConf.to_yaml(cfg, resolve=True))


def _load_with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"_base_ cycle: {' -> '.join(str(p) for p in chain + (path,))}")
    data = read_yaml_mapping(path, ConfigError, "a mapping of config keys")
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    for base in bases:
        merged = _deep_merge(merged, _load_with_bases(path.parent / base, chain + (path,)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict, update: dict) -> dict:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and value.get(DELETE_KEY):
            result[key] = {k: v for k, v in value.items() if k != DELETE_KEY}
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def _apply_override(raw: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must be key=value, e.g. data.batch_size=4")
    dotted, text = override.split("=", 1)
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {err}") from None
    node = raw
    keys = dotted.strip().split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {key!r} holds a value, not a section")
        node = child
    node[keys[-1]] = value


def _unknown_keys(raw: dict, schema, prefix: str) -> list[str]:
    """Keys of `raw` that the dataclass `schema` does not declare, recursing into nested dataclasses."""
    hints = typing.get_type_hints(schema)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(schema)}
    problems = []
    for key, value in raw.items():
        if key not in fields:
            section = prefix.rstrip(".")
            err = unknown_key_error(prefix + str(key), list(fields),
                                    f" (valid keys{' of ' + section if section else ''}: {', '.join(fields)})")
            problems.append(_with_hint_elsewhere(err))
            continue
        nested = _dataclass_of(fields[key])
        if nested is not None and isinstance(value, dict):
            problems += _unknown_keys(value, nested, prefix + key + ".")
    return problems


def _with_hint_elsewhere(err: Exception) -> str:
    """The message of `err`; for an unknown key that other sections have by that very name, with those
    suggested (train.lr: ...; did you mean 'optimizer.lr'?) unless its own section has it in another case."""
    dotted = getattr(err, "unknown_key", None)
    if dotted is None or "[" in dotted:
        return str(err)
    section, _, name = dotted.rpartition(".")
    if any(key.lower() == name.lower() for key in err.valid_keys):
        return str(err)
    elsewhere = [key for key in _key_index().get(name, []) if key.rpartition(".")[0] != section]
    if not elsewhere:
        return str(err)
    hint = " or ".join(repr(key) for key in elsewhere)
    return f"{dotted}: unknown key; did you mean {hint}?{err.key_tail}"


def _key_index() -> dict[str, list[str]]:
    """Every key name a config may hold -> the dotted keys it stands at."""
    index: dict[str, list[str]] = {}

    def walk(schema, prefix: str) -> None:
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            if f.name in FREE_SECTIONS:
                continue
            index.setdefault(f.name, []).append(prefix + f.name)
            nested = _dataclass_of(hints[f.name])
            if nested is not None:
                walk(nested, prefix + f.name + ".")

    from unifiedseg.config.checks import SECTION_KEYS

    walk(Config, "")
    for section, keys in SECTION_KEYS.items():
        index.setdefault(section, []).append(section)
        for key in keys:
            index.setdefault(key, []).append(f"{section}.{key}")
    return index


def _with_numbers(raw: dict, schema) -> dict:
    """`raw` with numbers in exponent notation that YAML left strings read as numbers, where the schema
    expects a number (or Any) and anywhere in the builders' sections."""
    hints = typing.get_type_hints(schema)
    out = {}
    for key, value in raw.items():
        annotation = hints.get(key) if key in {f.name for f in dataclasses.fields(schema)} else None
        nested = _dataclass_of(annotation) if annotation is not None else None
        if nested is not None and isinstance(value, dict):
            out[key] = _with_numbers(value, nested)
        elif annotation is not None and (key in FREE_SECTIONS or _holds_numbers(annotation)):
            out[key] = _numbers(value)
        else:
            out[key] = value
    return out


def _holds_numbers(annotation) -> bool:
    """Whether a schema annotation is or contains int, float or Any (Optional[list[float]], dict[str, int], ...)."""
    if annotation in (int, float, typing.Any):
        return True
    return any(_holds_numbers(arg) for arg in typing.get_args(annotation))


def _numbers(value):
    """`value` with every exponent-notation string (all the way down) turned into an int (a whole value) or
    a float."""
    if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() else number
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    return value


def _dataclass_of(annotation):
    if dataclasses.is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):  # Optional[SomeConfig]
        if dataclasses.is_dataclass(arg):
            return arg
    return None
