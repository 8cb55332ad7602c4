"""HRNetV2 semantic segmentation model (as in HRNet-Semantic-Segmentation and MSeg) on a timm HRNet backbone.

The backbone comes from a family registered for `hrnet` (unifiedseg/models/backbones.py; built in: timm's
HRNets, their four branch outputs, e.g. hrnet_w48: 48, 96, 192, 384 channels at strides 4, 8, 16, 32).
The head reads only the backbone's declared features (`feature_channels`, `feature_strides`).

Head (HRNetV2): every feature map is upsampled bilinearly to the first one's stride and concatenated, then
a 1x1 conv-BN-ReLU keeps the channel count (sum of the branches, 720 for w48), optional dropout, and a
1x1 classifier. The logits come at the first feature's stride (`logits_stride`, 4): the Segmentor
upsamples them to the input size, as it does every network's.

timm's HRNet fuses branches with fixed x2/x4/x8 upsampling, so input sides must divide by the coarsest
stride (`size_multiple`, 32): the Segmentor zero-pads its input bottom/right to that and crops the
upsampled logits back, so any input size works there (MSeg trains HRNet on 713x713 crops).

Architecture options (config keys of `model`; the defaults are the above, MSeg's released models use
the values in brackets; the facts: shared/reference/mseg/MODEL.md):
- fuse_upsampling: "nearest" (timm's, which the official ImageNet weights were trained with) or
  "bilinear" [MSeg]: branches upsampled to the target branch's size inside the backbone's fuse layers
  (unifiedseg/models/hrnet_fuse.py). Bilinear needs no padding: `size_multiple` is then 1, and an input of
  any size (713 x 713) goes through as it is;
- logits_align_corners: False (upsample the stride-4 logits by 4 and crop) or True [MSeg]: resize them
  straight to the input size with align_corners=True (the Segmentor does either);
- head_conv_bias: False or True [MSeg]: the 1x1 fuse conv before the head's BatchNorm has a bias. A bias
  before a BatchNorm changes nothing but the BN's running mean: in eval mode BN(conv(x) + b) is BN'(conv(x))
  with running_mean' = running_mean - b, so weights with a bias load into a model without one exactly
  (unifiedseg/models/mseg_checkpoint.py folds them so);
- bn_momentum: None (PyTorch's and timm's 0.1) or a number [MSeg: 0.01] set on every BatchNorm of the
  network, backbone and head (MSeg's seg_hrnet uses 0.01 throughout). It matters in training only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.models.backbones import (build_backbone, families_for, family_display_name, feature_channels,
                                         feature_strides, hrnet_backbone_names)
from unifiedseg.models.checks import check_common_args, check_images
from unifiedseg.models.hrnet_fuse import FUSE_UPSAMPLING
from unifiedseg.utils.checks import is_number

__all__ = ["HRNetV2Seg", "hrnet_backbone_names"]


class HRNetV2Seg(nn.Module):
    """HRNetV2: `forward(images) -> {"logits": (N, num_classes, H / 4, W / 4)}`. It has no auxiliary head."""

    # Read by the Segmentor (see unifiedseg/models/__init__.py): no auxiliary loss. logits_stride and
    # size_multiple are set from the backbone's feature strides.
    aux_weight = 0.0
    # Its `model.type`: it takes the backbone families registered for it (unifiedseg/models/backbones.py).
    model_type = "hrnet"
    # The architecture options (module docstring) and their defaults; MSeg's released models use MSEG_OPTIONS.
    OPTION_DEFAULTS = {"fuse_upsampling": "nearest", "logits_align_corners": False, "head_conv_bias": False,
                       "bn_momentum": None}
    MSEG_OPTIONS = {"fuse_upsampling": "bilinear", "logits_align_corners": True, "head_conv_bias": True,
                    "bn_momentum": 0.01}
    # The options that change what a trained network computes (not bn_momentum, a training setting): part of
    # its checkpoints' model identity.
    IDENTITY_OPTIONS = {key: default for key, default in OPTION_DEFAULTS.items() if key != "bn_momentum"}

    @staticmethod
    def check_args(*, backbone: str, num_classes: int, dropout: float = 0.0, fuse_upsampling: str = "nearest",
                   logits_align_corners: bool = False, head_conv_bias: bool = False,
                   bn_momentum: float | None = None) -> None:
        """The constructor's argument rules, without building anything; errors read `argument: what is wrong`."""
        families = families_for(HRNetV2Seg.model_type)
        check_common_args(backbone=backbone, valid_backbones=[n for f in families for n in f.names()],
                          num_classes=num_classes, dropout=dropout, family=family_display_name(families))
        if fuse_upsampling not in FUSE_UPSAMPLING:
            raise ValueError(f"fuse_upsampling: {fuse_upsampling!r} is unknown; valid: {', '.join(FUSE_UPSAMPLING)} "
                             f"(nearest: timm's; bilinear: MSeg's)")
        for name, value in (("logits_align_corners", logits_align_corners), ("head_conv_bias", head_conv_bias)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: must be true or false, got {value!r}")
        if bn_momentum is not None and not (is_number(bn_momentum) and 0 < bn_momentum <= 1):
            raise ValueError(f"bn_momentum: must be a number in (0, 1] (MSeg: 0.01) or null (PyTorch's 0.1), "
                             f"got {bn_momentum!r}")

    def __init__(self, *, backbone: str, num_classes: int, dropout: float = 0.0, fuse_upsampling: str = "nearest",
                 logits_align_corners: bool = False, head_conv_bias: bool = False, bn_momentum: float | None = None):
        super().__init__()
        self.check_args(backbone=backbone, num_classes=num_classes, dropout=dropout, fuse_upsampling=fuse_upsampling,
                        logits_align_corners=logits_align_corners, head_conv_bias=head_conv_bias,
                        bn_momentum=bn_momentum)
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.fuse_upsampling = fuse_upsampling
        # only options away from their defaults reach the family's build (a family may not know them)
        options = {} if fuse_upsampling == "nearest" else {"fuse_upsampling": fuse_upsampling}
        self.backbone = build_backbone(backbone, families=families_for(self.model_type), **options)
        channels = sum(feature_channels(self.backbone))
        strides = feature_strides(self.backbone)
        # nearest fusion needs sides divisible by the coarsest stride; bilinear fusion takes any size
        self.size_multiple = max(strides) if fuse_upsampling == "nearest" else 1
        self.logits_stride = strides[0]
        self.logits_align_corners = logits_align_corners
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=head_conv_bias),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        if bn_momentum is not None:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = float(bn_momentum)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images, size_multiple=self.size_multiple)
        branches = self.backbone(images)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]]
        return {"logits": self.classifier(self.dropout(self.fuse(torch.cat(upsampled, dim=1))))}
