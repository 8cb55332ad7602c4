"""Load a YAML config: `_base_` inheritance (deep merge), dotted `key=value` overrides, checking against
the schema, and the resolved config written to the work dir.

    _base_: ../_base_/mseg.yaml      # a path or a list of paths, relative to this file; merged in order
    data:
      batch_size: 4                  # dicts merge key by key; lists and values replace
    optimizer:
      _delete_: true                 # MMSeg's marker: replace the base's dict instead of merging
      type: AdamW
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from unifiedseg.config.schema import Config
from unifiedseg.paths import find_config
from unifiedseg.utils.names import suggest
from unifiedseg.utils.fileio import atomic_write_text, read_yaml_mapping

BASE_KEY = "_base_"
# Sections checked by their own builders rather than by the schema.
FREE_SECTIONS = ("model", "loss", "optimizer", "schedule", "swa", "clip_grad")
DELETE_KEY = "_delete_"


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names the file and the key."""


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config at `path` with its bases and `overrides` (`a.b=value`, value parsed as YAML), checked.

    A relative `path` that does not exist from the working directory is looked up among the shipped
    configs (`config/train/demo/unified.yaml` works from anywhere; unifiedseg.paths.find_config)."""
    raw = _load_with_bases(find_config(path), chain=())
    for override in overrides:
        _apply_override(raw, override)
    problems = _unknown_keys(raw, Config, prefix="")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    try:
        # A builder-checked section given in the config replaces the schema's default as a whole
        # (a default SGD momentum must not leak into a configured AdamW).
        cfg = OmegaConf.merge(OmegaConf.structured(Config), {k: v for k, v in raw.items() if k not in FREE_SECTIONS})
        for key in FREE_SECTIONS:
            if key in raw:
                cfg[key] = raw[key]
        return cfg
    except (OmegaConfBaseException, TypeError) as err:
        key = getattr(err, "full_key", None)
        message = str(err).splitlines()[0]
        raise ConfigError(f"{path}: bad value{f' for {key}' if key else ''}: {message}") from None


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
            problems.append(f"unknown key {prefix + str(key)!r}{suggest(str(key), list(fields))} "
                            f"(valid keys{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)})")
            continue
        nested = _dataclass_of(fields[key])
        if nested is not None and isinstance(value, dict):
            problems += _unknown_keys(value, nested, prefix + key + ".")
    return problems


def _dataclass_of(annotation):
    if dataclasses.is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):  # Optional[SomeConfig]
        if dataclasses.is_dataclass(arg):
            return arg
    return None
