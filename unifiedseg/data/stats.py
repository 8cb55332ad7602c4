"""Class statistics of datasets, in their own taxonomy and in the unified space, and the class
weights for a class-balanced loss derived from them (inverse and median frequency)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from unifiedseg.constants import WEIGHT_METHODS
from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.labels import LabelMapper
from unifiedseg.data.listfile import ListEntry


@dataclass
class ClassStats:
    """Pixel and image counts per class; `unassigned_pixels` are labelled pixels with no single class
    (one-to-many classes, counted in the unified space only)."""

    class_names: list[str]
    pixels: np.ndarray  # int64 per class
    images: np.ndarray  # int64 per class: images containing the class
    ignored_pixels: int = 0
    unassigned_pixels: int = 0

    def frequency(self) -> np.ndarray:
        total = self.pixels.sum()
        return self.pixels / total if total else np.zeros(len(self.pixels))

    def to_dict(self) -> dict:
        return {
            "classes": self.class_names,
            "pixels": self.pixels.tolist(),
            "images": self.images.tolist(),
            "frequency": [round(float(f), 8) for f in self.frequency()],
            "ignored_pixels": int(self.ignored_pixels),
            "unassigned_pixels": int(self.unassigned_pixels),
        }


def dataset_stats(entries: list[ListEntry], mapper: LabelMapper, class_names: list[str],
                  progress: bool = True) -> ClassStats:
    """Counts over the label maps of `entries`, mapped by `mapper` into `class_names` ids."""
    n = len(class_names)
    size = max(n, mapper.ignore_index + 1)  # 256 for uint8 spaces; wide (uint16) spaces ignore 65535
    pixels = np.zeros(size, dtype=np.int64)
    images = np.zeros(size, dtype=np.int64)
    for entry in tqdm(entries, desc=f"stats {mapper.dataset}", unit="label", disable=not progress):
        try:
            label = mapper.read_mapped(entry)
        except BadSampleError as err:
            raise BadSampleError(err.path, f"{err.problem} (dataset {mapper.dataset}, list line {entry.line})") from None
        counts = np.bincount(label.reshape(-1), minlength=size)
        pixels += counts
        images += counts > 0
    return ClassStats(list(class_names), pixels[:n].copy(), images[:n].copy(),
                      ignored_pixels=int(pixels[mapper.ignore_index]))


def unified_stats(per_dataset: dict[str, ClassStats], converter) -> ClassStats:
    """Sum datasets' own-taxonomy counts into the converter's label space through each class's target set."""
    pixels = np.zeros(converter.num_classes, dtype=np.int64)
    images = np.zeros(converter.num_classes, dtype=np.int64)
    ignored = unassigned = 0
    for dataset, stats in per_dataset.items():
        sets = converter.target_sets(dataset).numpy()
        ignored += stats.ignored_pixels
        for class_id, allowed in enumerate(sets):
            targets = np.flatnonzero(allowed)
            if len(targets) == 1:
                pixels[targets[0]] += stats.pixels[class_id]
                images[targets[0]] += stats.images[class_id]
            elif len(targets) == 0:
                ignored += int(stats.pixels[class_id])
            else:
                unassigned += int(stats.pixels[class_id])
    return ClassStats(list(converter.class_names), pixels, images, ignored, unassigned)


def class_weights(stats: ClassStats, method: str = "median") -> np.ndarray:
    """Per-class loss weights: `inverse` = 1/f scaled to mean 1 over present classes; `median` =
    median(f)/f (Eigen & Fergus 2015). Classes with no pixels get 1.0: no target pixel of theirs
    exists, so their weight never acts."""
    if method not in WEIGHT_METHODS:
        raise ValueError(f"unknown class-weight method {method!r}; valid: {', '.join(WEIGHT_METHODS)}")
    freq = stats.frequency()
    present = freq > 0
    weights = np.ones(len(freq))
    if not present.any():
        return weights
    if method == "inverse":
        inv = 1.0 / freq[present]
        weights[present] = inv / inv.mean()
    else:
        weights[present] = np.median(freq[present]) / freq[present]
    return weights
