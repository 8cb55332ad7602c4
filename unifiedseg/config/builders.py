"""What training and inference both build from a training config, built one way for both: the label
space it trains in (`training_converter`), its network (`build_model_for`) and the Segmentor around it
(`build_segmentor`: the config's pixel mean/std; the losses only for training); and the dataset splits a
run reads (`data_requests`), which training and the data status command both check.

A checkpoint stores the fingerprint of the label space and the identity of the model it was trained
with; inference and evaluation rebuild both from the same config through these functions, so a
checkpoint fits exactly when the config is the one it was trained with.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from unifiedseg.data.status import SplitRequest
from unifiedseg.models import build_model
from unifiedseg.models.segmentor import Segmentor
from unifiedseg.taxonomy import build_converter
from unifiedseg.utils.plain import to_plain


def training_converter(cfg: DictConfig):
    """The label space a config trains in, built exactly as its checkpoints' fingerprint was (no test columns)."""
    return build_converter(cfg.taxonomy.kind, cfg.taxonomy.tsv, train_datasets=list(cfg.data.train_datasets),
                           test_datasets=[])


def build_model_for(cfg: DictConfig, num_classes: int, *, pretrained: bool = True) -> tuple[torch.nn.Module, dict]:
    """The config's model with `num_classes` outputs, and its plain `model` section (num_classes filled in);
    a config whose model.num_classes disagrees with the taxonomy is refused. `pretrained=False` leaves the
    backbone's model.pretrained file unread (for weights that come from a checkpoint)."""
    model_cfg = dict(to_plain(cfg.model))
    if not pretrained:
        model_cfg["pretrained"] = None
    if model_cfg.setdefault("num_classes", num_classes) != num_classes:
        raise ValueError(f"model.num_classes = {model_cfg['num_classes']} but the {cfg.taxonomy.kind} taxonomy "
                         f"{cfg.taxonomy.tsv} has {num_classes} classes; drop model.num_classes (it is set from the taxonomy)")
    return build_model(model_cfg), model_cfg


def build_segmentor(cfg: DictConfig, network: torch.nn.Module, **training) -> Segmentor:
    """The Segmentor of a config around `network`: its normalisation (data.augmentation.mean/std), and for
    training the keyword arguments of Segmentor (loss_set, num_classes, ignore_index, ...)."""
    return Segmentor(network=network, mean=tuple(cfg.data.augmentation.mean), std=tuple(cfg.data.augmentation.std),
                     **training)


def validation_names(cfg: DictConfig) -> list[str]:
    """The datasets a run validates on: data.val.datasets, or its training datasets."""
    return list(cfg.data.val.datasets) if cfg.data.val.datasets is not None else list(cfg.data.train_datasets)


def data_requests(cfg: DictConfig) -> list[SplitRequest]:
    """The dataset splits a run reads (training and the data status command check them): its training
    lists and its validation lists."""
    return ([SplitRequest(name, cfg.data.train_split, True, "train") for name in cfg.data.train_datasets]
            + [SplitRequest(name, cfg.data.val.split, True, "val") for name in validation_names(cfg)])
