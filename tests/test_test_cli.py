"""tools/test.py: zero-shot and in-domain evaluation of a tiny trained model on the demo data, the files
it writes, and its errors for bad input."""

import json
import shutil
from pathlib import Path

import pytest

from unifiedseg.cli import test as test_cli
from unifiedseg.config import load_config
from unifiedseg.engine.launch import run_training

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "train" / "demo" / "unified.yaml"


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("tiny_unified")
    overrides = [f"work_dir={work_dir}", f"data.root={demo_root}", "data.generate_demo=false", "data.batch_size=2",
                 "data.num_workers=0", "data.augmentation.short_side=64", "data.augmentation.crop_size=[64, 64]",
                 "data.val.max_images=1", "train.max_iters=2", "schedule.warmup_iters=1"]
    run_training(load_config(CONFIG, overrides))
    config = work_dir / "config.yaml"  # the resolved config of the run
    return config, work_dir / "checkpoints" / "final.pth"


def test_zero_shot_and_in_domain_results(trained, demo_root, tmp_path, capsys):
    config, checkpoint = trained
    out = tmp_path / "out"
    code = test_cli.main(["--config", str(config), "--checkpoint", str(checkpoint), "--datasets", "demo-camvid",
                          "demo-city", "--root", str(demo_root), "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    camvid, city = results["datasets"]["demo-camvid"], results["datasets"]["demo-city"]
    assert camvid["space"] == "test classes" and camvid["images"] == 4
    names = (REPO / "taxonomy" / "dataset_lists" / "demo-camvid" / "demo-camvid_names.txt").read_text().split("\n")
    assert list(camvid["class_iou"]) == [n for n in names if n]  # scored in demo-camvid's own classes
    assert city["space"] == "unified"
    assert 0 <= results["harmonic_mean_miou"] <= 1
    assert (out / "results.md").exists() and (out / "results.csv").read_text().startswith("dataset,space,images")
    printed = capsys.readouterr().out
    assert "demo-camvid" in printed and "mIoU" in printed


def test_the_config_inference_section_sets_the_protocol_and_flags_override_it(trained, demo_root, tmp_path):
    config, checkpoint = trained
    slide = tmp_path / "slide.yaml"  # the run's config with MSeg-style test settings
    slide.write_text(f"_base_: {config}\n"
                     "inference: {mode: slide, crop_size: 32, scales: [0.75, 1.0], flip: true, window: uniform}\n")
    common = ["--checkpoint", str(checkpoint), "--datasets", "demo-camvid", "--root", str(demo_root), "--max-images", "1"]
    assert test_cli.main(["--config", str(slide), "--out", str(tmp_path / "a")] + common) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert (results["mode"], results["crop_size"], results["stride"], results["scales"], results["flip"],
            results["window"]) == ("slide", [32, 32], [22, 22], [0.75, 1.0], True, "uniform")
    assert test_cli.main(["--config", str(slide), "--out", str(tmp_path / "b"), "--mode", "whole", "--no-flip",
                          "--scales", "1.0"] + common) == 0
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert (results["mode"], results["crop_size"], results["stride"], results["scales"], results["flip"],
            results["window"]) == ("whole", None, None, [1.0], False, "uniform")


def test_dataset_outside_the_taxonomy_is_named(trained, demo_root, capsys):
    config, checkpoint = trained
    code = test_cli.main(["--config", str(config), "--checkpoint", str(checkpoint), "--datasets", "cityscapes-19",
                          "--root", str(demo_root)])
    assert code == 2
    assert "neither a test column of taxonomy demo" in capsys.readouterr().err


def test_checkpoint_of_another_taxonomy_is_refused(trained, demo_root, tmp_path, capsys):
    config, checkpoint = trained
    naive = tmp_path / "naive.yaml"
    naive.write_text(config.read_text().replace("kind: unified", "kind: naive"))
    code = test_cli.main(["--config", str(naive), "--checkpoint", str(checkpoint), "--datasets", "demo-camvid",
                          "--root", str(demo_root), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "was trained on taxonomy unified" in err and "naive" in err


def test_missing_list_and_unreadable_image(trained, demo_root, tmp_path, capsys):
    config, checkpoint = trained
    root = tmp_path / "data"
    shutil.copytree(demo_root / "demo-camvid", root / "demo-camvid")
    common = ["--config", str(config), "--checkpoint", str(checkpoint), "--datasets", "demo-camvid", "--root", str(root),
              "--out", str(tmp_path / "out")]
    list_file = next((root / "demo-camvid").rglob("val.txt"))
    first_image = root / "demo-camvid" / list_file.read_text().split()[0]
    first_image.write_bytes(b"broken")
    assert test_cli.main(common) == 2
    assert str(first_image) in capsys.readouterr().err
    assert test_cli.main(common + ["--skip-bad"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["datasets"]["demo-camvid"]["skipped"] == 1 and results["datasets"]["demo-camvid"]["images"] == 3
    list_file.unlink()
    assert test_cli.main(common) == 2
    assert f"list file {list_file} does not exist" in capsys.readouterr().err
