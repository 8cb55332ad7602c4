"""Segmentation models (HRNetV2, PSPNet) on timm backbones, the Segmentor around them, their construction
and pretrained backbone loading.

The `Segmentor` (`segmentor`) is what training, validation, inference and export use: it normalises pixels,
pads and resizes around the network, and computes the losses; see unifiedseg/models/segmentor.py.

The network contract the Segmentor relies on (networks hold no loss and no normalisation):

- `outputs = network(images)` with normalised images (N, 3, H, W) returns a dict:
  - `"logits"`: (N, num_classes, H', W') raw class scores, where H' = ceil(H / network.logits_stride) and
    W' likewise. `logits_stride` is 4 for HRNet (its first branch's stride), 1 (logits at the input
    resolution) for PSPNet with its default zoom_factor (= output_stride, MSeg's zoom_factor 8); PSPNet
    with a smaller zoom_factor gives coarser logits. Networks never resize their logits to the input:
    the Segmentor does.
  - `"aux_logits"`: same shape, only in training mode and only when `aux_weight > 0` (PSPNet's
    auxiliary FCN head on layer3). In eval mode the dict holds `"logits"` only.
- `network.aux_weight` (float): the weight of the auxiliary loss (0.0 for HRNet); `network.num_classes`.
- optional `network.logits_stride` (default 1), `network.size_multiple` (default 1: input sides the
  network needs to divide by; HRNet: 32 with timm's nearest fusion, 1 with MSeg's bilinear one; the
  Segmentor pads to it) and `network.logits_align_corners`
  (default False: logits are upsampled by logits_stride and cropped; True: resized straight to the
  input size with align_corners=True, as MSeg's HRNet does).
- `network.backbone` meets the backbone contract of unifiedseg/models/backbones.py (timm's feature_info:
  the channels and strides of the features it returns); heads read nothing else of it, and a backbone
  family registered there plugs into the network types its `networks` name.
- `network.pretrained_report` (set by `build_model`): the `PretrainedLoadReport` of the backbone weights,
  or None when the config has no `pretrained` file.

Modules: `segmentor` (Segmentor), `backbones` (the backbone contract and families), `hrnet` (HRNetV2Seg),
`hrnet_fuse` (MSeg's bilinear branch fusion in timm's HRNet), `pspnet` (PSPNet), `pretrained`
(load_pretrained), `mseg_checkpoint` (MSeg's released HRNet checkpoints mapped onto HRNetV2Seg), `build`
(build_model, model_identity, convert_sync_batchnorm), `checks` (argument checks shared by the models).
"""

from unifiedseg.models.backbones import (BACKBONE_FAMILIES, BackboneFamily, FeatureInfo,
                                         check_feature_info, register_backbone_family)
from unifiedseg.models.build import ModelConfigError, build_model, convert_sync_batchnorm
from unifiedseg.models.hrnet import HRNetV2Seg
from unifiedseg.models.pretrained import PretrainedLoadError, PretrainedLoadReport, ShapeMismatch, load_pretrained
from unifiedseg.models.pspnet import PSPNet
from unifiedseg.models.segmentor import Segmentor, is_loss_name, total_loss

__all__ = [
    "BACKBONE_FAMILIES",
    "BackboneFamily",
    "FeatureInfo",
    "Segmentor",
    "check_feature_info",
    "is_loss_name",
    "register_backbone_family",
    "total_loss",
    "HRNetV2Seg",
    "ModelConfigError",
    "PSPNet",
    "PretrainedLoadError",
    "PretrainedLoadReport",
    "ShapeMismatch",
    "build_model",
    "convert_sync_batchnorm",
    "load_pretrained",
]
