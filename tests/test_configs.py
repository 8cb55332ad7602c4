"""Every shipped config loads and its sections build; each training-trick example runs on the demo data."""

import json
from pathlib import Path

import pytest

from unifiedseg.config import load_config, to_plain
from unifiedseg.engine.launch import run_training
from unifiedseg.utils.precision import resolve_amp
from unifiedseg.losses import build_losses
from unifiedseg.optim import check_optimizer_cfg, check_schedule_cfg
from unifiedseg.taxonomy import build_converter

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (REPO / "config" / "train").rglob("*.yaml") if "_base_" not in p.parts)
MSEG_CONFIGS = [p for p in CONFIGS if p.parent.name in ("480", "720", "1080")]
EXAMPLES = sorted((REPO / "config" / "train" / "examples").glob("*.yaml"))


def test_every_resolution_has_the_five_mseg_configs():
    for resolution in ("480", "720", "1080"):
        names = sorted(p.name for p in MSEG_CONFIGS if p.parent.name == resolution)
        assert names == ["mseg-naive.yaml", "mseg-unrelabeled.yaml", "mseg.yaml", "single_oracle.yaml",
                         "single_universal.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "config" / "train")))
def test_config_loads_and_its_sections_build(path, tmp_path, monkeypatch):
    cfg = load_config(path)
    assert resolve_amp(cfg.train.amp, cfg.train.opt_level) in ("off", "fp16", "bf16")  # `amp: off` is YAML false
    monkeypatch.chdir(tmp_path)  # class-weight files are read relative to the working directory
    (tmp_path / "work_dirs").mkdir()
    (tmp_path / "work_dirs" / "demo_stats.json").write_text(json.dumps({"class_weight": {"median": [1.0] * 9}}))
    crop = {"480": 473, "720": 593, "1080": 713}.get(path.parent.name)
    if crop:
        assert list(cfg.data.augmentation.crop_size) == [crop, crop]
        assert cfg.data.augmentation.short_side == int(path.parent.name)
        assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.9, 0.0001)
        assert (cfg.schedule.policy, cfg.schedule.power) == ("poly", 0.9)
    converter = build_converter(cfg.taxonomy.kind, cfg.taxonomy.tsv, list(cfg.data.train_datasets), [])
    if path.name == "mseg-naive.yaml":  # MSeg's 7 unrelabeled datasets: 350 names, uint16 label maps
        assert (converter.num_classes, converter.ignore_index) == (350, 65535)
    loss = to_plain(cfg.loss)
    losses = build_losses(loss["loss_decode"], converter.num_classes, sampler=loss.get("sampler"),
                          ignore_index=converter.ignore_index)
    assert {term.ignore_index for term in losses.losses} == {converter.ignore_index}
    check_optimizer_cfg(to_plain(cfg.optimizer))
    check_schedule_cfg(to_plain(cfg.schedule), cfg.train.max_iters or 100000)


@pytest.mark.filterwarnings("error:.*matches no parameter")  # a custom key that does nothing is a bug
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_training_trick_examples_run(path, demo_root, tmp_path):
    overrides = [f"work_dir={tmp_path / 'run'}", f"data.root={demo_root}", "data.generate_demo=false",
                 "data.batch_size=2", "data.num_workers=0", "data.augmentation.short_side=64",
                 "data.augmentation.crop_size=[64, 64]", "data.val.max_images=1", "data.val.interval=0",
                 "train.max_iters=3", "train.checkpoint_interval=0"]
    cfg = load_config(path)
    if cfg.schedule.get("warmup"):
        overrides.append("schedule.warmup_iters=1")
    if cfg.schedule.policy == "step":
        overrides.append("schedule.milestones=[1, 2]")
    if cfg.swa:
        overrides += ["swa.start_iter=1", "swa.anneal_iters=1"]
    if "class_weight" in json.dumps(to_plain(cfg.loss)):
        stats = tmp_path / "stats.json"
        stats.write_text(json.dumps({"class_weight": {"median": [1.0 + i / 10 for i in range(9)]}}))
        overrides.append(f"loss.loss_decode.class_weight={stats}:median")
    metrics = run_training(load_config(path, overrides))
    assert 0 <= metrics["miou"] <= 1
    log = (tmp_path / "run" / "log.jsonl").read_text()
    decode = to_plain(cfg.loss)["loss_decode"]
    for entry in decode if isinstance(decode, list) else [decode]:
        assert f'"{DEFAULT_NAMES[entry["type"]]}"' in log  # each loss is logged by name
    if to_plain(cfg.loss).get("sampler"):
        assert '"ohem_kept"' in log


DEFAULT_NAMES = {"CrossEntropyLoss": "loss_ce", "DiceLoss": "loss_dice", "LovaszLoss": "loss_lovasz",
                 "FocalLoss": "loss_focal", "PartialLabelLoss": "loss_partial"}
