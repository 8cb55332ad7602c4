"""Segmentation losses: cross-entropy, Dice, Lovász-Softmax, focal, the partial-label loss for
one-to-many taxonomy classes, OHEM pixel sampling, and building them from MMSeg-style configs.

Every loss takes logits (N, C, H, W) at the label resolution and int64 labels (N, H, W) with the label
space's ignore label (255, or 65535 above 255 label values; `build_losses(ignore_index=...)`) for
pixels that do not count; losses never resize.
"""

from unifiedseg.losses.build import (LOSS_TYPES, LossConfigError, LossSet, build_losses, build_sampler, check_loss_cfg,
                                     read_class_weight)
from unifiedseg.losses.cross_entropy import CrossEntropyLoss, cross_entropy_loss
from unifiedseg.losses.dice import DiceLoss, dice_loss
from unifiedseg.losses.focal import FocalLoss, focal_loss
from unifiedseg.losses.lovasz import LovaszLoss, lovasz_grad, lovasz_softmax
from unifiedseg.losses.ohem import OHEMPixelSampler
from unifiedseg.losses.partial import PartialLabelLoss, partial_label_loss

__all__ = [
    "LOSS_TYPES", "LossConfigError", "LossSet", "build_losses", "build_sampler", "check_loss_cfg", "read_class_weight",
    "CrossEntropyLoss", "cross_entropy_loss", "DiceLoss", "dice_loss", "FocalLoss", "focal_loss",
    "LovaszLoss", "lovasz_grad", "lovasz_softmax", "OHEMPixelSampler", "PartialLabelLoss", "partial_label_loss",
]
