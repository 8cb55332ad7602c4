"""HRNetV2 semantic segmentation model (as in HRNet-Semantic-Segmentation and MSeg) on a timm HRNet backbone.

The backbone is `timm.create_model(name, features_only=True, feature_location='', out_indices=(1, 2, 3, 4))`:
`feature_location=''` gives the plain branch outputs of the last stage (e.g. hrnet_w48: 48, 96, 192, 384
channels at strides 4, 8, 16, 32) rather than timm's `'incre'` features (128..1024 channels through part of
the classification head), and index 0 (the stride-2 stem) is left out.

Head (HRNetV2): the four branches are upsampled bilinearly to stride 4 and concatenated, then a
1x1 conv-BN-ReLU keeps the channel count (sum of the branches, 720 for w48), optional dropout, and a
1x1 classifier. Logits are upsampled bilinearly (align_corners=False) to the input size.

timm's HRNet needs input sides divisible by 32; other sizes are zero-padded at the bottom/right and the
logits cropped back, so any input size works (MSeg trains HRNet on 713x713 crops).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.models.checks import check_common_args, check_images

# The timm feature indices of the four branch outputs (index 0 is the stride-2 stem).
BRANCH_INDICES = (1, 2, 3, 4)


def hrnet_backbone_names() -> list[str]:
    """timm model names usable as an HRNet backbone."""
    return timm.list_models(module="hrnet")


class HRNetV2Seg(nn.Module):
    """HRNetV2: `forward(images) -> {"logits": (N, num_classes, H, W)}`. It has no auxiliary head."""

    # Read by the trainer (see unifiedseg/models/__init__.py): no auxiliary loss, logits at input size.
    aux_weight = 0.0
    logits_stride = 1

    def __init__(self, *, backbone: str, num_classes: int, dropout: float = 0.0):
        super().__init__()
        check_common_args(
            backbone=backbone, valid_backbones=hrnet_backbone_names(), num_classes=num_classes, dropout=dropout, family="HRNet"
        )
        self.backbone_name = backbone
        self.num_classes = num_classes
        # pretrained=False always: weights come from a local file through unifiedseg.models.pretrained.
        self.backbone = timm.create_model(
            backbone, pretrained=False, features_only=True, feature_location="", out_indices=BRANCH_INDICES
        )
        channels = sum(self.backbone.feature_info.channels())
        self.size_multiple = max(self.backbone.feature_info.reduction())
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        height, width = images.shape[-2:]
        # timm's HRNet fuses branches with fixed x2/x4/x8 upsampling, so sizes must divide by the coarsest
        # stride: pad bottom/right with zeros (the mean colour after normalisation) and crop the logits.
        pad_bottom, pad_right = -height % self.size_multiple, -width % self.size_multiple
        padded = F.pad(images, (0, pad_right, 0, pad_bottom)) if pad_bottom or pad_right else images
        branches = self.backbone(padded)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]]
        x = self.classifier(self.dropout(self.fuse(torch.cat(upsampled, dim=1))))
        logits = F.interpolate(x, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits[..., :height, :width]}
