"""`unifiedseg-data status` and the data check training runs first: what is on disk for each dataset
split against its list, which label releases are there, and what to do about what is missing.

Trees are small and synthetic. A tiny registry (`mini`, 3 classes, with its own class list in a
taxonomy folder of its own) covers the states and exit codes; the shipped registry covers what needs
MSeg's real lists (Cityscapes' releases, KITTI's image-only test list, COCO's generated train list)."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest

from unifiedseg.cli import data as data_cli
from unifiedseg.data import splits as splits_module
from unifiedseg.data.listfile import ListFileError, read_first_entry, read_list_text
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.splits import shipped_list_path, user_list_path
from unifiedseg.data.status import DataNotReadyError, SplitRequest, data_status, format_status, require_data

DEMO_CONFIG = "config/train/demo/unified.yaml"
MINI_REGISTRY = """\
mini:
  root: Mini
  lists: {train: list/train.txt, val: list/val.txt}
  num_classes: 3
  images_from: mini_images.zip (example.org)
  labels_from: mini_labels.zip (example.org)
gone:
  root: Gone
  lists: {train: list/train.txt}
  num_classes: 3
  images_from: gone_images.zip (example.org)
  labels_from: gone_labels.zip (example.org)
"""


# ---- helpers -------------------------------------------------------------------------------------
def write_image(path, size=(8, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), 90, np.uint8))


def write_label(path, values=(0, 1), size=(8, 12)):
    """A label map holding `values` (one pixel each, the rest the first value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.full(size, values[0], np.uint8)
    label.reshape(-1)[: len(values)] = values
    assert cv2.imwrite(str(path), label)


def status(argv, capsys):
    """Run `unifiedseg-data status ARGV`: (exit code, stdout, stderr), with no traceback printed."""
    code = data_cli.main(["status", "--no-progress", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def json_rows(argv, capsys):
    code, out, _ = status([*argv, "--json"], capsys)
    return code, {(row["dataset"], row["split"]): row for row in json.loads(out)["splits"]}


def table_line(out, dataset, split):
    """The table line of one dataset split, its cells split on runs of two or more spaces."""
    found = [line for line in out.splitlines() if re.match(rf"{re.escape(dataset)}\s+{re.escape(split)}(\s|$)", line)]
    assert len(found) == 1, out
    return re.split(r"\s{2,}", found[0])


def details(out, dataset, split):
    """The indented lines printed under one row."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{re.escape(dataset)}\s+{re.escape(split)}(\s|$)", line))
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


@pytest.fixture
def mini(tmp_path, monkeypatch):
    """A data root with `mini` complete (train: 4 samples, val: 2) and `gone` absent, a registry file for
    both, and a taxonomy folder with mini's and gone's class lists (and no shipped registry)."""
    tax = tmp_path / "taxonomy"
    for name in ("mini", "gone"):
        (tax / "dataset_lists" / name).mkdir(parents=True)
        (tax / "dataset_lists" / name / f"{name}_names.txt").write_text("road\ncar\nsky\n")
    (tax / "datasets").mkdir()
    monkeypatch.setenv("UNIFIEDSEG_TAXONOMY_DIR", str(tax))
    registry = tmp_path / "mini.yaml"
    registry.write_text(MINI_REGISTRY)
    root = tmp_path / "data"
    folder = root / "Mini"
    for split, count in (("train", 4), ("val", 2)):
        lines = []
        for i in range(count):
            write_image(folder / "img" / split / f"{i}.png")
            write_label(folder / "lab" / split / f"{i}.png", (0, 1, 2, 255))
            lines.append(f"img/{split}/{i}.png lab/{split}/{i}.png")
        (folder / "list").mkdir(exist_ok=True)
        (folder / "list" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root, registry


@pytest.fixture
def shipped(monkeypatch, tmp_path):
    """The shipped registry and taxonomy, a cache folder of the test's own."""
    monkeypatch.delenv("UNIFIEDSEG_TAXONOMY_DIR", raising=False)
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "mseg_dataset"
    root.mkdir()
    return root


def shipped_lines(name, split):
    return [line.split() for line in read_list_text(shipped_list_path(name, split)).splitlines() if line.strip()]


# ---- 1. states and exit codes --------------------------------------------------------------------
def test_a_complete_split_is_ok_and_exits_0(mini, capsys):
    root, registry = mini
    code, out, _ = status(["--root", root, "--registry", registry, "--datasets", "mini"], capsys)
    assert code == 0
    assert out.splitlines()[0] == f"data root: {root}"
    assert table_line(out, "mini", "train") == ["mini", "train", "ok", "4/4", "4/4", "mini"]
    assert table_line(out, "mini", "val") == ["mini", "val", "ok", "2/2", "2/2", "mini"]
    assert details(out, "mini", "train") == []  # nothing to say about an ok row
    assert out.splitlines()[-1] == "2 of 2 split(s) complete"


def test_an_incomplete_split_names_the_first_missing_file_its_line_and_the_archive(mini, capsys):
    root, registry = mini
    (root / "Mini" / "img" / "train" / "2.png").unlink()
    (root / "Mini" / "lab" / "train" / "3.png").unlink()
    code, rows = json_rows(["--root", root, "--registry", registry, "--datasets", "mini"], capsys)
    assert code == 1
    row = rows["mini", "train"]
    assert (row["state"], row["listed"], row["images"], row["labels"]) == ("incomplete", 4, 3, 3)
    assert row["first_missing"] == f"{root / 'Mini' / 'img' / 'train' / '2.png'} (list line 3)"
    assert row["hint"] == "images: mini_images.zip (example.org); labels: mini_labels.zip (example.org)"
    assert rows["mini", "val"]["state"] == "ok"

    code, out, _ = status(["--root", root, "--registry", registry, "--datasets", "mini"], capsys)
    assert code == 1
    assert table_line(out, "mini", "train") == ["mini", "train", "incomplete", "3/4", "3/4", "mini"]
    assert details(out, "mini", "train") == [
        f"list: registry list {root / 'Mini' / 'list' / 'train.txt'} (from {registry})",
        f"first missing: {root / 'Mini' / 'img' / 'train' / '2.png'} (list line 3)",
        "to do: images: mini_images.zip (example.org); labels: mini_labels.zip (example.org)"]
    assert out.splitlines()[-1] == "1 of 2 split(s) complete; 1 needed split(s) not ready: mini train"

    # only a label missing: it is the first missing file, and the hint is about labels alone
    write_image(root / "Mini" / "img" / "train" / "2.png")
    _, rows = json_rows(["--root", root, "--registry", registry, "--datasets", "mini", "--splits", "train"], capsys)
    row = rows["mini", "train"]
    assert (row["state"], row["images"], row["labels"]) == ("incomplete", 4, 3)
    assert row["first_missing"] == f"{root / 'Mini' / 'lab' / 'train' / '3.png'} (list line 4)"
    assert row["hint"] == "labels: mini_labels.zip (example.org)"


def test_a_split_with_nothing_on_disk_is_missing(mini, capsys):
    root, registry = mini
    shutil.rmtree(root / "Mini" / "img" / "val")
    shutil.rmtree(root / "Mini" / "lab" / "val")
    _, rows = json_rows(["--root", root, "--registry", registry, "--datasets", "mini"], capsys)
    row = rows["mini", "val"]
    assert (row["state"], row["images"], row["labels"]) == ("missing", 0, 0)
    assert row["first_missing"] == f"{root / 'Mini' / 'img' / 'val' / '0.png'} (list line 1)"


def test_an_absent_dataset_folder_is_missing_with_what_brings_it(mini, capsys):
    root, registry = mini
    code, rows = json_rows(["--root", root, "--registry", registry, "--datasets", "gone"], capsys)
    assert code == 1
    row = rows["gone", "train"]
    assert row["state"] == "missing"  # not "no list": its list would be in the folder that is not there
    assert row["first_missing"] == str(root / "Gone")
    assert row["hint"] == (f"Gone/ is not under {root}: images from gone_images.zip (example.org); "
                           f"labels from gone_labels.zip (example.org)")
    assert row["releases_on_disk"] == []


def test_the_overview_exits_0_whatever_is_missing(mini, capsys):
    root, registry = mini
    (root / "Mini" / "img" / "train" / "0.png").unlink()
    code, out, _ = status(["--root", root, "--registry", registry], capsys)
    assert code == 0  # no --datasets: nothing is needed, every row is optional
    assert table_line(out, "gone", "train") == ["gone", "train", "missing (optional)", "0/0", "0/0", "-"]
    assert table_line(out, "mini", "train") == ["mini", "train", "incomplete (optional)", "3/4", "4/4", "mini"]
    assert table_line(out, "mini", "val") == ["mini", "val", "ok (optional)", "2/2", "2/2", "mini"]
    assert out.splitlines()[-1] == "1 of 3 split(s) complete"


def test_an_unknown_dataset_or_split_exits_2_with_the_valid_names(mini, capsys):
    root, registry = mini
    code, out, err = status(["--root", root, "--registry", registry, "--datasets", "minj"], capsys)
    assert (code, out) == (2, "")
    assert err.strip() == "error: unknown dataset 'minj'; did you mean 'mini'?; registered datasets: gone, mini"
    # a split nobody has would otherwise check nothing and exit 0
    code, out, err = status(["--root", root, "--registry", registry, "--datasets", "mini", "--splits", "tarin"], capsys)
    assert (code, out) == (2, "")
    assert err.strip() == "error: no requested dataset has a split 'tarin'; their splits: train, val"
    code, _, err = status(["--root", root / "nowhere", "--registry", registry], capsys)
    assert code == 2 and err.strip() == f"error: data root {root / 'nowhere'} is not a folder (from data.root)"
    # an override is not silently ignored without the config it overrides
    code, _, err = status(["--root", root, "--registry", registry, "--datasets", "mini", "data.root=/elsewhere"], capsys)
    assert code == 2
    assert err.strip() == ("error: config overrides (data.root=/elsewhere) need --config; without one, give the data root "
                           "as --root DIR")


# ---- 2. label releases on disk -------------------------------------------------------------------
def test_another_release_on_disk_is_named_in_the_row_and_the_hint(shipped, capsys):
    image, label = shipped_lines("cityscapes-34", "val")[0]
    assert label.startswith("gtFine/val/")  # the publisher's labelIds, not MSeg's gtFine_19cls/
    folder = shipped / "Cityscapes"
    write_image(folder / image)
    write_label(folder / label, (7, 26, 33))
    code, rows = json_rows(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    assert code == 1 and list(rows) == [("cityscapes-19", "val")]
    row = rows["cityscapes-19", "val"]
    assert (row["state"], row["listed"], row["images"], row["labels"]) == ("incomplete", 500, 1, 0)
    assert row["releases_on_disk"] == ["cityscapes-34"]
    assert row["list_origin"] == "MSeg's list cityscapes-19/val"
    second_image = shipped_lines("cityscapes-19", "val")[1][0]
    assert row["first_missing"] == f"{folder / second_image} (list line 2)"
    assert "labels of cityscapes-34 are on disk, not cityscapes-19's; labels: MSeg's preparation: gtFine_trainvaltest.zip " \
           "labelIds remapped 34 -> 19 (mseg-api remap step) into gtFine_19cls/" in row["hint"]
    assert row["hint"].startswith("images: leftImg8bit_trainvaltest.zip (cityscapes-dataset.com, registration); ")

    code, out, _ = status(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    assert table_line(out, "cityscapes-19", "val") == [
        "cityscapes-19", "val", "incomplete", "1/500", "0/500", "cityscapes-34"]
    # cityscapes-34's own row counts its label
    _, rows = json_rows(["--root", shipped, "--datasets", "cityscapes-34", "--splits", "val"], capsys)
    row = rows["cityscapes-34", "val"]
    assert (row["state"], row["images"], row["labels"], row["releases_on_disk"]) == ("incomplete", 1, 1, ["cityscapes-34"])


# ---- 3. label ids of another release -------------------------------------------------------------
def test_labels_with_ids_of_another_release_are_bad_labels(shipped, capsys):
    image, label = shipped_lines("cityscapes-19", "val")[0]
    assert label.startswith("gtFine_19cls/val/")
    folder = shipped / "Cityscapes"
    write_image(folder / image)
    write_label(folder / label, tuple(range(34)))  # gtFine's 34 labelIds where 19 train ids are expected
    code, rows = json_rows(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    assert code == 1
    row = rows["cityscapes-19", "val"]
    assert (row["state"], row["images"], row["labels"]) == ("bad labels", 1, 1)
    ids = ", ".join(f"{i} (1 px)" for i in range(19, 29))  # the first ten unknown ids are named
    assert row["problem"] == (f"list line 1: {folder / label}: label ids {ids} are outside cityscapes-19's 19 classes "
                              f"(valid: 0-18, and 255 for unlabeled)")
    assert row["hint"].endswith("the label files do not hold cityscapes-19's 19 ids: check the folder its list names "
                                "(MSeg's preparation: gtFine_trainvaltest.zip labelIds remapped 34 -> 19 (mseg-api remap "
                                "step) into gtFine_19cls/)")
    code, out, _ = status(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    assert table_line(out, "cityscapes-19", "val")[2] == "bad labels"
    assert details(out, "cityscapes-19", "val")[:2] == ["list: MSeg's list cityscapes-19/val", f"problem: {row['problem']}"]


def test_a_corrupt_or_out_of_range_label_of_a_complete_split_is_bad_labels(mini, capsys):
    root, registry = mini
    write_label(root / "Mini" / "lab" / "val" / "0.png", (0, 3, 3, 7))
    code, rows = json_rows(["--root", root, "--registry", registry, "--datasets", "mini"], capsys)
    assert code == 1
    row = rows["mini", "val"]
    assert (row["state"], row["images"], row["labels"], row["first_missing"]) == ("bad labels", 2, 2, "")
    assert row["problem"] == (f"list line 1: {root / 'Mini' / 'lab' / 'val' / '0.png'}: label ids 3 (2 px), 7 (1 px) "
                              f"are outside mini's 3 classes (valid: 0-2, and 255 for unlabeled)")
    (root / "Mini" / "lab" / "val" / "0.png").write_bytes(b"not a png")
    _, rows = json_rows(["--root", root, "--registry", registry, "--datasets", "mini"], capsys)
    assert rows["mini", "val"]["state"] == "bad labels"
    assert rows["mini", "val"]["problem"].startswith(f"list line 1: {root / 'Mini' / 'lab' / 'val' / '0.png'}: ")


# ---- 4. a user's list overrides MSeg's -----------------------------------------------------------
def test_a_users_list_overrides_msegs_and_bad_ones_are_no_list(shipped, capsys):
    registry = DatasetRegistry.load()
    info = registry.get("cityscapes-19")
    image, label = shipped_lines("cityscapes-19", "val")[0]
    folder = shipped / "Cityscapes"
    write_image(folder / image)
    write_label(folder / label, (0, 13, 18))
    override = user_list_path(info, "val", shipped)
    assert override == folder / "list" / "cityscapes-19" / "val.txt"
    override.parent.mkdir(parents=True)

    override.write_text(f"{image} {label}\n\n")  # a blank line is no sample
    code, rows = json_rows(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    row = rows["cityscapes-19", "val"]
    assert code == 0
    assert (row["state"], row["listed"], row["images"], row["labels"]) == ("ok", 1, 1, 1)
    assert row["list_origin"] == f"your list {override} (overrides MSeg's)"

    override.write_text("\n")
    code, rows = json_rows(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    row = rows["cityscapes-19", "val"]
    assert code == 1
    assert (row["state"], row["problem"]) == ("no list", f"list file {override} lists no samples")

    override.write_text(f"{image} {label}\n{image} {label} extra\n")
    code, out, _ = status(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    assert code == 1
    assert table_line(out, "cityscapes-19", "val") == ["cityscapes-19", "val", "no list", "?", "?", "-"]
    assert details(out, "cityscapes-19", "val") == [
        "problem: 1 malformed line(s):",
        f"{override}:2: expected 'image_path [label_path]', got 3 field(s): '{image} {label} extra'"]

    # an image alone among labelled lines: the list is wrong, not the data
    override.write_text(f"{image} {label}\n{image}\n")
    _, rows = json_rows(["--root", shipped, "--datasets", "cityscapes-19", "--splits", "val"], capsys)
    row = rows["cityscapes-19", "val"]
    assert row["state"] == "no list"
    assert row["problem"] == (f"{override}:2: expected 'image_path label_path' like the list's other lines, "
                              f"got an image alone")


# ---- 5. image-only test lists --------------------------------------------------------------------
def test_an_image_only_test_list_shows_no_labels_and_is_ok_with_its_images(shipped, capsys):
    lines = shipped_lines("kitti-19", "test")
    assert len(lines) == 200 and all(len(fields) == 1 for fields in lines)
    folder = shipped / "KITTI"
    for (image,) in lines:  # stat calls only: empty files do
        (folder / image).parent.mkdir(parents=True, exist_ok=True)
        (folder / image).touch()
    code, out, _ = status(["--root", shipped, "--datasets", "kitti-19", "--splits", "test"], capsys)
    assert code == 0
    assert table_line(out, "kitti-19", "test") == ["kitti-19", "test", "ok", "200/200", "-", "-"]
    (folder / lines[5][0]).unlink()
    code, rows = json_rows(["--root", shipped, "--datasets", "kitti-19", "--splits", "test"], capsys)
    row = rows["kitti-19", "test"]
    assert code == 1
    assert (row["state"], row["images"], row["labels"]) == ("incomplete", 199, None)
    assert row["first_missing"] == f"{folder / lines[5][0]} (list line 6)"
    assert row["hint"] == "images: data_semantics.zip (cvlibs.net KITTI semantics, registration)"


# ---- 6. COCO's generated train list --------------------------------------------------------------
def test_cocos_train_list_is_generated_sorted_cached_and_reused(shipped, capsys, monkeypatch):
    folder = shipped / "COCOPanoptic"
    index = folder / "annotations" / "panoptic_train2017.json"
    index.parent.mkdir(parents=True)
    stems = ["000000000025", "000000000009", "000000000030"]
    index.write_text(json.dumps({"images": [{"file_name": f"{s}.jpg"} for s in stems], "annotations": [], "categories": []}))
    for stem in stems[:2]:
        write_image(folder / "images" / "train2017" / f"{stem}.jpg")
        write_label(folder / "semantic_annotations133" / "train2017" / f"{stem}.png", (0, 132, 255))
    argv = ["--root", shipped, "--datasets", "coco-panoptic-133", "--splits", "train"]
    cache = shipped.parent / "cache" / "lists" / "coco-panoptic-133"

    # --no-generate: nothing cached yet, so the list is pending and nothing is written
    code, rows = json_rows([*argv, "--no-generate"], capsys)
    row = rows["coco-panoptic-133", "train"]
    assert code == 1 and row["state"] == "no list"
    assert row["problem"] == f"train list generated from {index}: not generated yet (reads {index} on first use)"
    assert row["list_origin"] == f"generated from {index}"
    assert row["hint"] == "run the status command without --no-generate (or start training) to build it"
    assert not cache.exists()

    code, rows = json_rows(argv, capsys)
    row = rows["coco-panoptic-133", "train"]
    assert code == 1
    assert (row["state"], row["listed"], row["images"], row["labels"]) == ("incomplete", 3, 2, 2)
    # sorted by name: 009, 025, 030; the third is the missing one
    assert row["first_missing"] == f"{folder / 'images' / 'train2017' / '000000000030.jpg'} (list line 3)"
    assert row["releases_on_disk"] == ["coco-panoptic-133"]  # -relabeled and -201 lists are not generated
    cached = list(cache.glob("train-*.txt"))
    assert len(cached) == 1
    assert cached[0].read_text() == "".join(f"images/train2017/{s}.jpg semantic_annotations133/train2017/{s}.png\n"
                                            for s in sorted(stems))

    # the cached list is reused: neither the JSON is read again nor --no-generate pending any more
    def no_reading(*args):
        raise AssertionError("the cached list should have been used")

    monkeypatch.setattr(splits_module, "generate_list_lines", no_reading)
    for extra in ([], ["--no-generate"]):
        _, rows = json_rows([*argv, *extra], capsys)
        row = rows["coco-panoptic-133", "train"]
        assert (row["state"], row["listed"]) == ("incomplete", 3)
    monkeypatch.undo()
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(shipped.parent / "cache"))

    # a changed JSON is another cache key: pending again under --no-generate
    index.write_text(json.dumps({"images": [{"file_name": f"{s}.jpg"} for s in stems[:2]]}))
    _, rows = json_rows([*argv, "--no-generate"], capsys)
    assert rows["coco-panoptic-133", "train"]["state"] == "no list"
    _, rows = json_rows(argv, capsys)
    assert (rows["coco-panoptic-133", "train"]["state"], rows["coco-panoptic-133", "train"]["listed"]) == ("ok", 2)
    assert len(list(cache.glob("train-*.txt"))) == 2


def test_a_malformed_or_absent_coco_index_is_a_no_list_row_naming_it(shipped, capsys):
    argv = ["--root", shipped, "--datasets", "coco-panoptic-133", "--splits", "train"]
    index = shipped / "COCOPanoptic" / "annotations" / "panoptic_train2017.json"
    index.parent.mkdir(parents=True)
    code, rows = json_rows(argv, capsys)  # the folder is there, its index is not
    row = rows["coco-panoptic-133", "train"]
    assert (code, row["state"], row["first_missing"]) == (1, "no list", str(index))
    assert row["hint"].startswith("it comes with the labels: MSeg's preparation: panoptic_annotations_trainval2017.zip")

    index.write_text('{"images": [}')
    code, out, _ = status(argv, capsys)
    assert code == 1
    assert table_line(out, "coco-panoptic-133", "train")[2] == "no list"
    assert details(out, "coco-panoptic-133", "train") == [
        f"problem: {index}: malformed JSON at line 1 column 13: Expecting value"]
    index.write_text('{"images": []}')
    _, rows = json_rows(argv, capsys)
    assert rows["coco-panoptic-133", "train"]["problem"] == f"{index}: its 'images' list is empty"


def test_an_absent_coco_folder_is_missing_for_its_generated_list_too(shipped, capsys):
    code, rows = json_rows(["--root", shipped, "--datasets", "coco-panoptic-133", "--splits", "train", "val"], capsys)
    assert code == 1
    assert [(row["split"], row["state"], row["first_missing"]) for row in rows.values()] == [
        ("train", "missing", str(shipped / "COCOPanoptic")), ("val", "missing", str(shipped / "COCOPanoptic"))]


# ---- 7. --config ---------------------------------------------------------------------------------
def test_config_status_lists_what_the_run_needs_and_its_optional_test_data(demo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UNIFIEDSEG_TAXONOMY_DIR", raising=False)
    argv = ["--config", DEMO_CONFIG, f"data.root={demo_root}"]
    code, out, _ = status(argv, capsys)
    assert code == 0
    assert [table_line(out, *key)[:3] for key in [("demo-city", "train"), ("demo-ade", "train"), ("demo-city", "val"),
                                                  ("demo-ade", "val"), ("demo-camvid", "val")]] == [
        ["demo-city", "train [train]", "ok"], ["demo-ade", "train [train]", "ok"], ["demo-city", "val [val]", "ok"],
        ["demo-ade", "val [val]", "ok"], ["demo-camvid", "val [test]", "ok (optional)"]]
    assert table_line(out, "demo-city", "train")[3:] == ["6/6", "6/6", "demo-city"]
    assert out.splitlines()[-1] == "5 of 5 split(s) complete"

    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    image = (root / "demo-ade" / "list" / "train.txt").read_text().split()[0]
    (root / "demo-ade" / image).unlink()
    code, rows = json_rows(["--config", DEMO_CONFIG, f"data.root={root}"], capsys)
    assert code == 1
    assert [(d, s, r["role"], r["required"], r["state"]) for (d, s), r in rows.items()] == [
        ("demo-city", "train", "train", True, "ok"), ("demo-ade", "train", "train", True, "incomplete"),
        ("demo-city", "val", "val", True, "ok"), ("demo-ade", "val", "val", True, "ok"),
        ("demo-camvid", "val", "test", False, "ok")]
    assert rows["demo-ade", "train"]["first_missing"] == f"{root / 'demo-ade' / image} (list line 1)"
    # --datasets adds required rows; a dataset the config already needs is not listed twice
    _, rows = json_rows(["--config", DEMO_CONFIG, "--datasets", "demo-ade", "demo-camvid", "--splits", "train",
                         f"data.root={root}"], capsys)
    assert [(d, r["role"], r["required"]) for (d, _), r in rows.items()] == [
        ("demo-city", "train", True), ("demo-ade", "train", True), ("demo-camvid", "", True)]


# ---- 8. training checks its data before building anything ----------------------------------------
def test_training_stops_with_the_status_table_before_building_the_model(demo_root, tmp_path, capsys, monkeypatch):
    from unifiedseg.cli import train as train_cli
    from unifiedseg.engine import launch

    monkeypatch.delenv("UNIFIEDSEG_TAXONOMY_DIR", raising=False)
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    image = (root / "demo-city" / "list" / "train.txt").read_text().splitlines()[2].split()[0]
    (root / "demo-city" / image).unlink()

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built although the data is incomplete")

    monkeypatch.setattr(launch, "build_model_for", no_model)
    work_dir = tmp_path / "run"
    # data.generate_demo=false: with it the demo generator would notice the missing file and regenerate it
    code = train_cli.main(["--config", DEMO_CONFIG, f"work_dir={work_dir}", f"data.root={root}",
                           "data.generate_demo=false", "data.num_workers=0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "error: the data this run needs is not complete (unifiedseg-data status shows the same):" in err
    assert re.search(r"^demo-city\s+train \[train\]\s+incomplete\s+5/6\s+6/6\s+demo-city$", err, re.M), err
    assert f"    first missing: {root / 'demo-city' / image} (list line 3)" in err
    assert "1 needed split(s) not ready: demo-city train" in err
    assert not (root / "demo-city" / image).exists()  # not regenerated behind the user's back
    assert not list(work_dir.rglob("*.pth")) and not (work_dir / "checkpoints").exists()


def test_require_data_passes_a_complete_run_and_ignores_optional_rows(mini):
    root, registry_file = mini
    registry = DatasetRegistry.load(extra_files=[registry_file], include_shipped=False)
    require_data(registry, root, [SplitRequest("mini", "train"), SplitRequest("gone", "train", required=False)],
                 progress=False)
    with pytest.raises(DataNotReadyError, match=r"(?s)gone\s+train\s+missing.*first missing: .*Gone"):
        require_data(registry, root, [SplitRequest("gone", "train")], progress=False)


# ---- 9. --json -----------------------------------------------------------------------------------
def test_json_has_one_row_per_split_with_every_field(mini, capsys):
    root, registry = mini
    code, out, _ = status(["--root", root, "--registry", registry, "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    assert document["root"] == str(root)
    assert [(row["dataset"], row["split"]) for row in document["splits"]] == [
        ("gone", "train"), ("mini", "train"), ("mini", "val")]
    assert set(document["splits"][1]) == {"dataset", "split", "state", "required", "role", "list_origin", "listed", "images",
                                          "labels", "releases_on_disk", "first_missing", "problem", "hint"}
    mini_train = document["splits"][1]
    assert (mini_train["state"], mini_train["required"], mini_train["listed"], mini_train["images"],
            mini_train["labels"], mini_train["releases_on_disk"]) == ("ok", False, 4, 4, 4, ["mini"])


def test_the_splits_of_one_absent_folder_share_their_explanation(mini):
    root, registry_file = mini
    registry = DatasetRegistry.load(extra_files=[registry_file], include_shipped=False)
    shutil.rmtree(root / "Mini")
    (root / "Mini" / "list").mkdir(parents=True)
    rows = data_status(registry, root, [SplitRequest("mini", "train"), SplitRequest("mini", "val")], progress=False)
    # the folder is there, its lists are not
    assert [(row.state, row.problem) for row in rows] == [
        ("no list", f"list file {root / 'Mini' / 'list' / 'train.txt'} does not exist"),
        ("no list", f"list file {root / 'Mini' / 'list' / 'val.txt'} does not exist")]
    shutil.rmtree(root / "Mini")
    rows = data_status(registry, root, [SplitRequest("mini", "train"), SplitRequest("mini", "val")], progress=False)
    text = format_status(rows, root)
    assert [row.state for row in rows] == ["missing", "missing"]
    assert text.splitlines()[-3:] == ["mini     val    missing  0/0     0/0     -", "    (as above)",
                                      "0 of 2 split(s) complete; 2 needed split(s) not ready: mini train, mini val"]


def test_finding_releases_reads_one_line_of_the_other_lists(shipped, monkeypatch):
    """Every split of a folder with several releases (Cityscapes has four) reads its own list whole and
    only the first line of the others: an overview of a full MSeg root stays quick."""
    import unifiedseg.data.status as status_module

    image, label = shipped_lines("cityscapes-34", "val")[0]
    write_image(shipped / "Cityscapes" / image)
    write_label(shipped / "Cityscapes" / label, (7, 26))
    whole = []
    real_read_list = status_module.read_list
    monkeypatch.setattr(status_module, "read_list",
                        lambda path, *args, **kwargs: whole.append(path) or real_read_list(path, *args, **kwargs))
    registry = DatasetRegistry.load()
    rows = data_status(registry, shipped, [SplitRequest("cityscapes-19", "val")], progress=False)
    assert rows[0].releases_on_disk == ["cityscapes-34"]
    assert whole == [shipped_list_path("cityscapes-19", "val")]
    # an absent folder has no release to look for
    whole.clear()
    rows = data_status(registry, shipped, [SplitRequest("kitti-19", "val")], progress=False)
    assert (rows[0].state, rows[0].releases_on_disk, whole) == ("missing", [], [shipped_list_path("kitti-19", "val")])


def test_the_first_entry_of_a_list_without_reading_the_rest(tmp_path):
    path = tmp_path / "val.txt"
    path.write_text("\n  \na.png b.png\nc.png d.png e.png\n")  # line 4 is malformed but never read
    first = read_first_entry(path, tmp_path)
    assert (first.image, first.label, first.line) == (tmp_path / "a.png", tmp_path / "b.png", 3)
    assert read_first_entry(shipped_list_path("kitti-19", "test"), tmp_path).label is None  # .xz, image-only
    path.write_text("\n")
    assert read_first_entry(path, tmp_path) is None
    path.write_text("a b c\n")
    with pytest.raises(ListFileError, match=r"val.txt:1: expected 'image_path \[label_path\]', got 3 field\(s\): 'a b c'"):
        read_first_entry(path, tmp_path)
    with pytest.raises(ListFileError, match=r"list file .*none.txt does not exist"):
        read_first_entry(tmp_path / "none.txt", tmp_path)
    (tmp_path / "bad.txt.xz").write_bytes(b"not xz")
    with pytest.raises(ListFileError, match=r"bad.txt.xz is not a valid .xz file"):
        read_first_entry(tmp_path / "bad.txt.xz", tmp_path)
