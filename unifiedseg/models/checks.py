"""Argument checks shared by the segmentation models; each message names the argument (= its config key)."""

from __future__ import annotations

import torch

from unifiedseg.constants import MAX_WIDE_CLASSES
from unifiedseg.utils.checks import is_int, is_number
from unifiedseg.utils.names import suggest


def check_common_args(*, backbone: str, valid_backbones: list[str], num_classes: int, dropout: float, family: str) -> None:
    """Refuse an unknown backbone, a class count no label map holds, or a dropout outside [0, 1)."""
    if backbone not in valid_backbones:
        hint = suggest(backbone, valid_backbones) if isinstance(backbone, str) else ""
        raise ValueError(f"backbone: {backbone!r} is not a {family} backbone{hint}; valid: {', '.join(valid_backbones)}")
    if not is_int(num_classes) or not 1 <= num_classes <= MAX_WIDE_CLASSES:
        raise ValueError(f"num_classes: must be an integer in [1, {MAX_WIDE_CLASSES}] (what a uint16 label map holds), "
                         f"got {num_classes!r}")
    if not is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: must be a number in [0, 1), got {dropout!r}")


def check_images(images: torch.Tensor, *, size_multiple: int = 1) -> None:
    """The models take RGB batches only, with sides divisible by the network's size_multiple (the
    Segmentor pads its input to that)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got shape {tuple(images.shape)}")
    if size_multiple > 1 and (images.shape[-2] % size_multiple or images.shape[-1] % size_multiple):
        raise ValueError(f"images must have sides divisible by {size_multiple}, got {tuple(images.shape[-2:])}; "
                         f"the Segmentor pads any size to that (use Segmentor.predict_logits)")
