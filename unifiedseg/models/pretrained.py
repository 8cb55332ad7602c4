"""Load pretrained backbone weights from a local checkpoint file (never from the network).

`load_pretrained(backbone, path)` reads the file with `torch.load(..., weights_only=True)`, so a file
that holds anything but tensors and plain containers is refused instead of executed. It accepts a raw
state_dict or one wrapped as `{'state_dict': ...}` / `{'model': ...}`, strips the `module.` (DDP) and
`backbone.` prefixes, loads every tensor whose name and shape match, and returns a
`PretrainedLoadReport`: the fraction of backbone parameter values loaded, missing and unexpected keys,
and shape mismatches (listed, never silently skipped). A file that matches nothing at all is an error,
since it is almost surely the wrong file (e.g. ResNet weights for an HRNet backbone).

The names are timm's: a timm ImageNet checkpoint of the same architecture loads fully. Its
classification head (`fc.*`; HRNet's `incre_modules.*`, `downsamp_modules.*`, `final_layer.*`,
`classifier.*`: 126 tensors in the official hrnetv2_w48_imagenet_pretrained.pth) has no place in a
segmentation backbone: keys under the `classifier_prefixes` given (the backbone family's,
unifiedseg/models/backbones.py) are reported as `classifier_keys`, expected and left out, so strict
loading of an official ImageNet file passes; any other key without a place is unexpected.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unifiedseg.utils.torchfile import TorchFileError, load_weights_only

logger = logging.getLogger(__name__)

# The config key that names the file, quoted in errors so the user knows what to fix.
CONFIG_KEY = "model.pretrained"
# Prefixes added by wrappers: DistributedDataParallel (`module.`) and segmentation models that keep
# their backbone under `backbone.`. Stripped repeatedly, so `module.backbone.x` becomes `x`.
STRIPPED_PREFIXES = ("module.", "backbone.")
# Keys of a checkpoint dict that hold the state_dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model")


class PretrainedLoadError(RuntimeError):
    """The checkpoint file cannot be used; the message names the file and the config key."""


@dataclass(frozen=True)
class ShapeMismatch:
    """A tensor present in both the checkpoint and the backbone, with different shapes (not loaded)."""

    key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]


@dataclass(frozen=True)
class PretrainedLoadReport:
    """What `load_pretrained` did.

    `loaded_fraction` counts parameter values (numel), not tensors: 1.0 means every backbone weight
    came from the file. Buffers (BatchNorm running statistics) are loaded too but not counted.
    `missing_keys` are backbone tensors left as they were, including those in `shape_mismatches`;
    `unexpected_keys` are checkpoint tensors the backbone has no place for, except `classifier_keys`:
    those of the ImageNet classification head, expected in such a file and left out.
    """

    path: str
    loaded_fraction: float
    num_loaded_tensors: int
    missing_keys: tuple[str, ...]
    unexpected_keys: tuple[str, ...]
    shape_mismatches: tuple[ShapeMismatch, ...]
    stripped_prefixes: tuple[str, ...]
    classifier_keys: tuple[str, ...] = ()

    def summary(self) -> str:
        text = (
            f"pretrained {self.path}: loaded {self.loaded_fraction:.1%} of backbone parameters "
            f"({self.num_loaded_tensors} tensors); {len(self.missing_keys)} missing, "
            f"{len(self.unexpected_keys)} unexpected, {len(self.shape_mismatches)} shape mismatches"
        )
        if self.classifier_keys:
            text += f"; {len(self.classifier_keys)} ImageNet classification-head tensors left out (expected)"
        if self.stripped_prefixes:
            text += f"; stripped prefixes {', '.join(repr(p) for p in self.stripped_prefixes)}"
        return text


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The file's state_dict, unwrapped; errors name the file and the config key."""
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {str(path)!r} does not exist (set by config key {CONFIG_KEY!r}; "
            f"use null to start from random weights)"
        )
    try:
        obj = load_weights_only(path)
    except TorchFileError as err:
        if err.refused:
            raise PretrainedLoadError(
                f"{path} (config key {CONFIG_KEY!r}) holds objects other than tensors and plain containers, "
                f"which are refused (loaded with weights_only=True): {err.reason}"
            ) from None
        raise PretrainedLoadError(f"cannot read {path} (config key {CONFIG_KEY!r}): {err.reason}") from None

    if not isinstance(obj, dict):
        raise PretrainedLoadError(
            f"{path} (config key {CONFIG_KEY!r}) holds a {type(obj).__name__}, expected a state_dict "
            f"or a dict with one of the keys {', '.join(WRAPPER_KEYS)}"
        )
    for wrapper in WRAPPER_KEYS:
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    non_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        shown = ", ".join(repr(k) for k in non_tensors[:5])
        raise PretrainedLoadError(
            f"{path} (config key {CONFIG_KEY!r}) is not a state_dict: {len(non_tensors)} entries are not "
            f"tensors ({shown}); expected a state_dict or a dict with one of the keys {', '.join(WRAPPER_KEYS)}"
        )
    return obj


