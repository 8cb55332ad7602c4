"""Build the losses a config names (MMSeg's `loss_decode` format) and combine them into a LossSet.

Config, as in MMSeg: `loss_decode` is one mapping or a list of them, each
    {type: CrossEntropyLoss | DiceLoss | LovaszLoss | FocalLoss | PartialLabelLoss,
     loss_weight: 1.0, loss_name: loss_ce | loss_dice | loss_lovasz | loss_focal | loss_partial,
     ...the loss's own keys (its constructor's keyword arguments)}
Names must be unique and start with `loss` (the trainer sums the entries whose name does; any other
name would be logged but silently left out of backward). A `sampler` mapping next to `loss_decode`,
`{type: OHEMPixelSampler, thresh: 0.7, min_kept: 100000}`, makes every label-map loss count only the
pixels OHEM keeps (PartialLabelLoss, which reads its own partial label map, is not sampled).

`class_weight` (CrossEntropyLoss, DiceLoss) is a list with one number per class, or a string
`PATH.json:METHOD` naming the JSON that `tools/dataset_stats.py --out` writes and one of its
`class_weight` methods (`inverse` or `median`), e.g. `work_dirs/stats.json:median`. A relative PATH
is relative to the current working directory. Lengths of class_weight, FocalLoss alpha lists and
LovaszLoss class lists are checked against the model's number of classes when the config loads.

`ignore_index` is the label space's ignore label (`TaxonomyConverter.ignore_index`: 255, or 65535
for spaces of more than 255 classes): every loss and the sampler get it, and a config that sets
another value is refused, since crops are padded with the space's ignore label.

`check_loss_cfg(cfg)` holds the rules of the whole `loss` section that need no label space (keys,
types, weights, names, each loss's and the sampler's own arguments, the form of a class-weight
reference); the config loader runs it when a config loads. `build_losses` applies the same rules and
those that need the label space (class counts, ignore label, the class-weight file itself).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unifiedseg.constants import IGNORE_INDEX, WEIGHT_METHODS
from unifiedseg.losses.cross_entropy import CrossEntropyLoss
from unifiedseg.losses.dice import DiceLoss
from unifiedseg.losses.focal import FocalLoss
from unifiedseg.losses.lovasz import LovaszLoss
from unifiedseg.losses.ohem import OHEMPixelSampler
from unifiedseg.losses.partial import PartialLabelLoss
from unifiedseg.utils.checks import check_keys, is_finite_number, is_int, is_number
from unifiedseg.utils.names import suggest
from unifiedseg.utils.plain import to_plain

# The keys of the `loss` config section; a missing loss_decode is plain cross-entropy.
LOSS_SECTION_KEYS = ("loss_decode", "sampler")
DEFAULT_LOSS_DECODE = {"type": "CrossEntropyLoss"}
COMMON_KEYS = ("type", "loss_weight", "loss_name")
LOSS_PREFIX = "loss"
OHEM_KEPT = "ohem_kept"


class LossConfigError(ValueError):
    """A loss or sampler config that cannot be built; the message names the config key."""


@dataclass(frozen=True)
class LossType:
    """A loss a config may name: its class and the name it logs under by default."""

    loss_class: type
    default_name: str


LOSS_TYPES = {
    "CrossEntropyLoss": LossType(CrossEntropyLoss, "loss_ce"),
    "DiceLoss": LossType(DiceLoss, "loss_dice"),
    "LovaszLoss": LossType(LovaszLoss, "loss_lovasz"),
    "FocalLoss": LossType(FocalLoss, "loss_focal"),
    "PartialLabelLoss": LossType(PartialLabelLoss, "loss_partial"),
}
SAMPLER_TYPES = {"OHEMPixelSampler": OHEMPixelSampler}


class LossSet(nn.Module):
    """Named, weighted losses applied to one prediction.

    `loss_set(logits, labels, partial_labels=None, target_sets=None)` returns {name: weight * loss}
    for every configured loss, plus `ohem_kept` (fraction of pixels OHEM kept; not a loss) when a
    sampler is set. partial_labels and target_sets (see unifiedseg.losses.partial) are required
    when a PartialLabelLoss is configured (`needs_partial_labels`) and unused otherwise.
    """

    def __init__(self, *, names: list[str], weights: list[float], losses: list[nn.Module],
                 sampler: OHEMPixelSampler | None = None) -> None:
        super().__init__()
        if not (len(names) == len(weights) == len(losses)):
            raise ValueError(f"LossSet: {len(names)} names, {len(weights)} weights and {len(losses)} losses; "
                             f"give one of each per loss")
        self.names = list(names)
        self.weights = [float(w) for w in weights]
        self.losses = nn.ModuleList(losses)
        self.sampler = sampler

    @property
    def needs_partial_labels(self) -> bool:
        return any(isinstance(loss, PartialLabelLoss) for loss in self.losses)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, partial_labels: torch.Tensor | None = None,
                target_sets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        kept = None
        if self.sampler is not None:
            kept = self.sampler.sample(logits, labels)
        out = {}
        for name, weight, loss in zip(self.names, self.weights, self.losses):
            if isinstance(loss, PartialLabelLoss):
                if partial_labels is None or target_sets is None:
                    raise ValueError(f"LossSet: {name} (PartialLabelLoss) needs partial_labels and target_sets; "
                                     f"the data pipeline must provide them when a PartialLabelLoss is configured")
                value = loss(logits, partial_labels, target_sets)
            else:
                # OHEM: the pixels not kept become this loss's ignore label
                term_labels = labels if kept is None else labels.long().masked_fill(~kept, loss.ignore_index)
                value = loss(logits, term_labels)
            out[name] = value * weight
        if self.sampler is not None:
            out[OHEM_KEPT] = self.sampler.last_kept_fraction
        return out

    def extra_repr(self) -> str:
        terms = ", ".join(f"{n}*{w:g}" for n, w in zip(self.names, self.weights))
        return f"terms=[{terms}], sampler={self.sampler!r}"


def check_loss_cfg(cfg) -> None:
    """The rules of a `loss` section ({loss_decode, sampler}) that need no label space; errors name the
    dotted key (loss.loss_decode[1].loss_weight, ...). The class-weight file a `PATH.json:METHOD` string
    names is read when the losses are built (relative to the working directory then)."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, dict):
        raise LossConfigError(f"loss: must be a mapping with {', '.join(LOSS_SECTION_KEYS)}, got {cfg!r}")
    check_keys(cfg, LOSS_SECTION_KEYS, "loss", error=LossConfigError)
    first_use: dict[str, str] = {}
    for path, entry in _entries(cfg.get("loss_decode", DEFAULT_LOSS_DECODE), "loss.loss_decode"):
        loss_type, kwargs, name, _ = _check_entry(entry, path, first_use)
        if isinstance(kwargs.get("class_weight"), str):
            _class_weight_reference(kwargs["class_weight"], where=f"{path}.class_weight")
            kwargs["class_weight"] = None  # the weights themselves are checked when the file is read
        _construct(loss_type, kwargs, path, entry["type"])
    sampler = cfg.get("sampler")
    if sampler is not None:
        sampler_class, kwargs = _check_sampler(sampler, "loss.sampler")
        _construct(sampler_class, kwargs, "loss.sampler", sampler["type"])


