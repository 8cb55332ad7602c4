"""Tests of unifiedseg.models: output contract, feature_info, aux head, pretrained loading, build_model, SyncBN."""

import re

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.models import (
    HRNetV2Seg,
    ModelConfigError,
    PretrainedLoadError,
    PSPNet,
    ShapeMismatch,
    build_model,
    convert_sync_batchnorm,
    load_pretrained,
)

NUM_CLASSES = 7

# timm resnet18 without its fc layer: 11,689,512 parameters - (512 * 1000 + 1000) = 11,176,512.
RESNET18_BACKBONE_PARAMS = 11_176_512
# resnet18 layer4: block 0 = 3x3 256->512 (1,179,648) + 3x3 512->512 (2,359,296) + 1x1 downsample 256->512
# (131,072) + 3 BatchNorms (3 * 1,024); block 1 = 2 * 2,359,296 + 2 * 1,024.
RESNET18_LAYER4_PARAMS = 8_393_728


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pspnet18(**kwargs) -> PSPNet:
    return PSPNet(backbone="resnet18", num_classes=NUM_CLASSES, **kwargs)


def hrnet_small() -> HRNetV2Seg:
    return HRNetV2Seg(backbone="hrnet_w18_small", num_classes=NUM_CLASSES)


# --- output contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_hrnet_returns_logits_at_its_first_branch_stride(training):
    model = hrnet_small().train(training)
    outputs = model(torch.randn(2, 3, 64, 64))
    assert set(outputs) == {"logits"}
    assert outputs["logits"].shape == (2, NUM_CLASSES, 16, 16)  # the Segmentor upsamples them
    assert model.aux_weight == 0.0 and model.logits_stride == 4 and model.size_multiple == 32


def test_hrnet_head_concatenates_all_branches():
    model = hrnet_small()
    # hrnet_w18_small branches: 16 + 32 + 64 + 128 = 240 channels, kept by the 1x1 fuse conv.
    assert model.fuse[0].in_channels == 240 and model.fuse[0].out_channels == 240
    assert model.classifier.in_channels == 240 and model.classifier.out_channels == NUM_CLASSES


def test_models_handle_sizes_not_divisible_by_the_stride():
    images = torch.randn(2, 3, 70, 50)
    with pytest.raises(ValueError, match=r"sides divisible by 32, got \(70, 50\); the Segmentor pads"):
        hrnet_small().eval()(images)  # HRNet leaves the padding to the Segmentor (tests/test_segmentor.py)
    outputs = pspnet18().train()(images)
    assert outputs["logits"].shape == outputs["aux_logits"].shape == (2, NUM_CLASSES, 70, 50)


def test_pspnet_aux_logits_only_in_training_with_positive_aux_weight():
    images = torch.randn(2, 3, 64, 64)
    model = pspnet18(aux_weight=0.4)
    assert model.aux_weight == 0.4 and model.aux_head is not None
    outputs = model.train()(images)
    assert set(outputs) == {"logits", "aux_logits"}
    assert outputs["logits"].shape == outputs["aux_logits"].shape == (2, NUM_CLASSES, 64, 64)
    assert set(model.eval()(images)) == {"logits"}

    no_aux = pspnet18(aux_weight=0)
    assert no_aux.aux_head is None
    assert not any(name.startswith("aux_head") for name in no_aux.state_dict())
    assert set(no_aux.train()(images)) == {"logits"}


def test_pspnet_pyramid_pooling_channels():
    model = pspnet18(aux_weight=0.4)
    # layer4 of resnet18 has 512 channels; 4 bins reduce to 512 / 4 = 128 each: 512 + 4 * 128 = 1024.
    assert [stage[1].out_channels for stage in model.ppm.stages] == [128, 128, 128, 128]
    assert [stage[0].output_size for stage in model.ppm.stages] == [1, 2, 3, 6]
    assert model.ppm.out_channels == 1024
    assert model.head[0].in_channels == 1024 and model.head[-1].out_channels == NUM_CLASSES
    assert model.aux_head[0].in_channels == 256  # layer3 of resnet18


