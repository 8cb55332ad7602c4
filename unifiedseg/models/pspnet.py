"""PSPNet (as in semseg / MSeg) on a dilated timm ResNet, with an optional auxiliary FCN head on layer3.

Backbone: from a family registered for `pspnet` (unifiedseg/models/backbones.py), built with
`output_stride`; the head reads only its declared features: the last one (pyramid pooling input, whose
stride must be output_stride) and the second-to-last (auxiliary head input). Built in: timm's ResNets,
layer3 and layer4, dilated instead of strided, so both are at stride 8 (output_stride=8) or 16/16
(output_stride=16, only layer4 dilated). Any model of timm's ResNet family (resnet18..152, resnet50d,
resnext, seresnet...) works.

Head: pyramid pooling (average pooling to bins x bins for each bin in (1, 2, 3, 6), 1x1 conv-BN-ReLU to
in_channels / len(bins) channels, bilinear upsampling back, concatenation with the input), then
3x3 conv-BN-ReLU to 512 channels, dropout, 1x1 classifier. The auxiliary head (3x3 conv-BN-ReLU to 256,
dropout, 1x1 classifier on layer3) exists only when aux_weight > 0 and runs only in training mode.

Output stride and zoom_factor (MSeg / semseg): the head produces logits at `output_stride`; they are
upsampled by `zoom_factor`. semseg always uses output_stride 8, where zoom_factor 8 gives logits at the
input resolution and 1, 2, 4 give logits at strides 8, 4, 2. Here zoom_factor may be any power of two
up to output_stride, defaults to output_stride (input resolution), and
`logits_stride = output_stride // zoom_factor`: logits are ceil(H / logits_stride) x ceil(W / logits_stride).

    output_stride  zoom_factor  logits_stride
    8              8 (default)  1   (input resolution, MSeg's setting)
    8              4 / 2 / 1    2 / 4 / 8
    16             16 (default) 1
    16             8 / 4 / 2 / 1  2 / 4 / 8 / 16

All upsampling is bilinear with align_corners=False, so inputs need not be of size 8k+1 as in semseg.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.models.backbones import (build_backbone, families_for, family_display_name, feature_channels,
                                         feature_strides, resnet_backbone_names)  # noqa: F401 (its old home)
from unifiedseg.models.checks import check_common_args, check_images
from unifiedseg.utils.checks import is_finite_number, is_int

VALID_OUTPUT_STRIDES = (8, 16)
DEFAULT_PPM_BINS = (1, 2, 3, 6)
HEAD_CHANNELS = 512
AUX_CHANNELS = 256


def valid_zoom_factors(output_stride: int) -> list[int]:
    """Powers of two from 1 to output_stride."""
    return [2**i for i in range(output_stride.bit_length()) if 2**i <= output_stride]


class PyramidPooling(nn.Module):
    """Pyramid pooling module: the input concatenated with its pooled-and-upsampled summaries."""

    def __init__(self, *, in_channels: int, bins: tuple[int, ...]):
        super().__init__()
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(bin_size),
                nn.Conv2d(in_channels, reduced, kernel_size=1, bias=False),
                nn.BatchNorm2d(reduced),
                nn.ReLU(inplace=True),
            )
            for bin_size in bins
        )
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages]
        return torch.cat([x, *pooled], dim=1)


def conv_head(*, in_channels: int, hidden_channels: int, num_classes: int, dropout: float) -> nn.Sequential:
    """3x3 conv-BN-ReLU, dropout, 1x1 classifier: the PSPNet main head after pooling and the aux FCN head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(hidden_channels),
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
        nn.Conv2d(hidden_channels, num_classes, kernel_size=1),
    )


