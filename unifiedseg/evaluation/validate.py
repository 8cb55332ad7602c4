"""Validation during training: whole-image predictions on held-out lists, scored in the training
label space, one confusion matrix per dataset (each rank takes every world_size-th image; the
matrices are summed across ranks)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.evaluation.confusion import ConfusionMatrix
from unifiedseg.evaluation.metrics import dataset_metrics, mean_metric
from unifiedseg.utils.precision import autocast


@torch.no_grad()
def validate(model, datasets: dict, *, num_classes: int, device: torch.device, amp: str = "off",
             rank: int = 0, world_size: int = 1, max_images: int | None = None, ignore_index: int = IGNORE_INDEX,
             progress: bool = False) -> dict[str, ConfusionMatrix]:
    """{dataset: ConfusionMatrix} over each dataset's items (image uint8 or float 0-255, label in the
    model's label space, whose ignore label is `ignore_index`). `model` is a Segmentor
    (unifiedseg.models.segmentor): it normalises the image and gives logits at its size."""
    was_training = model.training
    model.eval()
    results = {}
    try:
        for name, dataset in datasets.items():
            matrix = ConfusionMatrix(num_classes, ignore_index)
            count = len(dataset) if max_images is None else min(max_images, len(dataset))
            for index in tqdm(range(rank, count, world_size), desc=f"validate {name}", unit="img",
                              disable=not progress, leave=False):
                item = dataset[index]
                with autocast(device, amp):
                    logits = model.predict_logits(item["image"].unsqueeze(0))
                label = item["label"].to(device)
                matrix.update(logits.argmax(1)[0], label)
            results[name] = matrix.merge() if world_size > 1 else matrix
    finally:
        model.train(was_training)
    return results


def summarize(matrices: dict[str, ConfusionMatrix], class_names: list[str],
              labelable: dict[str, list[int]] | None = None) -> dict:
    """JSON-ready metrics (`unifiedseg.evaluation.metrics`: missing values are None): per dataset mIoU,
    mAcc, aAcc and per-class IoU; and the mean mIoU over the datasets that have one.

    `labelable[dataset]` lists the classes that dataset's labels can name; its mIoU averages over
    those only. A class the dataset cannot label (one it merges, e.g. car and truck under one
    one-to-many `vehicle`) has no true positives there, so its IoU would only measure false alarms.
    """
    per_dataset = {name: dataset_metrics(matrix, class_names, (labelable or {}).get(name))
                   for name, matrix in matrices.items()}
    return {"datasets": per_dataset, "miou": mean_metric([m["miou"] for m in per_dataset.values()])}
