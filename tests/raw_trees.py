"""Small synthetic trees of the publishers' files (the "raw" releases of MSeg's datasets), for
tests/test_raw_exactness.py: a few 24x32 images per dataset and split, named after real lines of MSeg's
relabel records so that the shipped relabel index applies to them, in each publisher's format:

- COCO panoptic: RGB PNGs of segment ids (R + 256 G + 65536 B, ids using all three bytes), VOID (0),
  an id the JSON does not list, `annotations/panoptic_{split}2017.json`;
- ADE20K: ADEChallengeData2016 id PNGs plus the full release's `*_seg.png` at 3x the label size, whose
  B channel holds instances that do not follow the label's class borders;
- Cityscapes: `*_gtFine_labelIds.png` drawn from `*_gtFine_polygons.json` (objects without ids,
  overlapping polygons, a group label, a polygon that is a horizontal line, float coordinates);
- IDD: `*_gtFine_polygons.json` only (objects with ids not in index order, a deleted object named by a
  record, a 'Xgroup' label, a 'rider group' label, an unknown label, a two-point polygon);
- BDD: train-id PNGs; Mapillary: palette PNGs with uint16 instance PNGs (class * 256 + n); SUN RGB-D:
  label38 PNGs, with img-000001 in both image/train and image/test (different labels, different
  records); CamVid: colour PNGs; KITTI / WildDash / ScanNet: id PNGs; PASCAL-Context: `.mat` files.

Every segment a record of a listed image names is drawn, over pixels of the record's original class
(so MSeg's strict datasets' assertions hold). The split lists are written as user lists (they override
MSeg's shipped ones), the lines taken from MSeg's lists, so every list name reads just these images.
"""

from __future__ import annotations

import functools
import json
import lzma
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

import mseg_reference as ref

H, W = 24, 32
ADE_SCALE = 3
LISTS_DIR = ref.RESOURCES / "lists"

FAMILIES = {
    "coco": ("coco-panoptic-inst-201", "coco-panoptic-201", "coco-panoptic-133", "coco-panoptic-133-relabeled"),
    "ade20k": ("ade20k-151", "ade20k-150", "ade20k-150-relabeled"),
    "cityscapes": ("cityscapes-34", "cityscapes-19", "cityscapes-19-relabeled", "cityscapes-34-relabeled"),
    "idd": ("idd-40", "idd-39", "idd-39-relabeled"),
    "bdd": ("bdd", "bdd-relabeled"),
    "mapillary": ("mapillary-public66", "mapillary-public65", "mapillary-public65-relabeled"),
    "sunrgbd": ("sunrgbd-38", "sunrgbd-37", "sunrgbd-37-relabeled"),
    "camvid": ("camvid-32", "camvid-11"),
    "kitti": ("kitti-34", "kitti-19"),
    "wilddash": ("wilddash-34", "wilddash-19"),
    "scannet": ("scannet-41", "scannet-20"),
    "pascal": ("pascal-context-460", "pascal-context-60"),
}
# COCO's train lists are generated from the panoptic JSON (too large to ship): their line templates
COCO_TRAIN_LABELS = {"coco-panoptic-inst-201": "annotations/panoptic_train2017/{}.png",
                     "coco-panoptic-201": "semantic_annotations201/train2017/{}.png",
                     "coco-panoptic-133": "semantic_annotations133/train2017/{}.png",
                     "coco-panoptic-133-relabeled": "semantic_relabeled133/train2017/{}.png"}


@functools.lru_cache(maxsize=None)
def shipped_list(name: str, split: str) -> dict[str, str]:
    """image -> label of MSeg's shipped list."""
    text = lzma.open(LISTS_DIR / name / f"{split}.txt.xz", "rt").read()
    return dict(line.split() for line in text.splitlines() if len(line.split()) == 2)


@functools.lru_cache(maxsize=None)
def records():
    return ref.load_records()


def image_records(group: str, split: str, parent: str, stem: str):
    return records().get((group, split), {}).get((parent, stem), [])


def raw_id(chain: tuple[str, ...], target: str, nth: int = 0) -> int:
    """An id of chain[0] that MSeg's remaps carry to class `target` of chain[-1]."""
    table = ref.remap_chain(*chain)
    wanted = ref.name_to_id(chain[-1])[target]
    found = [i for i in range(len(ref.class_names(chain[0]))) if table[i] == wanted]
    assert found, (chain, target)
    return found[nth % len(found)]


def cls(dataset: str, name: str) -> int:
    return ref.class_names(dataset).index(name)


