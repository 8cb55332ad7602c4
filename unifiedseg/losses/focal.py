"""Softmax focal loss (Lin et al., ICCV 2017, multi-class form) over pixels.

Per non-ignored pixel with true-class probability p_t:

    FL = -alpha_t * (1 - p_t) ** gamma * log(p_t)

gamma >= 0 (default 2) down-weights well-classified pixels; gamma = 0 gives cross-entropy.
alpha is optional: a single number scales every pixel, a list gives one factor per class (alpha_t is
the true class's entry). The loss is the sum over non-ignored pixels divided by their count (alpha
weights are not renormalised); with no such pixel it is 0, connected to the graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.inputs import check_ignore_index, check_logits_labels, check_weight_vector, weight_on
from unifiedseg.utils.checks import is_finite_number, is_number

NAME = "FocalLoss"
# (1 - p_t) is floored here before the power: for 0 < gamma < 1 the derivative of x ** gamma is
# infinite at x = 0 (a confidently right pixel), which would make 0 * inf = NaN gradients.
MIN_BASE = 1e-12


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, *, gamma: float = 2.0, alpha=None,
               ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean focal loss of (N, C, H, W) logits against (N, H, W) labels over non-ignored pixels.

    alpha: None, a number, or a per-class (C,) tensor.
    """
    _check_gamma(gamma)
    labels = check_logits_labels(logits, labels, ignore_index=ignore_index, loss=NAME)
    valid = labels != ignore_index
    targets = labels.masked_fill(~valid, 0)
    log_pt = F.log_softmax(logits.float(), dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
    per_pixel = -log_pt
    if gamma != 0:
        # 1 - p_t through expm1 keeps its precision when p_t is close to 1
        per_pixel = per_pixel * (-torch.expm1(log_pt)).clamp_min(MIN_BASE).pow(gamma)
    if isinstance(alpha, torch.Tensor):
        per_pixel = per_pixel * weight_on(alpha, logits, name="alpha", loss=NAME)[targets]
    elif alpha is not None:
        per_pixel = per_pixel * float(alpha)
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    return per_pixel.sum() / valid.sum().clamp_min(1)


def _check_gamma(gamma) -> None:
    if not is_finite_number(gamma) or gamma < 0:
        raise ValueError(f"{NAME}: gamma must be a finite number >= 0, got {gamma!r}")


class FocalLoss(nn.Module):
    """`focal_loss` with gamma, alpha (None, a number >= 0, or one number per class) and ignore_index fixed."""

    def __init__(self, *, gamma: float = 2.0, alpha=None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        _check_gamma(gamma)
        self.gamma = float(gamma)
        self.ignore_index = check_ignore_index(ignore_index, loss=NAME)
        self.alpha_scalar = None
        per_class = None
        if is_number(alpha):
            if not math.isfinite(alpha) or alpha < 0:
                raise ValueError(f"{NAME}: alpha must be a finite number >= 0, got {alpha!r}")
            self.alpha_scalar = float(alpha)
        elif alpha is not None and (isinstance(alpha, (str, bytes, bool)) or not isinstance(alpha, Sequence)):
            raise TypeError(f"{NAME}: alpha must be a number, a list with one number per class, or null; got {alpha!r}")
        else:
            per_class = check_weight_vector(alpha, name="alpha", loss=NAME)
        self.register_buffer("alpha", None if per_class is None else torch.tensor(per_class), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha if self.alpha is not None else self.alpha_scalar
        return focal_loss(logits, labels, gamma=self.gamma, alpha=alpha, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}"
