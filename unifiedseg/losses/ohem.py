"""Online hard example mining over pixels (OHEM; Shrivastava et al. 2016, as MMSeg's OHEMPixelSampler).

`OHEMPixelSampler.sample(logits, labels)` returns the (N, H, W) bool mask of the pixels a loss should
count; the LossSet turns the others into the ignore label. Ignored pixels are never kept. With
k = min_kept * N (min_kept counts per image):
- thresh given: sort the true-class softmax probabilities of the non-ignored pixels ascending, take
  p_k at index min(k, n_valid - 1), and keep every non-ignored pixel whose probability is strictly
  below max(thresh, p_k). So at least about k pixels are kept, more when many are below thresh.
- no thresh: keep the k non-ignored pixels of largest cross-entropy (all of them when k >= n_valid).
  Ties are broken by position: the pixel first in (image, row, column) order wins (a stable sort).
Sampling runs under torch.no_grad: no gradient flows through the choice.

The fraction of kept pixels over ALL pixels of the batch (ignored ones included) of the last call is
`sampler.last_kept_fraction`, a detached 0-dim tensor (not synchronised to the host), for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.inputs import check_ignore_index, check_logits_labels
from unifiedseg.utils.checks import is_finite_number, is_int

NAME = "OHEMPixelSampler"


class OHEMPixelSampler:
    """Keeps the hard pixels of a batch: see the module doc for the exact rule."""

    def __init__(self, *, thresh: float | None = None, min_kept: int = 100000, ignore_index: int = IGNORE_INDEX) -> None:
        if thresh is not None:
            if not is_finite_number(thresh):
                raise TypeError(f"{NAME}: thresh must be a probability in (0, 1] or null, got {thresh!r}")
            if not 0 < thresh <= 1:
                raise ValueError(f"{NAME}: thresh must be a probability in (0, 1], got {thresh}")
        if not is_int(min_kept) or min_kept < 1:
            raise ValueError(f"{NAME}: min_kept must be an integer >= 1 (pixels per image), got {min_kept!r}")
        self.thresh = None if thresh is None else float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = check_ignore_index(ignore_index, loss=NAME)
        self.last_kept_fraction: torch.Tensor | None = None

    @torch.no_grad()
    def sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits, (N, H, W) labels -> (N, H, W) bool mask of the pixels to keep."""
        labels = check_logits_labels(logits, labels, ignore_index=self.ignore_index, loss=NAME)
        valid = (labels != self.ignore_index).reshape(-1)
        n_valid = int(valid.sum())
        k = self.min_kept * labels.shape[0]
        kept = torch.zeros_like(valid)
        if n_valid > 0:
            logits = logits.float()
            targets = labels.masked_fill(labels == self.ignore_index, 0)
            if self.thresh is not None:
                true_prob = logits.softmax(dim=1).gather(1, targets.unsqueeze(1)).reshape(-1)
                p_k = true_prob[valid].sort().values[min(k, n_valid - 1)]
                kept = valid & (true_prob < torch.clamp(p_k, min=self.thresh))
            elif k >= n_valid:
                kept = valid
            else:
                loss = F.cross_entropy(logits, targets, reduction="none").reshape(-1)
                valid_index = valid.nonzero().squeeze(1)
                hardest = loss[valid_index].sort(descending=True, stable=True).indices[:k]
                kept[valid_index[hardest]] = True
        kept = kept.reshape(labels.shape)
        self.last_kept_fraction = kept.float().mean() if kept.numel() else kept.new_zeros((), dtype=torch.float32)
        return kept

    def __repr__(self) -> str:
        return f"{NAME}(thresh={self.thresh}, min_kept={self.min_kept}, ignore_index={self.ignore_index})"