class Tree:
    """The files of a raw tree and the split lists that list them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lines = defaultdict(list)  # (list name, split) -> lines
        self.relabeled = []  # (family, split, image) of images with records

    def folder(self, name: str) -> Path:
        return self.root / ref.ROOTS[name]

    def add(self, family: str, split: str, image: str, size=(H, W)) -> dict[str, Path]:
        """List `image` (relative to the dataset folder) in every list of the family; write the image
        file; return list name -> absolute label path."""
        labels = {}
        for name in FAMILIES[family]:
            if family == "coco" and split == "train":
                label = COCO_TRAIN_LABELS[name].format(Path(image).stem)
            else:
                label = shipped_list(name, split)[image]
            self.lines[name, split].append(f"{image} {label}")
            labels[name] = self.folder(name) / label
        path = self.folder(FAMILIES[family][0]) / image
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shade = (len(self.lines) * 37) % 200 + 20
            cv2.imwrite(str(path), np.full(size + (3,), shade, np.uint8))
        return labels

    def write_lists(self) -> None:
        for (name, split), lines in self.lines.items():
            path = self.folder(name) / "list" / name / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    write_png(path, np.ascontiguousarray(rgb[..., ::-1]))


def blocks(count: int, rows: int = 4, cols: int = 8):
    """`count` disjoint rectangles (row slice, col slice) tiling the image row by row."""
    per_row = W // cols
    out = []
    for i in range(count):
        r, c = divmod(i, per_row)
        assert (r + 1) * rows <= H, count
        out.append((slice(r * rows, (r + 1) * rows), slice(c * cols, (c + 1) * cols)))
    return out


def draw_polygon(canvas: Image.Image, points, value) -> None:
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points], fill=value)


# ---- COCO panoptic -------------------------------------------------------------------------------------
COCO_CHAIN = ("coco-panoptic-201", "coco-panoptic-133", "coco-panoptic-133-relabeled")


def coco_image(tree: Tree, split: str, stem: str, documents: dict) -> None:
    labels = tree.add("coco", split, f"images/{split}2017/{stem}.jpg")
    recs = image_records("cocop", split, f"{split}2017", stem)
    segments = [(seg, raw_id(COCO_CHAIN, orig, n)) for n, (seg, orig, _) in enumerate(recs)]
    number = int(stem)
    # unrelabeled segments: a person, a stuff region; ids spread over all three bytes
    segments += [(0x010203 + number % 97, cls("coco-panoptic-201", "person")),
                 (0xC0FFEE - number % 89, cls("coco-panoptic-201", "wall-other-merged"))]
    ids = np.zeros((H, W), np.uint32)  # VOID
    cells = blocks(len(segments) + 3)
    for (seg, _), (rows, cols) in zip(segments[:-1], cells):
        ids[rows, cols] = seg
    for rows, cols in cells[len(segments) - 1: -3]:
        ids[rows, cols] = segments[-1][0]
    rows, cols = cells[-1]
    ids[rows, cols][:2] = 0xABCDEF  # an id the JSON does not list: unlabeled
    ids[rows, cols][2:, :5] = segments[-1][0]
    # an L-shaped segment reaching into a neighbour cell
    ids[0, : W // 2] = segments[0][0]
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)
    png = labels["coco-panoptic-inst-201"]
    write_rgb(png, rgb)
    documents[split]["annotations"].append({
        "file_name": png.name, "image_id": number,
        "segments_info": [{"id": int(seg), "category_id": int(cat), "iscrowd": 0, "area": int((ids == seg).sum())}
                          for seg, cat in segments]})
    documents[split]["images"].append({"file_name": f"{stem}.jpg", "id": number, "height": H, "width": W})
    if recs:
        tree.relabeled.append(("coco", split, stem))


def build_coco(tree: Tree) -> None:
    documents = {split: {"images": [], "annotations": [], "categories": []} for split in ("train", "val")}
    for split, stems in (("train", ("000000000283", "000000000009", "000000000025")),
                         ("val", ("000000006213", "000000000285"))):
        for stem in stems:
            coco_image(tree, split, stem, documents)
    for split, document in documents.items():
        path = tree.folder("coco-panoptic-inst-201") / "annotations" / f"panoptic_{split}2017.json"
        path.write_text(json.dumps(document))


# ---- ADE20K --------------------------------------------------------------------------------------------
ADE_CHAIN = ("ade20k-151", "ade20k-150", "ade20k-150-relabeled")


def ade_image(tree: Tree, split: str, stem: str) -> None:
    long_split = {"train": "training", "val": "validation"}[split]
    labels = tree.add("ade20k", split, f"images/{long_split}/{stem}.jpg")
    recs = image_records("ade20k", split, long_split, stem)
    label = np.full((H, W), cls("ade20k-151", "wall"), np.uint8)
    label[18:] = cls("ade20k-151", "floor")
    label[:, 28:] = 0  # 'unlabeled' of the challenge release
    instances = Image.new("L", (W * ADE_SCALE, H * ADE_SCALE), 0)
    # an instance of no record, on the wall
    draw_polygon(instances, [(3, 60), (40, 57), (44, 70), (2, 71)], 7)
    for n, (seg, orig, _) in enumerate(recs):
        r0, c0 = 2 + 6 * (n % 3), 3 + 9 * (n // 3)
        label[r0:r0 + 4, c0:c0 + 6] = raw_id(ADE_CHAIN, orig, n)
        # the instance: the class region, slanted and one label pixel wider to the right
        s = ADE_SCALE
        draw_polygon(instances, [(c0 * s, r0 * s - 1), ((c0 + 7) * s + 1, r0 * s + 2), ((c0 + 7) * s - 1, (r0 + 4) * s),
                                 (c0 * s + 1, (r0 + 4) * s - 1)], seg)
    write_png(labels["ade20k-151"], label)
    if recs:
        blue = np.asarray(instances)
        seg_png = tree.root / ref.ADE_FULL_RELEASE / "images" / long_split / "a" / "abbey" / f"{stem}_seg.png"
        rgb = np.stack([np.full_like(blue, 40), np.full_like(blue, 12), blue], axis=-1)
        write_rgb(seg_png, rgb)
        resized = cv2.resize(blue, (W, H), interpolation=cv2.INTER_NEAREST)
        for seg, _, _ in recs:
            assert (resized == seg).sum() >= ref.MIN_ADE_PIXELS, (stem, seg)
        tree.relabeled.append(("ade20k", split, stem))


def build_ade20k(tree: Tree) -> None:
    for split, stems in (("train", ("ADE_train_00001001", "ADE_train_00017800", "ADE_train_00000001")),
                         ("val", ("ADE_val_00000409", "ADE_val_00000001"))):
        for stem in stems:
            ade_image(tree, split, stem)


# ---- Cityscapes and IDD polygons -----------------------------------------------------------------------
def cityscapes_label(objects, names: list[str]) -> np.ndarray:
    """The labelIds PNG Cityscapes' scripts draw from the polygons (fill only, in order, group
    labels as their class) - any consistent picture does for the fixture."""
    ids = {name: i for i, name in enumerate(names)}
    canvas = Image.new("L", (W, H), 0)
    for obj in objects:
        name = obj["label"]
        name = name[: -len("group")] if name not in ids and name.endswith("group") else name
        if name in ids and len(obj["polygon"]) >= 3 and not obj.get("deleted"):
            draw_polygon(canvas, obj["polygon"], ids[name])
    return np.asarray(canvas).copy()


def filler(index: int) -> dict:
    """A small object of no record."""
    x, y = (index * 7) % 29, 1 + (index * 5) % 20
    label = ("pole", "traffic sign", "vegetation", "sky", "person")[index % 5]
    return {"label": label, "polygon": [[x, y], [x + 2, y], [x + 2, y + 3], [x, y + 2]]}


def background() -> list[dict]:
    return [{"label": "sky", "polygon": [[0, 0], [31, 0], [31, 7], [0, 9]]},
            {"label": "building", "polygon": [[0, 8], [31, 6], [31, 15], [0, 15]]},
            {"label": "road", "polygon": [[0, 15], [31, 15], [31, 23], [0, 23]]}]


def rider(x: float, y: float, w: float = 6, h: float = 9) -> list:
    return [[x, y], [x + w, y + 1], [x + w - 1, y + h], [x + 1, y + h - 1]]


CITYSCAPES_OBJECTS = {
    # polygon 59 is a rider partly hidden by a later bicycle: its pixels under the bicycle become bicyclist
    "aachen_000000_000019": lambda: (background() + [filler(i) for i in range(3, 59)]
                                     + [{"label": "rider", "polygon": rider(10, 8)},
                                        {"label": "bicycle", "polygon": [[9, 13], [18, 12], [18, 18], [9, 19]]},
                                        {"label": "cargroup", "polygon": [[20, 14], [30, 14], [30, 20], [20, 21]]}]),
    # records 33 (-> bicycle), 31 (-> bicyclist), 35 (-> unlabeled), in that order, on overlapping riders
    "monchengladbach_000000_023856": lambda: (background() + [filler(i) for i in range(3, 31)]
                                              + [{"label": "rider", "polygon": rider(4, 6, 10, 12)},
                                                 {"label": "person", "polygon": rider(22, 4)},
                                                 {"label": "rider", "polygon": rider(9, 9, 10, 10)},
                                                 {"label": "bicycle", "polygon": [[2, 18], [12, 18], [12, 22], [2, 22]]},
                                                 {"label": "rider", "polygon": rider(15.5, 12.25, 8.5, 9.75)},
                                                 {"label": "ridergroup", "polygon": [[26, 16], [31, 16], [31, 23]]}]),
    # record 10 names a polygon whose points share one y (drawn as a line), record 25 one of float points
    "frankfurt_000000_000576": lambda: (background() + [filler(i) for i in range(3, 10)]
                                        + [{"label": "rider", "polygon": [[3, 11], [20, 11], [12, 11]]}]
                                        + [filler(i) for i in range(11, 25)]
                                        + [{"label": "rider", "polygon": [[14.6, 5.2], [22.4, 6.7], [21.5, 17.5], [15.2, 16.1]]},
                                           {"label": "car", "polygon": [[18, 14], [30, 14], [30, 22], [18, 22]]}]),
    "frankfurt_000000_000294": lambda: background() + [filler(i) for i in range(3, 8)],
}


def cityscapes_image(tree: Tree, split: str, city: str, stem: str) -> None:
    labels = tree.add("cityscapes", split, f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png")
    objects = CITYSCAPES_OBJECTS[stem]()
    for seg, _, _ in image_records("cityscapes", split, city, f"{stem}_leftImg8bit"):
        assert objects[seg]["label"] == "rider", (stem, seg)
    label_path = labels["cityscapes-34"]
    write_png(label_path, cityscapes_label(objects, ref.class_names("cityscapes-34")))
    polygons = label_path.with_name(f"{stem}_gtFine_polygons.json")
    polygons.write_text(json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))
    if image_records("cityscapes", split, city, f"{stem}_leftImg8bit"):
        tree.relabeled.append(("cityscapes", split, stem))


def build_cityscapes(tree: Tree) -> None:
    for split, city, stem in (("train", "aachen", "aachen_000000_000019"),
                              ("train", "monchengladbach", "monchengladbach_000000_023856"),
                              ("val", "frankfurt", "frankfurt_000000_000576"),
                              ("val", "frankfurt", "frankfurt_000000_000294")):
        cityscapes_image(tree, split, city, stem)


def idd_objects(record_ids: list[int], seed: int) -> list[dict]:
    """IDD polygons with ids (not in index order): background, riders named by the records (one of them
    deleted), a motorcycle under the riders, and the odd cases of the format."""
    objects = [dict(obj, id=i) for i, obj in zip((1, 0, 2), background())]
    objects += [{"id": 3, "label": "motorcyclegroup", "polygon": [[2, 14], [14, 13], [14, 20], [2, 21]]},
                {"id": 4, "label": "rider group", "polygon": [[24, 2], [30, 2], [30, 8], [24, 8]]},  # 'rider ': unknown
                {"id": 5, "label": "unknown-thing", "polygon": [[26, 10], [30, 10], [30, 13]]},
                {"id": 6, "label": "car", "polygon": [[0, 0], [31, 23]]},  # two points: not drawn
                {"id": 7, "label": "polegroup", "polygon": [[29, 0], [30, 0], [30, 23], [29, 23]]},
                {"id": 8, "label": "vehicle fallback", "polygon": [[16.5, 16.5], [27.25, 15.0], [26.0, 22.75], [17.0, 21.5]]}]
    for n, seg in enumerate(record_ids):
        x, y = 1 + (n * 3) % 24, 3 + (n * 5 + seed) % 10
        objects.append({"id": seg, "label": "rider", "polygon": rider(x, y, 5, 8),
                        **({"deleted": 1} if n == 4 else {})})
    # drawn over the riders: their masks (outline and fill) take these pixels back
    objects.append({"id": 9, "label": "autorickshaw", "polygon": [[6, 9], [12, 9], [12, 12], [6, 12]]})
    order = [len(objects) - 1] + list(range(len(objects) - 1))
    return [objects[i] for i in order[::-1]] if seed % 2 else objects


def idd_image(tree: Tree, split: str, seq: str, stem: str, seed: int) -> None:
    labels = tree.add("idd", split, f"leftImg8bit/{split}/{seq}/{stem}_leftImg8bit.png")
    recs = image_records("idd", split, seq, f"{stem}_leftImg8bit")
    objects = idd_objects([seg for seg, _, _ in recs], seed)
    polygons = labels["idd-40"].with_name(f"{stem}_gtFine_polygons.json")
    polygons.parent.mkdir(parents=True, exist_ok=True)
    polygons.write_text(json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))
    if recs:
        tree.relabeled.append(("idd", split, stem))


def build_idd(tree: Tree) -> None:
    idd_image(tree, "train", "0", "005506", 0)
    idd_image(tree, "train", "11", "490803", 1)
    idd_image(tree, "val", "3", "010642", 2)


# ---- id, palette and colour PNGs -----------------------------------------------------------------------
def class_layout(classes: list[int], background: int, unlabeled: int | None = None) -> np.ndarray:
    """`background` everywhere, then one block per class, a band of `unlabeled` at the bottom."""
    label = np.full((H, W), background, np.uint16)
    for value, (rows, cols) in zip(classes, blocks(len(classes), 5, 6)):
        label[rows, cols] = value
        label[rows.start, cols.stop - 1] = background  # not quite rectangles
    if unlabeled is not None:
        label[-2:, 3:] = unlabeled
    return label


def build_bdd(tree: Tree) -> None:
    chain = ("bdd", "bdd-relabeled")
    for split, stem in (("train", "3dc827e3-f3a359ce"), ("train", "0004a4c0-d4dff0ad"),
                        ("val", "8b5e9cbe-803e0001"), ("val", "7d06fefd-f7be05a6")):
        labels = tree.add("bdd", split, f"seg/images/{split}/{stem}.jpg")
        recs = image_records("bdd", split, split, stem)
        classes = [raw_id(chain, orig) for _, orig, _ in recs]
        assert classes == [seg for seg, _, _ in recs], recs  # BDD's segments are its class ids
        classes += [cls("bdd", "car"), cls("bdd", "sky"), cls("bdd", "bicycle")]
        write_png(labels["bdd"], class_layout(classes, cls("bdd", "road"), 255).astype(np.uint8))
        if recs:
            tree.relabeled.append(("bdd", split, stem))


MAPILLARY_CHAIN = ("mapillary-public66", "mapillary-public65", "mapillary-public65-relabeled")


def write_palette_png(path: Path, ids: np.ndarray, dataset: str) -> None:
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    palette = ref.colors(dataset)
    image.putpalette(palette.reshape(-1).tolist() + [0] * (768 - palette.size))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def build_mapillary(tree: Tree) -> None:
    for split, stem in (("train", "0NquXdbXeGCs8rw3XJ2apQ"), ("train", "--NSVcUgfVhFd6uzkqHOOg"),
                        ("val", "MYDUDDCjrnaQ1cDYioJ00Q"), ("val", "--BJs76vloEaiH-wppzWNA")):
        long_split = {"train": "training", "val": "validation"}[split]
        labels = tree.add("mapillary", split, f"{long_split}/images/{stem}.jpg")
        recs = image_records("mapillary", split, "labels", stem)
        road, car = cls("mapillary-public66", "Road"), cls("mapillary-public66", "Car")
        instances = np.full((H, W), road * 256, np.uint16)
        ids = np.full((H, W), road, np.uint8)
        cells = blocks(12, 6, 8)
        for n, (seg, orig, _) in enumerate(recs):
            rows, cols = cells[n]
            klass = seg // 256
            assert ref.remap_chain(*MAPILLARY_CHAIN)[klass] == ref.name_to_id(MAPILLARY_CHAIN[-1])[orig], (stem, seg)
            ids[rows, cols], instances[rows, cols] = klass, seg
            # a second instance of the same class that no record names
            ids[rows.stop - 1, cols], instances[rows.stop - 1, cols] = klass, seg + 1
        for n, klass in enumerate((car, car, cls("mapillary-public66", "Sky"), cls("mapillary-public66", "Ego Vehicle"),
                                 cls("mapillary-public66", "Unlabeled"))):
            rows, cols = cells[len(recs) + n]
            ids[rows, cols], instances[rows, cols] = klass, klass * 256 + n
        write_palette_png(labels["mapillary-public66"], ids, "mapillary-public66")
        write_png(labels["mapillary-public66"].parent.parent / "instances" / f"{stem}.png", instances)
        if recs:
            tree.relabeled.append(("mapillary", split, stem))


def build_sunrgbd(tree: Tree) -> None:
    chain = ("sunrgbd-38", "sunrgbd-37")
    for split, stem, extra in (("train", "img-000015", ("bed",)), ("train", "img-000001", ("chair", "sofa")),
                               ("train", "img-000002", ("chair", "lamp")),
                               ("val", "img-000001", ("chair", "bed", "bag"))):
        folder = "train" if split == "train" else "test"
        labels = tree.add("sunrgbd", split, f"image/{folder}/{stem}.jpg")
        recs = image_records("sunrgbd", split, folder, stem)
        classes = []
        for seg, orig, _ in recs:  # segments are sunrgbd-37 ids
            klass = raw_id(chain, ref.class_names("sunrgbd-37")[seg])
            assert ref.remap_chain("sunrgbd-38", "sunrgbd-37", "sunrgbd-37-relabeled")[klass] == \
                ref.name_to_id("sunrgbd-37-relabeled")[orig]
            classes.append(klass)
        classes += [cls("sunrgbd-38", name) for name in extra]
        write_png(labels["sunrgbd-38"], class_layout(classes, cls("sunrgbd-38", "wall"), 0).astype(np.uint8))
        if recs:
            tree.relabeled.append(("sunrgbd", split, stem))


def build_camvid(tree: Tree) -> None:
    palette = ref.colors("camvid-32")
    for split, stem in (("train", "0001TP_006690"), ("val", "0016E5_07959")):
        labels = tree.add("camvid", split, f"701_StillsRaw_full/{stem}.png")
        ids = class_layout([cls("camvid-32", n) for n in ("Bicyclist", "Archway", "Car", "Sky", "Pedestrian", "Tree")],
                           cls("camvid-32", "Road"), cls("camvid-32", "Void"))
        write_rgb(labels["camvid-32"], palette[ids])


def build_id_pngs(tree: Tree, family: str, items, classes, background: str, unlabeled) -> None:
    dataset = FAMILIES[family][0]
    for split, image in items:
        labels = tree.add(family, split, image)
        ids = class_layout([cls(dataset, n) for n in classes], cls(dataset, background), unlabeled)
        write_png(labels[dataset], ids.astype(np.uint8))


def build_pascal(tree: Tree) -> None:
    from scipy.io import savemat

    for split, stem in (("train", "2008_000008"), ("val", "2008_000002")):
        labels = tree.add("pascal", split, f"JPEGImages/{stem}.jpg")
        names = ref.class_names("pascal-context-460")
        # 255 is a class of the 460 release ('money'), 0 its unlabeled
        label = class_layout([cls("pascal-context-460", "bird"), 255, 400, 459, cls("pascal-context-460", "bench")],
                             names.index("wall"), 0)
        mat = tree.folder("pascal-context-460") / "trainval" / f"{stem}.mat"
        mat.parent.mkdir(parents=True, exist_ok=True)
        savemat(str(mat), {"LabelMap": label.astype(np.uint16)})
        assert labels["pascal-context-460"].name == f"{stem}.png"


BUILDERS = {
    "coco": build_coco, "ade20k": build_ade20k, "cityscapes": build_cityscapes, "idd": build_idd, "bdd": build_bdd,
    "mapillary": build_mapillary, "sunrgbd": build_sunrgbd, "camvid": build_camvid, "pascal": build_pascal,
    "kitti": lambda tree: build_id_pngs(tree, "kitti", (("train", "training/image_2/000058_10.png"),
                                                        ("val", "training/image_2/000052_10.png")),
                                        ("car", "traffic sign", "sky", "person", "ego vehicle"), "road", 255),
    "wilddash": lambda tree: build_id_pngs(tree, "wilddash", (("train", "wd_val_01/au0000_100000.png"),
                                                              ("val", "wd_val_01/au0000_100000.png")),
                                           ("car", "pole", "dynamic", "sky"), "road", 0),
    "scannet": lambda tree: build_id_pngs(tree, "scannet", (("train", "scene0191_00/color/000800.jpg"),
                                                            ("val", "scene0568_00/color/001500.jpg")),
                                          ("chair", "table", "otherprop", "bathtub"), "floor", 0),
}


def build(root: Path, families=tuple(BUILDERS)) -> Tree:
    """Write the raw files of `families` and their lists under `root`."""
    tree = Tree(root)
    for family in families:
        BUILDERS[family](tree)
    tree.write_lists()
    return tree
