"""Backbones: the contract a feature extractor meets to plug into the segmentation heads, and the
families of backbones built in (timm's HRNets and dilated ResNets).

The contract (timm's `features_only` models meet it as they are; the heads read nothing else):

- `features = backbone(images)`: images (N, 3, H, W) -> a list of feature maps, shallow to deep;
- `backbone.feature_info.channels()`: the channel count of each feature map, in that order;
- `backbone.feature_info.reduction()`: the stride of each (input side / feature side, for inputs
  whose sides are multiples of the largest stride), in that order.

`feature_channels(backbone)` and `feature_strides(backbone)` read them; `check_feature_info(backbone)`
runs a real forward pass and raises when the declared channels or strides are not what comes out
(tests/test_models.py does so for every registered family). A backbone written by hand can declare
its features with `FeatureInfo(channels=[...], strides=[...])`.

How the heads use the features: HRNetV2 (unifiedseg/models/hrnet.py) upsamples every feature map to
the first one's stride and concatenates them (its input must have sides divisible by the largest
stride: `HRNetV2Seg.size_multiple`); PSPNet (unifiedseg/models/pspnet.py) pools the last feature map,
whose stride must be its `output_stride`, and its auxiliary head reads the second-to-last one.

A family is a named way of building backbones from a name: `BackboneFamily(name=..., names=..., build=...,
example=..., networks=...)`, where `build(name, output_stride=None, **options)` returns the backbone
(`output_stride` is what PSPNet asks for: a family that cannot dilate its last stages refuses any value
but None; `options` are a network's architecture options, passed only when not at their defaults: the
hrnet family takes `fuse_upsampling`, unifiedseg/models/hrnet_fuse.py) and `networks` names the network
types (`model.type`: "hrnet", "pspnet") its backbones plug into. `classifier_prefixes` name the state_dict
keys of the family's ImageNet classification head, which a pretrained file holds and a backbone has no
place for (unifiedseg.models.pretrained reports them as expected). Register
one with `register_backbone_family`: each network type takes the families that name it
(`families_for(model_type)`), so a new family reaches the existing heads from its own registration,
without touching their code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import timm
import torch
from torch import nn

from unifiedseg.models.hrnet_fuse import FUSE_UPSAMPLING, use_bilinear_fuse

# The timm feature indices of HRNet's four branch outputs (index 0 is the stride-2 stem).
HRNET_BRANCH_INDICES = (1, 2, 3, 4)
# timm ResNet feature indices: 3 = layer3 (PSPNet's auxiliary head), 4 = layer4 (pyramid pooling).
RESNET_LAYER3_LAYER4 = (3, 4)


class FeatureInfo:
    """Declared features of a hand-written backbone: `channels()` and `reduction()` as timm's FeatureInfo."""

    def __init__(self, *, channels: Sequence[int], strides: Sequence[int]):
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"FeatureInfo needs one stride per feature map, got channels {list(channels)} and "
                             f"strides {list(strides)}")
        self._channels = [int(c) for c in channels]
        self._strides = [int(s) for s in strides]

    def channels(self) -> list[int]:
        return list(self._channels)

    def reduction(self) -> list[int]:
        return list(self._strides)


def feature_channels(backbone: nn.Module) -> list[int]:
    """The channel count of each feature map the backbone returns (its `feature_info.channels()`)."""
    return list(backbone.feature_info.channels())


def feature_strides(backbone: nn.Module) -> list[int]:
    """The stride of each feature map the backbone returns (its `feature_info.reduction()`)."""
    return list(backbone.feature_info.reduction())