@pytest.mark.parametrize(
    "output_stride, zoom_factor, size, logits_stride, expected",
    [
        (8, None, (64, 64), 1, (64, 64)),  # default zoom = output stride: input resolution
        (8, 8, (64, 64), 1, (64, 64)),  # MSeg's zoom_factor 8
        (8, 1, (64, 64), 8, (8, 8)),  # no upsampling: the stride-8 head output
        (8, 2, (65, 63), 4, (17, 16)),  # ceil(65 / 4), ceil(63 / 4)
        (16, None, (64, 64), 1, (64, 64)),
        (16, 4, (64, 64), 4, (16, 16)),
    ],
)
def test_pspnet_zoom_factor_sets_logits_resolution(output_stride, zoom_factor, size, logits_stride, expected):
    model = pspnet18(output_stride=output_stride, zoom_factor=zoom_factor).train()
    assert model.logits_stride == logits_stride
    outputs = model(torch.randn(2, 3, *size))
    assert outputs["logits"].shape[-2:] == expected
    assert outputs["aux_logits"].shape[-2:] == expected


def test_models_refuse_non_rgb_batches():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(3, 64, 64\)"):
        pspnet18().eval()(torch.randn(3, 64, 64))


# --- feature_info ------------------------------------------------------------------------------------


def check_feature_info_against_forward(backbone: nn.Module, size: int) -> list[tuple[int, ...]]:
    with torch.no_grad():
        features = backbone.eval()(torch.randn(1, 3, size, size))
    info = backbone.feature_info
    assert [f.shape[1] for f in features] == info.channels()
    assert [(size // f.shape[2], size // f.shape[3]) for f in features] == [(r, r) for r in info.reduction()]
    return [tuple(f.shape[1:]) for f in features]


def test_hrnet_w18_small_feature_info_matches_forward():
    backbone = hrnet_small().backbone
    assert backbone.feature_info.channels() == [16, 32, 64, 128]
    assert backbone.feature_info.reduction() == [4, 8, 16, 32]
    shapes = check_feature_info_against_forward(backbone, 64)
    assert shapes == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]


def test_hrnet_w48_feature_info_matches_forward():
    backbone = HRNetV2Seg(backbone="hrnet_w48", num_classes=NUM_CLASSES).backbone
    assert backbone.feature_info.channels() == [48, 96, 192, 384]
    assert backbone.feature_info.reduction() == [4, 8, 16, 32]
    # 32x32, the smallest input the stride-32 branch allows, keeps this 65M-parameter forward fast.
    assert check_feature_info_against_forward(backbone, 32) == [(48, 8, 8), (96, 4, 4), (192, 2, 2), (384, 1, 1)]


@pytest.mark.parametrize("output_stride, reductions", [(8, [8, 8]), (16, [16, 16])])
def test_pspnet_feature_info_matches_forward(output_stride, reductions):
    backbone = pspnet18(output_stride=output_stride).backbone
    assert backbone.feature_info.channels() == [256, 512]
    assert backbone.feature_info.reduction() == reductions
    check_feature_info_against_forward(backbone, 64)


# --- gradients ---------------------------------------------------------------------------------------


def _loss(outputs, labels, aux_weight):
    outputs = {k: F.interpolate(v, size=labels.shape[-2:], mode="bilinear") for k, v in outputs.items()}
    loss = F.cross_entropy(outputs["logits"], labels, ignore_index=IGNORE_INDEX)
    if "aux_logits" in outputs:
        loss = loss + aux_weight * F.cross_entropy(outputs["aux_logits"], labels, ignore_index=IGNORE_INDEX)
    return loss


@pytest.mark.parametrize("make_model", [hrnet_small, pspnet18], ids=["hrnet", "pspnet"])
def test_gradients_reach_backbone_and_heads(make_model):
    model = make_model().train()
    labels = torch.randint(0, NUM_CLASSES, (2, 64, 64))
    labels[:, :8] = IGNORE_INDEX
    _loss(model(torch.randn(2, 3, 64, 64)), labels, model.aux_weight).backward()
    heads = [model.classifier] if isinstance(model, HRNetV2Seg) else [model.head, model.aux_head]
    for module in [model.backbone.conv1, *heads]:
        grads = [p.grad for p in module.parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


# --- pretrained loading ------------------------------------------------------------------------------


def test_pretrained_full_match_loads_everything(tmp_path):
    source = pspnet18().backbone
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    target = pspnet18().backbone
    report = load_pretrained(target, path)
    assert report.loaded_fraction == 1.0
    assert report.missing_keys == () and report.unexpected_keys == () and report.shape_mismatches == ()
    assert report.num_loaded_tensors == len(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_pretrained_unwraps_and_strips_prefixes(tmp_path, wrapper):
    source = hrnet_small().backbone
    state = {f"module.backbone.{key}": value for key, value in source.state_dict().items()}
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: state, "epoch": 3}, path)
    target = hrnet_small().backbone
    report = load_pretrained(target, path)
    assert report.loaded_fraction == 1.0
    assert report.stripped_prefixes == ("module.", "backbone.")
    assert torch.equal(target.conv1.weight, source.conv1.weight)


def test_pretrained_partial_file_reports_missing_unexpected_and_fraction(tmp_path, caplog):
    source = pspnet18().backbone
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("layer4.")}
    state["fc.weight"] = torch.zeros(1000, 512)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    target = pspnet18().backbone
    layer4_before = target.layer4[0].conv1.weight.clone()
    with caplog.at_level("WARNING", logger="unifiedseg.models.pretrained"):
        report = load_pretrained(target, path)
    expected_missing = tuple(k for k in target.state_dict() if k.startswith("layer4."))
    assert report.missing_keys == expected_missing and len(expected_missing) > 0
    assert report.unexpected_keys == ("fc.weight",)
    assert report.loaded_fraction == pytest.approx((RESNET18_BACKBONE_PARAMS - RESNET18_LAYER4_PARAMS) / RESNET18_BACKBONE_PARAMS)
    assert torch.equal(target.layer4[0].conv1.weight, layer4_before)  # untouched, not zeroed
    assert "fc.weight" in caplog.text and "layer4.0.conv1.weight" in caplog.text
    with pytest.raises(PretrainedLoadError, match="missing .*unexpected 1: fc.weight"):
        load_pretrained(pspnet18().backbone, path, strict=True)


