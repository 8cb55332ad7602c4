"""Evaluate a model on datasets, each in its own label space (MSeg's zero-shot protocol), and write
the results people read: results.json, results.md, results.csv and a confusion-matrix PNG each.

Which space a dataset is scored in:
- a test column of the model's taxonomy (zero-shot): universal probabilities summed into the test
  classes (`TaxonomyConverter.test_matrix`), labels in the dataset's own ids;
- a training dataset of the model: the model's own label space, labels mapped into it;
- an oracle model: its one dataset, in that dataset's own ids.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unifiedseg.data.decode import BadSampleError, read_image
from unifiedseg.data.labels import LabelMapper
from unifiedseg.data.listfile import ListEntry
from unifiedseg.evaluation.confusion import ConfusionMatrix
from unifiedseg.evaluation.metrics import dataset_metrics, format_metric, is_missing, json_metric, mean_metric
from unifiedseg.utils.fileio import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class DatasetResult:
    name: str
    space: str  # "test classes", "universal" / "naive" / "oracle"
    class_names: list[str]
    matrix: ConfusionMatrix
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    scored_classes: list[int] | None = None  # mIoU over these only (the classes the dataset can label)

    def miou(self) -> float:
        return self.matrix.miou(self.scored_classes)

    def to_dict(self) -> dict:
        """JSON-ready (missing metrics are None, as `unifiedseg.evaluation.metrics` writes them)."""
        return {"space": self.space, "images": self.images, "skipped": len(self.skipped),
                "skipped_files": self.skipped, **dataset_metrics(self.matrix, self.class_names, self.scored_classes)}


def evaluate_dataset(name: str, entries: list[ListEntry], mapper: LabelMapper, predict, class_names: list[str], *,
                     space: str, skip_bad: bool = False, max_images: int | None = None,
                     progress: bool = True) -> DatasetResult:
    """Score `predict(rgb image) -> label ids (H, W)` on every entry; labels go through `mapper`."""
    result = DatasetResult(name, space, list(class_names), ConfusionMatrix(len(class_names), mapper.ignore_index))
    chosen = entries if max_images is None else entries[:max_images]
    for entry in tqdm(chosen, desc=f"test {name}", unit="img", disable=not progress):
        try:
            label = mapper.read_mapped(entry)
            image = read_image(entry.image)
            if image.shape[:2] != label.shape:
                raise BadSampleError(entry.image, f"image is {image.shape[0]}x{image.shape[1]} but its label "
                                                  f"{entry.label} is {label.shape[0]}x{label.shape[1]}")
        except BadSampleError as err:
            if not skip_bad:
                raise BadSampleError(err.path, f"{err.problem} (list line {entry.line}; --skip-bad skips and counts "
                                               f"such samples)") from None
            logger.warning("skipping %s", err)
            result.skipped.append(str(err))
            continue
        pred = predict(image)
        result.matrix.update(torch.from_numpy(np.asarray(pred).astype(np.int64)),
                             torch.from_numpy(label.astype(np.int64)))
        result.images += 1
    return result


def harmonic_mean(values: list[float]) -> float:
    """MSeg's summary over datasets: one bad dataset pulls it down more than an arithmetic mean would."""
    values = [v for v in values if not is_missing(v)]
    if not values:
        return float("nan")
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def write_results(out_dir: Path, results: list[DatasetResult], meta: dict) -> dict:
    """results.json (everything), results.md and results.csv (one row per dataset and a summary row).
    Datasets without an mIoU (no labelled pixels) are left out of the means; missing values are null in
    the JSON and "-" in the tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"harmonic_mean_miou": json_metric(harmonic_mean([r.miou() for r in results])),
               "mean_miou": mean_metric([r.miou() for r in results])}
    data = {**meta, "datasets": {r.name: r.to_dict() for r in results}, **summary}
    atomic_write_text(out_dir / "results.json", json.dumps(data, indent=1) + "\n")
    rows = [(r.name, r.space, r.images, r.miou(), r.matrix.macc(), r.matrix.aacc()) for r in results]
    header = ("dataset", "space", "images", "mIoU", "mAcc", "aAcc")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([*row[:3], *(format_metric(v, digits=2) for v in row[3:])])
    writer.writerow(["harmonic mean", "", sum(r.images for r in results),
                     format_metric(summary["harmonic_mean_miou"], digits=2), "", ""])
    atomic_write_text(out_dir / "results.csv", buffer.getvalue())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {n} | {s} | {i} | {format_metric(a)} | {format_metric(b)} | {format_metric(c)} |"
              for n, s, i, a, b, c in rows]
    lines.append(f"| **harmonic mean** | | | **{format_metric(summary['harmonic_mean_miou'])}** | | |")
    title = f"Results of {meta.get('checkpoint', 'the model')} ({meta.get('taxonomy_kind', '')} taxonomy)"
    atomic_write_text(out_dir / "results.md", f"# {title}\n\n" + "\n".join(lines) + "\n")
    return data
