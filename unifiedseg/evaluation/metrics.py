"""Metrics as they leave the program, in JSON files and in text, with one rule for missing values.

A class with no labelled and no predicted pixels has no IoU, and a dataset with no labelled pixels has
no mIoU: `ConfusionMatrix` gives NaN for them, and means over datasets leave them out. Written out,
such a value is `null` in JSON (`json_metric`, `dataset_metrics`; never JSON's non-standard NaN) and
"-" in text (`format_metric`: tables, results.md / .csv, logs).
"""

from __future__ import annotations

import math

from unifiedseg.evaluation.confusion import ConfusionMatrix

MISSING_TEXT = "-"


def is_missing(value: float | None) -> bool:
    """True for a metric that has no value: None or NaN."""
    return value is None or math.isnan(value)


def json_metric(value: float | None) -> float | None:
    """`value` as a float for JSON, or None when it is missing."""
    return None if is_missing(value) else float(value)


def format_metric(value: float | None, *, digits: int = 1, percent: bool = True) -> str:
    """`value` for people: as a percentage (100 * value) with `digits` decimals, or as it is with
    percent=False; "-" when it is missing."""
    if is_missing(value):
        return MISSING_TEXT
    return f"{100 * value if percent else value:.{digits}f}"


def mean_metric(values: list[float | None]) -> float | None:
    """The mean of the values that are not missing; None when all are."""
    present = [v for v in values if not is_missing(v)]
    return sum(present) / len(present) if present else None


def dataset_metrics(matrix: ConfusionMatrix, class_names: list[str], scored_classes: list[int] | None = None) -> dict:
    """JSON-ready metrics of one dataset: mIoU (over `scored_classes` when given, e.g. the classes the
    dataset can label), mAcc, aAcc, the names of the classes scored and the IoU of every class; missing
    values are None."""
    iou = matrix.iou().tolist()
    return {
        "miou": json_metric(matrix.miou(scored_classes)), "macc": json_metric(matrix.macc()),
        "aacc": json_metric(matrix.aacc()),
        "classes_scored": [class_names[c] for c in scored_classes] if scored_classes is not None else list(class_names),
        "class_iou": {name: json_metric(value) for name, value in zip(class_names, iou)},
    }
