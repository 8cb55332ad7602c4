"""A confusion matrix accumulated over a whole evaluation set, and the metrics read off it.

Accumulating counts (not per-image scores) is what makes mIoU the standard "dataset IoU": every
pixel of the set weighs the same. `merge` sums matrices across processes for distributed evaluation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from unifiedseg.constants import IGNORE_INDEX


class ConfusionMatrix:
    """matrix[t, p] = number of pixels with label t predicted as p (ignored pixels are not counted)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if not 0 < num_classes <= 65535:
            raise ValueError(f"num_classes must be a positive count, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch: `pred` and `label` integer tensors of the same shape."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
        label = label.reshape(-1).long()
        pred = pred.reshape(-1).long()
        keep = label != self.ignore_index
        label, pred = label[keep], pred[keep]
        n = self.num_classes
        if label.numel() and (int(label.max()) >= n or int(label.min()) < 0):
            bad = sorted(set(label[(label >= n) | (label < 0)].unique().tolist()))[:10]
            raise ValueError(f"label ids {bad} are outside 0-{n - 1} (and {self.ignore_index} ignored)")
        if pred.numel() and (int(pred.max()) >= n or int(pred.min()) < 0):
            raise ValueError(f"predicted ids must be in 0-{n - 1}")
        counts = torch.bincount((label * n + pred).cpu(), minlength=n * n)
        self.matrix += counts.reshape(n, n)

    def merge(self, other: "ConfusionMatrix | None" = None) -> "ConfusionMatrix":
        """Add another matrix, or, with no argument, all-reduce (sum) across the process group."""
        if other is not None:
            if other.num_classes != self.num_classes:
                raise ValueError(f"cannot merge {other.num_classes}-class and {self.num_classes}-class matrices")
            self.matrix += other.matrix
        elif dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
            reduced = self.matrix.to(device)
            dist.all_reduce(reduced)
            self.matrix = reduced.cpu()
        return self

    def iou(self) -> torch.Tensor:
        """Per-class IoU; NaN for a class absent from both the labels and the predictions."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def miou(self, classes: list[int] | None = None) -> float:
        """Mean IoU over classes present in the labels or the predictions (among `classes` if given)."""
        iou = self.iou()
        if classes is not None:
            iou = iou[torch.as_tensor(classes, dtype=torch.long)]
        present = ~iou.isnan()
        return float(iou[present].mean()) if present.any() else float("nan")

    def acc(self) -> torch.Tensor:
        """Per-class accuracy (recall); NaN for a class absent from the labels."""
        m = self.matrix.double()
        total = m.sum(1)
        return torch.where(total > 0, m.diag() / total.clamp(min=1), torch.full_like(total, float("nan")))

    def macc(self) -> float:
        acc = self.acc()
        present = ~acc.isnan()
        return float(acc[present].mean()) if present.any() else float("nan")

    def aacc(self) -> float:
        """Overall pixel accuracy."""
        total = self.matrix.sum()
        return float(self.matrix.diag().sum() / total) if total else float("nan")
