"""The generated demo datasets: layouts, list files, label releases, determinism, re-runs, and the demo taxonomy."""

import filecmp
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from unifiedseg.cli.make_demo_data import main as make_demo_data_main
from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.data.demo import (
    DEMO_DATASET_SPECS,
    DEMO_DATASETS,
    DEMO_TEST_DATASETS,
    DEMO_TRAIN_DATASETS,
    MARKER_NAME,
    DemoDataError,
    make_demo_data,
    registry_entries,
    render_sample,
)
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy import TaxonomyConverter, TaxonomyTable, validate
from unifiedseg.taxonomy.remap import release_lut
from unifiedseg.taxonomy.table import load_names

SIZE = (64, 96)
COUNTS = {"num_train": 6, "num_val": 2, "num_test": 3}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    summary = make_demo_data(out, seed=0, size=SIZE, **COUNTS)
    assert summary["skipped"] is False
    return out


def listed_samples(root: Path, dataset: str, split: str) -> list[tuple[Path, Path]]:
    folder = root / dataset
    lines = (folder / "list" / f"{split}.txt").read_text().splitlines()
    return [tuple(folder / rel for rel in line.split()) for line in lines]


def read_label(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ---- layout and files ----------------------------------------------------------------------------
def test_datasets_and_roles():
    assert DEMO_DATASETS == ("demo-city", "demo-ade", "demo-camvid")
    assert DEMO_TRAIN_DATASETS == ("demo-city", "demo-ade")
    assert DEMO_TEST_DATASETS == ("demo-camvid",)


def test_real_layouts(demo_root):
    city = demo_root / "demo-city"
    # Three training cities in turn: sample 4 is the second image of bochum.
    assert (city / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png").is_file()
    assert (city / "leftImg8bit/train/bochum/bochum_000001_000019_leftImg8bit.png").is_file()
    assert (city / "gtFine/train/bochum/bochum_000001_000019_gtFine_labelIds.png").is_file()
    assert (city / "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png").is_file()
    ade = demo_root / "demo-ade"
    assert (ade / "images/training/ADE_train_00000001.jpg").is_file()
    assert (ade / "annotations/training/ADE_train_00000006.png").is_file()
    assert not (ade / "images/training/ADE_train_00000007.jpg").exists()
    assert (ade / "images/validation/ADE_val_00000002.jpg").is_file()
    camvid = demo_root / "demo-camvid"
    assert (camvid / "train/0001TP_000030.png").is_file()
    assert (camvid / "trainannot/0016E5_000060.png").is_file()
    assert (camvid / "valannot/Seq05VD_000090.png").is_file()


@pytest.mark.parametrize("dataset", DEMO_DATASETS)
def test_list_files_count_and_every_listed_file_exists(demo_root, dataset):
    expected = {"train": 6, "val": 3 if dataset == "demo-camvid" else 2}
    for split, count in expected.items():
        samples = listed_samples(demo_root, dataset, split)
        assert len(samples) == count
        for image, label in samples:
            assert image.is_file(), image
            assert label.is_file(), label


@pytest.mark.parametrize("dataset", DEMO_DATASETS)
def test_images_rgb_uint8_and_labels_within_disk_release(demo_root, dataset):
    spec = DEMO_DATASET_SPECS[dataset]
    seen = set()
    for split in ("train", "val"):
        for image_path, label_path in listed_samples(demo_root, dataset, split):
            image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            label = read_label(label_path)
            assert image.dtype == np.uint8 and image.shape == (*SIZE, 3)
            assert label.dtype == np.uint8 and label.shape == SIZE
            assert int(label.max()) < len(spec.disk_names)
            seen |= set(np.unique(label).tolist())
    # Every class of the dataset's own taxonomy shows up in 8-9 images.
    assert {spec.disk_names.index(n) for n in spec.class_names} <= seen


def test_city_void_classes_are_where_the_image_says(demo_root):
    image_path, label_path = listed_samples(demo_root, "demo-city", "train")[0]
    image = cv2.imread(str(image_path))
    label = read_label(label_path)
    border, ego = 2, 1  # demo-city-12 ids of 'rectification border' and 'ego vehicle'
    assert (label[:2, :] == border).all() and (label[:, -2:] == border).all()
    assert (image[label == border] == 0).all()
    assert (label == ego).any()


def test_camvid_marks_region_edges_void(demo_root):
    _, label_path = listed_samples(demo_root, "demo-camvid", "val")[0]
    label = read_label(label_path)
    void = 9
    assert label[0, 0] == 0  # Sky in the top-left corner
    # Wherever two non-void neighbours differ, one of them must have been an edge: none remain side by side.
    left, right = label[:, :-1], label[:, 1:]
    assert not ((left != right) & (left != void) & (right != void)).any()
    assert (label == void).any()


def test_default_size_and_ade_jpeg():
    image, label, world = render_sample(DEMO_DATASET_SPECS["demo-ade"], 0, "train", 0, (128, 192))
    assert image.shape == (128, 192, 3) and image.dtype == np.uint8
    assert label.shape == world.shape == (128, 192)
    # ADE-like: road and sidewalk (world 0, 1) are both 'ground' (disk id 4); clutter (world 9) is id 0.
    lut = DEMO_DATASET_SPECS["demo-ade"].disk_lut()
    assert lut[0] == lut[1] == 4 and lut[9] == 0


# ---- taxonomy files ------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", DEMO_DATASETS)
def test_names_lists_match_generator(dataset):
    spec = DEMO_DATASET_SPECS[dataset]
    lists = taxonomy_dir() / "dataset_lists"
    assert load_names(lists / dataset / f"{dataset}_names.txt") == list(spec.class_names)
    assert load_names(lists / spec.disk_taxonomy / f"{spec.disk_taxonomy}_names.txt") == list(spec.disk_names)
    for name in (dataset, spec.disk_taxonomy):
        colors = (lists / name / f"{name}_colors.txt").read_text().splitlines()
        assert len(colors) == len(load_names(lists / name / f"{name}_names.txt"))
        assert all(len(line.split()) == 3 and all(0 <= int(v) <= 255 for v in line.split()) for line in colors)


def test_remap_tables_map_every_disk_id():
    expected = {
        ("demo-city-12", "demo-city"): [255, 255, 255, 255, 0, 1, 2, 3, 4, 5, 6, 7],
        ("demo-ade-8", "demo-ade"): [255, 0, 1, 2, 3, 4, 5, 6],
        ("demo-camvid-10", "demo-camvid"): [0, 1, 2, 3, 4, 5, 6, 7, 8, 255],
    }
    for (src, dst), values in expected.items():
        lut = release_lut(src, dst)
        assert lut[: len(values)].tolist() == values
        assert (lut[len(values):] == IGNORE_INDEX).all()


def test_demo_tsv_validates_clean_and_loads():
    table = TaxonomyTable.load("demo")
    assert [str(p) for p in validate(table)] == []
    converter = TaxonomyConverter.from_tsv("demo")
    assert converter.class_names == ["road", "sidewalk", "building", "vegetation", "sky", "person", "rider", "car", "truck"]
    assert converter.train_datasets == ["demo-city", "demo-ade"]
    assert converter.test_datasets == ["demo-camvid"]
    # One-to-many classes: demo-city's vehicle (id 7), demo-ade's ground (3) and person (4).
    assert converter.one_to_many_ids("demo-city") == [7]
    assert converter.one_to_many_ids("demo-ade") == [3, 4]
    assert converter.target_sets("demo-city")[7].nonzero().flatten().tolist() == [7, 8]
    assert converter.target_sets("demo-ade")[3].nonzero().flatten().tolist() == [0, 1]


def reached_test_classes(converter, datasets) -> set[str]:
    """Test classes that some hard (label_lut) training label of `datasets` counts towards."""
    matrix = converter.test_matrix("demo-camvid")
    names = converter.dataset_class_names("demo-camvid")
    reached = set()
    for dataset in datasets:
        lut = converter.label_lut(dataset)
        for class_id in range(len(converter.dataset_class_names(dataset))):
            if lut[class_id] != IGNORE_INDEX:
                reached |= {names[t] for t in matrix[:, lut[class_id]].nonzero().flatten().tolist()}
    return reached


def test_only_the_union_of_training_datasets_names_every_test_class():
    converter = TaxonomyConverter.from_tsv("demo")
    every = set(converter.dataset_class_names("demo-camvid"))
    assert reached_test_classes(converter, ["demo-city", "demo-ade"]) == every
    assert every - reached_test_classes(converter, ["demo-city"]) == {"Car", "Truck"}
    assert every - reached_test_classes(converter, ["demo-ade"]) == {"Road", "Sidewalk", "Pedestrian", "Bicyclist"}


def test_generated_labels_have_the_union_property(demo_root):
    """The same on pixels: what the training labels teach (hard labels, in universal ids) covers the test labels."""
    converter = TaxonomyConverter.from_tsv("demo")
    taught = {}
    for dataset in DEMO_TRAIN_DATASETS:
        to_own = release_lut(DEMO_DATASET_SPECS[dataset].disk_taxonomy, dataset)
        lut = converter.label_lut(dataset)[to_own]
        ids = set()
        for _, label_path in listed_samples(demo_root, dataset, "train"):
            ids |= set(np.unique(lut[read_label(label_path)]).tolist())
        taught[dataset] = ids - {IGNORE_INDEX}
    matrix = converter.test_matrix("demo-camvid")

    def test_ids(universal_ids):
        return {t for u in universal_ids for t in matrix[:, u].nonzero().flatten().tolist()}

    to_test = release_lut("demo-camvid-10", "demo-camvid")
    needed = set()
    for _, label_path in listed_samples(demo_root, "demo-camvid", "val"):
        needed |= set(np.unique(to_test[read_label(label_path)]).tolist())
    needed -= {IGNORE_INDEX}
    assert needed == set(range(9))
    assert needed <= test_ids(taught["demo-city"] | taught["demo-ade"])
    assert not needed <= test_ids(taught["demo-city"])
    assert not needed <= test_ids(taught["demo-ade"])


def test_registry_entries():
    path = taxonomy_dir() / "datasets" / "demo.yaml"
    entries = yaml.safe_load(path.read_text())
    assert entries == registry_entries()
    assert sorted(entries) == sorted(DEMO_DATASETS)
    for name, entry in entries.items():
        assert entry["root"] == name
        assert entry["lists"] == {"train": "list/train.txt", "val": "list/val.txt"}
        assert entry["num_classes"] == len(load_names(taxonomy_dir() / "dataset_lists" / name / f"{name}_names.txt"))
        assert (taxonomy_dir() / "remap" / f"{entry['disk_taxonomy']}_to_{name}.tsv").is_file()
    assert [entries[n]["num_classes"] for n in DEMO_DATASETS] == [8, 7, 9]


# ---- determinism and re-runs ---------------------------------------------------------------------
def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    return not mismatch and not errors


def test_same_seed_gives_identical_bytes(demo_root, tmp_path):
    make_demo_data(tmp_path / "again", seed=0, size=SIZE, **COUNTS)
    assert same_tree(demo_root, tmp_path / "again")
    make_demo_data(tmp_path / "other", seed=1, size=SIZE, **COUNTS)
    first = "demo-city/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert (demo_root / first).read_bytes() != (tmp_path / "other" / first).read_bytes()


def test_first_samples_do_not_depend_on_count(demo_root, tmp_path):
    make_demo_data(tmp_path / "few", seed=0, size=SIZE, num_train=2, num_val=1, num_test=1)
    for rel in ("demo-ade/images/training/ADE_train_00000002.jpg", "demo-camvid/valannot/Seq05VD_000030.png"):
        assert (tmp_path / "few" / rel).read_bytes() == (demo_root / rel).read_bytes()


def test_rerun_skips_then_regenerates_on_change_or_damage(tmp_path):
    out = tmp_path / "data"
    params = dict(seed=3, size=(32, 48), num_train=2, num_val=1, num_test=1)
    make_demo_data(out, **params)
    probe = out / "demo-ade" / "images" / "training" / "ADE_train_00000001.jpg"
    stamp = probe.stat().st_mtime_ns
    again = make_demo_data(out, **params)
    assert again["skipped"] is True and probe.stat().st_mtime_ns == stamp

    probe.unlink()
    repaired = make_demo_data(out, **params)
    assert repaired["skipped"] is False and "incomplete" in repaired["note"] and probe.is_file()

    bigger = make_demo_data(out, **{**params, "num_train": 3})
    assert bigger["skipped"] is False
    assert len((out / "demo-city" / "list" / "train.txt").read_text().splitlines()) == 3
    assert make_demo_data(out, **params, force=False)["skipped"] is False  # back to 2: regenerated, not skipped
    assert len((out / "demo-city" / "list" / "train.txt").read_text().splitlines()) == 2
    assert make_demo_data(out, **params, force=True)["skipped"] is False
    assert not [p for p in out.iterdir() if p.name.startswith(".demo-data-staging")]


def test_refuses_folders_it_did_not_write(tmp_path):
    (tmp_path / "demo-city").mkdir()
    (tmp_path / "demo-city" / "mine.txt").write_text("keep")
    with pytest.raises(DemoDataError, match=r"demo-city.*--force"):
        make_demo_data(tmp_path, size=(32, 48), num_train=1, num_val=1, num_test=1)
    assert (tmp_path / "demo-city" / "mine.txt").read_text() == "keep"
    assert not (tmp_path / MARKER_NAME).exists()
    make_demo_data(tmp_path, size=(32, 48), num_train=1, num_val=1, num_test=1, force=True)
    assert not (tmp_path / "demo-city" / "mine.txt").exists() and (tmp_path / MARKER_NAME).is_file()


@pytest.mark.parametrize("kwargs, message", [
    ({"num_train": 0}, "num_train must be an integer >= 1, got 0"),
    ({"num_val": 1.5}, "num_val must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"size": (16, 96)}, "size 16x96 is out of range"),
    ({"size": 128}, r"size must be \(height, width\)"),
])
def test_bad_parameters_are_named(tmp_path, kwargs, message):
    with pytest.raises(DemoDataError, match=message):
        make_demo_data(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


# ---- command line --------------------------------------------------------------------------------
def test_cli_writes_then_skips(tmp_path, capsys):
    argv = [str(tmp_path / "d"), "--num-train", "1", "--num-val", "1", "--num-test", "2", "--size", "32x48", "--quiet"]
    assert make_demo_data_main(argv) == 0
    out = capsys.readouterr().out
    assert "demo-camvid  test  1 train, 2 val" in out and "wrote 7 images of 32x48" in out
    assert make_demo_data_main(argv) == 0
    assert "already holds complete demo data" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert make_demo_data_main([str(tmp_path / "d"), "--num-train", "0", "--quiet"]) == 2
    assert "num_train must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        make_demo_data_main([str(tmp_path / "d"), "--size", "128"])
    assert exit_info.value.code == 2
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        make_demo_data_main(["--help"])
    assert exit_info.value.code == 0
    assert "--num-train" in capsys.readouterr().out
