"""Build a segmentation model from its config section, and convert it to SyncBatchNorm for multi-GPU training.

    model:
      type: hrnet              # hrnet | pspnet
      backbone: hrnet_w48      # a timm model name of the type's family
      num_classes: 194
      pretrained: null         # or a local checkpoint file for the backbone (unifiedseg.models.pretrained)
      dropout: 0.0
      # hrnet only (unifiedseg/models/hrnet.py; MSeg's values in brackets, the defaults are timm's):
      fuse_upsampling: nearest # nearest | bilinear [MSeg]: branch upsampling in the backbone's fuse layers
      logits_align_corners: false  # true [MSeg]: logits resized to the input with align_corners=True
      head_conv_bias: false    # true [MSeg]: the head's 1x1 conv before its BatchNorm has a bias
      bn_momentum: null        # every BatchNorm's momentum (null: 0.1; MSeg: 0.01)
      # pspnet only:
      aux_weight: 0.4          # 0 disables the auxiliary head (hrnet accepts 0 only)
      output_stride: 8         # 8 | 16
      zoom_factor: 8           # power of two <= output_stride; see unifiedseg/models/pspnet.py
      ppm_bins: [1, 2, 3, 6]

An unknown type or key is an error that names it and lists the valid ones; so is a bad value.
`check_model_cfg` holds these rules without building anything (the config loader runs it when a config
loads); `build_model` applies them and builds. `model_identity` is what a checkpoint records of the model
and must match to load (unifiedseg/engine/checkpoint.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from unifiedseg.models.backbones import families_for, family_of
from unifiedseg.models.hrnet import HRNetV2Seg
from unifiedseg.models.pretrained import load_pretrained
from unifiedseg.models.pspnet import PSPNet
from unifiedseg.utils.checks import check_choice, check_keys, is_int, keyed
from unifiedseg.utils.plain import to_plain

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("type", "backbone", "num_classes")
COMMON_OPTIONAL_KEYS = ("pretrained", "dropout")
# Per type: the model class and the config keys it takes besides REQUIRED_KEYS and COMMON_OPTIONAL_KEYS.
MODEL_TYPES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "hrnet": (HRNetV2Seg, ("aux_weight",) + tuple(HRNetV2Seg.OPTION_DEFAULTS)),
    "pspnet": (PSPNet, ("aux_weight", "output_stride", "zoom_factor", "ppm_bins")),
}
# Every key a `model` section may hold, whatever its type (for suggestions across sections).
MODEL_KEYS = REQUIRED_KEYS + COMMON_OPTIONAL_KEYS + tuple(dict.fromkeys(k for _, keys in MODEL_TYPES.values() for k in keys))
# What identifies a model for its checkpoints: these keys, plus the architecture options its class lists in
# IDENTITY_OPTIONS (those that change what the network computes, with their defaults).
IDENTITY_KEYS = REQUIRED_KEYS


class ModelConfigError(ValueError):
    """The `model` config section is wrong; the message names the key and lists the valid options."""


def check_model_cfg(cfg: Mapping[str, Any]) -> None:
    """The rules of a `model` section, without building the network: type, keys, pretrained, and the model
    class's own argument rules (backbone among timm's models of the family, dropout, ...). num_classes may
    be absent (it is set from the taxonomy when the model is built). Errors name the dotted key."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"model: must be a mapping with keys {', '.join(REQUIRED_KEYS)}, got {cfg!r}")
    if "type" not in cfg:
        raise ModelConfigError(f"model: missing key 'type' (valid types: {', '.join(MODEL_TYPES)})")
    model_type = check_choice(cfg["type"], "model.type", list(MODEL_TYPES), error=ModelConfigError)
    model_class, type_keys = MODEL_TYPES[model_type]
    valid_keys = REQUIRED_KEYS + COMMON_OPTIONAL_KEYS + type_keys
    check_keys(cfg, valid_keys, "model", note=f" for type {model_type}", error=ModelConfigError)
    if "backbone" not in cfg:
        raise ModelConfigError("model: missing key 'backbone' (a timm model name of the type's family)")
    pretrained = cfg.get("pretrained")
    if pretrained is not None and (not isinstance(pretrained, (str, os.PathLike)) or str(pretrained) == ""):
        raise ModelConfigError(f"model.pretrained: must be a file path or null, got {pretrained!r}")
    kwargs = {key: value for key, value in cfg.items() if key not in ("type", "pretrained")}
    if model_type == "hrnet":
        # HRNetV2 has no auxiliary head; accept MSeg-style configs that say so with aux_weight 0.
        aux_weight = kwargs.pop("aux_weight", 0)
        if aux_weight != 0:
            raise ModelConfigError(f"model.aux_weight: is {aux_weight!r}, but type 'hrnet' has no auxiliary head; "
                                   f"set it to 0 or remove it")
    kwargs.setdefault("num_classes", 1)  # not known yet: any valid count checks the other arguments
    try:
        model_class.check_args(**kwargs)
    except ValueError as err:
        raise keyed(err, "model", list(kwargs), error=ModelConfigError) from None


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """The model described by `cfg` (a dict or OmegaConf DictConfig; num_classes required), with backbone
    weights loaded if asked. The pretrained load report is kept as `model.pretrained_report` (None without
    `pretrained`)."""
    check_model_cfg(cfg)
    if "num_classes" not in cfg:
        raise ModelConfigError("model: missing key 'num_classes' (the training taxonomy's class count)")
    model_type = cfg["type"]
    model_class, _ = MODEL_TYPES[model_type]
    pretrained = cfg.get("pretrained")
    kwargs = {key: to_plain(cfg[key]) for key in cfg if key not in ("type", "pretrained")}
    if model_type == "hrnet":
        kwargs.pop("aux_weight", None)  # 0 (check_model_cfg)
    try:
        model = model_class(**kwargs)
    except ValueError as err:
        raise keyed(err, "model", list(kwargs), error=ModelConfigError) from None

    model.pretrained_report = None
    if pretrained is not None:
        family = family_of(cfg["backbone"], families_for(model_class.model_type))
        model.pretrained_report = load_pretrained(model.backbone, pretrained,
                                                  classifier_prefixes=family.classifier_prefixes)
    logger.info(
        "model %s (%s): %.1fM parameters", model_type, cfg["backbone"], sum(p.numel() for p in model.parameters()) / 1e6
    )
    return model


def model_identity(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of its model and must match to load: type, backbone, num_classes, and the
    type's IDENTITY_OPTIONS (an option absent from `model_cfg` counts as its default, so checkpoints written
    before it existed match). A bn_momentum or dropout does not change a trained network, so it is not part."""
    model_cfg = to_plain(model_cfg) or {}
    identity = {key: model_cfg.get(key) for key in IDENTITY_KEYS}
    model_class = MODEL_TYPES.get(identity["type"], (None,))[0]
    for key, default in getattr(model_class, "IDENTITY_OPTIONS", {}).items():
        identity[key] = model_cfg.get(key, default)
    return identity


def convert_sync_batchnorm(model: nn.Module, *, enabled: bool, world_size: int) -> nn.Module:
    """The model with BatchNorm layers replaced by SyncBatchNorm when `enabled` and training on more than one process.

    With one process SyncBatchNorm would only add overhead (and needs an initialised process group), so
    the model is returned unchanged.
    """
    if not is_int(world_size) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if not (enabled and world_size > 1):
        return model
    logger.info("converting BatchNorm to SyncBatchNorm across %d processes", world_size)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
