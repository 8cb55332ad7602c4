"""Segmentation models (HRNetV2, PSPNet) on timm backbones, their construction and pretrained backbone loading.

The contract the trainer relies on (models hold no loss):

- `outputs = model(images)` with images (N, 3, H, W) returns a dict:
  - `"logits"`: (N, num_classes, H', W') raw class scores, where H' = ceil(H / model.logits_stride) and
    W' likewise. `model.logits_stride` is 1 (logits at the input resolution) for HRNet and for PSPNet
    with its default zoom_factor (= output_stride, MSeg's zoom_factor 8); PSPNet with a smaller
    zoom_factor gives coarser logits, and the trainer must then resize labels (nearest) or refuse.
  - `"aux_logits"`: same shape, only in training mode and only when `model.aux_weight > 0` (PSPNet's
    auxiliary FCN head on layer3). In eval mode the dict holds `"logits"` only.
- `model.aux_weight` (float): the weight of the auxiliary loss; the trainer computes
  `loss = loss_fn(logits, labels) + model.aux_weight * loss_fn(aux_logits, labels)` with the loss set of
  `unifiedseg.losses`. It is 0.0 for HRNet.
- `model.backbone` is a timm features_only model; `model.backbone.feature_info.channels()` and
  `.reduction()` describe what it returns (HRNet: the four branches at strides 4, 8, 16, 32; PSPNet:
  layer3 and layer4 at the output stride).
- `model.pretrained_report` (set by `build_model`): the `PretrainedLoadReport` of the backbone weights,
  or None when the config has no `pretrained` file.

Modules: `hrnet` (HRNetV2Seg), `pspnet` (PSPNet), `pretrained` (load_pretrained), `build` (build_model,
convert_sync_batchnorm), `checks` (argument checks shared by the models).
"""

from unifiedseg.models.build import ModelConfigError, build_model, convert_sync_batchnorm
from unifiedseg.models.hrnet import HRNetV2Seg
from unifiedseg.models.pretrained import PretrainedLoadError, PretrainedLoadReport, ShapeMismatch, load_pretrained
from unifiedseg.models.pspnet import PSPNet

__all__ = [
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