class PSPNet(nn.Module):
    """PSPNet: `forward(images) -> {"logits": ..., "aux_logits": ... (training with aux_weight > 0 only)}`."""

    # Its `model.type`: it takes the backbone families registered for it (unifiedseg/models/backbones.py).
    model_type = "pspnet"

    @staticmethod
    def check_args(*, backbone: str, num_classes: int, aux_weight: float = 0.4, output_stride: int = 8,
                   zoom_factor: int | None = None, dropout: float = 0.1, ppm_bins=DEFAULT_PPM_BINS) -> None:
        """The constructor's argument rules, without building anything; errors read `argument: what is wrong`.
        (That layer4 has at least as many channels as ppm_bins has sizes is checked when the backbone is built.)"""
        families = families_for(PSPNet.model_type)
        check_common_args(backbone=backbone, valid_backbones=[n for f in families for n in f.names()],
                          num_classes=num_classes, dropout=dropout, family=family_display_name(families))
        if not is_int(output_stride) or output_stride not in VALID_OUTPUT_STRIDES:
            raise ValueError(f"output_stride: must be one of {VALID_OUTPUT_STRIDES}, got {output_stride!r}")
        zoom_factor = output_stride if zoom_factor is None else zoom_factor
        if not is_int(zoom_factor) or zoom_factor not in valid_zoom_factors(output_stride):
            raise ValueError(f"zoom_factor: must be one of {valid_zoom_factors(output_stride)} with output_stride "
                             f"{output_stride}, got {zoom_factor!r}")
        if not is_finite_number(aux_weight) or aux_weight < 0:
            raise ValueError(f"aux_weight: must be a number >= 0 (0 disables the auxiliary head), got {aux_weight!r}")
        if (not isinstance(ppm_bins, (list, tuple)) or not ppm_bins
                or any(not is_int(b) or b < 1 for b in ppm_bins)):
            raise ValueError(f"ppm_bins: must be a non-empty list of positive integers, got {ppm_bins!r}")
        if len(set(ppm_bins)) != len(ppm_bins):
            raise ValueError(f"ppm_bins: has repeated sizes: {list(ppm_bins)!r}")

    def __init__(
        self,
        *,
        backbone: str,
        num_classes: int,
        aux_weight: float = 0.4,
        output_stride: int = 8,
        zoom_factor: int | None = None,
        dropout: float = 0.1,
        ppm_bins: tuple[int, ...] = DEFAULT_PPM_BINS,
    ):
        super().__init__()
        self.check_args(backbone=backbone, num_classes=num_classes, aux_weight=aux_weight, output_stride=output_stride,
                        zoom_factor=zoom_factor, dropout=dropout, ppm_bins=ppm_bins)
        zoom_factor = output_stride if zoom_factor is None else zoom_factor
        ppm_bins = tuple(ppm_bins)

        self.backbone_name = backbone
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.zoom_factor = zoom_factor
        # Read by the trainer (see unifiedseg/models/__init__.py).
        self.logits_stride = output_stride // zoom_factor
        self.aux_weight = float(aux_weight)

        self.backbone = build_backbone(backbone, families=families_for(self.model_type),
                                       output_stride=output_stride)
        if feature_strides(self.backbone)[-1] != output_stride:
            raise ValueError(f"backbone: {backbone!r} gives its last features at stride "
                             f"{feature_strides(self.backbone)[-1]}, not the output_stride {output_stride}")
        # the auxiliary head reads the second-to-last feature map (layer3), pyramid pooling the last (layer4)
        layer3_channels, layer4_channels = feature_channels(self.backbone)[-2:]
        if layer4_channels < len(ppm_bins):
            raise ValueError(f"ppm_bins: has {len(ppm_bins)} sizes, more than the {layer4_channels} channels of layer4")
        self.ppm = PyramidPooling(in_channels=layer4_channels, bins=ppm_bins)
        self.head = conv_head(
            in_channels=self.ppm.out_channels, hidden_channels=HEAD_CHANNELS, num_classes=num_classes, dropout=dropout
        )
        self.aux_head = (
            conv_head(in_channels=layer3_channels, hidden_channels=AUX_CHANNELS, num_classes=num_classes, dropout=dropout)
            if self.aux_weight > 0
            else None
        )

    def _upsample(self, x: torch.Tensor, image_size: torch.Size) -> torch.Tensor:
        size = tuple(-(-side // self.logits_stride) for side in image_size)  # ceil division
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        layer3, layer4 = self.backbone(images)[-2:]
        outputs = {"logits": self._upsample(self.head(self.ppm(layer4)), images.shape[-2:])}
        if self.training and self.aux_head is not None:
            outputs["aux_logits"] = self._upsample(self.aux_head(layer3), images.shape[-2:])
        return outputs
