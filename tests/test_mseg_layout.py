"""MSeg's datasets as MSeg's preparation lays them out: the shipped split lists, the registry that reads
them, and a fake `mseg_dataset` tree built from the first lines of every shipped list whose labels come
back, in each dataset's own ids and in the unified space, exactly as written (hand-picked classes)."""

import functools
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unifiedseg.data.dataset import SegmentationDataset
from unifiedseg.data.listfile import read_list
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.splits import available_splits, read_split, shipped_list_names, shipped_list_path, shipped_splits
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy import TaxonomyConverter
from unifiedseg.taxonomy.remap import load_release_lut
from unifiedseg.taxonomy.table import load_names, read_palette

# Lines per shipped list (MSeg's release; ADE20K 20,210/2,000, Cityscapes 2,975/500, BDD 7,000/1,000, ...).
LIST_LINES = {
    "ade20k-150": {"train": 20210, "val": 2000},
    "ade20k-150-relabeled": {"train": 20210, "val": 2000},
    "ade20k-151": {"train": 20210, "val": 2000},
    "bdd": {"train": 7000, "val": 1000},
    "bdd-relabeled": {"train": 7000, "val": 1000},
    "camvid-11": {"test": 233, "train": 367, "val": 101},
    "camvid-32": {"test": 233, "train": 367, "val": 101},
    "cityscapes-19": {"fine_val": 50, "fine_val_small": 50, "train": 2975, "val": 500},
    "cityscapes-19-relabeled": {"fine_val": 50, "fine_val_small": 50, "train": 2975, "val": 500},
    "cityscapes-34": {"fine_val": 50, "fine_val_small": 50, "train": 2975, "val": 500},
    "cityscapes-34-relabeled": {"fine_val": 50, "fine_val_small": 50, "train": 2975, "val": 500},
    "coco-panoptic-133": {"val": 5000, "val_small": 300},
    "coco-panoptic-133-relabeled": {"val": 5000, "val_small": 300},
    "coco-panoptic-201": {"val": 5000},
    "coco-panoptic-inst-201": {"val": 5000},
    "idd-39": {"test": 2029, "train": 6993, "val": 981},
    "idd-39-relabeled": {"test": 2029, "train": 6993, "val": 981},
    "idd-40": {"test": 2029, "train": 6993, "val": 981},
    "kitti-19": {"test": 200, "train": 150, "val": 50},
    "kitti-34": {"test": 200, "train": 150, "val": 50},
    "mapillary-public65": {"train": 18000, "val": 2000},
    "mapillary-public65-relabeled": {"train": 18000, "val": 2000},
    "mapillary-public66": {"train": 18000, "val": 2000},
    "pascal-context-460": {"train": 4999, "trainval": 10103, "val": 5105},
    "pascal-context-60": {"train": 4999, "trainval": 10103, "val": 5105},
    "scannet-20": {"test": 2135, "train": 19466, "val": 5436, "val_small": 421},
    "scannet-41": {"test": 2135, "train": 19466, "val": 5436, "val_small": 421},
    "sunrgbd-37": {"train": 5285, "val": 475},
    "sunrgbd-37-relabeled": {"train": 5285, "val": 475},
    "sunrgbd-38": {"train": 5285, "val": 475},
    "voc2012": {"train": 10582, "train_small": 1464, "val": 1449},
    "wilddash-19": {"test": 226, "train": 1120, "val": 70},
    "wilddash-34": {"test": 226, "train": 1120, "val": 70},
}

