"""Input checks every loss shares: logits and label-map shapes, label values, per-class weight
vectors, and the zero loss that stays connected to the graph."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from unifiedseg.utils.checks import is_int, is_number

# Smallest positive float32: a denominator clamped to it changes nothing real (it is only ever
# reached when the numerator is 0 too) and turns 0/0 into 0 instead of NaN.
TINY = torch.finfo(torch.float32).tiny


def check_logits_labels(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int, loss: str,
                        logits_name: str = "logits", num_values: int | None = None,
                        value_name: str = "a class id") -> torch.Tensor:
    """Raise a clear error unless logits are (N, C, H, W) floats and labels (N, H, W) integers of the
    same N, H, W whose values are class ids 0..C-1 (0..num_values-1 when given) or `ignore_index`;
    return the labels as int64.

    Losses never resize: the model upsamples its logits to the label size before the loss.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{loss}: {logits_name} must be a (N, C, H, W) tensor, got {shape}")
    if not logits.is_floating_point():
        raise TypeError(f"{loss}: {logits_name} must be floating point, got {logits.dtype}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 3:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{loss}: labels must be a (N, H, W) tensor, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{loss}: labels must be an integer tensor (int64), got {labels.dtype}")
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{loss}: {logits_name} hold {logits.shape[0]} images but labels hold {labels.shape[0]}")
    if logits.shape[2:] != labels.shape[1:]:
        h, w = logits.shape[2:]
        lh, lw = labels.shape[1:]
        raise ValueError(f"{loss}: {logits_name} are {h}x{w} but labels are {lh}x{lw}; losses never resize, so the "
                         f"model must upsample its logits to the label size first")
    labels = labels.long()
    limit = logits.shape[1] if num_values is None else num_values
    bad = ((labels < 0) | (labels >= limit)) & (labels != ignore_index)
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:10].tolist()
        valid_range = f"0-{limit - 1}" if limit else "none here"
        raise ValueError(f"{loss}: label values {values} are neither {value_name} ({valid_range}) nor the ignore "
                         f"index {ignore_index}")
    return labels


def check_weight_vector(values, *, name: str, loss: str) -> list[float] | None:
    """A per-class weight list (None allowed): finite, non-negative numbers. Returns it as floats."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, torch.Tensor)):
        raise TypeError(f"{loss}: {name} must be a list of numbers, got {type(values).__name__}")
    floats = []
    for i, value in enumerate(list(values.tolist() if isinstance(values, torch.Tensor) else values)):
        if not is_number(value):
            raise TypeError(f"{loss}: {name}[{i}] must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{loss}: {name}[{i}] must be a finite number >= 0, got {value!r}")
        floats.append(float(value))
    if not floats:
        raise ValueError(f"{loss}: {name} is empty; give one value per class or leave it out")
    return floats


def weight_on(weight: torch.Tensor | None, logits: torch.Tensor, *, name: str, loss: str) -> torch.Tensor | None:
    """The per-class weight buffer on the logits' device, checked against their number of classes."""
    if weight is None:
        return None
    if weight.numel() != logits.shape[1]:
        raise ValueError(f"{loss}: {name} has {weight.numel()} values but the logits have {logits.shape[1]} classes")
    return weight.to(device=logits.device, dtype=torch.float32)


def zero_loss(logits: torch.Tensor) -> torch.Tensor:
    """A 0 that depends on `logits`, so backward works (with zero gradients) when nothing counts."""
    return logits.sum() * 0.0


def check_ignore_index(value, *, loss: str) -> int:
    if not is_int(value):
        raise TypeError(f"{loss}: ignore_index must be an integer, got {value!r}")
    return int(value)
