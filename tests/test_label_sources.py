"""The publisher-format label sources (unifiedseg/data/label_sources): COCO panoptic, full ADE20K,
Cityscapes and IDD polygons, PASCAL-Context .mat; exact arrays on tiny synthetic files, and each bad
input refused by name."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.label_sources import LABEL_SOURCES, build_label_source
from unifiedseg.data.label_sources import coco_panoptic as coco_module
from unifiedseg.data.label_sources import idd_polygons as idd_module
from unifiedseg.data.label_sources.base import SourceContext
from unifiedseg.data.listfile import ListEntry
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.table import load_names


def source(name: str, folder: Path, release: str = "x", names=("a", "b")):
    return build_label_source(name, SourceContext(dataset="test", folder=folder, data_root=folder.parent,
                                                  release=release, release_names=list(names)))


def entry(folder: Path, image: str, label: str) -> ListEntry:
    return ListEntry(folder / image, folder / label, 1)


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def write_rgb_png(path: Path, rgb: np.ndarray) -> Path:
    return write_png(path, np.ascontiguousarray(rgb[:, :, ::-1]))


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))
    return path


def test_all_registered_sources_exist():
    from unifiedseg.data.registry import DatasetRegistry

    assert {"coco_panoptic", "ade20k_full", "cityscapes_polygons", "idd_polygons", "pascal_mat"} <= set(LABEL_SOURCES)
    DatasetRegistry.load()  # every raw.source of the shipped registry names a source


# ---------------------------------------------------------------- coco_panoptic

BIG = 8882056  # 0x878788: all three bytes used (R=136, G=135, B=135)


def panoptic_rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)


@pytest.fixture
def coco(tmp_path):
    folder = tmp_path / "COCOPanoptic"
    ids = np.array([[0, BIG, BIG, 26, 26],
                    [0, BIG, 26, 26, 5],
                    [7, 7, 0, 5, 5],
                    [7, 7, 0, 0, 0]], dtype=np.int64)
    write_rgb_png(folder / "annotations/panoptic_val2017/000000000139.png", panoptic_rgb(ids))
    document = {"annotations": [
        {"file_name": "000000000001.png", "segments_info": []},
        {"file_name": "000000000139.png", "image_id": 139, "segments_info": [
            {"id": BIG, "category_id": 200, "iscrowd": 0},
            {"id": 26, "category_id": 1, "iscrowd": 0},
            {"id": 7, "category_id": 92, "iscrowd": 1}]}],
        "categories": []}
    write_json(folder / "annotations/panoptic_val2017.json", document)
    return folder, entry(folder, "images/val2017/000000000139.jpg", "annotations/panoptic_val2017/000000000139.png"), ids


def test_coco_panoptic_semantic_ids_and_segments(coco):
    folder, item, ids = coco
    src = source("coco_panoptic", folder, "coco-panoptic-201")
    label = src.read(item)
    expected = np.array([[255, 200, 200, 1, 1],
                         [255, 200, 1, 1, 255],  # id 5 is not in segments_info: unlabeled
                         [92, 92, 255, 255, 255],
                         [92, 92, 255, 255, 255]], dtype=np.uint8)
    assert label.ids.dtype == np.uint8
    np.testing.assert_array_equal(label.ids, expected)
    np.testing.assert_array_equal(coco_module.panoptic_ids(item.label), ids)  # R + 256 G + 65536 B, as uint32
    np.testing.assert_array_equal(src.segment_mask(item, label, BIG), ids == BIG)
    np.testing.assert_array_equal(src.segment_mask(item, label, 7), ids == 7)
    assert src.label_file(item) == item.label
    for missing in (5, 0, 12345):  # in the PNG but not listed, VOID, nowhere
        with pytest.raises(BadSampleError, match=f"segment {missing}, but .*panoptic_val2017.json"):
            src.segment_mask(item, label, missing)


def test_coco_panoptic_json_is_parsed_once(coco, monkeypatch):
    folder, item, _ = coco
    src = source("coco_panoptic", folder)
    first = src.read(item)
    monkeypatch.setattr(coco_module, "read_json", lambda path: pytest.fail("JSON parsed twice"))
    np.testing.assert_array_equal(source("coco_panoptic", folder).read(item).ids, first.ids)


def test_coco_panoptic_index_is_cached_on_disk_for_other_processes(coco, monkeypatch, tmp_path):
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(tmp_path / "cache"))
    folder, item, _ = coco
    first = source("coco_panoptic", folder).read(item)
    assert len(list((tmp_path / "cache" / "coco_panoptic").glob("panoptic_val2017-*.npz"))) == 1
    monkeypatch.setattr(coco_module, "_INDEX_CACHE", {})  # a fresh process (a loader worker, a later run)
    monkeypatch.setattr(coco_module, "read_json", lambda path: pytest.fail("JSON parsed although cached"))
    np.testing.assert_array_equal(source("coco_panoptic", folder).read(item).ids, first.ids)
    assert coco_module.load_panoptic_index(folder / "annotations/panoptic_val2017.json")["000000000001.png"].shape == (0, 2)


def rewrite_segments(folder: Path, segments) -> None:
    path = folder / "annotations/panoptic_val2017.json"
    document = json.loads(path.read_text())
    document["annotations"][1]["segments_info"] = segments
    write_json(path, document)


@pytest.mark.parametrize("segments, message", [
    ([{"id": BIG}], f"segment {BIG}\\) has no 'category_id'"),
    ([{"id": BIG, "category_id": 201}], "category_id 201, outside COCO panoptic's 1-200"),
    ([{"id": BIG, "category_id": 0}], "category_id 0, outside"),
    ([{"id": BIG, "category_id": "person"}], "category_id 'person', outside"),
    ([{"category_id": 3}], "\\[0\\] has no integer 'id'"),
])
def test_coco_panoptic_bad_segments_info(coco, segments, message):
    folder, item, _ = coco
    rewrite_segments(folder, segments)
    with pytest.raises(BadSampleError, match=f"panoptic_val2017.json: the annotation of 000000000139.png segments_info.*{message}"):
        source("coco_panoptic", folder).read(item)


def test_coco_panoptic_segment_without_pixels_or_listed_twice(coco):
    folder, item, _ = coco
    rewrite_segments(folder, [{"id": 26, "category_id": 1}, {"id": 99, "category_id": 2}])
    with pytest.raises(BadSampleError, match="000000000139.png: segment 99 of panoptic_val2017.json's segments_info "
                                             "has no pixel in the PNG"):
        source("coco_panoptic", folder).read(item)
    rewrite_segments(folder, [{"id": 26, "category_id": 1}, {"id": 26, "category_id": 2}])
    with pytest.raises(BadSampleError, match="lists segment 26 twice"):
        source("coco_panoptic", folder).read(item)


def test_coco_panoptic_png_not_in_json(coco):
    folder, _, ids = coco
    other = entry(folder, "images/val2017/000000000777.jpg", "annotations/panoptic_val2017/000000000777.png")
    write_rgb_png(other.label, panoptic_rgb(ids))
    with pytest.raises(BadSampleError) as err:
        source("coco_panoptic", folder).read(other)
    assert err.value.path == str(other.label)
    assert f"000000000777.png is not among the annotations of {folder / 'annotations/panoptic_val2017.json'}" in str(err.value)


def test_coco_panoptic_malformed_or_missing_json(coco):
    folder, item, _ = coco
    path = folder / "annotations/panoptic_val2017.json"
    path.write_text('{"annotations": [\n  {"file_name": "x.png",, }\n]}')
    with pytest.raises(BadSampleError, match=r"panoptic_val2017.json: malformed JSON: .* at line 2 column 25"):
        source("coco_panoptic", folder).read(item)
    path.write_text('{"images": []}')
    with pytest.raises(BadSampleError, match="no 'annotations' list"):
        source("coco_panoptic", folder).read(item)
    path.unlink()
    with pytest.raises(BadSampleError, match="panoptic_val2017.json: file does not exist"):
        source("coco_panoptic", folder).read(item)


def test_coco_panoptic_refuses_greyscale_png(coco):
    folder, item, _ = coco
    write_png(item.label, np.zeros((4, 5), np.uint8))
    with pytest.raises(BadSampleError, match="000000000139.png: expected an RGB image"):
        source("coco_panoptic", folder).read(item)


# ---------------------------------------------------------------- ade20k_full

@pytest.fixture
def ade(tmp_path):
    folder = tmp_path / "ADE20K" / "ADEChallengeData2016"
    label = np.arange(24, dtype=np.uint8).reshape(4, 6) % 151
    write_png(folder / "annotations/training/ADE_train_00000001.png", label)
    rng = np.random.default_rng(0)
    seg = rng.integers(0, 256, size=(12, 18, 3), dtype=np.uint8)  # 3x the label's size
    blue = rng.choice(np.array([0, 3, 7], dtype=np.uint8), size=(12, 18))
    blue[0, 0], blue[3, 3], blue[6, 9] = 0, 3, 7
    blue[1, 1] = 250  # not sampled by the nearest-neighbour resize
    seg[:, :, 2] = blue
    full = tmp_path / "ADE20K" / "ADE20K_2016_07_26" / "images"
    write_rgb_png(full / "training/a/abbey/ADE_train_00000001_seg.png", seg)
    write_rgb_png(full / "training/a/abbey/ADE_train_00000002_seg.png", seg[:, :, ::-1])  # another image
    (full / "training/a/abbey/ADE_train_00000001.jpg").write_bytes(b"")
    return folder, entry(folder, "images/training/ADE_train_00000001.jpg", "annotations/training/ADE_train_00000001.png"), label, blue


def test_ade20k_full_label_and_nearest_resized_instances(ade):
    folder, item, label_ids, blue = ade
    src = source("ade20k_full", folder, "ade20k-151")
    label = src.read(item)
    np.testing.assert_array_equal(label.ids, label_ids)
    # cv2.INTER_NEAREST at 1/3: destination pixel (y, x) takes source (3y, 3x)
    resized = blue[::3, ::3]
    for segment in (0, 3, 7):  # 0 (background) is a legal segment
        np.testing.assert_array_equal(src.segment_mask(item, label, segment), resized == segment)
    for missing in (250, 1, 300, -1):
        with pytest.raises(BadSampleError, match=f"ADE_train_00000001_seg.png: relabel record names segment {missing}, "
                                                 f"but no pixel of its B channel \\(resized to the label's 6x4\\)"):
            src.segment_mask(item, label, missing)


def test_ade20k_instances_are_cached_and_refreshed(ade, tmp_path, monkeypatch):
    from unifiedseg.data.label_sources.ade20k_full import resized_instances

    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(tmp_path / "cache"))
    folder, item, _, blue = ade
    seg = tmp_path / "ADE20K/ADE20K_2016_07_26/images/training/a/abbey/ADE_train_00000001_seg.png"
    first = resized_instances(seg, (4, 6))
    cached = list((tmp_path / "cache" / "ade20k_instances").rglob("*.png"))
    assert len(cached) == 1
    np.testing.assert_array_equal(resized_instances(seg, (4, 6)), first)  # read back from the cache
    np.testing.assert_array_equal(first, blue[::3, ::3])
    changed = np.zeros_like(cv2.imread(str(seg)))
    changed[..., 0] = 9  # B (OpenCV writes BGR): instance 9 everywhere
    cv2.imwrite(str(seg), changed)
    assert (resized_instances(seg, (4, 6)) == 9).all()  # a changed file is not served from the cache


def test_ade20k_full_missing_seg_file(ade, tmp_path):
    folder, _, label_ids, _ = ade
    write_png(folder / "annotations/training/ADE_train_00000003.png", label_ids)
    item = entry(folder, "images/training/ADE_train_00000003.jpg", "annotations/training/ADE_train_00000003.png")
    src = source("ade20k_full", folder)
    label = src.read(item)
    images = tmp_path / "ADE20K" / "ADE20K_2016_07_26" / "images"
    with pytest.raises(BadSampleError, match=f"no ADE_train_00000003_seg.png under {images}"):
        src.segment_mask(item, label, 0)


# ---------------------------------------------------------------- polygons (Cityscapes, IDD)

RECT_A = [[1, 1], [4, 1], [4, 3], [1, 3]]  # x 1-4, y 1-3
RECT_B = [[3, 2], [6, 2], [6, 4], [3, 4]]  # overlaps A at x 3-4, y 2-3
LINE = [[0, 5], [7, 5]]  # all y equal: drawn as a line


def rect(x0, x1, y0, y1, shape=(6, 8)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1 + 1, x0:x1 + 1] = True
    return mask


@pytest.fixture
def cityscapes(tmp_path):
    folder = tmp_path / "Cityscapes"
    label = (np.arange(48, dtype=np.uint8).reshape(6, 8) % 34)
    city = folder / "gtFine/train/aachen"
    write_png(city / "aachen_000000_000019_gtFine_labelIds.png", label)
    write_json(city / "aachen_000000_000019_gtFine_polygons.json", {
        "imgHeight": 6, "imgWidth": 8, "objects": [
            {"label": "road", "polygon": RECT_A},
            {"label": "car", "polygon": RECT_B, "deleted": 1},
            {"label": "pole", "polygon": LINE},
            {"label": "sky", "polygon": [[1.7, 0.2], [5.9, 0.2], [5.9, 2.9], [1.7, 2.9]]}]})
    item = entry(folder, "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
                 "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    return folder, item, label


def test_cityscapes_polygons_label_and_masks(cityscapes):
    folder, item, label_ids = cityscapes
    src = source("cityscapes_polygons", folder, "cityscapes-34")
    label = src.read(item)
    np.testing.assert_array_equal(label.ids, label_ids)
    assert src.label_file(item) == item.label
    np.testing.assert_array_equal(src.segment_mask(item, label, 0), rect(1, 4, 1, 3))
    np.testing.assert_array_equal(src.segment_mask(item, label, 1), rect(3, 6, 2, 4))  # deleted: still a segment
    np.testing.assert_array_equal(src.segment_mask(item, label, 2), rect(0, 7, 5, 5))
    np.testing.assert_array_equal(src.segment_mask(item, label, 3), rect(1, 5, 0, 2))  # float points truncate


def test_cityscapes_polygons_bad_segments(cityscapes):
    folder, item, _ = cityscapes
    src = source("cityscapes_polygons", folder)
    label = src.read(item)
    with pytest.raises(BadSampleError, match="aachen_000000_000019_gtFine_polygons.json: relabel record names segment 4, "
                                             "but none of its 4 objects has that index"):
        src.segment_mask(item, label, 4)
    json_path = folder / "gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json"
    document = json.loads(json_path.read_text())
    write_json(json_path, dict(document, imgWidth=9))
    with pytest.raises(BadSampleError, match="gtFine_polygons.json: imgWidth x imgHeight is 9x6 but the label is 8x6"):
        src.segment_mask(item, src.read(item), 0)
    write_json(json_path, dict(document, objects=[{"label": "road", "polygon": [[1, 1], [2]]}]))
    with pytest.raises(BadSampleError, match=r"objects\[0\] \(road\) has a polygon point that is not \[x, y\]: \[2\]"):
        src.segment_mask(item, src.read(item), 0)
    write_json(json_path, dict(document, objects=[{"label": "road", "polygon": [[20, 20], [30, 20], [30, 30]]}]))
    with pytest.raises(BadSampleError, match=r"segment 0, but its polygon \(road\) covers no pixel"):
        src.segment_mask(item, src.read(item), 0)
    json_path.write_text('{"imgHeight": 6,\n "imgWidth": 8\n "objects": []}')
    with pytest.raises(BadSampleError, match="gtFine_polygons.json: malformed JSON: Expecting ',' delimiter at line 3 "
                                             "column 2"):
        src.segment_mask(item, src.read(item), 0)
    json_path.unlink()
    with pytest.raises(BadSampleError, match="gtFine_polygons.json: file does not exist"):
        src.segment_mask(item, src.read(item), 0)


IDD_NAMES = load_names(taxonomy_dir() / "dataset_lists" / "idd-40" / "idd-40_names.txt")
ROAD, CAR, POLEGROUP, PERSON, UNLABELED = 0, 12, 27, 6, 35


@pytest.fixture
def idd(tmp_path):
    folder = tmp_path / "IDD_Segmentation"
    objects = [
        {"label": "road", "polygon": RECT_A, "id": 10},
        {"label": "cargroup", "polygon": RECT_B, "id": 11},  # -> car, drawn over road
        {"label": "person", "polygon": [[0, 0], [7, 0], [7, 5], [0, 5]], "id": 12, "deleted": 1},
        {"label": "polegroup", "polygon": [[6, 0], [7, 0], [7, 1], [6, 1]], "id": 13},  # an idd-40 name
        {"label": "rider group", "polygon": [[0, 4], [1, 4], [1, 5], [0, 5]], "id": 14},  # "rider ": skipped
        {"label": "flying saucer", "polygon": [[0, 0], [1, 0], [1, 1]], "id": 15},  # unknown: skipped
        {"label": "road", "polygon": LINE, "id": 16},  # 2 points: not drawn in the label
        {"label": "person", "polygon": [[5, 5], [6, 5], [5.5, 5]], "id": 17},  # 3 points, one row
    ]
    write_json(folder / "gtFine/train/0/005506_gtFine_polygons.json", {"imgHeight": 6, "imgWidth": 8, "objects": objects})
    item = entry(folder, "leftImg8bit/train/0/005506_leftImg8bit.png", "gtFine/train/0/005506_gtFine_labelids.png")
    return folder, item


def test_idd_polygons_rasterised_label(idd, caplog):
    folder, item = idd
    src = source("idd_polygons", folder, "idd-40", IDD_NAMES)
    assert src.label_file(item) == folder / "gtFine/train/0/005506_gtFine_polygons.json"
    idd_module._warned.clear()
    with caplog.at_level(logging.WARNING, logger=idd_module.__name__):
        label = src.read(item)
        src.read(item)
    expected = np.full((6, 8), UNLABELED, dtype=np.uint8)
    expected[rect(1, 4, 1, 3)] = ROAD
    expected[rect(3, 6, 2, 4)] = CAR
    expected[rect(6, 7, 0, 1)] = POLEGROUP
    expected[5, 5:7] = PERSON  # a polygon of three points on one row fills that row's span
    assert label.ids.dtype == np.uint8
    np.testing.assert_array_equal(label.ids, expected)
    warned = [r.getMessage() for r in caplog.records]
    assert sum("'flying saucer' is not one of idd-40's classes" in m for m in warned) == 1
    assert sum("'rider group' is not one of idd-40's classes" in m for m in warned) == 1
    assert len(warned) == 2  # once per label, not per read


def test_idd_polygons_segment_masks(idd):
    folder, item = idd
    src = source("idd_polygons", folder, "idd-40", IDD_NAMES)
    label = src.read(item)
    np.testing.assert_array_equal(src.segment_mask(item, label, 10), rect(1, 4, 1, 3))
    np.testing.assert_array_equal(src.segment_mask(item, label, 12), rect(0, 7, 0, 5))  # deleted: still a segment
    np.testing.assert_array_equal(src.segment_mask(item, label, 16), rect(0, 7, 5, 5))  # line
    for missing in (0, 2, 99):  # segments are ids, not indices
        with pytest.raises(BadSampleError, match=f"005506_gtFine_polygons.json: relabel record names segment {missing}, "
                                                 f"but none of its 8 objects has that id"):
            src.segment_mask(item, label, missing)


def test_idd_polygons_index_fallback_and_bad_input(idd):
    folder, item = idd
    json_path = folder / "gtFine/train/0/005506_gtFine_polygons.json"
    write_json(json_path, {"imgHeight": 6, "imgWidth": 8, "objects": [
        {"label": "road", "polygon": RECT_A}, {"label": "car", "polygon": RECT_B}]})
    src = source("idd_polygons", folder, "idd-40", IDD_NAMES)
    label = src.read(item)
    np.testing.assert_array_equal(src.segment_mask(item, label, 1), rect(3, 6, 2, 4))
    write_json(json_path, {"imgHeight": 6, "objects": []})
    with pytest.raises(BadSampleError, match="005506_gtFine_polygons.json: imgWidth must be a positive integer, got None"):
        src.read(item)
    write_json(json_path, {"imgHeight": 6, "imgWidth": 8, "objects": [{"polygon": RECT_A}]})
    with pytest.raises(BadSampleError, match=r"objects\[0\] has no 'label'"):
        src.read(item)
    with pytest.raises(ValueError, match="needs a class named 'unlabeled'"):
        source("idd_polygons", folder, "idd-40", ["road", "car"])


# ---------------------------------------------------------------- pascal_mat

@pytest.fixture
def pascal(tmp_path):
    folder = tmp_path / "PASCAL_Context"
    (folder / "trainval").mkdir(parents=True)
    item = entry(folder, "JPEGImages/2008_000002.jpg", "Segmentation_GT_460cls/2008_000002.png")
    return folder, item


def test_pascal_mat_label_map(pascal):
    import scipy.io

    folder, item = pascal
    label_map = np.array([[0, 1, 459], [300, 255, 256]], dtype=np.uint16)
    scipy.io.savemat(folder / "trainval/2008_000002.mat", {"LabelMap": label_map})
    src = source("pascal_mat", folder, "pascal-context-460")
    assert src.label_file(item) == folder / "trainval/2008_000002.mat"
    ids = src.read(item).ids
    assert ids.dtype == np.uint16
    np.testing.assert_array_equal(ids, label_map)
    scipy.io.savemat(folder / "trainval/2008_000002.mat", {"LabelMap": label_map.astype(np.float64)})
    np.testing.assert_array_equal(src.read(item).ids, label_map)  # stored as doubles: same ids
    with pytest.raises(BadSampleError, match="2008_000002.mat: relabel record|no segments to relabel"):
        src.segment_mask(item, src.read(item), 1)


def test_pascal_mat_bad_input(pascal):
    import scipy.io

    folder, item = pascal
    path = folder / "trainval/2008_000002.mat"
    src = source("pascal_mat", folder)
    with pytest.raises(BadSampleError, match="2008_000002.mat: file does not exist"):
        src.read(item)
    scipy.io.savemat(path, {"Other": np.zeros((2, 2))})
    with pytest.raises(BadSampleError, match="2008_000002.mat: has no variable 'LabelMap'"):
        src.read(item)
    path.write_text("not a mat file\n")
    with pytest.raises(BadSampleError, match="2008_000002.mat: not a readable .mat file"):
        src.read(item)
    scipy.io.savemat(path, {"LabelMap": np.array([[1.0, 70000.0]])})
    with pytest.raises(BadSampleError, match="LabelMap holds 1 value\\(s\\) that are not ids in 0-65535, e.g. 70000.0"):
        src.read(item)
    scipy.io.savemat(path, {"LabelMap": np.array([[1.5, 2.0]])})
    with pytest.raises(BadSampleError, match="e.g. 1.5"):
        src.read(item)