# The folder each list's label files are in (PREPARATION.md: a list of name X points at labels in X's
# ids). Every line of every shipped list is checked against it.
LABEL_FOLDERS = {
    "ade20k-150": r"annotations_semseg150/(training|validation)/ADE_\w+\.png",
    "ade20k-150-relabeled": r"annotations_semseg150_relabeled/(training|validation)/ADE_\w+\.png",
    "ade20k-151": r"annotations/(training|validation)/ADE_\w+\.png",
    "bdd": r"seg/labels/(train|val)/[\w-]+_train_id\.png",
    "bdd-relabeled": r"seg_relabeled/labels/(train|val)/[\w-]+_train_id\.png",
    "camvid-11": r"semseg11/\w+_L\.png",
    "camvid-32": r"Labels32-RGB/\w+_L\.png",
    "cityscapes-19": r"gtFine_19cls/(train|val)/\w+/\w+_gtFine_labelIds\.png",
    "cityscapes-19-relabeled": r"gtFine_19cls_relabeled/(train|val)/\w+/\w+_gtFine_labelIds\.png",
    "cityscapes-34": r"gtFine/(train|val)/\w+/\w+_gtFine_labelIds\.png",
    "cityscapes-34-relabeled": r"gtFine_34cls_relabeled/(train|val)/\w+/\w+_gtFine_labelIds\.png",
    "coco-panoptic-133": r"semantic_annotations133/val2017/\d+\.png",
    "coco-panoptic-133-relabeled": r"semantic_relabeled133/val2017/\d+\.png",
    "coco-panoptic-201": r"semantic_annotations201/val2017/\d+\.png",
    "coco-panoptic-inst-201": r"annotations/panoptic_val2017/\d+\.png",
    "idd-39": r"gtFine39/(train|val)/\d+/\d+_gtFine_labelids\.png",
    "idd-39-relabeled": r"gtFine39_relabeled/(train|val)/\d+/\d+_gtFine_labelids\.png",
    "idd-40": r"gtFine/(train|val)/\d+/\d+_gtFine_labelids\.png",
    "kitti-19": r"training/label19/\d+_10\.png",
    "kitti-34": r"training/semantic/\d+_10\.png",
    "mapillary-public65": r"(training|validation)_semseg65/labels/[\w-]+\.png",
    "mapillary-public65-relabeled": r"(training|validation)_semseg65_relabeled/labels/[\w-]+\.png",
    "mapillary-public66": r"(training|validation)/labels/[\w-]+\.png",
    "pascal-context-460": r"Segmentation_GT_460cls/\d+_\d+\.png",
    "pascal-context-60": r"Segmentation_GT_60cls/\d+_\d+\.png",
    "scannet-20": r"scene\d+_\d+/label20/\d+\.png",
    "scannet-41": r"scene\d+_\d+/label/\d+\.png",
    "sunrgbd-37": r"semseg-label37/(train|test)/\d+\.png",
    "sunrgbd-37-relabeled": r"semseg-relabeled37/(train|test)/\d+\.png",
    "sunrgbd-38": r"label38/(train|test)/\d+\.png",
    "voc2012": r"SegmentationClassAug/\d+_\d+\.png",
    "wilddash-19": r"wd_val_19class/\w+_labelIds\.png",
    "wilddash-34": r"wd_val_01/\w+_labelIds\.png",
}

# MSeg's data roots (PREPARATION.md): lists are relative to these folders of `mseg_dataset`.
ROOTS = {"ade20k": "ADE20K/ADEChallengeData2016", "bdd": "BDD/bdd100k", "camvid": "Camvid", "cityscapes": "Cityscapes",
         "coco": "COCOPanoptic", "idd": "IDD/IDD_Segmentation", "kitti": "KITTI", "mapillary": "MapillaryVistasPublic",
         "pascal-context": "PASCAL_Context", "scannet": "ScanNet/scannet_frames_25k", "sunrgbd": "SUNRGBD",
         "voc2012": "PASCAL_VOC_2012", "wilddash": "WildDash"}

