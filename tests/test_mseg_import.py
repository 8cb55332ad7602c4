"""MSeg's released models: HRNetV2's MSeg options, tools/import_checkpoint.py --format mseg (exact logits
against an independent re-implementation of MSeg's HRNet, tests/mseg_hrnet_reference.py; the fold; the
refusals; the key report), the official ImageNet HRNet files (their classification head expected), the
config/mseg_zoo configs, and the imported checkpoint in tools/test.py, demo.py, export.py, Predictor
and fine-tuning (train.load_from, and its precedence under resume)."""

import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from checkpoint_fixtures import one_thread  # noqa: F401  (autouse: small models run on one thread)
from mseg_hrnet_reference import IMAGENET_HEAD_PREFIXES, MSegHRNet, normalise, randomized, save_mseg_checkpoint
from unifiedseg.cli import demo as demo_cli
from unifiedseg.cli import export as export_cli
from unifiedseg.cli import test as test_cli
from unifiedseg.cli.import_checkpoint import main as import_main
from unifiedseg.config import load_config
from unifiedseg.config.builders import training_converter
from unifiedseg.config.inference import inference_settings
from unifiedseg.engine.checkpoint import CheckpointError, load_checkpoint
from unifiedseg.engine.launch import run_training
from unifiedseg.engine.trainer import Hook
from unifiedseg.config.inference import InferenceSettings
from unifiedseg.inference import Predictor
from unifiedseg.models import HRNetV2Seg, build_model, load_pretrained
from unifiedseg.models.backbones import backbone_family
from unifiedseg.models.mseg_checkpoint import convert_mseg_state

REPO = Path(__file__).resolve().parent.parent
ZOO = sorted((REPO / "config" / "mseg_zoo").glob("*.yaml"))
DEMO_CONFIG = REPO / "config" / "train" / "demo" / "unified.yaml"
MSEG_MODEL = [f"model.{key}={str(value).lower()}" for key, value in HRNetV2Seg.MSEG_OPTIONS.items()]
# A zoo config with a small backbone, predicting whole images at their size (Predictor's own defaults).
WHOLE = ["model.backbone=hrnet_w18_small", "inference.mode=whole", "inference.short_side=null",
         "inference.crop_size=null", "inference.stride=null", "inference.flip=false"]


def zoo_config(name="mseg-3m", *overrides):
    return load_config(REPO / "config" / "mseg_zoo" / f"{name}.yaml", [*WHOLE, *overrides])