def _strip_prefixes(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    stripped: dict[str, torch.Tensor] = {}
    seen_prefixes: list[str] = []
    for key, value in state.items():
        name = key
        changed = True
        while changed:
            changed = False
            for prefix in STRIPPED_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    changed = True
                    if prefix not in seen_prefixes:
                        seen_prefixes.append(prefix)
        if name in stripped:
            raise PretrainedLoadError(
                f"checkpoint keys collide after stripping prefixes {STRIPPED_PREFIXES}: {key!r} -> {name!r}"
            )
        stripped[name] = value
    return stripped, tuple(seen_prefixes)


def key_problems(*, missing, unexpected, mismatches, shown: int = 10) -> list[str]:
    """What does not match between a checkpoint and a model, one phrase per kind (missing keys, unexpected
    keys, `ShapeMismatch`es), naming the first `shown` of each; empty when everything matches."""
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(list(missing)[:shown])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(list(unexpected)[:shown])}")
    if mismatches:
        problems.append("shape mismatches (not loaded): " + ", ".join(
            f"{m.key} checkpoint {m.checkpoint_shape} vs model {m.model_shape}" for m in list(mismatches)[:shown]))
    return problems


def load_pretrained(backbone: nn.Module, path: str | os.PathLike, *, strict: bool = False,
                    classifier_prefixes: tuple[str, ...] = ()) -> PretrainedLoadReport:
    """Copy matching tensors from the checkpoint at `path` into `backbone`, in place.

    Checkpoint keys under `classifier_prefixes` that the backbone has no place for are the ImageNet
    classification head: reported as `classifier_keys`, never an error. With `strict=True`, any missing
    or unexpected key or shape mismatch is an error; otherwise they are reported (returned and logged as
    a warning).
    """
    path = Path(path)
    checkpoint, stripped_prefixes = _strip_prefixes(_read_checkpoint(path))
    model_state = backbone.state_dict()
    classifier_keys = tuple(k for k in checkpoint if k not in model_state and k.startswith(tuple(classifier_prefixes)))
    checkpoint = {k: v for k, v in checkpoint.items() if k not in classifier_keys}

    matched: dict[str, torch.Tensor] = {}
    mismatches: list[ShapeMismatch] = []
    for key, value in checkpoint.items():
        if key not in model_state:
            continue
        if tuple(value.shape) != tuple(model_state[key].shape):
            mismatches.append(ShapeMismatch(key, tuple(value.shape), tuple(model_state[key].shape)))
            continue
        matched[key] = value
    missing = tuple(k for k in model_state if k not in matched)
    unexpected = tuple(k for k in checkpoint if k not in model_state)

    param_sizes = {name: p.numel() for name, p in backbone.named_parameters()}
    total = sum(param_sizes.values())
    loaded = sum(size for name, size in param_sizes.items() if name in matched)
    report = PretrainedLoadReport(
        path=str(path),
        loaded_fraction=loaded / total if total else 0.0,
        num_loaded_tensors=len(matched),
        missing_keys=missing,
        unexpected_keys=unexpected,
        shape_mismatches=tuple(mismatches),
        stripped_prefixes=stripped_prefixes,
        classifier_keys=classifier_keys,
    )

    if not matched:
        raise PretrainedLoadError(
            f"{path} (config key {CONFIG_KEY!r}) matches no tensor of the {type(backbone).__name__} backbone: "
            f"checkpoint keys start {list(checkpoint)[:3]}, backbone keys start {list(model_state)[:3]}; "
            f"is it the weights of another architecture?"
        )
    problems = key_problems(missing=missing, unexpected=unexpected, mismatches=mismatches)
    if strict and problems:
        raise PretrainedLoadError(f"{path} (config key {CONFIG_KEY!r}) does not match the backbone exactly: " + "; ".join(problems))

    # strict=False: tensors absent from `matched` keep their current (random) values.
    backbone.load_state_dict(matched, strict=False)
    logger.info(report.summary())
    if problems:
        logger.warning("pretrained %s: %s", path, "; ".join(problems))
    return report