# Every fake label holds two classes of the dataset, chosen by hand (A on 24 pixels, B on 16) and 8
# unlabeled pixels (255); for training columns of mseg.tsv, the universal classes they become, read off
# the TSV by hand (None: the class maps to unlabeled). Hard cases: many-to-one (IDD parking -> road),
# classes MSeg drops (ADE20K bar, IDD non-drivable fallback, Cityscapes ego vehicle), Cityscapes rider
# -> bicyclist vs BDD rider -> rider_other, a uint16 release (PASCAL-Context 460, a class id above 255).
CLASSES = {
    "mapillary-public65": ("Curb", "Bird", "sidewalk_pavement", "bird"),
    "mapillary-public65-relabeled": ("bench", "banner", "bench", "banner"),
    "mapillary-public66": ("Curb", "Bird"),
    "coco-panoptic-133": ("cardboard", "flower", "box", "vegetation"),
    "coco-panoptic-133-relabeled": ("armchair", "apple", "armchair", "apple"),
    "coco-panoptic-201": ("person", "car"),
    "ade20k-150": ("ashcan", "bar", "trash_can", None),
    "ade20k-150-relabeled": ("animal_other", "airplane", "animal_other", "airplane"),
    "ade20k-151": ("building", "road"),
    "idd-39": ("parking", "non-drivable fallback", "road", None),
    "idd-39-relabeled": ("autorickshaw", "backpack", "autorickshaw", "backpack"),
    "idd-40": ("drivable fallback", "animal"),
    "cityscapes-19": ("rider", "sidewalk", "bicyclist", "sidewalk_pavement"),
    "cityscapes-19-relabeled": ("bicyclist", "building", "bicyclist", "building"),
    "cityscapes-34": ("road", "ego vehicle", "road", None),
    "cityscapes-34-relabeled": ("bicycle", "bridge", "bicycle", "bridge"),
    "bdd": ("rider", "traffic sign", "rider_other", "traffic_sign"),
    "bdd-relabeled": ("bicyclist", "bicycle", "bicyclist", "bicycle"),
    "sunrgbd-37": ("sofa", "blinds", "couch", "window_blind"),
    "sunrgbd-37-relabeled": ("armchair", "bag", "armchair", "bag"),
    "sunrgbd-38": ("sofa", "wall"),
    "camvid-11": ("Road", "Pedestrian"),
    "camvid-32": ("Bicyclist", "Archway"),
    "kitti-19": ("traffic sign", "road"),
    "kitti-34": ("road", "ground"),
    "pascal-context-60": ("bird", "bench"),
    "pascal-context-460": ("plume", "pliers"),
    "scannet-20": ("counter", "desk"),
    "scannet-41": ("sofa", "table"),
    "voc2012": ("bus", "boat"),
    "wilddash-19": ("fence", "pole"),
    "wilddash-34": ("road", "dynamic"),
}
A_PIXELS, B_PIXELS, UNLABELED_PIXELS = 24, 16, 8
LINES_PER_SPLIT = 2


@functools.lru_cache(maxsize=None)
def shipped_entries(name: str, split: str):
    return read_list(shipped_list_path(name, split), Path("."), require_labels=False)


def names_of(dataset: str) -> list[str]:
    return load_names(taxonomy_dir() / "dataset_lists" / dataset / f"{dataset}_names.txt")


# ---- the shipped lists ---------------------------------------------------------------------------------
def test_every_mseg_list_ships_with_every_split():
    assert {name: {split: len(shipped_entries(name, split)) for split in shipped_splits(name)}
            for name in shipped_list_names()} == LIST_LINES


@pytest.mark.parametrize("name", sorted(LABEL_FOLDERS))
def test_every_line_of_a_list_reads_the_folder_of_its_release(name):
    pattern = re.compile(LABEL_FOLDERS[name])
    for split in shipped_splits(name):
        for entry in shipped_entries(name, split):
            if entry.label is None:  # image-only test lists
                assert split == "test", (name, split, entry.line)
                continue
            assert pattern.fullmatch(entry.label.as_posix()), (name, split, entry.line, entry.label)