def test_pretrained_shape_mismatch_is_listed_and_not_loaded(tmp_path):
    state = pspnet18().backbone.state_dict()
    state["conv1.weight"] = torch.ones(64, 3, 3, 3)
    path = tmp_path / "mismatch.pth"
    torch.save(state, path)
    target = pspnet18().backbone
    before = target.conv1.weight.clone()
    report = load_pretrained(target, path)
    assert report.shape_mismatches == (ShapeMismatch("conv1.weight", (64, 3, 3, 3), (64, 3, 7, 7)),)
    assert report.missing_keys == ("conv1.weight",)
    assert report.loaded_fraction == pytest.approx((RESNET18_BACKBONE_PARAMS - 64 * 3 * 7 * 7) / RESNET18_BACKBONE_PARAMS)
    assert torch.equal(target.conv1.weight, before)


def test_pretrained_missing_file_names_path_and_config_key(tmp_path):
    path = tmp_path / "nope" / "hrnet_w48.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path)) + ".*model.pretrained"):
        load_pretrained(hrnet_small().backbone, path)


class NotATensor:
    """A pickled custom object: a weights_only load must refuse it."""

    def __init__(self):
        self.value = 1


def test_pretrained_refuses_pickled_objects(tmp_path, monkeypatch):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": NotATensor()}, path)
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    with pytest.raises(PretrainedLoadError, match=re.escape(str(path)) + ".*weights_only=True"):
        load_pretrained(pspnet18().backbone, path)
    assert calls == [{"map_location": "cpu", "weights_only": True}]


def test_pretrained_refuses_non_state_dicts_and_foreign_weights(tmp_path):
    not_state = tmp_path / "not_state.pth"
    torch.save({"epoch": 3, "conv1.weight": torch.zeros(1)}, not_state)
    with pytest.raises(PretrainedLoadError, match="not a state_dict: 1 entries are not tensors \\('epoch'\\)"):
        load_pretrained(pspnet18().backbone, not_state)

    foreign = tmp_path / "hrnet.pth"
    torch.save({"stage2.0.weight": torch.zeros(3)}, foreign)
    with pytest.raises(PretrainedLoadError, match="matches no tensor"):
        load_pretrained(pspnet18().backbone, foreign)


# --- build_model -------------------------------------------------------------------------------------


