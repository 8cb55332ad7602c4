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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.models.backbones import (build_backbone, families_for, family_display_name, feature_channels,
                                         feature_strides, hrnet_backbone_names)
from unifiedseg.models.checks import check_common_args, check_images

__all__ = ["HRNetV2Seg", "hrnet_backbone_names"]


class HRNetV2Seg(nn.Module):
    """HRNetV2: `forward(images) -> {"logits": (N, num_classes, H / 4, W / 4)}`. It has no auxiliary head."""

    # Read by the Segmentor (see unifiedseg/models/__init__.py): no auxiliary loss. logits_stride and
    # size_multiple are set from the backbone's feature strides.
    aux_weight = 0.0
    # Its `model.type`: it takes the backbone families registered for it (unifiedseg/models/backbones.py).
    model_type = "hrnet"

    @staticmethod
    def check_args(*, backbone: str, num_classes: int, dropout: float = 0.0) -> None:
        """The constructor's argument rules, without building anything; errors read `argument: what is wrong`."""
        families = families_for(HRNetV2Seg.model_type)
        check_common_args(backbone=backbone, valid_backbones=[n for f in families for n in f.names()],
                          num_classes=num_classes, dropout=dropout, family=family_display_name(families))

    def __init__(self, *, backbone: str, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.check_args(backbone=backbone, num_classes=num_classes, dropout=dropout)
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, families=families_for(self.model_type))
        channels = sum(feature_channels(self.backbone))
        strides = feature_strides(self.backbone)
        self.size_multiple = max(strides)
        self.logits_stride = strides[0]
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images, size_multiple=self.size_multiple)
        branches = self.backbone(images)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]]
        return {"logits": self.classifier(self.dropout(self.fuse(torch.cat(upsampled, dim=1))))}