# ---- the registry against the lists ---------------------------------------------------------------------
def test_registry_matches_mseg_layout():
    registry = DatasetRegistry.load()
    # every list set has an entry (COCO's panoptic PNGs read through their JSON: coco-panoptic-inst-201)
    assert sorted(info.mseg_lists for info in registry.entries.values() if info.mseg_lists) == sorted(shipped_list_names())
    for info in registry.entries.values():
        if not info.mseg_lists:
            continue
        family = next(key for key in ROOTS if info.name.startswith(key))
        assert info.root == ROOTS[family], info.name
        assert info.num_classes == len(names_of(info.name)), info.name


def test_a_list_and_the_remap_of_its_entry_agree():
    """A list of name X holds labels in X's ids: an entry that reads X's lists remaps from X exactly
    when X is another dataset (and a remap table from X to it exists); else it reads labels as they are."""
    for info in DatasetRegistry.load().entries.values():
        if info.mseg_lists is None:
            continue
        assert info.label_ids == info.mseg_lists, f"{info.name} reads {info.mseg_lists}'s labels as {info.label_ids}'s"
        if info.disk_taxonomy:
            load_release_lut(info.disk_taxonomy, info.name, names_of(info.disk_taxonomy), names_of(info.name))


def test_splits_of_an_entry_are_msegs_plus_generated():
    registry = DatasetRegistry.load()
    assert available_splits(registry.get("cityscapes-19")) == ["fine_val", "fine_val_small", "train", "val"]
    assert available_splits(registry.get("coco-panoptic-133")) == ["train", "val", "val_small"]
    assert available_splits(registry.get("kitti-19")) == ["test", "train", "val"]


# ---- a fake mseg_dataset tree ---------------------------------------------------------------------------
def fake_label(dataset: str, ids: tuple[int, int], wide: bool) -> np.ndarray:
    label = np.full((6, 8), 255, np.uint16 if wide else np.uint8)
    label[:3], label[3:5] = ids  # 24 px of A, 16 px of B, row 5 unlabeled
    if wide:  # a 460-id release has a class 255: its unlabeled id is 0 ("background" of PASCAL-Context)
        label[5] = 0
    return label


def write_label(path: Path, label: np.ndarray, label_format: str, dataset: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if label_format == "palette":  # Mapillary: an 8-bit palette PNG whose indices are the ids
        image = Image.fromarray(label.astype(np.uint8), mode="P")
        colors = read_palette(taxonomy_dir() / "dataset_lists" / dataset / f"{dataset}_colors.txt")
        image.putpalette(colors.reshape(-1).tolist() + [0] * (768 - colors.size))
        image.save(path)
    elif label_format == "color":  # CamVid: colour-coded; no 255 pixels in a colour release
        colors = read_palette(taxonomy_dir() / "dataset_lists" / dataset / f"{dataset}_colors.txt")
        rgb = colors[np.where(label == 255, 0, label)]
        cv2.imwrite(str(path), rgb[..., ::-1])
    else:
        cv2.imwrite(str(path), label)


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((6, 8, 3), 128, np.uint8))


@pytest.fixture(scope="module")
def fake_mseg(tmp_path_factory):
    """The first lines of every split of every registered MSeg dataset, written under one mseg_dataset
    folder (lists are not copied: they are read from the project). COCO's train lists come from a
    two-image panoptic_train2017.json."""
    root = tmp_path_factory.mktemp("mseg_dataset")
    cache = tmp_path_factory.mktemp("cache")
    registry = DatasetRegistry.load()
    coco_json = root / "COCOPanoptic" / "annotations" / "panoptic_train2017.json"
    coco_json.parent.mkdir(parents=True)
    coco_json.write_text(json.dumps({"images": [{"file_name": "000000000025.jpg"}, {"file_name": "000000000009.jpg"}],
                                     "annotations": [], "categories": []}))
    written = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNIFIEDSEG_CACHE_DIR", str(cache))
        for info in registry.entries.values():
            if not info.mseg_lists or info.label_source == "coco_panoptic":  # panoptic PNGs: test_raw_exactness.py
                continue
            names = names_of(info.name)
            a, b = CLASSES[info.name][:2]
            label = fake_label(info.name, (names.index(a), names.index(b)), wide=len(names) > 256)
            for split in available_splits(info):
                entries = read_split(info, split, root, require_labels=False)[:LINES_PER_SPLIT]
                for entry in entries:
                    write_image(entry.image)
                    if entry.label is not None:
                        write_label(entry.label, label, info.label_source, info.name)
                written[info.name, split] = entries
        yield root, written, cache


