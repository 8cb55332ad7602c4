"""MSeg's label preparation (mseg-api), re-implemented plainly for the tests: whole files on disk.

Given a tree of the publishers' files (the raw releases) and the split lists under it, `prepare` writes
the folders that MSeg's lists point at (gtFine_19cls/, semantic_relabeled133/, ...) the way mseg-api's
scripts do: convert (COCO panoptic -> 201 ids, IDD polygons -> 40 ids, PASCAL-Context .mat -> 460 ids,
CamVid / Mapillary colours -> ids), remap (remap_dataset.py), relabel (mseg_write_relabeled_segments.py).

This module is deliberately independent of the code it checks: it imports nothing of unifiedseg. It
reads only the shipped class lists, remap TSVs and the relabel index (the same files MSeg ships), and
follows mseg-api's semantics, including where they are odd:

- a remap table covers the ids of the source's class list plus 255 ('unlabeled'); an id outside both
  maps to 0; a target 'unlabeled' is 255, except for PASCAL-Context (remapped without the ignore
  class: 'unlabeled' -> 'background', and 255 names 'unlabeled' there too, hiding class 255);
- a class name listed twice names its last id (Python dict semantics of mseg-api's maps);
- relabeling first remaps X to X-relabeled, then, record by record in order, sets the segment's pixels
  to the new class ('unlabeled' = 255); COCO, BDD, Mapillary and SUN RGB-D ("strict") first assert
  that the pixels hold the record's original class; every mask must be non-empty (an ADE20K instance
  at least 10 pixels of the label), else MSeg stops;
- masks: COCO panoptic id (R + 256 G + 65536 B) == segment; ADE20K: B channel of the full release's
  *_seg.png, nearest-resized to the label size, == segment; Cityscapes / IDD: the polygon of the JSON
  object whose "id" (else its index) is the segment, drawn with outline and fill (a line when all its
  y are equal), deleted objects included; BDD: raw train id == segment; Mapillary: uint16 instance
  == segment; SUN RGB-D: the remapped 37-class label == segment.
"""

from __future__ import annotations

import csv
import json
import lzma
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

RESOURCES = Path(__file__).resolve().parents[1] / "unifiedseg" / "resources"
NAMES_DIR = RESOURCES / "taxonomy" / "dataset_lists"
REMAP_DIR = RESOURCES / "taxonomy" / "remap"
INDEX_FILE = RESOURCES / "relabel" / "records.tsv.xz"
# MSeg's record files, where a checkout keeps them beside the clone (optional)
RAW_RECORDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mseg" / "relabeled_data"

UNLABELED = "unlabeled"
IGNORE = 255
MIN_ADE_PIXELS = 10  # Ade20kMaskLevelDataset.MIN_REQ_PX

# MSeg's folders under mseg_dataset (the dataset folder each list is relative to)
ROOTS = {
    "ade20k-151": "ADE20K/ADEChallengeData2016", "ade20k-150": "ADE20K/ADEChallengeData2016",
    "ade20k-150-relabeled": "ADE20K/ADEChallengeData2016",
    "bdd": "BDD/bdd100k", "bdd-relabeled": "BDD/bdd100k",
    "camvid-32": "Camvid", "camvid-11": "Camvid",
    "cityscapes-34": "Cityscapes", "cityscapes-19": "Cityscapes", "cityscapes-19-relabeled": "Cityscapes",
    "cityscapes-34-relabeled": "Cityscapes",
    "coco-panoptic-inst-201": "COCOPanoptic", "coco-panoptic-201": "COCOPanoptic", "coco-panoptic-133": "COCOPanoptic",
    "coco-panoptic-133-relabeled": "COCOPanoptic",
    "idd-40": "IDD/IDD_Segmentation", "idd-39": "IDD/IDD_Segmentation", "idd-39-relabeled": "IDD/IDD_Segmentation",
    "kitti-34": "KITTI", "kitti-19": "KITTI",
    "mapillary-public66": "MapillaryVistasPublic", "mapillary-public65": "MapillaryVistasPublic",
    "mapillary-public65-relabeled": "MapillaryVistasPublic",
    "pascal-context-460": "PASCAL_Context", "pascal-context-60": "PASCAL_Context",
    "scannet-41": "ScanNet/scannet_frames_25k", "scannet-20": "ScanNet/scannet_frames_25k",
    "sunrgbd-38": "SUNRGBD", "sunrgbd-37": "SUNRGBD", "sunrgbd-37-relabeled": "SUNRGBD",
    "wilddash-34": "WildDash", "wilddash-19": "WildDash",
}
ADE_FULL_RELEASE = "ADE20K/ADE20K_2016_07_26"  # the instance release, beside ADEChallengeData2016


