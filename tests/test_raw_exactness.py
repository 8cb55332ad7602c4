"""Raw mode (`data.label_source=raw`: the publishers' files, relabeled on the fly) yields, pixel for
pixel, the labels MSeg's preparation writes (read through the prepared path), for every registry entry
that has a `raw` section.

The prepared folders are written by tests/mseg_reference.py, a plain re-implementation of mseg-api's
preparation that shares no code with unifiedseg.data.labels / label_sources, from small synthetic raw
trees (tests/raw_trees.py) named after real lines of MSeg's relabel records, so the shipped relabel
index is exercised. Then bad raw input: a record naming a segment the image lacks, missing instance
masks and JSONs, malformed JSON, colours outside the palette, COCO segments without a category.
"""

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import mseg_reference as ref
import raw_trees
from unifiedseg.data.dataset import SegmentationDataset
from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.relabel import load_index
from unifiedseg.taxonomy import TaxonomyConverter

# every registry entry with a `raw` section, and the relabel group it applies
RAW_ENTRIES = {
    "ade20k-150": None, "ade20k-150-relabeled": "ade20k",
    "bdd-relabeled": "bdd",
    "camvid-11": None,
    "cityscapes-19": None, "cityscapes-19-relabeled": "cityscapes", "cityscapes-34-relabeled": "cityscapes",
    "coco-panoptic-133": None, "coco-panoptic-133-relabeled": "cocop", "coco-panoptic-201": None,
    "idd-39": None, "idd-39-relabeled": "idd", "idd-40": None,
    "kitti-19": None,
    "mapillary-public65": None, "mapillary-public65-relabeled": "mapillary",
    "pascal-context-460": None, "pascal-context-60": None,
    "scannet-20": None,
    "sunrgbd-37": None, "sunrgbd-37-relabeled": "sunrgbd",
    "wilddash-19": None,
}
RELABELED = sorted(name for name, group in RAW_ENTRIES.items() if group)
STRICT = ("coco-panoptic-133-relabeled", "bdd-relabeled", "mapillary-public65-relabeled", "sunrgbd-37-relabeled")
SPLITS = ("train", "val")
FAMILY_GROUPS = {"coco": "cocop", "ade20k": "ade20k", "cityscapes": "cityscapes", "idd": "idd", "bdd": "bdd",
                 "mapillary": "mapillary", "sunrgbd": "sunrgbd"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def registry():
    return DatasetRegistry.load()


@pytest.fixture(scope="module")
def converter():
    return TaxonomyConverter.from_tsv("mseg", test_datasets=[])


@pytest.fixture(scope="module")
def mseg_tree(tmp_path_factory):
    """The raw tree of every dataset, and MSeg's prepared folders written from it by the reference."""
    root = tmp_path_factory.mktemp("mseg_dataset")
    tree = raw_trees.build(root)
    applied = ref.prepare(root)
    return root, tree, applied


def read_all(dataset: SegmentationDataset) -> list[np.ndarray]:
    return [dataset[i]["label"].numpy() for i in range(len(dataset))]


def assert_same_labels(prepared: SegmentationDataset, raw: SegmentationDataset, what: str) -> None:
    assert len(prepared) == len(raw) > 0, what
    assert [e.image for e in prepared.entries] == [e.image for e in raw.entries], what
    for i, (a, b) in enumerate(zip(read_all(prepared), read_all(raw))):
        label = prepared.entries[i].label
        assert a.shape == b.shape, f"{what}: {label}: prepared {a.shape}, raw {b.shape}"
        if not np.array_equal(a, b):
            y, x = np.argwhere(a != b)[0]
            pytest.fail(f"{what}: {label} (raw: {raw.entries[i].label}) differs at y={y} x={x}: prepared {a[y, x]}, "
                        f"raw {b[y, x]} ({int((a != b).sum())} px differ)")


# ---- the fixtures themselves -----------------------------------------------------------------------------
def test_every_raw_entry_is_checked(registry):
    assert {name: info.raw.relabel for name, info in registry.entries.items() if info.raw} == RAW_ENTRIES


def test_fixtures_are_named_after_real_record_lines(mseg_tree):
    """Each record-named fixture image has, in the shipped index, the edits the reference reads (and,
    where MSeg's record files are at hand, exactly the lines of those files, keyed as mseg-api does)."""
    root, tree, _ = mseg_tree
    index = load_index()
    records = raw_trees.records()
    raw_records = ref.load_raw_records(stems={stem for _, _, stem in tree.relabeled}) \
        if ref.RAW_RECORDS_DIR.is_dir() else None
    named = {(family, split) for family, split, _ in tree.relabeled}
    assert named == {(family, split) for family in FAMILY_GROUPS for split in SPLITS}
    for family, split, stem in tree.relabeled:
        group = FAMILY_GROUPS[family]
        images = [Path(line.split()[0]) for line in tree.lines[raw_trees.FAMILIES[family][0], split]]
        image = next(p for p in images if p.stem.startswith(stem))
        label_parent = Path(tree.lines[raw_trees.FAMILIES[family][-1], split][images.index(image)].split()[1]).parent.name
        expected = records[group, split][label_parent, image.stem]
        assert expected, (family, split, stem)
        assert [(e.segment, e.orig_class, e.new_class) for e in index.edits(group, image)] == expected
        if raw_records is not None:
            assert raw_records[group, split][label_parent, image.stem] == expected


# ---- raw == prepared -------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", sorted(RAW_ENTRIES))
def test_raw_mode_reads_what_mseg_prepares(mseg_tree, registry, name, split):
    root, _, _ = mseg_tree
    info = registry.get(name)
    prepared = SegmentationDataset.from_registry(info, split, root)
    raw = SegmentationDataset.from_registry(info, split, root, label_source="raw")
    assert_same_labels(prepared, raw, f"{name} {split}")
    if name in STRICT:  # MSeg asserted that every record's pixels hold its original class
        strict = SegmentationDataset.from_registry(info, split, root, label_source="raw", strict_relabel=True)
        assert_same_labels(prepared, strict, f"{name} {split} (strict relabel)")


@pytest.mark.parametrize("partial", (False, True))
def test_raw_mode_matches_in_the_unified_space(mseg_tree, registry, converter, partial):
    root, _, _ = mseg_tree
    trained = [name for name in converter.train_datasets if name in RAW_ENTRIES]
    assert sorted(set(converter.train_datasets) - set(trained)) == ["bdd", "cityscapes-34"]  # no raw section
    for name in trained:
        for split in SPLITS:
            info = registry.get(name)
            prepared = SegmentationDataset.from_registry(info, split, root, converter=converter, partial=partial)
            raw = SegmentationDataset.from_registry(info, split, root, converter=converter, partial=partial,
                                                    label_source="raw")
            assert_same_labels(prepared, raw, f"{name} {split} unified (partial={partial})")


def test_relabel_records_change_pixels(mseg_tree):
    """The comparison can fail: on every relabeled dataset and split, MSeg's records changed pixels of
    the remapped labels (raw mode reproduces those pixels, so it applied the records too)."""
    root, tree, applied = mseg_tree
    where = {root / ref.ROOTS[name] / line.split()[1]: (name, split)
             for name in RELABELED for split in SPLITS for line in tree.lines[name, split]}
    changed = {}
    for path, (count, pixels) in applied.items():
        assert count > 0
        changed[where[path]] = changed.get(where[path], 0) + pixels
    assert set(changed) == {(name, split) for name in RELABELED for split in SPLITS}
    assert all(pixels > 0 for pixels in changed.values()), changed


def test_same_file_name_in_two_splits_takes_each_splits_records(mseg_tree, registry):
    """SUN RGB-D's image/train/img-000001.jpg and image/test/img-000001.jpg are different images with
    different records (train: chair -> unlabeled, lamp; test: lamp only)."""
    root, _, _ = mseg_tree
    info = registry.get("sunrgbd-37-relabeled")
    names = ref.class_names("sunrgbd-37-relabeled")
    train = SegmentationDataset.from_registry(info, "train", root, label_source="raw")
    val = SegmentationDataset.from_registry(info, "val", root, label_source="raw")
    by_path = {Path(item["path"]).relative_to(root / "SUNRGBD").as_posix(): item["label"].numpy()
               for dataset in (train, val) for item in (dataset[i] for i in range(len(dataset)))}
    train_label, test_label = by_path["image/train/img-000001.jpg"], by_path["image/test/img-000001.jpg"]
    assert names.index("chair_other") not in np.unique(train_label)  # relabeled to unlabeled
    assert names.index("chair_other") in np.unique(test_label)  # no chair record in test
    assert names.index("lamp") in np.unique(train_label) and names.index("lamp") in np.unique(test_label)


# ---- bad raw input ---------------------------------------------------------------------------------------
def small_tree(tmp_path: Path, family: str) -> raw_trees.Tree:
    return raw_trees.build(tmp_path, (family,))


def edit_json(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def drop_object(segment):
    """Remove the object a record names: IDD's by its id; Cityscapes' (no ids, named by index) by
    keeping only the objects before it."""
    def change(document):
        objects = document["objects"]
        if any("id" in obj for obj in objects):
            document["objects"] = [obj for obj in objects if obj.get("id") != segment]
        else:
            document["objects"] = objects[:segment]
    return change


def remove_coco_segment(root: Path, segment: int) -> None:
    folder = root / "COCOPanoptic" / "annotations"
    png = folder / "panoptic_train2017" / "000000000283.png"
    rgb = cv2.imread(str(png))[..., ::-1].astype(np.uint32)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    rgb[ids == segment] = 0
    cv2.imwrite(str(png), rgb.astype(np.uint8)[..., ::-1])
    edit_json(folder / "panoptic_train2017.json", lambda d: [a.__setitem__("segments_info", [
        s for s in a["segments_info"] if s["id"] != segment]) for a in d["annotations"]])


def replace_in_png(path: Path, old: int, new: int, channel=None) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if channel is None:
        image[image == old] = new
    else:  # an RGB channel (cv2 holds BGR)
        plane = image[..., 2 - channel]
        plane[plane == old] = new
    assert cv2.imwrite(str(path), image)


# (family, dataset, record-named image's position in the list, its segment, how to remove it, the file named)
MISSING_SEGMENT = [
    ("cityscapes", "cityscapes-19-relabeled", 0, 59,
     lambda root: edit_json(root / "Cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json",
                            drop_object(59)),
     "aachen_000000_000019_gtFine_polygons.json"),
    ("idd", "idd-39-relabeled", 0, 15,
     lambda root: edit_json(root / "IDD/IDD_Segmentation/gtFine/train/0/005506_gtFine_polygons.json", drop_object(15)),
     "005506_gtFine_polygons.json"),
    ("mapillary", "mapillary-public65-relabeled", 0, 7936,
     lambda root: replace_in_png(root / "MapillaryVistasPublic/training/instances/0NquXdbXeGCs8rw3XJ2apQ.png", 7936, 7938),
     "instances/0NquXdbXeGCs8rw3XJ2apQ.png"),
    ("coco", "coco-panoptic-133-relabeled", 0, 8882056, lambda root: remove_coco_segment(root, 8882056),
     "000000000283.png"),
    ("ade20k", "ade20k-150-relabeled", 0, 255,
     lambda root: replace_in_png(root / "ADE20K/ADE20K_2016_07_26/images/training/a/abbey/ADE_train_00001001_seg.png",
                                 255, 3, channel=2),
     "ADE_train_00001001_seg.png"),
    ("bdd", "bdd-relabeled", 0, 12,
     lambda root: replace_in_png(root / "BDD/bdd100k/seg/labels/train/3dc827e3-f3a359ce_train_id.png", 12, 13),
     "3dc827e3-f3a359ce_train_id.png"),
    ("sunrgbd", "sunrgbd-37-relabeled", 0, 11,  # img-000015's counter (sunrgbd-37 id 11; label38 id 12)
     lambda root: replace_in_png(root / "SUNRGBD/label38/train/00000015.png", 12, 1),
     "label38/train/00000015.png"),
]


@pytest.mark.parametrize("family, name, index, segment, remove, named", MISSING_SEGMENT,
                         ids=[case[1] for case in MISSING_SEGMENT])
def test_record_naming_a_missing_segment_is_a_bad_sample(tmp_path, registry, family, name, index, segment, remove,
                                                        named):
    small_tree(tmp_path, family)
    remove(tmp_path)
    info = registry.get(name)
    with pytest.raises(BadSampleError, match=rf"{re.escape(named)}: relabel record names segment {segment}, but .*"
                                             rf"dataset {name}, list line {index + 1}"):
        SegmentationDataset.from_registry(info, "train", tmp_path, label_source="raw")[index]
    skipping = SegmentationDataset.from_registry(info, "train", tmp_path, label_source="raw", on_bad_sample="skip")
    item = skipping[index]
    assert item["path"] == str(skipping.entries[index + 1].image)  # the next sample instead
    assert len(item["bad_samples"]) == 1 and f"segment {segment}" in item["bad_samples"][0], item["bad_samples"]
    # the other samples read as usual
    other = SegmentationDataset.from_registry(info, "train", tmp_path, label_source="raw")[index + 1]
    assert other["bad_samples"] == []


MISSING_FILE = [
    ("mapillary", "mapillary-public65-relabeled", "MapillaryVistasPublic/training/instances/0NquXdbXeGCs8rw3XJ2apQ.png"),
    ("ade20k", "ade20k-150-relabeled", "ADE20K/ADE20K_2016_07_26/images/training/a/abbey/ADE_train_00001001_seg.png"),
    ("cityscapes", "cityscapes-34-relabeled", "Cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json"),
    ("idd", "idd-39", "IDD/IDD_Segmentation/gtFine/train/0/005506_gtFine_polygons.json"),
    ("coco", "coco-panoptic-201", "COCOPanoptic/annotations/panoptic_train2017.json"),
]


@pytest.mark.parametrize("family, name, missing", MISSING_FILE, ids=[case[1] for case in MISSING_FILE])
def test_missing_instance_mask_or_json_is_a_bad_sample(tmp_path, registry, family, name, missing):
    small_tree(tmp_path, family)
    (tmp_path / missing).unlink()
    stem = Path(missing).name.split("_gtFine")[0].split("_seg")[0].split(".")[0]
    with pytest.raises(BadSampleError) as caught:
        SegmentationDataset.from_registry(registry.get(name), "train", tmp_path, label_source="raw")[0]
    message = str(caught.value)
    assert stem in message and f"dataset {name}, list line 1" in message, message
    assert "does not exist" in message or "no ADE_train_00001001_seg.png" in message, message


MALFORMED_JSON = [
    ("cityscapes", "cityscapes-19-relabeled", "Cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json"),
    ("idd", "idd-40", "IDD/IDD_Segmentation/gtFine/train/0/005506_gtFine_polygons.json"),
    ("coco", "coco-panoptic-133", "COCOPanoptic/annotations/panoptic_train2017.json"),
]


@pytest.mark.parametrize("family, name, path", MALFORMED_JSON, ids=[case[1] for case in MALFORMED_JSON])
def test_malformed_json_is_a_bad_sample(tmp_path, registry, family, name, path):
    small_tree(tmp_path, family)
    (tmp_path / path).write_text('{"imgHeight": 24, "objects": [')
    with pytest.raises(BadSampleError, match=rf"{re.escape(Path(path).name)}: malformed JSON.*line 1 column"):
        SegmentationDataset.from_registry(registry.get(name), "train", tmp_path, label_source="raw")[0]


def test_colour_outside_the_palette_is_a_bad_sample(tmp_path, registry):
    small_tree(tmp_path, "camvid")
    path = tmp_path / "Camvid/Labels32-RGB/0001TP_006690_L.png"
    bgr = cv2.imread(str(path))
    bgr[0, :3] = (3, 2, 1)  # RGB (1, 2, 3): no CamVid class
    cv2.imwrite(str(path), bgr)
    with pytest.raises(BadSampleError, match=r"0001TP_006690_L.png: 1 colour\(s\) not in the dataset's palette: "
                                             r"\(1, 2, 3\): 3 px"):
        SegmentationDataset.from_registry(registry.get("camvid-11"), "train", tmp_path, label_source="raw")[0]


def test_coco_segment_without_category_is_a_bad_sample(tmp_path, registry):
    small_tree(tmp_path, "coco")
    edit_json(tmp_path / "COCOPanoptic/annotations/panoptic_train2017.json",
              lambda d: d["annotations"][0]["segments_info"][1].pop("category_id"))
    info = registry.get("coco-panoptic-133-relabeled")
    with pytest.raises(BadSampleError, match=r"panoptic_train2017.json: the annotation of 000000000283.png "
                                             r"segments_info\[1\] \(segment 11905948\) has no 'category_id'"):
        SegmentationDataset.from_registry(info, "train", tmp_path, label_source="raw")[0]
    item = SegmentationDataset.from_registry(info, "train", tmp_path, label_source="raw", on_bad_sample="skip")[0]
    assert item["path"].endswith("000000000009.jpg") and len(item["bad_samples"]) == 1


def test_a_segment_not_of_its_records_class_is_an_error_where_mseg_checks(tmp_path, registry):
    """COCO, BDD, Mapillary and SUN RGB-D: MSeg asserts a record's segment holds its original class; a
    label that disagrees (e.g. another release) is refused naming the file and the record."""
    small_tree(tmp_path, "mapillary")
    label = tmp_path / "MapillaryVistasPublic" / "training" / "labels" / "0NquXdbXeGCs8rw3XJ2apQ.png"
    road = raw_trees.cls("mapillary-public66", "Road")
    raw_trees.write_palette_png(label, np.full((raw_trees.H, raw_trees.W), road, np.uint8), "mapillary-public66")
    dataset = SegmentationDataset.from_registry(registry.get("mapillary-public65-relabeled"), "train", tmp_path,
                                                label_source="raw")
    index = next(i for i, e in enumerate(dataset.entries) if e.image.stem == "0NquXdbXeGCs8rw3XJ2apQ")
    with pytest.raises(BadSampleError, match=r"0NquXdbXeGCs8rw3XJ2apQ.png: \d+ of the segment's \d+ pixels do not hold "
                                             r"\w+ \(relabel record .*records.tsv.xz:\d+ \(segment 7936: "):
        dataset[index]


def test_an_unknown_relabel_group_is_refused_at_load(tmp_path):
    from unifiedseg.data.registry import RegistryError

    bad = tmp_path / "bad.yaml"
    bad.write_text("mine:\n  root: Mine\n  lists: {train: t.txt}\n  num_classes: 19\n  raw: {from: bdd, relabel: bddd}\n")
    with pytest.raises(RegistryError, match=r"unknown raw.relabel 'bddd'; did you mean 'bdd'\?"):
        DatasetRegistry.load(extra_files=[bad])