def histogram(labels) -> dict[int, int]:
    values, counts = np.unique(np.concatenate([np.asarray(x).reshape(-1) for x in labels]), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def test_fake_tree_reads_back_in_own_ids(fake_mseg, monkeypatch):
    root, written, cache = fake_mseg
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(cache))
    registry = DatasetRegistry.load()
    checked = 0
    for (name, split), entries in written.items():
        if entries[0].label is None:
            assert read_split(registry.get(name), split, root, require_labels=False)[0].image.is_file()
            continue
        names = names_of(name)
        dataset = SegmentationDataset.from_registry(registry.get(name), split, root)
        labels = [dataset[i]["label"].numpy() for i in range(LINES_PER_SPLIT)]
        a, b = (names.index(c) for c in CLASSES[name][:2])
        unlabeled = {"camvid-32": 0, "pascal-context-460": 0}.get(name, 255)  # 255 has no colour / is a class there
        expected = {a: A_PIXELS * 2, b: B_PIXELS * 2}
        expected[unlabeled] = expected.get(unlabeled, 0) + UNLABELED_PIXELS * 2
        assert histogram(labels) == expected, (name, split)
        checked += 1
    # every split of the 32 MSeg datasets with id labels (87 shipped + 3 COCO train) but the 7 image-only test lists
    assert checked == 83


def test_fake_tree_reads_back_in_the_unified_space(fake_mseg, monkeypatch):
    root, written, cache = fake_mseg
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(cache))
    registry = DatasetRegistry.load()
    converter = TaxonomyConverter.from_tsv("mseg", test_datasets=[])
    trained = [name for name in CLASSES if len(CLASSES[name]) == 4]
    assert sorted(trained) == sorted(converter.train_datasets)
    for name in trained:
        for split in available_splits(registry.get(name)):
            if written[name, split][0].label is None:
                continue
            dataset = SegmentationDataset.from_registry(registry.get(name), split, root, converter=converter)
            labels = [dataset[i]["label"].numpy() for i in range(LINES_PER_SPLIT)]
            universal_a, universal_b = CLASSES[name][2:]
            expected = {255: UNLABELED_PIXELS * 2}
            for universal, pixels in ((universal_a, A_PIXELS), (universal_b, B_PIXELS)):
                key = 255 if universal is None else converter.class_names.index(universal)
                expected[key] = expected.get(key, 0) + pixels * 2
            assert histogram(labels) == expected, (name, split)


def test_coco_train_list_is_generated_from_the_panoptic_json(fake_mseg, monkeypatch):
    root, written, cache = fake_mseg
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(cache))
    entries = read_split(DatasetRegistry.load().get("coco-panoptic-133-relabeled"), "train", root)
    folder = root / "COCOPanoptic"
    assert [(e.image.relative_to(folder).as_posix(), e.label.relative_to(folder).as_posix()) for e in entries] == [
        ("images/train2017/000000000009.jpg", "semantic_relabeled133/train2017/000000000009.png"),
        ("images/train2017/000000000025.jpg", "semantic_relabeled133/train2017/000000000025.png")]