def build_losses(cfg, num_classes: int, *, sampler=None, ignore_index: int = IGNORE_INDEX,
                 where: str = "loss.loss_decode") -> LossSet:
    """The LossSet for a `loss_decode` config (a mapping or a list of them) and an optional sampler config.

    `ignore_index`: the label space's ignore label (see the module docstring).
    `where` is the config path used in error messages (e.g. "model.decode_head.loss_decode").
    """
    if not is_int(num_classes) or num_classes < 1:
        raise LossConfigError(f"{where}: num_classes must be an integer >= 1, got {num_classes!r}")
    names, weights, losses = [], [], []
    first_use: dict[str, str] = {}
    for path, entry in _entries(cfg, where):
        name, weight, loss = _build_one(entry, num_classes, ignore_index, path, first_use)
        names.append(name)
        weights.append(weight)
        losses.append(loss)
    parent, dot, _ = where.rpartition(".")
    # the sampler sits beside loss_decode
    built_sampler = build_sampler(sampler, ignore_index=ignore_index, where=f"{parent}{dot}sampler")
    return LossSet(names=names, weights=weights, losses=losses, sampler=built_sampler)


def build_sampler(cfg, *, ignore_index: int = IGNORE_INDEX, where: str = "sampler") -> OHEMPixelSampler | None:
    """The pixel sampler a `sampler` config names, or None for a missing (None) config; `ignore_index`
    is the label space's ignore label."""
    if cfg is None:
        return None
    sampler_class, kwargs = _check_sampler(cfg, where)
    _set_ignore_index(kwargs, ignore_index, where)
    return _construct(sampler_class, kwargs, where, cfg["type"])


