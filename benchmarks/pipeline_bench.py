"""Timing of the training data path on one core: the fused pipeline, a sequential float32 reference in
MSeg's order of operations, and the decoding floor. Used by benchmarks/benchmark_pipeline.py and
benchmarks/pipeline.py; speed goals live in benchmarks, never in unit tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from unifiedseg.constants import IMAGENET_STD
from unifiedseg.data.dataset import SampleKey, SegmentationDataset
from unifiedseg.data.decode import read_image, read_label
from sequential_reference import sequential_reference
from unifiedseg.data.transforms import TrainTransform

# MSeg's crop for each training resolution (short side).
CROP_FOR_RESOLUTION = {480: 473, 720: 593, 1080: 713}


def limit_to_one_thread() -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def train_transform_for(resolution: int) -> TrainTransform:
    if resolution not in CROP_FOR_RESOLUTION:
        raise ValueError(f"resolution must be one of {sorted(CROP_FOR_RESOLUTION)}, got {resolution}")
    crop = CROP_FOR_RESOLUTION[resolution]
    return TrainTransform(short_side=resolution, crop_size=(crop, crop))


@dataclass
class Timing:
    name: str
    seconds: float
    count: int

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @property
    def ms_each(self) -> float:
        return 1000 * self.seconds / self.count


def time_fused(dataset: SegmentationDataset, num_crops: int, progress: bool = True) -> Timing:
    """Crops through SegmentationDataset (decode, check, map, warp, blur, tensors), one at a time."""
    dataset[SampleKey(dataset.name, 0, 10**6, 0)]  # warm-up: first-call allocations and caches
    start = time.perf_counter()
    for i in tqdm(range(num_crops), desc="fused pipeline", unit="crop", disable=not progress):
        dataset[SampleKey(dataset.name, i % len(dataset), i, 0)]
    return Timing("fused pipeline", time.perf_counter() - start, num_crops)


def time_sequential(dataset: SegmentationDataset, num_crops: int, progress: bool = True) -> Timing:
    """MSeg's order on a fully decoded float32 image: resize, scale, rotate, blur, flip, pad, crop,
    label mapping and normalisation, with the same random parameters as the fused path."""
    transform = dataset.transform
    mean = torch.tensor(transform.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    start = time.perf_counter()
    for i in tqdm(range(num_crops), desc="sequential reference", unit="crop", disable=not progress):
        entry = dataset.entries[i % len(dataset)]
        image, label = read_image(entry.image), read_label(entry.label)
        rng = np.random.default_rng([dataset.seed, i, 0, i % len(dataset)])
        params = transform.sample_params(label.shape, rng)
        image, label = sequential_reference(image, dataset.label_mapper(label), params, mean=transform.mean)
        # the tensors the fused path returns, made the reference's way (timed, then dropped)
        _ = (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) - mean) / std, torch.from_numpy(label).long()
    return Timing("sequential reference", time.perf_counter() - start, num_crops)


def time_decode_floor(dataset: SegmentationDataset, num_frames: int, progress: bool = True) -> tuple[Timing, Timing]:
    """Full-size JPEG and PNG decoding alone: what any pipeline that decodes every frame pays."""
    times = {"image": 0.0, "label": 0.0}
    for i in tqdm(range(num_frames), desc="decode floor", unit="frame", disable=not progress):
        entry = dataset.entries[i % len(dataset)]
        start = time.perf_counter()
        read_image(entry.image)
        times["image"] += time.perf_counter() - start
        start = time.perf_counter()
        read_label(entry.label)
        times["label"] += time.perf_counter() - start
    return Timing("image decode", times["image"], num_frames), Timing("label decode", times["label"], num_frames)
