"""Read MSeg's released HRNet checkpoints (mseg-semantic) and map every key onto HRNetV2Seg's weights.

The facts (shared/reference/mseg/MODEL.md): MSeg's train.py saves `{'epoch', 'state_dict', 'optimizer',
'current_iter', 'max_iter'}` with the state_dict's keys prefixed `module.` (DistributedDataParallel); a
bare state dict is accepted too. Its keys are

- the backbone: `conv1`, `bn1`, `conv2`, `bn2`, `layer1`, `transition1..3`, `stage2..4` -- exactly timm's
  HRNet names, so each goes to `backbone.<key>` (1,830 tensors for HRNet-W48);
- the head `last_layer`: 0 = 1x1 conv 720 -> 720 with bias, 1 = BatchNorm, 2 = ReLU, 3 = 1x1 conv
  720 -> num_classes with bias; they go to `fuse.0`, `fuse.1` and `classifier`.

`last_layer.0.bias` goes to `fuse.0.bias` when the model has one (`head_conv_bias: true`, as MSeg's
configs set); otherwise it is folded into the BatchNorm, exactly in eval mode: BN(conv(x) + b) =
BN'(conv(x)) with running_mean' = running_mean - b. (In training mode BN subtracts the batch mean, which
cancels b anyway.)

`convert_mseg_state(state, network)` returns our state dict and an `MsegImportReport` naming every
source key's fate (loaded as / folded into); a file that is not an MSeg HRNet, another class count,
another HRNet width, or any key without a place (or a place without a key) is refused with what was
expected and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unifiedseg.models.pretrained import ShapeMismatch, key_problems
from unifiedseg.utils.torchfile import TorchFileError, load_weights_only

DDP_PREFIX = "module."
# MSeg's head modules and ours (the ReLU, last_layer.2, has no weights).
HEAD_MAP = {"last_layer.0.": "fuse.0.", "last_layer.1.": "fuse.1.", "last_layer.3.": "classifier."}
HEAD_CONV_BIAS = "last_layer.0.bias"
FOLD_TARGET = "fuse.1.running_mean"
# What marks a state dict as MSeg's HRNet: its head and the stem of its backbone; and its top-level modules.
SIGNATURE_KEYS = ("conv1.weight", "last_layer.0.weight", "last_layer.1.running_mean", "last_layer.3.weight")
MSEG_MODULES = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
                "transition3", "stage4", "last_layer")
BACKBONE_PREFIX = "backbone."
# The entries of train.py's checkpoint kept in our report (the optimizer is dropped).
KEPT_ENTRIES = ("epoch", "current_iter", "max_iter")
SHOWN = 8


class MsegCheckpointError(ValueError):
    """The file is not an MSeg HRNet checkpoint that fits the configured model; the message says what was
    expected and what was found."""


@dataclass(frozen=True)
class KeyFate:
    """What happened to one key of MSeg's state dict: "loaded" into `target`, or "folded" into it."""

    key: str
    fate: str
    target: str


@dataclass(frozen=True)
class MsegImportReport:
    """The import of one MSeg checkpoint: its layout, the fate of each of its keys, and train.py's counters."""

    path: str
    layout: str
    num_classes: int
    fates: tuple[KeyFate, ...]
    entries: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for fate in self.fates:
            out[fate.fate] = out.get(fate.fate, 0) + 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{n} {fate}" for fate, n in self.counts().items())
        extra = "".join(f", {k} {v}" for k, v in self.entries.items())
        return (f"MSeg checkpoint {self.path} ({self.layout}{extra}): {len(self.fates)} keys, {counts}; "
                f"{self.num_classes} classes")

    def lines(self) -> list[str]:
        """One line per source key: `key -> loaded as target` / `key -> folded into target`."""
        verbs = {"loaded": "loaded as", "folded": "folded into"}
        return [f"{f.key} -> {verbs.get(f.fate, f.fate)} {f.target}" for f in self.fates]


