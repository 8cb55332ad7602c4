"""Lovász-Softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018): a convex surrogate of the
per-class Jaccard (IoU) loss, averaged over classes.

For class c let F be the pixels labelled c and m the error vector m_i = |[y_i = c] - p_i(c)|. The
Jaccard loss of a set S of mispredicted pixels, Δ(S) = |S| / |F ∪ S|, is submodular, so its Lovász
extension is evaluated by sorting the errors in decreasing order (π) and taking

    loss_c = sum_i m_π(i) * (Δ(S_i) - Δ(S_{i-1})),   S_i = {π(1), ..., π(i)}

`lovasz_grad` computes those increments (the gradient of the extension with respect to the sorted
errors). Gradients flow through the sorted errors; the sort order itself is piecewise constant.
Ignored pixels are dropped before anything is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.inputs import check_ignore_index, check_logits_labels, zero_loss
from unifiedseg.utils.checks import check_bool, is_int

NAME = "LovaszLoss"
CLASS_CHOICES = ("all", "present")


def lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Increments Δ(S_i) - Δ(S_{i-1}) of the Jaccard loss along errors sorted in decreasing order.

    fg_sorted: (P,) or (P, K) 0/1 floats, whether each sorted pixel belongs to the class (K classes
    side by side along dim 1). Returns the same shape.
    """
    count = torch.arange(1, fg_sorted.shape[0] + 1, device=fg_sorted.device, dtype=fg_sorted.dtype)
    count = count.reshape(-1, *([1] * (fg_sorted.dim() - 1)))
    # |F ∪ S_i| = |F| + (pixels of S_i outside F); it is >= 1 for every i >= 1
    union = fg_sorted.sum(dim=0) + (1 - fg_sorted).cumsum(dim=0)
    jaccard_loss = count / union
    return torch.cat([jaccard_loss[:1], jaccard_loss[1:] - jaccard_loss[:-1]], dim=0)


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, classes="present", per_image: bool = False,
                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Lovász-Softmax loss of (N, C, H, W) class probabilities against (N, H, W) labels.

    classes: 'present' averages over the classes that occur among the non-ignored labels (of each
    image when per_image), 'all' over every class, or a list of class ids over those.
    per_image: compute the loss per image and average over images that have non-ignored pixels;
    otherwise over the batch's pixels at once. No pixel to count gives 0, connected to the graph.
    """
    labels = check_logits_labels(probs, labels, ignore_index=ignore_index, loss=NAME, logits_name="probs")
    selected = _check_classes(classes, num_classes=probs.shape[1])
    per_image = check_bool(per_image, f"{NAME}: per_image", error=TypeError)
    if per_image:
        losses = [_lovasz_flat(p.unsqueeze(0), l.unsqueeze(0), selected, ignore_index) for p, l in zip(probs, labels)]
        losses = [loss for loss in losses if loss is not None]
        return torch.stack(losses).mean() if losses else zero_loss(probs)
    loss = _lovasz_flat(probs, labels, selected, ignore_index)
    return zero_loss(probs) if loss is None else loss


def _lovasz_flat(probs: torch.Tensor, labels: torch.Tensor, classes, ignore_index: int) -> torch.Tensor | None:
    """The class-averaged loss over all non-ignored pixels of (n, C, H, W) probs, or None if there are none."""
    num_classes = probs.shape[1]
    valid = labels.reshape(-1) != ignore_index
    pixel_probs = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)[valid]
    pixel_labels = labels.reshape(-1)[valid]
    if pixel_labels.numel() == 0:
        return None
    if classes == "present":
        class_ids = torch.bincount(pixel_labels, minlength=num_classes).nonzero().squeeze(1)
    elif classes == "all":
        class_ids = torch.arange(num_classes, device=probs.device)
    else:
        class_ids = torch.tensor(classes, device=probs.device, dtype=torch.long)
    # One column per class, all sorted at once: (P, K) for the K classes averaged.
    fg = (pixel_labels.unsqueeze(1) == class_ids.unsqueeze(0)).to(pixel_probs.dtype)
    errors = (fg - pixel_probs[:, class_ids]).abs()
    errors_sorted, order = errors.sort(dim=0, descending=True)
    per_class = (errors_sorted * lovasz_grad(fg.gather(0, order))).sum(dim=0)
    return per_class.mean()


def _check_classes(classes, *, num_classes: int | None = None):
    """'all', 'present', or a non-empty list of distinct class ids (below num_classes when known)."""
    if isinstance(classes, str):
        if classes not in CLASS_CHOICES:
            raise ValueError(f"{NAME}: classes must be 'all', 'present' or a list of class ids, got {classes!r}")
        return classes
    if not isinstance(classes, Sequence):
        raise TypeError(f"{NAME}: classes must be 'all', 'present' or a list of class ids, got {classes!r}")
    ids = list(classes)
    if not ids:
        raise ValueError(f"{NAME}: classes is an empty list; give class ids, 'all' or 'present'")
    for value in ids:
        if not is_int(value) or value < 0:
            raise ValueError(f"{NAME}: classes must hold class ids (integers >= 0), got {value!r}")
        if num_classes is not None and value >= num_classes:
            raise ValueError(f"{NAME}: class id {value} in classes is outside the {num_classes} classes (0-{num_classes - 1})")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{NAME}: classes lists a class id twice: {ids}")
    return ids


class LovaszLoss(nn.Module):
    """Lovász-Softmax on the softmax of the logits, with classes, per_image and ignore_index fixed."""

    def __init__(self, *, classes="present", per_image: bool = False, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.classes = _check_classes(classes)
        self.per_image = check_bool(per_image, f"{NAME}: per_image", error=TypeError)
        self.ignore_index = check_ignore_index(ignore_index, loss=NAME)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_logits_labels(logits, labels, ignore_index=self.ignore_index, loss=NAME)
        return lovasz_softmax(logits.float().softmax(dim=1), labels, classes=self.classes, per_image=self.per_image,
                              ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"classes={self.classes!r}, per_image={self.per_image}, ignore_index={self.ignore_index}"