class MSegStop(AssertionError):
    """Where mseg-api's preparation would stop (quit, exit, a failed assert, an IndexError)."""


# ---- class lists and remap tables ----------------------------------------------------------------------
def class_names(dataset: str) -> list[str]:
    lines = (NAMES_DIR / dataset / f"{dataset}_names.txt").read_text(encoding="utf-8").split("\n")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def colors(dataset: str) -> np.ndarray:
    rows = [line.split() for line in (NAMES_DIR / dataset / f"{dataset}_colors.txt").read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64).astype(np.uint8)


def name_to_id(dataset: str, with_unlabeled: bool = True) -> dict[str, int]:
    """names_utils.get_classname_to_dataloaderid_map: a repeated name keeps its last id."""
    mapping = {name: i for i, name in enumerate(class_names(dataset))}
    if with_unlabeled:
        mapping[UNLABELED] = IGNORE
    return mapping


def id_to_name(dataset: str) -> dict[int, str]:
    """names_utils.get_dataloader_id_to_classname_map (always with 255 -> 'unlabeled')."""
    mapping = dict(enumerate(class_names(dataset)))
    mapping[IGNORE] = UNLABELED
    return mapping


def read_tsv_mapping(src: str, dst: str) -> dict[str, str]:
    with open(REMAP_DIR / f"{src}_to_{dst}.tsv", encoding="utf-8", newline="") as handle:
        return {row[src]: row[dst] for row in csv.DictReader(handle, delimiter="\t")}


def remap_table(src: str, dst: str) -> np.ndarray:
    """remap_dataset.py's lookup table from `src` ids to `dst` ids."""
    with_unlabeled = not src.startswith("pascal-context")  # mseg_remap_pascalcontext.sh: --include_ignore_idx_cls
    tsv = read_tsv_mapping(src, dst)
    new_ids = name_to_id(dst, with_unlabeled)
    old_to_new = {}
    for old_id, old_name in id_to_name(src).items():
        try:
            old_to_new[old_id] = new_ids[tsv[old_name]]
        except KeyError as err:
            raise MSegStop(f"remap {src} -> {dst}: class {err.args[0]!r} has no mapping") from None
    top = max(old_to_new.values())
    table = np.zeros(max(old_to_new) + 1, np.uint8 if top <= 255 else np.uint16)
    for old_id, new_id in old_to_new.items():
        table[old_id] = new_id
    return table


def apply_table(label: np.ndarray, table: np.ndarray) -> np.ndarray:
    if label.size and int(label.max()) >= len(table):
        raise MSegStop(f"label id {int(label.max())} is past the remap table ({len(table)} entries)")
    return table[label]


def remap_chain(*datasets: str) -> np.ndarray:
    """Tables composed along datasets[0] -> datasets[1] -> ...: one id -> final id table (for fixtures)."""
    table = np.arange(max(len(class_names(datasets[0])), IGNORE + 1))
    for src, dst in zip(datasets, datasets[1:]):
        step = remap_table(src, dst)
        table = np.array([step[i] if i < len(step) else -1 for i in table])
    return table