def _shown(keys) -> str:
    keys = list(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def read_mseg_state(path) -> tuple[dict[str, torch.Tensor], str, dict]:
    """(state dict without the `module.` prefix, a description of the layout, train.py's counters) of the
    file at `path`, read with weights_only=True; errors name the file and what it holds."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MSeg checkpoint {path} does not exist")
    try:
        obj = load_weights_only(path)
    except TorchFileError as err:
        if err.refused:
            raise MsegCheckpointError(f"{path} holds objects other than tensors and plain values, so it is not loaded "
                                      f"(weights_only=True): {err.reason}") from None
        raise MsegCheckpointError(f"{path} is not a readable PyTorch checkpoint: {err.reason}") from None
    expected = "MSeg's train.py checkpoint (a dict with 'state_dict') or a bare state dict"
    if not isinstance(obj, dict):
        raise MsegCheckpointError(f"{path}: expected {expected}, found a {type(obj).__name__}")
    entries = {k: obj[k] for k in KEPT_ENTRIES if isinstance(obj.get(k), (int, float))}
    if isinstance(obj.get("state_dict"), dict):
        state, layout = obj["state_dict"], "train.py checkpoint"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, layout = obj, "bare state dict"
    else:
        raise MsegCheckpointError(f"{path}: expected {expected}, found a dict with entries {_shown(map(str, obj))}")
    non_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise MsegCheckpointError(f"{path}: its state dict has entries that are not tensors: {_shown(non_tensors)}")
    prefixed = [k.startswith(DDP_PREFIX) for k in state]
    if all(prefixed):
        state, layout = {k[len(DDP_PREFIX):]: v for k, v in state.items()}, layout + ", 'module.' prefix"
    elif any(prefixed):
        raise MsegCheckpointError(f"{path}: {sum(prefixed)} of {len(state)} keys start with {DDP_PREFIX!r}; expected "
                                  f"all or none")
    return state, layout, entries


def _target(key: str) -> str:
    for mseg, ours in HEAD_MAP.items():
        if key.startswith(mseg):
            return ours + key[len(mseg):]
    return BACKBONE_PREFIX + key


def convert_mseg_state(state: dict[str, torch.Tensor], network: nn.Module, *, path="MSeg checkpoint",
                       layout: str = "state dict", entries: dict | None = None
                       ) -> tuple[dict[str, torch.Tensor], MsegImportReport]:
    """MSeg's HRNet state dict (prefix stripped) -> (the state dict of `network`, an HRNetV2Seg, key for key;
    the report). Every key must find its place and every place its key; see the module docstring."""
    absent = [k for k in SIGNATURE_KEYS if k not in state]
    if absent:
        tops = list(dict.fromkeys(k.split(".")[0] for k in state))
        foreign = [t for t in tops if t not in MSEG_MODULES]
        raise MsegCheckpointError(
            f"{path} is not an MSeg HRNet checkpoint: expected MSeg's HRNet keys ({', '.join(SIGNATURE_KEYS)}, "
            f"modules {', '.join(MSEG_MODULES)}), but {', '.join(absent)} are absent; it holds modules "
            f"{_shown(tops)}" + (f", of which not MSeg's: {_shown(foreign)}" if foreign else ""))
    target = network.state_dict()
    found_classes, found_width = state["last_layer.3.weight"].shape[0], state["last_layer.0.weight"].shape[0]
    width = target["fuse.0.weight"].shape[0]
    if found_width != width:
        raise MsegCheckpointError(
            f"{path} is an HRNet whose head has {found_width} channels (last_layer.0.weight "
            f"{tuple(state['last_layer.0.weight'].shape)}; HRNet-W48: 720), but the config builds "
            f"{getattr(network, 'backbone_name', 'an HRNet')} with {width}; use a config of the checkpoint's backbone")
    if found_classes != network.num_classes:
        raise MsegCheckpointError(
            f"{path} predicts {found_classes} classes (last_layer.3.weight {tuple(state['last_layer.3.weight'].shape)}), "
            f"but the config's taxonomy has {network.num_classes}; expected a checkpoint of the config's label space "
            f"(MSeg's universal models: 194)")

    fold = HEAD_CONV_BIAS in state and "fuse.0.bias" not in target
    ours: dict[str, torch.Tensor] = {}
    fates: list[KeyFate] = []
    unplaced, mismatched = [], []
    for key, value in state.items():
        if key == HEAD_CONV_BIAS and fold:
            fates.append(KeyFate(key, "folded", FOLD_TARGET))
            continue
        name = _target(key)
        if name not in target:
            unplaced.append(key)
        elif tuple(value.shape) != tuple(target[name].shape):
            mismatched.append(ShapeMismatch(f"{key} ({name})", tuple(value.shape), tuple(target[name].shape)))
        else:
            ours[name] = value.detach().clone()
            fates.append(KeyFate(key, "loaded", name))
    missing = [k for k in target if k not in ours]
    problems = key_problems(missing=missing, unexpected=unplaced, mismatches=mismatched, shown=SHOWN)
    if problems:
        raise MsegCheckpointError(f"{path} does not fit the configured {getattr(network, 'backbone_name', 'HRNet')} "
                                  f"model key for key (unexpected: the file's keys with no place in the model; "
                                  f"missing: the model's tensors with no key in the file): " + "; ".join(problems))
    if fold:
        ours[FOLD_TARGET] = ours[FOLD_TARGET] - state[HEAD_CONV_BIAS].to(ours[FOLD_TARGET].dtype)
    report = MsegImportReport(path=str(path), layout=layout, num_classes=int(found_classes), fates=tuple(fates),
                              entries=dict(entries or {}))
    return ours, report


__all__ = ["KeyFate", "MsegCheckpointError", "MsegImportReport", "convert_mseg_state", "read_mseg_state"]