def check_feature_info(backbone: nn.Module, size: int | None = None) -> list[tuple[int, int, int]]:
    """Run `backbone` on one (size x size) image and compare its features with the declared channels and
    strides; returns each feature's (channels, height, width). `size` defaults to twice the largest stride."""
    channels, strides = feature_channels(backbone), feature_strides(backbone)
    size = size or 2 * max(strides)
    if size % max(strides):
        raise ValueError(f"size {size} is not a multiple of the largest stride {max(strides)}")
    was_training = backbone.training
    try:
        with torch.no_grad():
            features = backbone.eval()(torch.randn(1, 3, size, size))
    finally:
        backbone.train(was_training)
    shapes = [tuple(f.shape[1:]) for f in features]
    got_channels = [s[0] for s in shapes]
    got_strides = [size // s[1] if s[1] == s[2] and s[1] * (size // s[1]) == size else None for s in shapes]
    if got_channels != channels or got_strides != strides:
        raise ValueError(f"the backbone declares channels {channels} at strides {strides}, but a {size}x{size} "
                         f"input gives features of shapes {shapes} (channels {got_channels}, strides {got_strides})")
    return shapes


@dataclass(frozen=True)
class BackboneFamily:
    """A way of building backbones by name.

    names: the valid backbone names (called when needed: timm's lists are long to compute).
    build: `build(name, output_stride=None, **options) -> backbone` meeting the module docstring's contract.
    example: a small member, for checks and tests.
    display_name: how error messages call the family ("not a HRNet backbone").
    networks: the network types (`model.type` names) whose heads take these backbones.
    classifier_prefixes: key prefixes of the ImageNet classification head in the family's pretrained files.
    """

    name: str
    names: Callable[[], list[str]]
    build: Callable[..., nn.Module]
    example: str
    display_name: str
    networks: tuple[str, ...]
    classifier_prefixes: tuple[str, ...] = ()


BACKBONE_FAMILIES: dict[str, BackboneFamily] = {}


def register_backbone_family(family: BackboneFamily) -> BackboneFamily:
    """Add a family to BACKBONE_FAMILIES; a name that is taken is refused, and so is a family that names
    no network type."""
    if not family.networks or not all(isinstance(n, str) for n in family.networks):
        raise ValueError(f"backbone family {family.name!r}: networks must name the network types it plugs into "
                         f"(model.type names, e.g. ('hrnet', 'pspnet')), got {family.networks!r}")
    if family.name in BACKBONE_FAMILIES:
        raise ValueError(f"a backbone family named {family.name!r} is already registered; "
                         f"registered: {', '.join(BACKBONE_FAMILIES)}")
    BACKBONE_FAMILIES[family.name] = family
    return family


def backbone_family(name: str) -> BackboneFamily:
    """The registered family of that name; an unknown one is an error listing the registered ones."""
    if name not in BACKBONE_FAMILIES:
        raise ValueError(f"no backbone family {name!r}; registered: {', '.join(BACKBONE_FAMILIES)}")
    return BACKBONE_FAMILIES[name]


def hrnet_backbone_names() -> list[str]:
    """timm model names usable as an HRNet backbone."""
    return timm.list_models(module="hrnet")


def resnet_backbone_names() -> list[str]:
    """timm model names usable as a (dilated) PSPNet backbone: timm's ResNet family."""
    return timm.list_models(module="resnet")


def build_hrnet_backbone(name: str, output_stride: int | None = None, *, fuse_upsampling: str = "nearest") -> nn.Module:
    """timm's HRNet with `feature_location=''`: the plain branch outputs of the last stage (e.g. hrnet_w48:
    48, 96, 192, 384 channels at strides 4, 8, 16, 32) rather than timm's `'incre'` features (128..1024
    channels through part of the classification head); the stride-2 stem is left out. It cannot dilate.
    `fuse_upsampling` "bilinear" gives its modules MSeg's branch fusion (unifiedseg/models/hrnet_fuse.py)."""
    if output_stride is not None:
        raise ValueError(f"HRNet backbones keep all their strides (4 to 32); output_stride {output_stride} is not "
                         f"available")
    if fuse_upsampling not in FUSE_UPSAMPLING:
        raise ValueError(f"fuse_upsampling: {fuse_upsampling!r} is unknown; valid: {', '.join(FUSE_UPSAMPLING)}")
    # pretrained=False always: weights come from a local file through unifiedseg.models.pretrained.
    backbone = timm.create_model(name, pretrained=False, features_only=True, feature_location="",
                                 out_indices=HRNET_BRANCH_INDICES)
    if fuse_upsampling == "bilinear":
        use_bilinear_fuse(backbone)
    return backbone


def build_resnet_backbone(name: str, output_stride: int | None = None) -> nn.Module:
    """timm's ResNet returning layer3 and layer4, dilated instead of strided down to `output_stride`
    (8: both at stride 8; 16: only layer4 dilated, both at 16; None: the plain strides 16 and 32)."""
    kwargs = {} if output_stride is None else {"output_stride": output_stride}
    return timm.create_model(name, pretrained=False, features_only=True, out_indices=RESNET_LAYER3_LAYER4, **kwargs)


# The ImageNet classification heads (timm's names, the official files' too): HRNet's incre/downsample/final
# layers and classifier (126 tensors for W48), ResNet's fc.
register_backbone_family(BackboneFamily(name="hrnet", names=hrnet_backbone_names, build=build_hrnet_backbone,
                                        example="hrnet_w18_small", display_name="HRNet", networks=("hrnet",),
                                        classifier_prefixes=("incre_modules.", "downsamp_modules.", "final_layer.",
                                                             "classifier.")))
register_backbone_family(BackboneFamily(name="resnet", names=resnet_backbone_names, build=build_resnet_backbone,
                                        example="resnet18", display_name="ResNet", networks=("pspnet",),
                                        classifier_prefixes=("fc.",)))


def families_for(model_type: str) -> list[BackboneFamily]:
    """The registered families whose backbones plug into the network type `model_type`, in registration order."""
    families = [family for family in BACKBONE_FAMILIES.values() if model_type in family.networks]
    if not families:
        raise ValueError(f"no registered backbone family plugs into network type {model_type!r}; registered: "
                         + ", ".join(f"{f.name} ({', '.join(f.networks)})" for f in BACKBONE_FAMILIES.values()))
    return families


def family_display_name(families: Sequence[BackboneFamily]) -> str:
    """"HRNet", or "HRNet or ResNet" for a network that takes several families."""
    return " or ".join(f.display_name for f in families)


def family_of(name: str, families: Sequence[BackboneFamily]) -> BackboneFamily:
    """The first of `families` that has the backbone `name`."""
    for family in families:
        if name in family.names():
            return family
    raise ValueError(f"backbone {name!r} is not a {family_display_name(families)} backbone")


def build_backbone(name: str, *, families: Sequence[BackboneFamily], output_stride: int | None = None,
                   **options) -> nn.Module:
    """The backbone `name` from the first of `families` that has it (the caller has checked the name);
    `options` go to the family's build (pass only those not at their defaults)."""
    return family_of(name, families).build(name, output_stride=output_stride, **options)