# ---- files ---------------------------------------------------------------------------------------------
def read_png(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise MSegStop(f"cannot read {path}")
    return label


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MSegStop(f"cannot read {path}")
    return image[..., ::-1]


def write_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert label.ndim == 2 and label.dtype in (np.uint8, np.uint16), (path, label.dtype, label.shape)
    if not cv2.imwrite(str(path), label):
        raise OSError(f"cannot write {path}")


def colors_to_ids(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """mask_utils.rgb_img_to_obj_cls_img: an unmatched colour is id 0, a later colour wins."""
    ids = np.zeros(rgb.shape[:2], np.uint8)
    for i, color in enumerate(palette):
        ids[np.all(rgb == color, axis=-1)] = i
    return ids


def read_list(dataset: str, split: str, root: Path) -> list[tuple[str, str]]:
    """MSeg's list of `dataset` (its user copy under the tree: <folder>/list/<dataset>/<split>.txt)."""
    path = Path(root) / ROOTS[dataset] / "list" / dataset / f"{split}.txt"
    if not path.is_file():
        return []
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            image, label = line.split()
            pairs.append((image, label))
    return pairs


def list_pairs(src: str, dst: str, split: str, root: Path) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """remap_dataset.py pairs line i of the source list with line i of the target list."""
    a, b = read_list(src, split, root), read_list(dst, split, root)
    if len(a) != len(b):
        raise MSegStop(f"lists {src}/{split} ({len(a)}) and {dst}/{split} ({len(b)}) differ in length")
    return list(zip(a, b))


def remap_dataset(src: str, dst: str, root: Path, splits=("train", "val"), from_colors: bool = False) -> list[Path]:
    """remap_dataset.py: every label of src's list, remapped, written where dst's list points."""
    table = remap_table(src, dst)
    palette = colors(src) if from_colors else None
    written = []
    for split in splits:
        for (_, src_label), (_, dst_label) in list_pairs(src, dst, split, root):
            path = Path(root) / ROOTS[src] / src_label
            label = colors_to_ids(read_rgb(path), palette) if from_colors else read_png(path)
            out = Path(root) / ROOTS[dst] / dst_label
            write_png(out, apply_table(label, table))
            written.append(out)
    return written


# ---- relabel records -----------------------------------------------------------------------------------
def load_records(path: Path = INDEX_FILE) -> dict:
    """(group, split) -> (label parent folder, image stem) -> [(segment, orig_class, new_class), ...] in
    MSeg's order, from the shipped index (its rows are MSeg's record lines in RECORDS.tsv order)."""
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    assert lines[0].split("\t") == ["group", "split", "parent", "stem", "segment", "orig_class", "new_class"], lines[0]
    records = defaultdict(lambda: defaultdict(list))
    for line in lines[1:]:
        if not line:
            continue
        group, split, parent, stem, segment, orig, new = line.split("\t")
        if group == "mapillary":
            parent = "labels"  # MSeg keys an image by its label file's parent folder: <split>_semseg65_relabeled/labels/
        records[group, split][parent, stem].append((int(segment), orig, new))
    return records


def mseg_record_key(group: str, split: str, line: str) -> tuple[str, str, int]:
    """mseg_write_relabeled_segments.get_unique_mask_identifiers: (label parent, image stem, segment)."""
    stem = Path(line.strip()).stem
    parts = stem.split("_")
    segment = int(parts[-1])
    if group in ("ade20k", "cocop"):
        name = "_".join(parts[:-1])
        parent = ("training" if split == "train" else "validation") if group == "ade20k" else f"{split}2017"
    elif group == "bdd":
        name, parent = parts[0], split
    elif group in ("cityscapes", "idd"):
        name, parent = "_".join(parts[1:-1]), parts[0][3:]
    elif group == "sunrgbd":
        name, parent = parts[0], "train" if split == "train" else "test"
    elif group == "mapillary":
        name, parent = "_".join(parts[1:-1]), "labels"
    else:
        raise MSegStop(f"unknown dataset {group}")
    return parent, name, segment


def load_raw_records(records_dir: Path = RAW_RECORDS_DIR, stems=None) -> dict:
    """The same structure as load_records, read from MSeg's record files (RECORDS.tsv order, then line
    order); `stems` keeps only those images (it is faster)."""
    rows = (records_dir / "RECORDS.tsv").read_text(encoding="utf-8").splitlines()
    records = defaultdict(lambda: defaultdict(list))
    for row in rows[1:]:
        group, _order, _tag, split, orig, new, record_file = row.split("\t")
        for line in (records_dir / record_file).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            if stems is not None and not any(stem in line for stem in stems):
                continue
            parent, name, segment = mseg_record_key(group, split, line)
            records[group, split][parent, name].append((segment, orig, new))
    return records


def swap_inside_mask(label: np.ndarray, mask: np.ndarray, old: int, new: int, strict: bool, what: str) -> None:
    """mask_utils.swap_px_inside_mask, in place."""
    if not mask.any():
        raise MSegStop(f"{what}: empty segment mask")
    if strict:
        held = np.unique(label[mask])
        if held.tolist() != [old]:
            raise MSegStop(f"{what}: strict relabel expects class {old} under the mask, found {held.tolist()}")
    label[mask] = new


def polygon_mask(polygon, height: int, width: int) -> np.ndarray:
    """mask_utils.get_mask_from_polygon."""
    points = [(x, y) for x, y in polygon]
    image = Image.new("L", (width, height), 0)
    if len({y for _, y in points}) == 1:
        ImageDraw.Draw(image).line(points, fill=1)
    else:
        ImageDraw.Draw(image).polygon(points, outline=1, fill=1)
    return np.asarray(image) == 1


def json_object_mask(json_path: Path, segment: int):
    """JsonMaskLevelDataset.get_segment_mask: the object whose 'id' (else index) is `segment`."""
    data = json.loads(Path(json_path).read_text())
    for index, obj in enumerate(data["objects"]):
        if obj.get("id", index) == segment:
            return polygon_mask(obj["polygon"], data["imgHeight"], data["imgWidth"])
    return None


def coco_segment_ids(path: Path) -> np.ndarray:
    rgb = read_rgb(path).astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def ade_instance_mask(root: Path, stem: str, label_shape, segment: int):
    found = sorted((Path(root) / ADE_FULL_RELEASE / "images").rglob(f"{stem}_seg.png"))
    if not found:
        raise MSegStop(f"no {stem}_seg.png in the full ADE20K release")
    instances = read_rgb(found[-1])[..., 2]
    instances = cv2.resize(instances, (label_shape[1], label_shape[0]), interpolation=cv2.INTER_NEAREST)
    mask = instances == segment
    if not mask.any():
        return None
    if mask.sum() < MIN_ADE_PIXELS:
        raise MSegStop(f"ADE20K {stem} instance {segment} has {mask.sum()} px (< {MIN_ADE_PIXELS})")
    return mask


def relabel_dataset(src: str, dst: str, group: str, root: Path, records: dict, segment_mask, strict: bool,
                    splits=("train", "val")) -> dict:
    """mseg_write_relabeled_segments.py: remap src -> dst, then apply the records of `group` per image.
    `segment_mask(split, image_rel, label_rel, label, segment)` returns a bool mask or None.
    Returns {label path: (records applied, pixels they changed)}."""
    remap_dataset(src, dst, root, splits)
    new_ids = name_to_id(dst)
    applied = {}
    for split in splits:
        by_image = records.get((group, split), {})
        for image_rel, label_rel in read_list(dst, split, root):
            key = (Path(label_rel).parts[-2], Path(image_rel).stem)
            if key not in by_image:
                continue
            path = Path(root) / ROOTS[dst] / label_rel
            label = read_png(path)
            before = label.copy()
            for segment, orig, new in by_image[key]:
                what = f"{dst} {label_rel} segment {segment}"
                mask = segment_mask(split, image_rel, label_rel, label, segment)
                if mask is None:
                    raise MSegStop(f"{what}: no such mask found")
                if orig not in new_ids or new not in new_ids:
                    raise MSegStop(f"{what}: invalid class name {orig!r} or {new!r}")
                swap_inside_mask(label, mask, new_ids[orig], new_ids[new], strict, what)
            write_png(path, label)
            applied[path] = (len(by_image[key]), int((label != before).sum()))
    return applied


# ---- the datasets --------------------------------------------------------------------------------------
def prepare_coco(root: Path, records: dict, splits=("train", "val")) -> dict:
    folder = Path(root) / ROOTS["coco-panoptic-201"]
    for split in splits:
        index_path = folder / "annotations" / f"panoptic_{split}2017.json"
        pairs = list_pairs("coco-panoptic-inst-201", "coco-panoptic-201", split, root)
        if not pairs:
            continue
        annotations = {a["file_name"]: a for a in json.loads(index_path.read_text())["annotations"]}
        for (_, panoptic_rel), (_, semantic_rel) in pairs:
            panoptic = folder / panoptic_rel
            ids = coco_segment_ids(panoptic)
            semantic = np.full(ids.shape, IGNORE, np.uint8)  # dump_coco_semantic_labels: VOID stays 255
            for segment in annotations[panoptic.name]["segments_info"]:
                swap_inside_mask(semantic, ids == segment["id"], IGNORE, segment["category_id"], True,
                                 f"{panoptic_rel} segment {segment['id']}")
            write_png(folder / semantic_rel, semantic)
    remap_dataset("coco-panoptic-201", "coco-panoptic-133", root, splits)

    def mask(split, image_rel, label_rel, label, segment):
        ids = coco_segment_ids(folder / "annotations" / f"panoptic_{split}2017" / (Path(image_rel).stem + ".png"))
        return ids == segment

    return relabel_dataset("coco-panoptic-133", "coco-panoptic-133-relabeled", "cocop", root, records, mask, True, splits)


def prepare_ade20k(root: Path, records: dict, splits=("train", "val")) -> dict:
    remap_dataset("ade20k-151", "ade20k-150", root, splits)

    def mask(split, image_rel, label_rel, label, segment):
        return ade_instance_mask(root, Path(image_rel).stem, label.shape, segment)

    return relabel_dataset("ade20k-150", "ade20k-150-relabeled", "ade20k", root, records, mask, False, splits)


def polygons_path(folder: Path, split: str, image_rel: str) -> Path:
    stem = Path(image_rel).stem.replace("_leftImg8bit", "")
    return folder / "gtFine" / split / Path(image_rel).parent.name / f"{stem}_gtFine_polygons.json"


def prepare_cityscapes(root: Path, records: dict, splits=("train", "val")) -> dict:
    folder = Path(root) / ROOTS["cityscapes-34"]
    remap_dataset("cityscapes-34", "cityscapes-19", root, splits)

    def mask(split, image_rel, label_rel, label, segment):
        return json_object_mask(polygons_path(folder, split, image_rel), segment)

    applied = relabel_dataset("cityscapes-19", "cityscapes-19-relabeled", "cityscapes", root, records, mask, False, splits)
    applied.update(relabel_dataset("cityscapes-34", "cityscapes-34-relabeled", "cityscapes", root, records, mask, False,
                                   splits))
    return applied


def idd_label_image(json_path: Path) -> np.ndarray:
    """dump_idd_semantic_labels.createLabelImage: fill only, objects in order, deleted and < 3 point
    objects skipped, 'Xgroup' read as 'X' when 'Xgroup' is unknown, unknown labels skipped."""
    ids = name_to_id("idd-40", with_unlabeled=False)
    data = json.loads(Path(json_path).read_text())
    image = Image.new("L", (int(data["imgWidth"]), int(data["imgHeight"])), ids[UNLABELED])
    draw = ImageDraw.Draw(image)
    for obj in data["objects"]:
        name, polygon = str(obj["label"]), [(p[0], p[1]) for p in obj["polygon"]]
        if obj.get("deleted", 0) or len(polygon) < 3:
            continue
        if name not in ids and name.endswith("group"):
            name = name[: -len("group")]
        if name not in ids or ids[name] < 0:
            continue
        draw.polygon(polygon, fill=ids[name])
    return np.asarray(image).copy()


def prepare_idd(root: Path, records: dict, splits=("train", "val")) -> dict:
    folder = Path(root) / ROOTS["idd-40"]
    for json_path in sorted(folder.glob("gtFine/*/*/*_gt*_polygons.json")):  # every JSON, as MSeg's script
        write_png(Path(str(json_path).replace("_polygons.json", "_labelids.png")), idd_label_image(json_path))
    remap_dataset("idd-40", "idd-39", root, splits)

    def mask(split, image_rel, label_rel, label, segment):
        return json_object_mask(polygons_path(folder, split, image_rel), segment)

    return relabel_dataset("idd-39", "idd-39-relabeled", "idd", root, records, mask, False, splits)


def prepare_bdd(root: Path, records: dict, splits=("train", "val")) -> dict:
    folder = Path(root) / ROOTS["bdd"]

    def mask(split, image_rel, label_rel, label, segment):
        raw = read_png(folder / "seg" / "labels" / split / f"{Path(image_rel).stem}_train_id.png")
        return (raw == segment) if segment in np.unique(raw) else None

    return relabel_dataset("bdd", "bdd-relabeled", "bdd", root, records, mask, True, splits)


def prepare_mapillary(root: Path, records: dict, splits=("train", "val")) -> dict:
    folder = Path(root) / ROOTS["mapillary-public66"]
    remap_dataset("mapillary-public66", "mapillary-public65", root, splits, from_colors=True)

    def mask(split, image_rel, label_rel, label, segment):
        long_split = {"train": "training", "val": "validation"}[split]
        return read_png(folder / long_split / "instances" / f"{Path(image_rel).stem}.png") == segment

    return relabel_dataset("mapillary-public65", "mapillary-public65-relabeled", "mapillary", root, records, mask, True,
                           splits)


def prepare_sunrgbd(root: Path, records: dict, splits=("train", "val")) -> dict:
    folder = Path(root) / ROOTS["sunrgbd-37"]
    remap_dataset("sunrgbd-38", "sunrgbd-37", root, splits)

    def mask(split, image_rel, label_rel, label, segment):
        number = Path(image_rel).stem.replace("img-", "").zfill(8)
        remapped = read_png(folder / "semseg-label37" / ("train" if split == "train" else "test") / f"{number}.png")
        return (remapped == segment) if segment in np.unique(remapped) else None

    return relabel_dataset("sunrgbd-37", "sunrgbd-37-relabeled", "sunrgbd", root, records, mask, True, splits)


def prepare_pascal_context(root: Path, splits=("train", "val")) -> None:
    from scipy.io import loadmat

    folder = Path(root) / ROOTS["pascal-context-460"]
    for mat_path in sorted((folder / "trainval").glob("*.mat")):  # mseg_dump_pascalcontext_pngs.py
        write_png(folder / "Segmentation_GT_460cls" / f"{mat_path.stem}.png", loadmat(mat_path)["LabelMap"].astype(np.uint16))
    remap_dataset("pascal-context-460", "pascal-context-60", root, splits)


def prepare(root: Path, records: dict | None = None, splits=("train", "val")) -> dict:
    """Every preparation step whose source lists exist under `root`. Returns {label path: (records
    applied, pixels changed)} of the relabeled images."""
    records = load_records() if records is None else records
    root = Path(root)
    applied = {}

    def has(dataset):
        return any(read_list(dataset, split, root) for split in splits)

    if has("coco-panoptic-inst-201"):
        applied.update(prepare_coco(root, records, splits))
    if has("ade20k-151"):
        applied.update(prepare_ade20k(root, records, splits))
    if has("cityscapes-34"):
        applied.update(prepare_cityscapes(root, records, splits))
    if has("idd-40"):
        applied.update(prepare_idd(root, records, splits))
    if has("bdd"):
        applied.update(prepare_bdd(root, records, splits))
    if has("mapillary-public66"):
        applied.update(prepare_mapillary(root, records, splits))
    if has("sunrgbd-38"):
        applied.update(prepare_sunrgbd(root, records, splits))
    if has("camvid-32"):
        remap_dataset("camvid-32", "camvid-11", root, splits, from_colors=True)
    for src, dst in (("kitti-34", "kitti-19"), ("wilddash-34", "wilddash-19"), ("scannet-41", "scannet-20")):
        if has(src):
            remap_dataset(src, dst, root, splits)
    if has("pascal-context-460"):
        prepare_pascal_context(root, splits)
    return applied