def test_build_model_types_and_pretrained_report(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(pspnet18().backbone.state_dict(), path)
    cfg = OmegaConf.create(
        {"type": "pspnet", "backbone": "resnet18", "num_classes": 5, "pretrained": str(path), "aux_weight": 0.4,
         "zoom_factor": 8, "output_stride": 8, "dropout": 0.1, "ppm_bins": [1, 2, 3, 6]}
    )
    model = build_model(cfg)
    assert isinstance(model, PSPNet) and model.aux_weight == 0.4 and model.logits_stride == 1
    assert model.pretrained_report.loaded_fraction == 1.0
    assert model.head[3].p == 0.1

    hrnet = build_model({"type": "hrnet", "backbone": "hrnet_w18_small", "num_classes": 5, "aux_weight": 0})
    assert isinstance(hrnet, HRNetV2Seg) and hrnet.pretrained_report is None
    assert hrnet.classifier.out_channels == 5


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"type": "deeplab", "backbone": "resnet18", "num_classes": 3}, "model.type: must be one of hrnet, pspnet, got 'deeplab'"),
        ({"type": "hrnett", "backbone": "hrnet_w18", "num_classes": 3}, "did you mean 'hrnet'"),
        ({"backbone": "resnet18", "num_classes": 3}, "model: missing key 'type'"),
        ({"type": "pspnet", "backbone": "resnet18"}, "model: missing key 'num_classes'"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "aux_wieght": 0.4},
         "model.aux_wieght: unknown key; did you mean 'aux_weight'\\? \\(valid keys for type pspnet: .*aux_weight, output_stride, zoom_factor, ppm_bins\\)"),
        ({"type": "hrnet", "backbone": "hrnet_w18", "num_classes": 3, "zoom_factor": 8},
         "model.zoom_factor: unknown key \\(valid keys for type hrnet: type, backbone, num_classes, pretrained, dropout, aux_weight, "
         "fuse_upsampling, logits_align_corners, head_conv_bias, bn_momentum\\)$"),
        ({"type": "hrnet", "backbone": "hrnet_w18", "num_classes": 3, "aux_weight": 0.4}, "'hrnet' has no auxiliary head"),
        ({"type": "hrnet", "backbone": "resnet50", "num_classes": 3}, "model.backbone: 'resnet50' is not a HRNet backbone; valid: .*hrnet_w48"),
        ({"type": "pspnet", "backbone": "resnet5", "num_classes": 3}, "did you mean 'resnet50'"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 0}, "model.num_classes: must be an integer in \\[1, 65535\\]"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 65536}, "got 65536"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "output_stride": 32}, "model.output_stride: must be one of \\(8, 16\\)"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "zoom_factor": 16},
         "model.zoom_factor: must be one of \\[1, 2, 4, 8\\] with output_stride 8, got 16"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "aux_weight": -1}, "model.aux_weight: must be a number >= 0"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "dropout": 1.0}, "model.dropout: must be a number in \\[0, 1\\)"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "ppm_bins": [1, 0]}, "model.ppm_bins: must be a non-empty list"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "pretrained": 5}, "model.pretrained: must be a file path"),
        ({"type": "pspnet", "backbone": "resnet18", "num_classes": 3, "pretrained": ""}, "model.pretrained: must be a file path or null, got ''"),
    ],
)
def test_build_model_errors_name_the_key(cfg, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(cfg)


def test_build_model_missing_pretrained_file(tmp_path):
    path = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build_model({"type": "hrnet", "backbone": "hrnet_w18_small", "num_classes": 3, "pretrained": str(path)})


def test_build_model_refuses_non_mapping():
    with pytest.raises(ModelConfigError, match=r"model: must be a mapping.*got \['hrnet'\]"):
        build_model(["hrnet"])


# --- SyncBatchNorm -----------------------------------------------------------------------------------


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_convert_sync_batchnorm_only_with_several_processes():
    model = pspnet18()
    batchnorms = _count(model, nn.BatchNorm2d)
    assert batchnorms > 0
    assert convert_sync_batchnorm(model, enabled=True, world_size=1) is model
    assert convert_sync_batchnorm(model, enabled=False, world_size=4) is model
    assert _count(model, nn.SyncBatchNorm) == 0

    converted = convert_sync_batchnorm(model, enabled=True, world_size=2)
    assert _count(converted, nn.SyncBatchNorm) == batchnorms
    assert _count(converted, nn.BatchNorm2d) == 0

    with pytest.raises(ValueError, match="world_size must be an integer >= 1, got 0"):
        convert_sync_batchnorm(pspnet18(), enabled=True, world_size=0)


def test_the_segmentor_pads_hrnet_input_to_a_multiple_of_32_and_crops_back():
    model = hrnet_small().eval()
    assert model.size_multiple == 32
    images = torch.randn(1, 3, 70, 50)
    with torch.no_grad():
        logits = Segmentor(network=model, mean=(0, 0, 0), std=(1, 1, 1)).predict_logits(images)
        stride4 = model(F.pad(images, (0, 14, 0, 26)))["logits"]  # 70 -> 96, 50 -> 64
    assert stride4.shape[-2:] == (24, 16)
    upsampled = F.interpolate(stride4, size=(96, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, upsampled[..., :70, :50])


# --- the backbone contract: every registered family, and a new one plugged into the heads -----------------

from unifiedseg.models import (BACKBONE_FAMILIES, BackboneFamily, FeatureInfo, Segmentor,  # noqa: E402
                               check_feature_info, register_backbone_family)
from unifiedseg.models import backbones  # noqa: E402


@pytest.mark.parametrize("family", list(BACKBONE_FAMILIES), ids=list(BACKBONE_FAMILIES))
def test_every_registered_family_declares_the_features_a_real_forward_gives(family):
    backbone = BACKBONE_FAMILIES[family].build(BACKBONE_FAMILIES[family].example)
    shapes = check_feature_info(backbone, 64)
    assert [s[0] for s in shapes] == backbone.feature_info.channels()


class TinyBackbone(nn.Module):
    """A hand-written backbone: 8 channels at stride 4, 16 at stride 8."""

    def __init__(self, declared_strides=(4, 8)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.feature_info = FeatureInfo(channels=[8, 16], strides=list(declared_strides))

    def forward(self, images):
        first = self.stem(images)
        return [first, self.stage(first)]


def build_tiny(name, output_stride=None):
    if output_stride not in (None, 8):
        raise ValueError(f"tiny backbones end at stride 8, not {output_stride}")
    return TinyBackbone()


def test_a_new_backbone_family_plugs_into_both_heads_without_touching_them(monkeypatch):
    monkeypatch.setattr(backbones, "BACKBONE_FAMILIES", dict(BACKBONE_FAMILIES))  # registered for this test only
    family = register_backbone_family(BackboneFamily(name="tiny", names=lambda: ["tiny-a"], build=build_tiny,
                                                     example="tiny-a", display_name="Tiny",
                                                     networks=("hrnet", "pspnet")))
    check_feature_info(family.build(family.example), 32)
    hrnet = HRNetV2Seg(backbone="tiny-a", num_classes=NUM_CLASSES)
    assert hrnet.fuse[0].in_channels == 24 and hrnet.size_multiple == 8 and hrnet.logits_stride == 4
    psp = PSPNet(backbone="tiny-a", num_classes=NUM_CLASSES, aux_weight=0.4, ppm_bins=(1, 2))
    assert psp.aux_head[0].in_channels == 8 and psp.ppm.out_channels == 16 + 2 * 8
    images = torch.randn(2, 3, 36, 44)
    assert Segmentor(network=hrnet).train().predict_logits(images).shape == (2, NUM_CLASSES, 36, 44)
    outputs = psp.train()(images)
    assert outputs["logits"].shape == outputs["aux_logits"].shape == (2, NUM_CLASSES, 36, 44)
    with pytest.raises(ValueError, match="not a HRNet or Tiny backbone"):
        HRNetV2Seg(backbone="tiny-b", num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="tiny backbones end at stride 8"):
        PSPNet(backbone="tiny-a", num_classes=NUM_CLASSES, output_stride=16)


def test_a_family_must_name_the_networks_it_plugs_into(monkeypatch):
    monkeypatch.setattr(backbones, "BACKBONE_FAMILIES", dict(BACKBONE_FAMILIES))
    with pytest.raises(ValueError, match=r"backbone family 'tiny': networks must name the network types"):
        register_backbone_family(BackboneFamily(name="tiny", names=lambda: ["tiny-a"], build=build_tiny,
                                                example="tiny-a", display_name="Tiny", networks=()))
    with pytest.raises(ValueError, match=r"already registered; registered: hrnet, resnet"):
        register_backbone_family(BackboneFamily(name="hrnet", names=lambda: [], build=build_tiny, example="x",
                                                display_name="X", networks=("hrnet",)))
    with pytest.raises(ValueError, match=r"no registered backbone family plugs into network type 'segformer'; "
                                         r"registered: hrnet \(hrnet\), resnet \(pspnet\)"):
        backbones.families_for("segformer")


def test_a_backbone_that_declares_wrong_strides_is_caught_by_a_real_forward():
    with pytest.raises(ValueError, match=r"declares channels \[8, 16\] at strides \[4, 16\].*strides \[4, 8\]"):
        check_feature_info(TinyBackbone(declared_strides=(4, 16)), 32)
