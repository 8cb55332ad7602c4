"""A confusion matrix accumulated over a whole evaluation set, and the metrics read off it.

Accumulating counts (not per-image scores) is what makes mIoU the standard "dataset IoU": every
pixel of the set weighs the same. `merge` sums matrices across processes for distributed evaluation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from unifiedseg.constants import IGNORE_INDEX


class ConfusionMatrix:
    """matrix[t, p] = number of pixels with label t predicted as p (ignored pixels are not counted).

    The counts live on `device` (default CPU). Training-time accumulation on a GPU keeps them there
    and updates with `check=False`, which never waits for the GPU; reading a metric copies them once.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device=None):
        if not 0 < num_classes <= 65535:
            raise ValueError(f"num_classes must be a positive count, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, label: torch.Tensor, *, check: bool = True) -> None:
        """Add a batch: `pred` and `label` integer tensors of the same shape.

        `check=False` skips the range checks of the ids (each one a device synchronisation) for ids
        the caller guarantees: labels below num_classes or ignore_index, predictions below num_classes.
        """
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
        label = label.reshape(-1).long()
        pred = pred.reshape(-1).to(label.device).long()
        n = self.num_classes
        keep = label != self.ignore_index
        if check:
            kept_label, kept_pred = label[keep], pred[keep]
            if kept_label.numel() and (int(kept_label.max()) >= n or int(kept_label.min()) < 0):
                bad = sorted(set(kept_label[(kept_label >= n) | (kept_label < 0)].unique().tolist()))[:10]
                raise ValueError(f"label ids {bad} are outside 0-{n - 1} (and {self.ignore_index} ignored)")
            if kept_pred.numel() and (int(kept_pred.max()) >= n or int(kept_pred.min()) < 0):
                raise ValueError(f"predicted ids must be in 0-{n - 1}")
        # Ignored pixels go to a spare last bin; index_add_ (unlike bincount on CUDA) needs no sync.
        cells = torch.where(keep, label * n + pred, n * n)
        counts = torch.zeros(n * n + 1, dtype=torch.int64, device=cells.device)
        counts.index_add_(0, cells, torch.ones_like(cells))
        self.matrix += counts[:-1].reshape(n, n).to(self.matrix.device)

    def merge(self, other: "ConfusionMatrix | None" = None) -> "ConfusionMatrix":
        """Add another matrix, or, with no argument, all-reduce (sum) across the process group."""
        if other is not None:
            if other.num_classes != self.num_classes:
                raise ValueError(f"cannot merge {other.num_classes}-class and {self.num_classes}-class matrices")
            self.matrix += other.matrix.to(self.matrix.device)
        elif dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
            reduced = self.matrix.to(device)
            dist.all_reduce(reduced)
            self.matrix = reduced.to(self.matrix.device)
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
            iou = iou[torch.as_tensor(classes, dtype=torch.long, device=iou.device)]
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