def test_bad_input_names_dataset_list_line_and_file(tmp_path):
    from unifiedseg.data.decode import BadSampleError
    from unifiedseg.data.listfile import ListFileError
    from unifiedseg.data.splits import user_list_path

    info = DatasetRegistry.load().get("cityscapes-19")
    first = shipped_entries("cityscapes-19", "val")[0]
    folder = tmp_path / "Cityscapes"
    write_image(folder / first.image)
    label = fake_label("cityscapes-19", (0, 1), wide=False)
    label[0, 0] = 30  # a gtFine (34-id) value where 19 train ids are expected: another release's folder
    write_label(folder / first.label, label, "id", "cityscapes-19")
    with pytest.raises(BadSampleError, match=r"gtFine_19cls/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png: "
                                             r"label ids 30 \(1 px\) are outside cityscapes-19's 19 classes.*"
                                             r"dataset cityscapes-19, list line 1"):
        SegmentationDataset.from_registry(info, "val", tmp_path)[0]
    with pytest.raises(BadSampleError, match=r"frankfurt_000000_000576_gtFine_labelIds.png: file does not exist "
                                             r"\(dataset cityscapes-19, list line 2"):
        SegmentationDataset.from_registry(info, "val", tmp_path)[1]
    empty = user_list_path(info, "val", tmp_path)  # a user's own list overrides MSeg's
    empty.parent.mkdir(parents=True)
    empty.write_text("\n")
    with pytest.raises(ListFileError, match=rf"dataset cityscapes-19 split val: list file {re.escape(str(empty))} lists no samples"):
        SegmentationDataset.from_registry(info, "val", tmp_path)
    with pytest.raises(ListFileError, match=r"test.txt.xz:1: expected 'image_path label_path', got 1 field\(s\).*image-only test list"):
        SegmentationDataset.from_registry(DatasetRegistry.load().get("kitti-19"), "test", tmp_path)


def two_line_tree(root: Path, dataset: str, split: str) -> None:
    """The first two lines of MSeg's list, their files, and a user list of just those lines."""
    from unifiedseg.data.splits import user_list_path

    info = DatasetRegistry.load().get(dataset)
    names = names_of(dataset)
    a, b = CLASSES[dataset][:2]
    lines = []
    for entry in shipped_entries(dataset, split)[:2]:
        write_image(info.folder(root) / entry.image)
        if entry.label is not None:
            write_label(info.folder(root) / entry.label, fake_label(dataset, (names.index(a), names.index(b)), False),
                        info.label_source, dataset)
        lines.append(f"{entry.image} {entry.label or ''}".strip())
    override = user_list_path(info, split, root)
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text("\n".join(lines) + "\n")


def test_data_tools_take_test_datasets(tmp_path, capsys):
    from unifiedseg.cli import dataset_stats as stats_cli
    from unifiedseg.cli import verify_dataset as verify_cli

    for dataset, split in (("kitti-19", "val"), ("kitti-19", "test"), ("cityscapes-19", "val")):
        two_line_tree(tmp_path, dataset, split)
    out = tmp_path / "stats.json"
    assert stats_cli.main(["--datasets", "kitti-19", "cityscapes-19", "--split", "val", "--root", str(tmp_path),
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    kitti = result["datasets"]["kitti-19"]
    sign, road = names_of("kitti-19").index("traffic sign"), names_of("kitti-19").index("road")
    assert (kitti["pixels"][sign], kitti["pixels"][road], kitti["ignored_pixels"]) == (48, 32, 16)
    assert result["unified_datasets"] == ["cityscapes-19"]  # a test dataset has no unified table
    unified = result["unified"]
    assert unified["pixels"][unified["classes"].index("bicyclist")] == 48
    assert "no unified table for kitti-19" in capsys.readouterr().out
    assert verify_cli.main(["--dataset", "kitti-19", "--split", "test", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "kitti-19 test: 2 samples, 2 good, 0 bad"
    assert verify_cli.main(["--dataset", "kitti-19", "--split", "val", "--root", str(tmp_path)]) == 0
