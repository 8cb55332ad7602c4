"""Raw labels (`data.label_source=raw`: the publishers' files, MSeg's relabel records applied on the fly)
against the labels MSeg's preparation wrote (`prepared`), for MSeg's 7 relabeled training datasets.

Parts (all by default; choose with --parts):

  crops    crops/s on one core per dataset, prepared vs raw, at 1080p with MSeg's full augmentation
           (short side 1080, scale 0.5-2, rotation, blur, flip, 713x713 crops, uint8 out as with
           training loaders), on synthetic frames at each dataset's real resolution, named after
           real images of the shipped relabel index so that its records apply. For each dataset, frames
           with records and frames without are timed separately, with the same seeds in both modes, and
           combined in the share of its train images that have records (MSeg's PREPARATION.md):
           time per crop = p * T(with records) + (1 - p) * T(without).
  startup  building the relabel index, reading every training list in raw mode (MSeg's full-size
           shipped lists; COCO's train list generated from a synthetic panoptic_train2017.json of
           118,287 images), building each LabelMapper and loading the first item of each dataset (ADE20K's
           full-release tree walk included), in a fresh process, on a tree of tiny files holding every
           listed file (--tree).
  train    wall time of `python tools/train.py --config config/train/1080/mseg.yaml data.label_source=raw`
           on that tree to its first logged step (one CPU process, hrnet_w18_small, mixed sampling), and
           where the time goes (from the log's timestamps).

Run: python benchmarks/raw_labels.py [--parts crops,startup,train] [--crops 32] [--tree DIR] [--out DIR]
Goals: raw keeps at least 85% of the prepared crops/s on average over the 7 datasets and no dataset is
below 60%; startup (index, lists, mappers, first items) under 60 s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import lzma
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]

# name, relabel group, family, label (H, W), share of train images with records (PREPARATION.md)
@dataclass(frozen=True)
class Spec:
    name: str
    group: str
    size: tuple[int, int]  # label (H, W) at the real resolution
    share: float


SPECS = [
    Spec("coco-panoptic-133-relabeled", "cocop", (480, 640), 0.46),
    Spec("ade20k-150-relabeled", "ade20k", (512, 683), 0.42),
    Spec("cityscapes-19-relabeled", "cityscapes", (1024, 2048), 0.34),
    Spec("idd-39-relabeled", "idd", (1080, 1920), 0.86),
    Spec("bdd-relabeled", "bdd", (720, 1280), 0.37),
    Spec("mapillary-public65-relabeled", "mapillary", (3000, 4000), 0.04),
    Spec("sunrgbd-37-relabeled", "sunrgbd", (480, 640), 0.68),
]
ADE_FULL_SCALE = 3  # the full release's *_seg.png is larger than the challenge label (683x512 -> 2048x1536)
TINY = (24, 32)
COCO_TRAIN_IMAGES = 118_287
COCO_SEGMENTS_PER_IMAGE = 7
POLYGONS = 100  # Cityscapes / IDD objects per polygons JSON


def load_registry():
    from unifiedseg.data.registry import DatasetRegistry

    return DatasetRegistry.load()


# ---------------------------------------------------------------------------------------------------------
# Synthetic content
# ---------------------------------------------------------------------------------------------------------
def blob(rng, h: int, w: int, scale: float = 1.0, points: int | None = None) -> np.ndarray:
    """A star-shaped polygon (int32 (n, 2) x, y) somewhere in an h x w image."""
    n = points or int(rng.integers(8, 40))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    radius = max(2.0, scale * rng.uniform(0.02, 0.15) * min(h, w))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.5, 1.0, n)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.clip(np.round(pts), [0, 0], [w - 1, h - 1]).astype(np.int32)


def bands(h: int, w: int, values) -> np.ndarray:
    """Horizontal bands of `values` (a street or room-like background)."""
    out = np.empty((h, w), dtype=np.asarray(values).dtype)
    edges = np.linspace(0, h, len(values) + 1).astype(int)
    for v, a, b in zip(values, edges[:-1], edges[1:]):
        out[a:b] = v
    return out


def ensure_present(canvas: np.ndarray, values) -> None:
    """Stamp a small square of each value that no pixel holds (a record's segment must exist)."""
    h, w = canvas.shape[:2]
    side = max(1, min(h, w) // 40)
    per_row = w // side
    for n, v in enumerate(values):
        if not (canvas == v).any():
            r, c = divmod(n, per_row)
            canvas[h - (r + 1) * side: h - r * side, c * side:(c + 1) * side] = v


def image_for(ids: np.ndarray, rng, suffix: str, noise: float) -> bytes:
    """A photo-like image coloured by `ids` (textured, noisy), encoded as JPEG q90 or PNG."""
    palette = rng.integers(30, 225, size=(256, 3)).astype(np.uint8)
    image = palette[ids.astype(np.uint8)]
    if noise:
        image = np.clip(image + rng.normal(0, noise, size=ids.shape + (1,)).astype(np.float32), 0, 255).astype(np.uint8)
        image = cv2.GaussianBlur(image, (3, 3), 0)
    if suffix.lower() in (".jpg", ".jpeg"):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    assert ok
    return data.tobytes()


def palette_png(ids: np.ndarray) -> bytes:
    from PIL import Image

    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(np.random.default_rng(0).integers(0, 256, 768).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ade_scene(folder: Path, long_split: str, stem: str) -> Path:
    """A scene folder of the full release (images/training/<letter>/<scene>/), spread by image number."""
    number = int(stem.rsplit("_", 1)[-1])
    return (folder.parent / "ADE20K_2016_07_26" / "images" / long_split / "abcdefghijklmnopqrstuvwxyz"[number % 26]
            / f"scene{number % 37}")


class Writer:
    """Writes raw files of one family for one list entry: `write(image, label, segments, (h, w), rng)`,
    segments being the ones the index's records of this image name. `detail` False: tiny, cheap content."""

    def __init__(self, spec: Spec, raw_mapper, folder: Path, detail: bool):
        self.spec, self.mapper, self.folder, self.detail = spec, raw_mapper, folder, detail
        self.names = raw_mapper.source.context.release_names
        self.n = raw_mapper.num_disk_classes
        self.coco_docs: dict[str, dict] = {}

    def put(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def classes(self, rng, count: int, low: int = 1) -> np.ndarray:
        return rng.integers(low, self.n, count)

    def objects(self, rng, h, w, count):
        return [blob(rng, h, w, 1.0 if self.detail else 3.0, None if self.detail else 4) for _ in range(count)]

    def write(self, image: Path, label: Path, segments: list[int], size, rng) -> np.ndarray:
        """Writes the raw label files; returns ids to colour the image with."""
        return getattr(self, f"write_{self.spec.group}")(image, label, segments, size, rng)

    # COCO panoptic: RGB PNG of segment ids + the JSON's segments_info (collected in coco_docs)
    def write_cocop(self, image, label, segments, size, rng):
        h, w = size
        count = max(COCO_SEGMENTS_PER_IMAGE, len(segments) + 2)
        taken = set(segments)
        others = []
        while len(others) < count - len(segments):
            s = int(rng.integers(1, 1 << 24))
            if s not in taken:
                taken.add(s)
                others.append(s)
        ids = bands(h, w, np.array(others[:2], dtype=np.uint32))  # two stuff regions
        for s in others[2:] + list(segments):  # things, the records' last (on top)
            cv2.fillPoly(ids.view(np.int32), [blob(rng, h, w, 1.0 if self.detail else 3.0)], int(s))
        ensure_present(ids, others + list(segments))
        cats = {s: int(rng.integers(1, 201)) for s in others + list(segments)}
        rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)
        self.put(label, png(rgb[..., ::-1]))
        split = label.parent.name  # panoptic_train2017
        info = []
        for s in others + list(segments):
            if self.detail:
                ys, xs = np.nonzero(ids == s)
                bbox, area = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1], int(len(xs))
            else:  # tiny files: values of a real image's size, for a JSON of realistic length
                bbox, area = [int(v) for v in rng.integers(0, 640, 4)], int(rng.integers(100, 200000))
            info.append({"id": int(s), "category_id": cats[s], "iscrowd": 0, "bbox": bbox, "area": area})
        doc = self.coco_docs.setdefault(split, {"images": [], "annotations": [], "categories": []})
        number = int(image.stem) if image.stem.isdigit() else len(doc["images"])
        doc["images"].append({"file_name": image.name, "id": number, "height": h, "width": w})
        doc["annotations"].append({"file_name": label.name, "image_id": number, "segments_info": info})
        sem = np.zeros((h, w), np.uint8)
        for s, c in cats.items():
            sem[ids == s] = c
        return sem

    def write_coco_json(self) -> None:
        for split, doc in self.coco_docs.items():
            doc["categories"] = [{"id": i, "name": f"c{i}", "isthing": int(i <= 80), "supercategory": "x"}
                                 for i in range(1, 201)]
            self.put(self.folder / "annotations" / f"{split}.json", json.dumps(doc).encode())

    # ADE20K: challenge PNG of ids + the full release's *_seg.png (instances in B) at 3x
    def write_ade20k(self, image, label, segments, size, rng):
        h, w = size
        ids = bands(h, w, self.classes(rng, 3).astype(np.uint8))
        for poly in self.objects(rng, h, w, 25 if self.detail else 6):
            cv2.fillPoly(ids, [poly], int(self.classes(rng, 1)[0]))
        self.put(label, png(ids))
        s = ADE_FULL_SCALE
        blue = np.zeros((h * s, w * s), np.uint8)
        others = [v for v in range(1, 60) if v not in segments][:20 if self.detail else 3]
        for v in others + list(segments):
            cv2.fillPoly(blue, [blob(rng, h * s, w * s, 1.0 if self.detail else 3.0) * 1], int(v))
        # each record's instance must survive the nearest resize to the label's size
        for attempt in range(3):
            small = cv2.resize(blue, (w, h), interpolation=cv2.INTER_NEAREST)
            missing = [v for v in segments if (small == v).sum() < (10 if self.detail else 1)]
            if not missing:
                break
            for n, v in enumerate(missing):
                r0, c0 = (n * 5 * s) % (h * s - 4 * s), (n * 7 * s) % (w * s - 4 * s)
                blue[r0:r0 + 4 * s, c0:c0 + 4 * s] = v
        rgb = np.stack([np.full_like(blue, 40), np.full_like(blue, 12), blue], axis=-1)
        split = label.parent.name  # training / validation
        self.put(ade_scene(self.folder, split, image.stem) / f"{image.stem}_seg.png", png(rgb[..., ::-1]))
        return ids

    # Cityscapes: labelIds PNG drawn from *_gtFine_polygons.json (objects without ids: index = segment)
    def write_cityscapes(self, image, label, segments, size, rng):
        return self._polygons(image, label, segments, size, rng, with_ids=False)

    # IDD: *_gtFine_polygons.json only (objects with ids)
    def write_idd(self, image, label, segments, size, rng):
        return self._polygons(image, label, segments, size, rng, with_ids=True)

    def _polygons(self, image, label, segments, size, rng, with_ids: bool):
        h, w = size
        count = max(POLYGONS if self.detail else 8, max(segments, default=0) + 1)
        names = [n for n in self.names if n not in ("unlabeled", "ego vehicle", "rectification border", "out of roi")]
        objects = [{"label": "sky", "polygon": [[0, 0], [w - 1, 0], [w - 1, h // 3], [0, h // 3]]},
                   {"label": "building", "polygon": [[0, h // 4], [w - 1, h // 4], [w - 1, h // 2], [0, h // 2]]},
                   {"label": "road", "polygon": [[0, h // 2], [w - 1, h // 2], [w - 1, h - 1], [0, h - 1]]}]
        while len(objects) < count:
            objects.append({"label": str(names[int(rng.integers(len(names)))]),
                            "polygon": self.objects(rng, h, w, 1)[0].tolist()})
        if with_ids:
            for i, obj in enumerate(objects):
                obj["id"] = i
        ids = np.zeros((h, w), np.uint8)
        lookup = {n: i for i, n in enumerate(self.names)}
        for obj in objects:
            cv2.fillPoly(ids, [np.array(obj["polygon"], np.int32)], lookup.get(obj["label"], 0))
        document = {"imgHeight": h, "imgWidth": w, "objects": objects}
        polygons = label.with_name(label.name.rsplit("_gtFine_", 1)[0] + "_gtFine_polygons.json")
        self.put(polygons, json.dumps(document).encode())
        if not with_ids:
            self.put(label, png(ids))  # Cityscapes ships *_gtFine_labelIds.png; IDD only the JSON
        return ids

    def _class_ids(self, image, label, segments, size, rng, background_values, segment_to_id=lambda s: s):
        h, w = size
        ids = bands(h, w, np.array(background_values, np.uint8))
        for poly in self.objects(rng, h, w, 30 if self.detail else 5):
            cv2.fillPoly(ids, [poly], int(self.classes(rng, 1, 0)[0]))
        wanted = [segment_to_id(s) for s in segments]
        for poly, v in zip(self.objects(rng, h, w, len(wanted)), wanted):
            cv2.fillPoly(ids, [poly], int(v))
        ensure_present(ids, wanted)
        return ids

    # BDD: train-id PNG, segments are class ids
    def write_bdd(self, image, label, segments, size, rng):
        ids = self._class_ids(image, label, segments, size, rng, [10, 2, 0, 255])  # sky, building, road, unlabeled
        self.put(label, png(ids))
        return ids

    # SUN RGB-D: label38 PNG, segments are sunrgbd-37 ids
    def write_sunrgbd(self, image, label, segments, size, rng):
        lut = self.mapper.source.context.segment_lut
        to_38 = {int(v): i for i, v in reversed(list(enumerate(lut[: self.n])))}
        ids = self._class_ids(image, label, segments, size, rng, [22, 1, 2], lambda s: to_38[s])  # ceiling, wall, floor
        self.put(label, png(ids))
        return ids

    # Mapillary: palette PNG of ids + uint16 instances/ PNG (class * 256 + n)
    def write_mapillary(self, image, label, segments, size, rng):
        h, w = size
        ids = bands(h, w, np.array([27, 17, 13], np.uint8))  # sky, building, road
        instances = ids.astype(np.uint16) * 256
        for n, poly in enumerate(self.objects(rng, h, w, 40 if self.detail else 5)):
            klass = int(self.classes(rng, 1, 0)[0])
            cv2.fillPoly(ids, [poly], klass)
            cv2.fillPoly(instances, [poly], klass * 256 + n % 256)
        for poly, s in zip(self.objects(rng, h, w, len(segments)), segments):
            cv2.fillPoly(ids, [poly], s // 256)
            cv2.fillPoly(instances, [poly], s)
        ensure_present(instances, list(segments))
        for s in segments:
            ids[instances == s] = s // 256
        self.put(label, palette_png(ids))
        self.put(label.parent.parent / "instances" / label.name, png(instances))
        return ids


# ---------------------------------------------------------------------------------------------------------
# Trees
# ---------------------------------------------------------------------------------------------------------
def shipped_lines(list_name: str, split: str) -> list[tuple[str, str]]:
    from unifiedseg.data.splits import shipped_list_path

    path = shipped_list_path(list_name, split)
    if not path.is_file():
        return []
    return [tuple(line.split()) for line in lzma.open(path, "rt").read().splitlines() if len(line.split()) == 2]


def coco_label(stem: str, split: str) -> tuple[str, str]:
    return f"images/{split}2017/{stem}.jpg", f"annotations/panoptic_{split}2017/{stem}.png"


def raw_train_lines(spec: Spec, info, registry, index, split="train", coco_total=COCO_TRAIN_IMAGES) -> list[tuple[str, str]]:
    """The raw list of a dataset split: MSeg's shipped one, or for COCO train, the images of the index
    plus synthetic ids up to COCO's 118,287."""
    from unifiedseg.data.labels import read_plan

    raw_info = read_plan(info, "raw").list_info
    lines = shipped_lines(raw_info.mseg_lists, split)
    if lines or spec.group != "cocop":
        return lines
    stems = sorted({stem for (parent, stem) in index.groups["cocop"] if parent == f"{split}2017"})
    have, n = set(stems), 1
    while len(stems) < coco_total:
        stem = f"{n * 7:012d}"
        if stem not in have:
            stems.append(stem)
        n += 1
    return [coco_label(s, split) for s in sorted(stems)]


def segments_of(index, group: str, image: Path) -> list[int]:
    return [e.segment for e in index.edits(group, image)]


def pick_frames(spec: Spec, lines, index, with_records: int, without: int, seed: int = 0):
    """Frames with records at the quantiles of the record-count distribution of the split's images with
    records, and frames without records, from the raw list."""
    rng = np.random.default_rng(seed)
    counted = [(len(index.edits(spec.group, Path(img))), img, lab) for img, lab in lines]
    withs = sorted([c for c in counted if c[0]], key=lambda c: (c[0], c[1]))
    withouts = [c for c in counted if not c[0]]
    if spec.group == "cocop" and len(withouts) < without:  # COCO train: ids not in the index
        withouts = [(0,) + coco_label(f"{900_000_000 + i:012d}", "train") for i in range(without)]
    chosen = [withs[int((i + 0.5) / with_records * len(withs))] for i in range(with_records)]
    picks = rng.choice(len(withouts), size=without, replace=False)
    return chosen, [withouts[i] for i in sorted(picks)]


def converter_for_training():
    from unifiedseg.taxonomy import TaxonomyConverter

    return TaxonomyConverter.from_tsv("mseg", train_datasets=[s.name for s in SPECS], test_datasets=[])


def build_crops_tree(root: Path, frames_with: int, frames_without: int):
    """Frames at real resolution, in both layouts, listed by user lists. Returns {dataset: (with, without)}
    of list indices."""
    from unifiedseg.data.labels import build_label_mapper, read_plan
    from unifiedseg.data.listfile import ListEntry
    from unifiedseg.data.relabel import load_index
    from unifiedseg.data.splits import user_list_path

    registry = load_registry()
    index = load_index()
    layout = {}
    for k, spec in enumerate(SPECS):
        t0 = time.perf_counter()
        info = registry.get(spec.name)
        raw_info = read_plan(info, "raw").list_info
        raw_folder = raw_info.folder(root)
        lines = raw_train_lines(spec, info, registry, index)
        chosen, plain = pick_frames(spec, lines, index, frames_with, frames_without, seed=k)
        raw_mapper = build_label_mapper(info, None, mode="raw", data_root=root)
        writer = Writer(spec, raw_mapper, raw_folder, detail=True)
        prepared = dict(shipped_lines(info.mseg_lists, "train"))
        raw_lines, prep_lines = [], []
        rng = np.random.default_rng(100 + k)
        for count, img, lab in chosen + plain:
            segments = segments_of(index, spec.group, Path(img))
            assert len(segments) == count
            h, w = spec.size
            ids = writer.write(raw_folder / img, raw_folder / lab, segments, (h, w), rng)
            writer.put(raw_folder / img, image_for(ids, rng, Path(img).suffix, noise=12 if img.endswith(".jpg") else 4))
            raw_lines.append(f"{img} {lab}")
            prep_lab = prepared.get(img) or f"semantic_relabeled133/train2017/{Path(img).stem}.png"
            prep_lines.append(f"{img} {prep_lab}")
        if spec.group == "cocop":
            writer.write_coco_json()
        for target, lines_ in ((user_list_path(raw_info, "train", root), raw_lines),
                               (user_list_path(info, "train", root), prep_lines)):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(lines_) + "\n")
        # prepared labels: what the raw path reads, in the relabeled dataset's own ids (= MSeg's files)
        folder = info.folder(root)
        for raw_line, prep_line in zip(raw_lines, prep_lines):
            img, lab = raw_line.split()
            own = raw_mapper.read_mapped(ListEntry(raw_folder / img, raw_folder / lab, 1))
            assert own.dtype == np.uint8
            writer.put(folder / prep_line.split()[1], png(own))
        layout[spec.name] = (list(range(len(chosen))), list(range(len(chosen), len(chosen) + len(plain))),
                             [c[0] for c in chosen])
        print(f"  wrote {spec.name}: {len(chosen)} frames with records ({[c[0] for c in chosen]} records), "
              f"{len(plain)} without, {spec.size[1]}x{spec.size[0]}, {time.perf_counter() - t0:.1f} s", flush=True)
    return layout


def build_full_tree(root: Path) -> dict:
    """Every file the raw train and val lists of the 7 datasets name, as tiny files (32x24 images and
    labels; ADE20K's full-release tree of 22k images with .jpg, _seg.png and _atr.txt each), plus a
    synthetic panoptic_train2017.json of 118,287 images and panoptic_val2017.json. Images with records
    get content holding their records' segments; the others share one template per dataset."""
    from unifiedseg.data.labels import build_label_mapper, read_plan
    from unifiedseg.data.relabel import load_index

    registry = load_registry()
    index = load_index()
    counts = {}
    rng = np.random.default_rng(7)
    for spec in SPECS:
        t0 = time.perf_counter()
        info = registry.get(spec.name)
        raw_info = read_plan(info, "raw").list_info
        folder = raw_info.folder(root)
        mapper = build_label_mapper(info, None, mode="raw", data_root=root)
        writer = Writer(spec, mapper, folder, detail=False)
        files = 0
        per_image = spec.group in ("cocop", "cityscapes", "idd")  # the COCO JSON / polygon JSONs are per image
        for split in ("train", "val"):
            lines = raw_train_lines(spec, info, registry, index, split)
            templates: dict[str, bytes] = {}
            for img, lab in lines:
                image, label = folder / img, folder / lab
                segments = segments_of(index, spec.group, image)
                if segments or per_image or "label" not in templates:
                    writer.write(image, label, segments, TINY, rng)
                    if not segments and not per_image:
                        templates["label"] = label.read_bytes()
                else:
                    writer.put(label, templates["label"])
                if image.suffix not in templates:
                    templates[image.suffix] = image_for(np.zeros(TINY, np.uint8), rng, image.suffix, noise=0)
                writer.put(image, templates[image.suffix])
                files += 2
            if spec.group == "cocop":
                writer.write_coco_json()
                writer.coco_docs.clear()
        if spec.group == "ade20k":  # the rest of the full release: every image, its _seg.png, its _atr.txt
            for split, long_split in (("train", "training"), ("val", "validation")):
                for img, _ in raw_train_lines(spec, info, registry, index, split):
                    stem = Path(img).stem
                    scene = ade_scene(folder, long_split, stem)
                    scene.mkdir(parents=True, exist_ok=True)
                    for suffix in (".jpg", "_atr.txt", "_seg.png"):
                        path = scene / f"{stem}{suffix}"
                        if not path.exists():
                            path.write_bytes(b"x")
                            files += 1
        counts[spec.name] = files
        print(f"  wrote {spec.name}: {files} files, {time.perf_counter() - t0:.1f} s", flush=True)
    return counts


# ---------------------------------------------------------------------------------------------------------
# Part 1: crops/s
# ---------------------------------------------------------------------------------------------------------
def part_crops(args) -> dict:
    import torch

    from unifiedseg.data.dataset import SampleKey, SegmentationDataset
    from pipeline_bench import limit_to_one_thread, train_transform_for

    limit_to_one_thread()
    root = Path(args.out) / "crops_tree"
    if not (root / "layout.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        print(f"writing synthetic frames under {root}", flush=True)
        layout = build_crops_tree(root, args.frames_with, args.frames_without)
        (root / "layout.json").write_text(json.dumps(layout))
    layout = json.loads((root / "layout.json").read_text())
    registry = load_registry()
    converter = converter_for_training()
    transform = train_transform_for(1080)
    sets = {}
    for spec in SPECS:
        info = registry.get(spec.name)
        sets[spec.name] = {mode: SegmentationDataset.from_registry(info, "train", root, converter=converter,
                                                                   transform=transform, label_source=mode)
                           for mode in ("prepared", "raw")}
        # same crop in both modes (the prepared labels are the raw path's output)
        for i in range(len(sets[spec.name]["raw"])):
            key = SampleKey(spec.name, i, 10**6, 0)
            a, b = sets[spec.name]["prepared"][key], sets[spec.name]["raw"][key]
            assert torch.equal(a["label"], b["label"]) and torch.equal(a["image"], b["image"]), (spec.name, i)
    per_round = max(1, args.crops // args.rounds)
    totals = {(s.name, mode, kind): [0.0, 0] for s in SPECS for mode in ("prepared", "raw") for kind in (0, 1)}
    profiler = cProfile.Profile() if args.profile else None
    print(f"timing {args.rounds} rounds x {per_round} crops per dataset, mode and kind (with / without records)",
          flush=True)
    for r in range(args.rounds):
        for spec in SPECS:
            for mode in ("prepared", "raw"):
                dataset = sets[spec.name][mode]
                for kind in (0, 1):
                    indices = layout[spec.name][kind]
                    for j in range(per_round):
                        it = r * per_round + j
                        key = SampleKey(spec.name, indices[it % len(indices)], it, 0)
                        if profiler is not None and mode == "raw":
                            profiler.enable()
                        start = time.perf_counter()
                        dataset[key]
                        totals[spec.name, mode, kind][0] += time.perf_counter() - start
                        if profiler is not None and mode == "raw":
                            profiler.disable()
                        totals[spec.name, mode, kind][1] += 1
    results = {}
    for spec in SPECS:
        row = {}
        for mode in ("prepared", "raw"):
            t_with = totals[spec.name, mode, 0][0] / totals[spec.name, mode, 0][1]
            t_without = totals[spec.name, mode, 1][0] / totals[spec.name, mode, 1][1]
            t = spec.share * t_with + (1 - spec.share) * t_without
            row[mode] = {"crops_per_s": 1 / t, "ms_with": 1000 * t_with, "ms_without": 1000 * t_without}
        row["ratio"] = row["raw"]["crops_per_s"] / row["prepared"]["crops_per_s"]
        row["records"] = layout[spec.name][2]
        results[spec.name] = row
    ratios = [r["ratio"] for r in results.values()]
    print(f"\ncrops/s on one core, 1080p, 713x713, MSeg's augmentation, uint8 out; {per_round * args.rounds} "
          f"crops per dataset, mode and kind; load average {os.getloadavg()[0]:.2f}")
    print(f"{'dataset':<30} {'size':>10} {'p':>5} {'records/frame':>18} | {'prepared':>8} {'raw':>8} {'raw/prep':>8} | "
          f"{'prep ms w/o,w':>14} {'raw ms w/o,w':>14}")
    for spec in SPECS:
        row = results[spec.name]
        p, q = row["prepared"], row["raw"]
        print(f"{spec.name:<30} {spec.size[1]:>4}x{spec.size[0]:<5} {spec.share:>5.2f} {str(row['records']):>18} | "
              f"{p['crops_per_s']:>8.1f} {q['crops_per_s']:>8.1f} {row['ratio']:>7.0%} | "
              f"{p['ms_without']:>6.1f},{p['ms_with']:>6.1f} {q['ms_without']:>6.1f},{q['ms_with']:>6.1f}")
    print(f"mean raw/prepared {np.mean(ratios):.0%} (goal >= 85%), min {min(ratios):.0%} (goal >= 60%)")
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
        print("\nraw path profile (all datasets, by own time):\n" + stream.getvalue())
    return {"datasets": results, "mean_ratio": float(np.mean(ratios)), "min_ratio": float(min(ratios))}


# ---------------------------------------------------------------------------------------------------------
# Part 2: startup (run in a fresh process)
# ---------------------------------------------------------------------------------------------------------
def startup_child(root: Path) -> dict:
    t_import = time.perf_counter()
    from unifiedseg.data.dataset import SampleKey, SegmentationDataset
    from unifiedseg.data.labels import build_label_mapper, read_entries
    from pipeline_bench import limit_to_one_thread, train_transform_for
    from unifiedseg.data.relabel import load_index

    limit_to_one_thread()
    registry = load_registry()
    converter = converter_for_training()
    transform = train_transform_for(1080)
    out = {"imports_registry_converter": time.perf_counter() - t_import}
    start = time.perf_counter()
    load_index()
    out["load_index"] = time.perf_counter() - start
    for spec in SPECS:
        info = registry.get(spec.name)
        row = {}
        start = time.perf_counter()
        entries = read_entries(info, "train", root, "raw")
        row["list"] = time.perf_counter() - start
        row["entries"] = len(entries)
        start = time.perf_counter()
        mapper = build_label_mapper(info, converter, mode="raw", data_root=root)
        row["mapper"] = time.perf_counter() - start
        dataset = SegmentationDataset(name=info.name, entries=entries, label_mapper=mapper, transform=transform)
        start = time.perf_counter()
        dataset[SampleKey(info.name, 0, 0, 0)]
        row["first_item"] = time.perf_counter() - start
        # the first item with records: segment masks (ADE20K: the full release's tree walk, once per process)
        first = next(i for i, e in enumerate(entries) if mapper.relabeling.index.edits(mapper.relabeling.group, e.image))
        start = time.perf_counter()
        dataset[SampleKey(info.name, first, 0, 0)]
        row["first_record_item"] = time.perf_counter() - start
        out[spec.name] = row
    out["total"] = time.perf_counter() - t_import
    return out


def part_startup(args) -> dict:
    root = ensure_full_tree(args)
    cache = Path(args.out) / "cache"
    results = {}
    for attempt in ("cold cache (COCO list generated)", "warm cache (COCO list cached)"):
        if attempt.startswith("cold"):
            shutil.rmtree(cache, ignore_errors=True)
        env = dict(os.environ, UNIFIEDSEG_CACHE_DIR=str(cache))
        done = subprocess.run([sys.executable, __file__, "--startup-child", str(root)], env=env, check=True,
                              capture_output=True, text=True)
        results[attempt] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nstartup on {root} (MSeg's full train lists, tiny files); load average {os.getloadavg()[0]:.2f}")
    for attempt, r in results.items():
        print(f"  {attempt}: total {r['total']:.1f} s = imports/registry/converter {r['imports_registry_converter']:.1f} "
              f"+ load_index {r['load_index']:.1f} + per dataset (list, mapper, first item, first item with records):")
        for spec in SPECS:
            row = r[spec.name]
            print(f"    {spec.name:<30} {row['entries']:>7} lines  list {row['list']:6.2f} s  mapper {row['mapper']:5.2f} s  "
                  f"first item {row['first_item']:5.2f} s  first item with records {row['first_record_item']:5.2f} s")
    return results


def ensure_full_tree(args) -> Path:
    root = Path(args.tree) if args.tree else Path(args.out) / "full_tree"
    marker = root / "tree.json"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        print(f"writing the full-size tree of tiny files under {root}", flush=True)
        start = time.perf_counter()
        counts = build_full_tree(root)
        marker.write_text(json.dumps({"files": counts, "seconds": time.perf_counter() - start}))
        print(f"  {sum(counts.values())} files in {time.perf_counter() - start:.0f} s", flush=True)
    return root


# ---------------------------------------------------------------------------------------------------------
# Part 3: tools/train.py to its first step
# ---------------------------------------------------------------------------------------------------------
TRAIN_OVERRIDES = ["data.label_source=raw", "train.max_iters=1", "train.num_examples=null", "data.num_workers=0", "data.batch_size=2",
                   "model.backbone=hrnet_w18_small", "model.pretrained=null", "data.sampling.mode=mixed",
                   "data.sampling.dataset_gpu_mapping=null",
                   "train.device=cpu", "train.log_interval=1", "data.val.max_images=1", "train.checkpoint_interval=0"]


def part_train(args) -> dict:
    root = ensure_full_tree(args)
    work = Path(args.out) / "train_run"
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, "tools/train.py", "--config", "config/train/1080/mseg.yaml", f"data.root={root}",
               f"work_dir={work}"] + TRAIN_OVERRIDES
    cache = Path(args.out) / "cache_train"  # a first run: COCO's train list not generated yet
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, UNIFIEDSEG_CACHE_DIR=str(cache))
    print("\n$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    lines = []
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    first_step = None
    for line in proc.stdout:
        now = time.perf_counter() - start
        lines.append(f"[{now:7.1f}s] {line.rstrip()}")
        if first_step is None and re.search(r"\biter 1/\d+ ", line):
            first_step = now
    proc.wait()
    total = time.perf_counter() - start
    print("\n".join(line for line in lines if "line/s]" not in line and not line.endswith("] ")))
    print(f"\nexit {proc.returncode}; first step logged at {first_step} s; process ended at {total:.1f} s")
    return {"returncode": proc.returncode, "first_step_s": first_step, "total_s": total, "log": lines}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="crops,startup,train", help="comma-separated: crops, startup, train")
    parser.add_argument("--crops", type=int, default=32, help="timed crops per dataset, mode and kind (with / without records)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (prepared and raw alternate)")
    parser.add_argument("--frames-with", type=int, default=4, help="frames with records per dataset")
    parser.add_argument("--frames-without", type=int, default=3, help="frames without records per dataset")
    parser.add_argument("--profile", action="store_true", help="cProfile the raw path of the crops part")
    parser.add_argument("--out", default=None, help="keep generated trees and results here (default: a temporary folder)")
    parser.add_argument("--tree", default=None, help="the full-size tree of tiny files (default: OUT/full_tree)")
    parser.add_argument("--startup-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.startup_child:
        print(json.dumps(startup_child(Path(args.startup_child))))
        return 0
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or tmp
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        results = {}
        parts = args.parts.split(",")
        if "crops" in parts:
            results["crops"] = part_crops(args)
        if "startup" in parts:
            results["startup"] = part_startup(args)
        if "train" in parts:
            results["train"] = part_train(args)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
