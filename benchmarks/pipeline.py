"""Training-pipeline benchmark on generated 1080p frames: fused pipeline vs a sequential float32
reference in MSeg's order, and the JPEG + PNG decoding floor, one process on one core.

Run: python benchmarks/pipeline.py [--frames 20] [--num-crops 200] [--out DIR]
Goals (issue 3): at least 3x the sequential reference and at least 30 crops/s per core.
"""

import argparse
import platform
import tempfile
from pathlib import Path

import cv2
import numpy as np

from unifiedseg.data.dataset import SegmentationDataset
from unifiedseg.data.labels import build_label_mapper
from unifiedseg.data.listfile import read_list
from pipeline_bench import (limit_to_one_thread, time_decode_floor, time_fused, time_sequential,
                                            train_transform_for)
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.taxonomy import NaiveTaxonomyConverter, TaxonomyConverter

CITYSCAPES_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
# config/train/*/mseg-naive.yaml: 350 classes, so uint16 label maps (ignore label 65535)
NAIVE_DATASETS = ["mapillary-public65", "coco-panoptic-133", "ade20k-150", "idd-39", "cityscapes-19", "bdd",
                  "sunrgbd-37"]


def make_frames(folder: Path, frames: int, seed: int = 0) -> Path:
    """1920x1080 street-like frames: JPEG (quality 90) images, PNG labelIds of polygons."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(frames):
        label = np.full((1080, 1920), 7, np.uint8)  # road
        label[:400] = 23  # sky
        for _ in range(25):
            points = rng.integers([0, 200], [1920, 1080], size=(int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(label, [points], int(rng.choice(CITYSCAPES_IDS)))
        palette = rng.integers(30, 225, size=(256, 3)).astype(np.uint8)
        image = palette[label]
        # texture and sensor noise so the JPEG costs what a photo costs to decode
        noise = rng.normal(0, 12, size=(1080, 1920, 1)).astype(np.float32)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        image = cv2.GaussianBlur(image, (3, 3), 0)
        cv2.imwrite(str(folder / f"frame{i:03d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(str(folder / f"frame{i:03d}.png"), label)
        lines.append(f"frame{i:03d}.jpg frame{i:03d}.png")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="distinct generated frames")
    parser.add_argument("--num-crops", type=int, default=200)
    parser.add_argument("--out", default=None, help="keep the generated frames here (default: a temporary folder)")
    args = parser.parse_args(argv)
    limit_to_one_thread()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        list_path = make_frames(folder, args.frames)
        info = DatasetRegistry.load().get("cityscapes-19")  # labelIds on disk -> train ids -> universal
        converter = TaxonomyConverter.from_tsv("mseg", train_datasets=["cityscapes-19"], test_datasets=[])
        entries = read_list(list_path, folder)
        mapper = build_label_mapper(info, converter)
        naive = NaiveTaxonomyConverter.from_tsv("mseg", train_datasets=NAIVE_DATASETS, test_datasets=[])
        wide_mapper = build_label_mapper(info, naive)
        results = {}
        for name, reduced, label_mapper in [
                ("fused, uint8 out (normalise on device)", True, mapper),
                ("fused, uint8 out, no reduced JPEG decoding", False, mapper),
                (f"fused, uint8 out, {naive.num_classes}-class uint16 labels", True, wide_mapper)]:
            dataset = SegmentationDataset(name=info.name, entries=entries, label_mapper=label_mapper,
                                          transform=train_transform_for(1080),
                                          reduced_decoding=reduced)
            results[name] = time_fused(dataset, args.num_crops, progress=False)
        dataset = SegmentationDataset(name=info.name, entries=entries, label_mapper=mapper,
                                      transform=train_transform_for(1080))
        reference = time_sequential(dataset, max(20, args.num_crops // 4), progress=False)
        image, label = time_decode_floor(dataset, args.frames, progress=False)
    print(f"machine: {platform.machine()}, 1 thread (cv2 and torch); 1080p frames, 713x713 crops; "
          f"JPEG {image.ms_each:.1f} ms + PNG {label.ms_each:.1f} ms to decode one frame")
    print(f"{'sequential float32 reference (MSeg order)':<48} {reference.per_second:6.1f} crops/s  {reference.ms_each:6.1f} ms")
    for name, timing in results.items():
        print(f"{name:<48} {timing.per_second:6.1f} crops/s  {timing.ms_each:6.1f} ms  "
              f"{timing.per_second / reference.per_second:4.1f}x reference")
    floor = image.ms_each + label.ms_each
    print(f"{'decode floor (full JPEG + PNG, nothing else)':<48} {1000 / floor:6.1f} crops/s  {floor:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
