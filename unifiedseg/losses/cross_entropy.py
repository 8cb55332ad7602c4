"""Softmax cross-entropy over pixels with class weights and an ignore label (MMSeg's CrossEntropyLoss).

Per pixel i with label y_i the loss is w_{y_i} * (-log softmax(z_i)[y_i]), with w = 1 without class
weights; ignored pixels contribute 0. Reduction:
- `avg_non_ignore=False` (MMSeg's default): sum over pixels / number of ALL pixels, ignored ones
  included in the denominator, whether or not class weights are given (MMSeg computes the per-pixel
  loss with reduction='none' and then takes the plain mean over every element).
- `avg_non_ignore=True`: the weighted mean over non-ignored pixels, sum(w_y * ce) / sum(w_y), which
  is torch's `F.cross_entropy(weight=w, reduction='mean')`. MMSeg divides by the count of
  non-ignored pixels instead; the two agree without class weights.
A batch whose pixels are all ignored gives 0 (never NaN), still connected to the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.inputs import TINY, check_ignore_index, check_logits_labels, check_weight_vector, weight_on
from unifiedseg.utils.checks import check_bool

NAME = "CrossEntropyLoss"


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, *, class_weight: torch.Tensor | None = None,
                       ignore_index: int = IGNORE_INDEX, avg_non_ignore: bool = False) -> torch.Tensor:
    """Mean pixel cross-entropy of (N, C, H, W) logits against (N, H, W) labels; see the module doc."""
    labels = check_logits_labels(logits, labels, ignore_index=ignore_index, loss=NAME)
    logits = logits.float()  # under mixed precision the log-sum-exp is safer in float32
    weight = weight_on(class_weight, logits, name="class_weight", loss=NAME)
    per_pixel = F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index, reduction="none")
    total = per_pixel.sum()
    if not avg_non_ignore:
        return total / max(labels.numel(), 1)
    valid = labels != ignore_index
    if weight is None:
        denominator = valid.sum().float()
    else:
        denominator = (weight[labels.masked_fill(~valid, 0)] * valid).sum()
    return total / denominator.clamp_min(TINY)


class CrossEntropyLoss(nn.Module):
    """`cross_entropy_loss` with its settings fixed: class_weight (one number per class, or None),
    ignore_index and avg_non_ignore. Config paths to class-weight JSON files are resolved by
    `unifiedseg.losses.build`, which passes the list here."""

    def __init__(self, *, class_weight=None, ignore_index: int = IGNORE_INDEX, avg_non_ignore: bool = False) -> None:
        super().__init__()
        weights = check_weight_vector(class_weight, name="class_weight", loss=NAME)
        self.ignore_index = check_ignore_index(ignore_index, loss=NAME)
        self.avg_non_ignore = check_bool(avg_non_ignore, f"{NAME}: avg_non_ignore", error=TypeError)
        # Not persistent: checkpoints of the model must not depend on the loss settings.
        self.register_buffer("class_weight", None if weights is None else torch.tensor(weights), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy_loss(logits, labels, class_weight=self.class_weight, ignore_index=self.ignore_index,
                                  avg_non_ignore=self.avg_non_ignore)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, avg_non_ignore={self.avg_non_ignore}"
