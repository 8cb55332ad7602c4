"""Soft Dice loss over softmax probabilities (Milletari et al. 2016; the form of MMSeg's v1 DiceLoss).

For image n and class c, with p the softmax probabilities, t the one-hot labels and sums over the
image's non-ignored pixels only:

    dice[n, c] = (2 * sum(p * t) + smooth) / (sum(p ** exponent) + sum(t ** exponent) + smooth)

The loss of an image is the mean over ALL classes of class_weight[c] * (1 - dice[n, c]) (the weights
multiply, they are not renormalised, as in MMSeg), and the loss is the mean over the images that
have at least one non-ignored pixel; with none it is 0, connected to the graph. `smooth` must be
> 0 (it keeps 0/0 away from classes absent from both prediction and labels). (MMSeg also counts
ignored pixels' probabilities in the denominator; here ignored pixels count nowhere.)
"""

from __future__ import annotations

import torch
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.inputs import check_ignore_index, check_logits_labels, check_weight_vector, weight_on, zero_loss
from unifiedseg.utils.checks import is_finite_number

NAME = "DiceLoss"


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, *, smooth: float = 1.0, exponent: float = 2.0,
              class_weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Soft Dice loss of (N, C, H, W) logits against (N, H, W) labels; see the module doc."""
    _check_settings(smooth, exponent)
    labels = check_logits_labels(logits, labels, ignore_index=ignore_index, loss=NAME)
    n, c = logits.shape[:2]
    weight = weight_on(class_weight, logits, name="class_weight", loss=NAME)
    valid = (labels != ignore_index).reshape(n, -1)
    targets = labels.masked_fill(~valid.reshape(labels.shape), 0).reshape(n, -1)
    probs = logits.float().softmax(dim=1).reshape(n, c, -1) * valid.unsqueeze(1)
    # sum(p * t) and sum(t) per class without materialising the (N, C, H*W) one-hot tensor:
    # t is 1 only at the pixel's own class, so scatter the probability of the true class there.
    true_prob = probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    intersection = probs.new_zeros(n, c).scatter_add(1, targets, true_prob)
    target_count = probs.new_zeros(n, c).scatter_add(1, targets, valid.float())
    # one-hot targets are 0/1, so t ** exponent == t for any exponent > 0
    denominator = probs.pow(exponent).sum(dim=2) + target_count
    per_class = 1 - (2 * intersection + smooth) / (denominator + smooth)
    if weight is not None:
        per_class = per_class * weight
    per_image = per_class.mean(dim=1)
    has_pixels = valid.any(dim=1)
    if not bool(has_pixels.any()):
        return zero_loss(logits)
    return per_image[has_pixels].mean()


def _check_settings(smooth, exponent) -> None:
    for name, value in (("smooth", smooth), ("exponent", exponent)):
        if not is_finite_number(value):
            raise TypeError(f"{NAME}: {name} must be a finite number, got {value!r}")
    if smooth <= 0:
        # smooth keeps 0/0 away from classes absent from both the prediction and the labels
        raise ValueError(f"{NAME}: smooth must be > 0, got {smooth}")
    if exponent <= 0:
        raise ValueError(f"{NAME}: exponent must be > 0, got {exponent}")


class DiceLoss(nn.Module):
    """`dice_loss` with smooth (> 0), exponent (> 0), class_weight and ignore_index fixed."""

    def __init__(self, *, smooth: float = 1.0, exponent: float = 2.0, class_weight=None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        _check_settings(smooth, exponent)
        self.smooth = float(smooth)
        self.exponent = float(exponent)
        self.ignore_index = check_ignore_index(ignore_index, loss=NAME)
        weights = check_weight_vector(class_weight, name="class_weight", loss=NAME)
        self.register_buffer("class_weight", None if weights is None else torch.tensor(weights), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, labels, smooth=self.smooth, exponent=self.exponent, class_weight=self.class_weight,
                         ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, exponent={self.exponent}, ignore_index={self.ignore_index}"
