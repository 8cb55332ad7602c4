"""Partial-label loss for one-to-many taxonomy entries (Bevandić et al., "Automatic universal taxonomies
for multi-domain semantic segmentation" / "Multi-domain semantic segmentation with overlapping labels",
2022).

A dataset class that maps to several universal classes (written `~name` in the taxonomy TSV) gets
no hard label (`TaxonomyConverter.label_lut` gives it the ignore label). For its pixels the model is
instead asked to put its probability mass anywhere in the set S of universal classes the class may
be:

    loss = -log(sum_{u in S} softmax(z)_u) = logsumexp(z) - logsumexp(z[S])

averaged over the partial pixels (0, connected to the graph, when there are none). With |S| = 1
this is cross-entropy; with S = all classes it is 0.

Inputs, as the training pipeline builds them:
- `target_sets` BoolTensor (P, U): row p is the p-th distinct class set of the taxonomy
  (`TaxonomyConverter.partial_target_sets()`, over all training datasets). P may be 0.
- `partial_labels` int64 (N, H, W): the set index p on pixels of a one-to-many class, the ignore label
  elsewhere. The label maps carry it as num_classes + p (`label_lut(dataset, partial=True)`), through
  the same warp as the hard labels; the trainer splits it off with `split_partial_labels`. The label
  map's dtype fits classes and sets together (uint16 when they number more than 255).
"""

from __future__ import annotations

import torch
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.inputs import check_ignore_index, check_logits_labels, zero_loss

NAME = "PartialLabelLoss"


def partial_label_loss(logits: torch.Tensor, partial_labels: torch.Tensor, target_sets: torch.Tensor, *,
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean of -log P(class in set) over pixels whose `partial_labels` entry names a row of `target_sets`."""
    if not isinstance(target_sets, torch.Tensor) or target_sets.dim() != 2 or target_sets.dtype != torch.bool:
        what = f"{target_sets.dtype} {tuple(target_sets.shape)}" if isinstance(target_sets, torch.Tensor) else type(target_sets).__name__
        raise ValueError(f"{NAME}: target_sets must be a (P, U) bool tensor, got {what}")
    # Partial label values index the rows of target_sets, so they are checked against P, not U.
    labels = check_logits_labels(logits, partial_labels, ignore_index=ignore_index, loss=NAME,
                                 num_values=target_sets.shape[0], value_name="a row of target_sets")
    if target_sets.shape[1] != logits.shape[1]:
        raise ValueError(f"{NAME}: target_sets have {target_sets.shape[1]} columns but the logits have "
                         f"{logits.shape[1]} classes")
    valid = labels != ignore_index
    if not bool(valid.any()):
        return zero_loss(logits)
    target_sets = target_sets.to(logits.device)
    rows = labels[valid]
    empty = ~target_sets.any(dim=1)
    if bool(empty[rows].any()):
        used_empty = torch.unique(rows[empty[rows]])[:10].tolist()
        raise ValueError(f"{NAME}: partial pixels point at rows {used_empty} of target_sets, which allow no class; "
                         f"a class that maps nowhere belongs in the ignore label, not in a partial set")
    pixel_logits = logits.float().permute(0, 2, 3, 1)[valid]  # (M, U), only the partial pixels
    allowed = target_sets[rows]
    inside = pixel_logits.masked_fill(~allowed, float("-inf")).logsumexp(dim=1)
    return (pixel_logits.logsumexp(dim=1) - inside).mean()


class PartialLabelLoss(nn.Module):
    """`partial_label_loss` with ignore_index fixed; called as loss(logits, partial_labels, target_sets)."""

    def __init__(self, *, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = check_ignore_index(ignore_index, loss=NAME)

    def forward(self, logits: torch.Tensor, partial_labels: torch.Tensor, target_sets: torch.Tensor) -> torch.Tensor:
        return partial_label_loss(logits, partial_labels, target_sets, ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"