def image(size, seed=0):
    return torch.randint(0, 256, (1, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def imported(tmp_path, config, reference, name="imported.pth", *, bare=False):
    """Save `reference` as MSeg does, import it with the CLI for `config` (a path); the output path."""
    source, out = tmp_path / f"mseg_{name}", tmp_path / name
    save_mseg_checkpoint(reference, source, bare=bare)
    assert import_main(["--format", "mseg", "--config", str(config), str(source), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def reference():
    """MSeg's HRNet-W18-small with 194 classes and random weights."""
    torch.manual_seed(0)
    return randomized(MSegHRNet("hrnet_w18_small", 194))


@pytest.fixture(scope="module")
def zoo_small(tmp_path_factory):
    """config/mseg_zoo/mseg-3m.yaml with an HRNet-W18-small, as a file (the tools take a path)."""
    path = tmp_path_factory.mktemp("zoo") / "mseg-3m-small.yaml"
    path.write_text(f"_base_: {REPO / 'config' / 'mseg_zoo' / 'mseg-3m.yaml'}\nmodel: {{backbone: hrnet_w18_small}}\n")
    return path


@pytest.fixture(scope="module")
def demo_mseg(demo_root, tmp_path_factory):
    """The demo config with MSeg's HRNet options, and an MSeg-format model of its classes imported for it."""
    folder = tmp_path_factory.mktemp("demo_mseg")
    config = folder / "demo-mseg.yaml"
    options = "\n".join(f"  {o.split('=')[0].split('.')[1]}: {o.split('=')[1]}" for o in MSEG_MODEL)
    config.write_text(f"_base_: {DEMO_CONFIG}\nwork_dir: {folder / 'run'}\nmodel:\n{options}\n"
                      f"data:\n  root: {demo_root}\n  generate_demo: false\n")
    classes = training_converter(load_config(config)).num_classes
    torch.manual_seed(2)
    reference = randomized(MSegHRNet("hrnet_w18_small", classes))
    return config, imported(folder, config, reference), reference


# ---- HRNetV2's options -----------------------------------------------------------------------------------


def test_hrnet_options_default_to_timm_and_msegs_set_fusion_padding_bias_and_momentum():
    default = HRNetV2Seg(backbone="hrnet_w18_small", num_classes=3)
    assert (default.size_multiple, default.logits_align_corners, default.fuse[0].bias) == (32, False, None)
    assert type(default.backbone.stage2[0]).__name__ == "HighResolutionModule"
    mseg = HRNetV2Seg(backbone="hrnet_w18_small", num_classes=3, **HRNetV2Seg.MSEG_OPTIONS)
    assert (mseg.size_multiple, mseg.logits_align_corners, mseg.fuse[0].bias.shape) == (1, True, (240,))
    assert type(mseg.backbone.stage4[0]).__name__ == "BilinearFuseModule"
    assert not any(isinstance(m, nn.Upsample) for m in mseg.modules())
    assert {m.momentum for m in mseg.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
    assert sorted(mseg.state_dict()) == sorted([*default.state_dict(), "fuse.0.bias"])  # same names otherwise
    with pytest.raises(ValueError, match="fuse_upsampling: 'cubic' is unknown; valid: nearest, bilinear"):
        HRNetV2Seg(backbone="hrnet_w18_small", num_classes=3, fuse_upsampling="cubic")
    with pytest.raises(ValueError, match=r"bn_momentum: must be a number in \(0, 1\]"):
        build_model({"type": "hrnet", "backbone": "hrnet_w18_small", "num_classes": 3, "bn_momentum": 2})


def test_nearest_fusion_or_padding_gives_other_logits_than_msegs(reference):
    """Why the options exist: MSeg's weights in timm's HRNet (nearest fusion, padding to 32) disagree."""
    config = zoo_config("mseg-3m", "model.fuse_upsampling=nearest", "model.logits_align_corners=false")
    state = {k: v for k, v in reference.state_dict().items()}
    network = build_model({**dict(config.model), "num_classes": 194, "pretrained": None})
    weights, _ = convert_mseg_state(state, network)
    network.load_state_dict(weights)
    from unifiedseg.models import Segmentor

    batch = image((129, 129))
    with torch.no_grad():
        agreement = (Segmentor(network=network.eval()).predict_logits(batch).argmax(1)
                     == reference(normalise(batch)).argmax(1)).float().mean()
    assert agreement < 0.9


# ---- exactness --------------------------------------------------------------------------------------------


def test_imported_model_gives_msegs_logits_and_probabilities_at_713(demo_mseg):
    config, checkpoint, reference = demo_mseg
    predictor = Predictor(config, checkpoint, device="cpu", mode="whole")
    batch = image((713, 713))
    with torch.no_grad():
        expected = reference(normalise(batch))
        got = predictor.models[0].predict_logits(batch)
    assert got.shape == expected.shape == (1, predictor.num_classes, 713, 713)
    assert (got - expected).abs().max() <= 1e-5
    probs = predictor.predict(batch[0].permute(1, 2, 0).numpy()).probs
    assert np.abs(probs - expected[0].softmax(0).numpy()).max() <= 1e-5


def test_a_bare_state_dict_imports_the_same_and_the_fold_is_exact_in_eval_mode(tmp_path, reference, zoo_small):
    with_bias = load_checkpoint(imported(tmp_path, zoo_small, reference, "with_bias.pth", bare=True))
    assert with_bias["imported"]["format"] == "mseg"
    state = reference.state_dict()
    assert torch.equal(with_bias["model"]["fuse.0.bias"], state["last_layer.0.bias"])
    assert state["last_layer.0.bias"].abs().min() > 0

    config = zoo_config("mseg-3m", "model.head_conv_bias=false")  # no bias: it folds into the BatchNorm
    network = build_model({**dict(config.model), "num_classes": 194, "pretrained": None})
    weights, report = convert_mseg_state(dict(state), network)
    assert [f for f in report.fates if f.fate == "folded"][0].target == "fuse.1.running_mean"
    assert torch.equal(weights["fuse.1.running_mean"], state["last_layer.1.running_mean"] - state["last_layer.0.bias"])
    network.load_state_dict(weights)
    network.eval()
    features = torch.randn(2, 240, 9, 11)
    with torch.no_grad():
        folded = network.fuse[1](network.fuse[0](features))
        biased = reference.last_layer[1](reference.last_layer[0](features))
        assert (folded - biased).abs().max() <= 1e-5
        from unifiedseg.models import Segmentor

        batch = image((129, 97))
        assert (Segmentor(network=network).predict_logits(batch) - reference(normalise(batch))).abs().max() <= 1e-5


def test_w48_with_msegs_key_count_imports_with_the_zoo_config_and_the_imagenet_head_is_expected(tmp_path):
    torch.manual_seed(1)
    reference = randomized(MSegHRNet("hrnet_w48", 194))
    state = reference.state_dict()
    assert len(state) == 1839 and len([k for k in state if not k.startswith("last_layer.")]) == 1830  # MODEL.md
    assert round(sum(p.numel() for p in reference.parameters()) / 1e6, 2) == 65.99
    out = imported(tmp_path, REPO / "config" / "mseg_zoo" / "mseg-3m.yaml", reference)
    report = (tmp_path / "imported.pth.import.txt").read_text().splitlines()
    assert "1839 keys, 1839 loaded; 194 classes" in report[0] and len(report) == 1840
    assert "last_layer.3.weight -> loaded as classifier.weight" in report
    assert "stage4.2.fuse_layers.0.3.0.weight -> loaded as backbone.stage4.2.fuse_layers.0.3.0.weight" in report
    predictor = Predictor(zoo_config("mseg-3m", "model.backbone=hrnet_w48"), out, device="cpu", mode="whole")
    batch = image((65, 81))
    with torch.no_grad():
        assert (predictor.models[0].predict_logits(batch) - reference(normalise(batch))).abs().max() <= 1e-5

    # The official ImageNet file (timm's names are its names): the backbone loads fully, the head is expected.
    classification = timm.create_model("hrnet_w48", pretrained=False).state_dict()
    head = [k for k in classification if k.startswith(IMAGENET_HEAD_PREFIXES)]
    assert len(head) == 126 and len(classification) - len(head) == 1830  # MODEL.md
    assert {k for k in classification if k not in head} == {k for k in state if not k.startswith("last_layer.")}


def test_official_imagenet_weights_load_strictly_with_their_classification_head_reported(tmp_path):
    classification = timm.create_model("hrnet_w18_small", pretrained=False)
    path = tmp_path / "hrnet_w18_small_imagenet.pth"
    torch.save(classification.state_dict(), path)
    head = [k for k in classification.state_dict() if k.startswith(IMAGENET_HEAD_PREFIXES)]
    model = HRNetV2Seg(backbone="hrnet_w18_small", num_classes=3, **HRNetV2Seg.MSEG_OPTIONS)
    report = load_pretrained(model.backbone, path, strict=True,
                             classifier_prefixes=backbone_family("hrnet").classifier_prefixes)
    assert report.loaded_fraction == 1.0 and not report.missing_keys and not report.unexpected_keys
    assert sorted(report.classifier_keys) == sorted(head) and len(head) > 0
    assert f"{len(head)} ImageNet classification-head tensors left out (expected)" in report.summary()
    built = build_model({"type": "hrnet", "backbone": "hrnet_w18_small", "num_classes": 3, "pretrained": str(path)})
    assert built.pretrained_report.classifier_keys == report.classifier_keys
    assert torch.equal(built.backbone.stage4[0].branches[3][0].conv1.weight,
                       classification.stage4[0].branches[3][0].conv1.weight)


# ---- refusals and the report --------------------------------------------------------------------------


def test_files_that_are_not_an_msegs_hrnet_of_the_configs_classes_and_width_are_refused(tmp_path, zoo_small, capsys):
    def refused(obj, name):
        path = tmp_path / name
        torch.save(obj, path)
        code = import_main(["--format", "mseg", "--config", str(zoo_small), str(path), str(tmp_path / "out.pth")])
        assert code == 2 and not (tmp_path / "out.pth").exists()
        return capsys.readouterr().err

    imagenet = timm.create_model("hrnet_w18_small", pretrained=False).state_dict()
    err = refused(imagenet, "imagenet.pth")
    assert "is not an MSeg HRNet checkpoint: expected MSeg's HRNet keys" in err
    assert "last_layer.0.weight, last_layer.1.running_mean, last_layer.3.weight are absent" in err
    assert "of which not MSeg's: incre_modules, downsamp_modules, final_layer, classifier" in err
    err = refused({"epoch": 1, "model": {}}, "other.pth")
    assert "expected MSeg's train.py checkpoint (a dict with 'state_dict') or a bare state dict" in err
    assert "found a dict with entries epoch, model" in err
    seven = randomized(MSegHRNet("hrnet_w18_small", 7)).state_dict()
    err = refused({"state_dict": {"module." + k: v for k, v in seven.items()}}, "seven.pth")
    assert re.search(r"predicts 7 classes \(last_layer.3.weight \(7, 240, 1, 1\)\), but the config's taxonomy has 194",
                     err)
    wider = MSegHRNet("hrnet_w18_small_v2", 194).state_dict()
    err = refused(wider, "wider.pth")
    assert "head has 270 channels" in err and "the config builds hrnet_w18_small with 240" in err
    extra = {**MSegHRNet("hrnet_w18_small", 194).state_dict(), "aux.weight": torch.zeros(3)}
    assert "unexpected: the file's keys with no place in the model" in (err := refused(extra, "extra.pth"))
    assert "unexpected 1: aux.weight" in err
    err = refused({"layer0.0.weight": torch.zeros(1), "cls.4.weight": torch.zeros(1)}, "pspnet.pth")
    assert "is not an MSeg HRNet checkpoint" in err and "it holds modules layer0, cls, of which not MSeg's" in err


def test_the_report_gives_every_keys_fate(tmp_path, reference, zoo_small):
    imported(tmp_path, zoo_small, reference)
    lines = (tmp_path / "imported.pth.import.txt").read_text().splitlines()
    keys = list(reference.state_dict())
    assert lines[0].startswith("MSeg checkpoint ") and f"{len(keys)} keys, {len(keys)} loaded" in lines[0]
    assert "epoch 10, current_iter 1000, max_iter 1000" in lines[0]
    assert [line.split(" -> ")[0] for line in lines[1:]] == keys
    assert "last_layer.0.bias -> loaded as fuse.0.bias" in lines
    assert "conv1.weight -> loaded as backbone.conv1.weight" in lines


# ---- the zoo configs and the training configs -----------------------------------------------------------


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_configs_hold_msegs_architecture_and_test_settings(path):
    cfg = load_config(path)
    model = dict(cfg.model)
    assert {k: model[k] for k in HRNetV2Seg.MSEG_OPTIONS} == HRNetV2Seg.MSEG_OPTIONS
    assert (model["backbone"], model["pretrained"]) == ("hrnet_w48", None)
    settings = InferenceSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in dict(cfg.inference).items()})
    assert (settings.mode, settings.crop_size, settings.stride, settings.scales) == ("slide", (713, 713), (476, 476), (1.0,))
    assert (settings.flip, settings.window, settings.pad_mode) == (True, "uniform", "mean")
    assert settings.short_side == {"mseg-3m-720p": 720, "mseg-3m-480p": 360}.get(path.stem, 1080)
    converter = training_converter(cfg)
    oracle = {"camvid-11-1m": 11, "kitti-19-1m": 19, "pascal-context-60-1m": 60, "scannet-20-1m": 20, "voc2012-1m": 21,
              "mseg-naive-1m": 316}
    assert converter.num_classes == oracle.get(path.stem, 194)
    assert cfg.train.num_examples == (3000000 if path.stem.startswith("mseg-3m") else 1000000)


def test_msegs_training_configs_name_the_imagenet_file_msegs_docs_use():
    for resolution in ("480", "720", "1080"):
        for path in (REPO / "config" / "train" / resolution).glob("*.yaml"):
            cfg = load_config(path)
            assert cfg.model.pretrained == "pretrained_models/hrnetv2_w48_imagenet_pretrained.pth", path
            assert {k: cfg.model[k] for k in HRNetV2Seg.MSEG_OPTIONS} == HRNetV2Seg.MSEG_OPTIONS


def test_the_zoo_inference_section_is_msegs_protocol_and_flags_replace_it():
    cfg = load_config(REPO / "config" / "mseg_zoo" / "mseg-3m.yaml")
    crop = cfg.data.augmentation.crop_size
    assert inference_settings(cfg.inference, training_crop=crop) == InferenceSettings(
        mode="slide", short_side=1080, crop_size=713, stride=476, scales=(1.0,), flip=True, window="uniform")
    # tools/test.py passes its flags as Predictor's arguments, which replace the section's values
    got = inference_settings(cfg.inference, training_crop=crop, short_side=360, scales=[0.5, 1.0], flip=False)
    assert (got.short_side, got.scales, got.flip, got.crop_size) == (360, (0.5, 1.0), False, (713, 713))
    got = inference_settings(cfg.inference, training_crop=crop, mode="whole")
    assert (got.mode, got.crop_size, got.stride) == ("whole", None, None)


# ---- the imported checkpoint in the tools and in fine-tuning ----------------------------------------


def test_test_demo_and_export_tools_take_the_imported_checkpoint(demo_mseg, demo_root, tmp_path, capsys):
    config, checkpoint, _ = demo_mseg
    assert test_cli.main(["--config", str(config), "--checkpoint", str(checkpoint), "--datasets", "demo-camvid",
                          "--root", str(demo_root), "--out", str(tmp_path / "test"), "--max-images", "1",
                          "--device", "cpu"]) == 0
    assert "demo-camvid" in capsys.readouterr().out
    images = sorted((demo_root / "demo-camvid" / "val").glob("*.png"))[:1]
    assert demo_cli.main(["--config", str(config), "--checkpoint", str(checkpoint), "--input", str(images[0]),
                          "--output", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    assert len(list((tmp_path / "demo").iterdir())) == 2
    assert export_cli.main(["--config", str(config), "--checkpoint", str(checkpoint), "--format", "torchscript",
                            "--output", str(tmp_path / "model.pt")]) == 0
    assert (tmp_path / "model.pt").is_file()


class StopAfter(Hook):
    """Asks the trainer to stop after `steps` steps (as a time limit would)."""

    def __init__(self, steps):
        self.steps = steps

    def after_step(self, trainer):
        if trainer.iter >= self.steps:
            trainer.stop_requested = True


def test_fine_tuning_starts_from_the_imported_weights_and_resume_takes_precedence(demo_mseg, tmp_path):
    config, checkpoint, _ = demo_mseg
    work = tmp_path / "finetune"
    overrides = [f"work_dir={work}", f"train.load_from={checkpoint}", "data.batch_size=2", "data.num_workers=0",
                 "data.augmentation.short_side=64", "data.augmentation.crop_size=[65, 65]", "data.val.max_images=1",
                 "data.val.interval=0", "train.max_iters=3", "train.checkpoint_interval=1", "train.log_interval=1",
                 "schedule.warmup_iters=1", "data.train_datasets=[demo-city]"]  # other datasets, the same classes
    assert run_training(load_config(config, overrides), extra_hooks=(StopAfter(1),)) == {}
    log = (work / "train.log").read_text()
    assert f"loaded weights from {checkpoint} (fresh optimizer and schedule)" in log
    assert "resumed from" not in log
    first = load_checkpoint(work / "checkpoints" / "iter_00000001.pth")
    assert first["iteration"] == 1 and first["optimizer"]["state"]  # one step of a fresh optimizer

    # The same command again: the run's own checkpoint wins over load_from.
    run_training(load_config(config, overrides))
    log = (work / "train.log").read_text()
    assert log.count("loaded weights from") == 1 and "resumed from" in log and "at iteration 1" in log
    assert load_checkpoint(work / "checkpoints" / "final.pth")["iteration"] == 3

    with pytest.raises(CheckpointError, match=r"holds weights only .* cannot be resumed; start a run from it with "
                                              r"train.load_from="):
        run_training(load_config(config, [*overrides, f"work_dir={tmp_path / 'other'}", f"train.resume={checkpoint}"]))


def test_msegs_naive_merge_model_imports_into_its_own_label_space(tmp_path):
    """MSeg's naive-merge file has 316 outputs (id 255 unused): it imports with config/mseg_zoo/mseg-naive-1m.yaml,
    whose predictions then map to a test dataset by class name; our own `naive` space (350) refuses it."""
    config = tmp_path / "naive-small.yaml"
    config.write_text(f"_base_: {REPO / 'config' / 'mseg_zoo' / 'mseg-naive-1m.yaml'}\nmodel: {{backbone: hrnet_w18_small}}\n")
    torch.manual_seed(3)
    reference = randomized(MSegHRNet("hrnet_w18_small", 316))
    out = imported(tmp_path, config, reference)
    cfg = load_config(config, WHOLE)
    predictor = Predictor(cfg, out, device="cpu", output_dataset="camvid-11")
    assert predictor.num_classes == 11 and predictor.models[0].num_classes == 316
    ours = tmp_path / "ours.yaml"
    ours.write_text(f"_base_: {config}\ntaxonomy: {{kind: naive}}\n")
    save_mseg_checkpoint(reference, tmp_path / "again.pth")
    assert import_main(["--format", "mseg", "--config", str(ours), str(tmp_path / "again.pth"),
                        str(tmp_path / "ours.pth")]) == 2
