"""The status command and training on the publishers' files (data.label_source=raw)."""

import json

import pytest

import raw_trees
from unifiedseg.cli import data as data_cli


@pytest.fixture
def raw_root(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "mseg_dataset"
    raw_trees.build(root, ("cityscapes", "idd"))
    return root


def status(root, *args, capsys):
    code = data_cli.main(["status", "--root", str(root), "--no-progress", "--json", *args])
    return code, {(row["dataset"], row["split"]): row for row in json.loads(capsys.readouterr().out)["splits"]}


def test_raw_status_checks_the_publishers_files(raw_root, capsys):
    datasets = ["cityscapes-19-relabeled", "idd-39-relabeled"]
    code, rows = status(raw_root, "--label-source", "raw", "--datasets", *datasets, "--splits", "train", "val",
                        capsys=capsys)
    assert code == 0, rows
    idd = rows["idd-39-relabeled", "train"]
    assert idd["state"] == "ok" and idd["labels"] == idd["listed"] > 0
    assert "raw: idd-40's files" in idd["list_origin"]
    # raw IDD labels are its polygon JSONs: one removed is the first missing file
    json_file = next((raw_root / "IDD" / "IDD_Segmentation" / "gtFine" / "train").rglob("*_polygons.json"))
    json_file.unlink()
    code, rows = status(raw_root, "--label-source", "raw", "--datasets", "idd-39-relabeled", "--splits", "train",
                        capsys=capsys)
    assert code == 1
    assert rows["idd-39-relabeled", "train"]["state"] == "incomplete"
    assert str(json_file) in rows["idd-39-relabeled", "train"]["first_missing"]


def test_prepared_status_of_a_raw_tree_says_which_release_is_there(raw_root, capsys):
    code, rows = status(raw_root, "--datasets", "cityscapes-19", "--splits", "train", capsys=capsys)
    assert code == 1
    row = rows["cityscapes-19", "train"]
    assert row["state"] == "missing" or row["state"] == "incomplete"
    assert "cityscapes-34" in row["releases_on_disk"]
    assert "labels of cityscapes-34" in row["hint"]


def test_training_reads_the_publishers_files(raw_root, tmp_path):
    """One step of MSeg's unified taxonomy on raw Cityscapes and IDD: polygons rasterised, records applied."""
    from unifiedseg.cli import train as train_cli

    work_dir = tmp_path / "run"
    code = train_cli.main([
        "--config", "config/train/demo/city.yaml", f"work_dir={work_dir}", f"data.root={raw_root}",
        "data.generate_demo=false", "taxonomy.tsv=mseg", "data.train_datasets=[cityscapes-19-relabeled,idd-39-relabeled]",
        "data.label_source=raw", "data.num_workers=0", "data.batch_size=2", "train.max_iters=1",
        "schedule.warmup_iters=1", "train.checkpoint_interval=0", "data.val.max_images=1", "data.val.interval=0"])
    assert code == 0
    metrics = json.loads((work_dir / "final_metrics.json").read_text())
    assert set(metrics["datasets"]) == {"cityscapes-19-relabeled", "idd-39-relabeled"}
    assert "  label_source: raw\n" in (work_dir / "config.yaml").read_text()
    # tools/test.py on the same raw files (the run's resolved config says label_source: raw)
    from unifiedseg.cli import test as test_cli

    assert test_cli.main(["--config", str(work_dir / "config.yaml"), "--checkpoint", str(work_dir / "checkpoints" / "final.pth"),
                          "--datasets", "idd-39-relabeled", "--root", str(raw_root), "--label-source", "raw",
                          "--device", "cpu", "--out", str(tmp_path / "test")]) == 0
    results = json.loads((tmp_path / "test" / "results.json").read_text())
    assert results["datasets"]["idd-39-relabeled"]["images"] > 0


def test_data_tools_read_raw_files(raw_root, capsys):
    from unifiedseg.cli import dataset_stats as stats_cli
    from unifiedseg.cli import verify_dataset as verify_cli

    out = raw_root / "stats.json"
    assert stats_cli.main(["--datasets", "cityscapes-19-relabeled", "--root", str(raw_root), "--label-source", "raw",
                           "--out", str(out)]) == 0
    stats = json.loads(out.read_text())["datasets"]["cityscapes-19-relabeled"]
    names = stats["classes"]
    assert stats["pixels"][names.index("bicyclist")] > 0  # rider polygons relabeled by MSeg's records
    capsys.readouterr()
    assert verify_cli.main(["--dataset", "idd-39-relabeled", "--root", str(raw_root), "--label-source", "raw"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("idd-39-relabeled train: ") and last.endswith(" good, 0 bad")


def test_an_unknown_label_source_is_refused_before_anything_is_built(tmp_path, capsys):
    from unifiedseg.cli import train as train_cli

    code = train_cli.main(["--config", "config/train/demo/city.yaml", f"work_dir={tmp_path / 'run'}",
                           "data.label_source=rwa"])
    assert code != 0
    assert "city.yaml: data.label_source: must be one of prepared, raw, got 'rwa'; did you mean 'raw'?" \
        in capsys.readouterr().err


def test_raw_mode_maps_a_datasets_own_list_onto_the_publishers_files(raw_root):
    """COCO's val_small has no raw list of its own, and a user's own list of a relabeled dataset names
    its images: each image takes its label file from the raw entry's lists."""
    from unifiedseg.data.labels import read_entries
    from unifiedseg.data.listfile import ListFileError
    from unifiedseg.data.registry import DatasetRegistry
    from unifiedseg.data.splits import user_list_path

    registry = DatasetRegistry.load()
    info = registry.get("cityscapes-19-relabeled")
    raw = read_entries(info, "train", raw_root, "raw")
    mine = user_list_path(info, "train", raw_root)
    mine.parent.mkdir(parents=True, exist_ok=True)
    first = raw[-1].image.relative_to(raw_root / "Cityscapes")
    mine.write_text(f"{first} gtFine_19cls_relabeled/whatever.png\n")
    entries = read_entries(info, "train", raw_root, "raw")
    assert [(e.image, e.label, e.line) for e in entries] == [(raw[-1].image, raw[-1].label, 1)]
    mine.write_text("leftImg8bit/train/nowhere/x.png y.png\n")
    with pytest.raises(ListFileError, match=r"dataset cityscapes-19-relabeled split train: list line 1 names .*x.png, "
                                            r"which no list of cityscapes-34"):
        read_entries(info, "train", raw_root, "raw")
    # COCO's val_small: MSeg lists it for 133(-relabeled) only; its images' panoptic PNGs come from the val list
    coco = read_entries(registry.get("coco-panoptic-133-relabeled"), "val_small", raw_root, "raw")
    folder = raw_root / "COCOPanoptic"
    assert len(coco) == 300
    assert (coco[0].image.relative_to(folder).as_posix(), coco[0].label.relative_to(folder).as_posix()) == (
        "images/val2017/000000000139.jpg", "annotations/panoptic_val2017/000000000139.png")


def test_raw_status_checks_the_files_relabel_segments_come_from(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setenv("UNIFIEDSEG_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "mseg_dataset"
    raw_trees.build(root, ("ade20k",))
    args = ("--label-source", "raw", "--datasets", "ade20k-150-relabeled", "--splits", "train")
    code, rows = status(root, *args, capsys=capsys)
    assert code == 0 and rows["ade20k-150-relabeled", "train"]["state"] == "ok"
    shutil.rmtree(root / "ADE20K" / "ADE20K_2016_07_26")  # the full release (instance masks) not unpacked
    code, rows = status(root, *args, capsys=capsys)
    row = rows["ade20k-150-relabeled", "train"]
    assert code == 1 and row["state"] == "incomplete"
    assert "_seg.png (list line" in row["first_missing"] and "ADE20K_2016_07_26.zip" in row["hint"]
    # the unrelabeled dataset reads no segments: still complete
    code, rows = status(root, "--label-source", "raw", "--datasets", "ade20k-150", "--splits", "train", capsys=capsys)
    assert code == 0