def read_class_weight(spec: str, *, where: str = "class_weight") -> list[float]:
    """The weights a `PATH.json:METHOD` string names, from a tools/dataset_stats.py JSON."""
    path, method = _class_weight_reference(spec, where=where)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise LossConfigError(f"{where}: cannot read class-weight file {path}: {err.strerror or err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LossConfigError(f"{where}: {path} line {err.lineno}, column {err.colno}: invalid JSON ({err.msg})") from err
    table = data.get("class_weight") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise LossConfigError(f"{where}: {path} has no `class_weight` mapping; write it with "
                              f"tools/dataset_stats.py --out {path}")
    if method not in table:
        raise LossConfigError(f"{where}: {path} class_weight has no {method!r} entry; it has: "
                              f"{', '.join(map(str, table)) or 'none'}")
    values = table[method]
    if not isinstance(values, list) or not all(is_number(v) for v in values):
        raise LossConfigError(f"{where}: {path} class_weight.{method} must be a list of numbers")
    return [float(v) for v in values]


# ---- helpers -----------------------------------------------------------------------------------
def _set_ignore_index(kwargs: dict, ignore_index: int, path: str) -> None:
    """Give a loss or sampler the label space's ignore label; refuse a config that sets another."""
    configured = kwargs.setdefault("ignore_index", ignore_index)
    if configured != ignore_index:
        raise LossConfigError(f"{path}.ignore_index is {configured!r}, but this label space's ignore label is "
                              f"{ignore_index} (255 for at most 255 classes, else 65535): crops are padded and "
                              f"unlabeled pixels marked with it; drop the key")


def _class_weight_reference(spec: str, *, where: str) -> tuple[Path, str]:
    """(file, method) of a `PATH.json:METHOD` class-weight reference."""
    path_text, sep, method = spec.rpartition(":")
    if not sep or not path_text or method not in WEIGHT_METHODS:
        raise LossConfigError(f"{where}: {spec!r} is not a class-weight file reference; write PATH.json:METHOD with "
                              f"METHOD one of {', '.join(WEIGHT_METHODS)} (e.g. work_dirs/stats.json:median), "
                              f"or give a list of numbers")
    return Path(path_text), method


def _entries(cfg, where: str) -> list[tuple[str, Mapping]]:
    """(config path, entry) of each loss of a `loss_decode` config: one mapping or a non-empty list of them."""
    if isinstance(cfg, Mapping):
        return [(where, cfg)]
    if isinstance(cfg, Sequence) and not isinstance(cfg, (str, bytes)):
        if not cfg:
            raise LossConfigError(f"{where}: an empty list; give at least one loss, e.g. {{type: CrossEntropyLoss}}")
        return [(f"{where}[{i}]", entry) for i, entry in enumerate(cfg)]
    raise LossConfigError(f"{where}: must be a loss mapping or a list of them, got {cfg!r}")


def _check_entry(entry, path: str, first_use: dict[str, str]) -> tuple[type, dict, str, float]:
    """(loss class, constructor kwargs, name, weight) of one loss_decode entry; `first_use` collects the
    names seen so far (each must be unique)."""
    if not isinstance(entry, Mapping):
        raise LossConfigError(f"{path}: must be a mapping with a `type` key, got {entry!r}")
    loss_type = _lookup_type(entry, {name: t.loss_class for name, t in LOSS_TYPES.items()}, path, "loss")
    kwargs = _check_keys(entry, loss_type, COMMON_KEYS, path)
    weight = entry.get("loss_weight", 1.0)
    if not is_finite_number(weight) or weight < 0:
        raise LossConfigError(f"{path}.loss_weight: must be a finite number >= 0, got {weight!r}")
    name = entry.get("loss_name", LOSS_TYPES[entry["type"]].default_name)
    if not isinstance(name, str) or not name.startswith(LOSS_PREFIX):
        raise LossConfigError(f"{path}.loss_name: must be a string starting with {LOSS_PREFIX!r} (the trainer sums "
                              f"only those), got {name!r}")
    if name in first_use:
        raise LossConfigError(f"{path}.loss_name: {name!r} is already the name of {first_use[name]}; "
                              f"loss names must be unique (set loss_name on one of them)")
    first_use[name] = path
    return loss_type, kwargs, name, float(weight)


def _check_sampler(cfg, where: str) -> tuple[type, dict]:
    if not isinstance(cfg, Mapping):
        raise LossConfigError(f"{where}: must be a mapping like {{type: OHEMPixelSampler, thresh: 0.7}}, got {cfg!r}")
    sampler_class = _lookup_type(cfg, SAMPLER_TYPES, where, "sampler")
    return sampler_class, _check_keys(cfg, sampler_class, ("type",), where)


def _construct(target: type, kwargs: dict, path: str, type_name: str):
    """`target(**kwargs)`, its own argument errors placed under `path` (`path.smooth: must be > 0 (DiceLoss)`)."""
    try:
        return target(**kwargs)
    except (ValueError, TypeError) as err:
        message = str(err).removeprefix(f"{type_name}: ")
        for key in kwargs:
            if message.startswith(key) and message[len(key):len(key) + 1] in (" ", ":"):
                detail = message[len(key):].removeprefix(":").strip()
                raise LossConfigError(f"{path}.{key}: {detail} ({type_name})") from err
        raise LossConfigError(f"{path}: {type_name}: {message}") from err


def _build_one(entry, num_classes: int, ignore_index: int, path: str,
               first_use: dict[str, str]) -> tuple[str, float, nn.Module]:
    loss_type, kwargs, name, weight = _check_entry(entry, path, first_use)
    _set_ignore_index(kwargs, ignore_index, path)
    if isinstance(kwargs.get("class_weight"), str):
        kwargs["class_weight"] = read_class_weight(kwargs["class_weight"], where=f"{path}.class_weight")
    for key in ("class_weight", "alpha"):
        value = kwargs.get(key)
        if isinstance(value, list) and len(value) != num_classes:
            raise LossConfigError(f"{path}.{key}: has {len(value)} values but the model has {num_classes} classes; "
                                  f"give one value per class")
    classes = kwargs.get("classes")
    if isinstance(classes, list):
        outside = [c for c in classes if isinstance(c, int) and not 0 <= c < num_classes]
        if outside:
            raise LossConfigError(f"{path}.classes: class ids {outside} are outside the model's {num_classes} "
                                  f"classes (0-{num_classes - 1})")
    return name, weight, _construct(loss_type, kwargs, path, entry["type"])


def _lookup_type(cfg: Mapping, types: dict, path: str, what: str):
    if "type" not in cfg:
        raise LossConfigError(f"{path}: no `type` key; valid {what} types: {', '.join(types)}")
    name = cfg["type"]
    if not isinstance(name, str) or name not in types:
        hint = suggest(name, list(types)) if isinstance(name, str) else ""
        raise LossConfigError(f"{path}.type: unknown {what} type {name!r}; valid: {', '.join(types)}{hint}")
    return types[name]


def _check_keys(cfg: Mapping, target: type, common: tuple[str, ...], path: str) -> dict:
    """The constructor keyword arguments in `cfg` (lists made plain); unknown keys raise."""
    own = [p.name for p in inspect.signature(target.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
    check_keys(cfg, list(common) + own, path, note=f" for {cfg['type']}", error=LossConfigError)
    # config lists (omegaconf ListConfig, tuples) become plain lists
    return {key: to_plain(value) for key, value in cfg.items() if key in own}
