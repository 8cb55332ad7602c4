"""Load trained models from a training config and checkpoint(s), and predict label maps and class
probabilities for RGB images in the model's label space or a test dataset's.

    from unifiedseg.inference import Predictor
    predictor = Predictor("config/train/demo/unified.yaml", "work_dirs/demo/unified/checkpoints/final.pth",
                          mode="slide", crop_size=96, output_dataset="demo-camvid")
    labels, probs = predictor.predict(image)      # image: RGB uint8 (H, W, 3) numpy array

Returns (a `Prediction`, a named tuple):
- labels: (H, W) numpy array of class ids into `predictor.class_names`, uint8 (uint16 for more than
  255 classes, as label maps, `unifiedseg.constants.label_dtype`);
- probs: (C, H, W) float32 numpy array of class probabilities (on the CPU);
- `.confidence`: (H, W) float32, the largest probability per pixel, computed when asked for.

The config is the training config (a path or a loaded DictConfig): it names the taxonomy, the training
datasets and the model, and gives the normalisation (data.augmentation.mean / std: each model is a
`Segmentor`, unifiedseg/models/segmentor.py, which normalises and gives logits at the input size), and
the inference settings: its `inference` section (mode, short_side, crop_size, stride, scales, flip, window,
...; unifiedseg/config/inference.py), which the keyword arguments given here override, and for
mode="slide" without crop_size, the training crop (data.augmentation.crop_size). The label space and the model
are rebuilt exactly as training builds them (unifiedseg.config.builders), so the label space's
fingerprint is the one the checkpoint stores; a checkpoint of another taxonomy or model is refused
naming both, and so is a state dict that does not fit the built model. The backbone's `pretrained`
file is not loaded (the checkpoint has all weights).

`output_dataset` maps the averaged probabilities to a test dataset's classes (MSeg's zero-shot
protocol): probs_test = test_matrix @ probs, where test_matrix[t, u] = 1 when class u counts towards
test class t (`TaxonomyConverter.test_matrix`); classes that count towards no test class drop out,
so test probabilities may sum to less than 1. The dataset must be a test column of the config's
taxonomy TSV (for an oracle, its own dataset).

`device`: None picks CUDA when available; on the CPU a warning is logged. `amp` ("off", "fp16",
"bf16") autocasts the forward passes only; softmax, blending and averaging stay in float32.

Several checkpoints form an ensemble: each model's probabilities (over all scales and flips) are
averaged. They must all hold the same taxonomy and model identity. Modes, scales, flip, tiling and
their cost are described in unifiedseg/inference/tiling.py.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig

from unifiedseg.config import load_config
from unifiedseg.config.builders import build_model_for, build_segmentor, training_converter
from unifiedseg.constants import label_dtype
from unifiedseg.engine import checkpoint as ckpt
from unifiedseg.config.inference import inference_settings
from unifiedseg.inference.tiling import predict_probs
from unifiedseg.models.segmentor import Segmentor
from unifiedseg.taxonomy import build_converter
from unifiedseg.utils.plain import to_plain
from unifiedseg.utils.precision import AMP_MODES, autocast

logger = logging.getLogger("unifiedseg")


class Prediction(NamedTuple):
    """One image's prediction: labels (H, W) class ids and probs (C, H, W) float32, both numpy."""

    labels: np.ndarray
    probs: np.ndarray

    @property
    def confidence(self) -> np.ndarray:
        """(H, W) float32: the probability of the predicted class at each pixel."""
        return self.probs.max(axis=0)


def resolve_device(device) -> torch.device:
    """None picks CUDA when available, else the CPU (with a warning: inference there is slow)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device (e.g. 'cuda', 'cuda:1', 'cpu'): {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but CUDA is not available here; use device='cpu'")
    if device.type == "cpu":
        logger.warning("running inference on the CPU: expect seconds to minutes per image at full resolution "
                       "(a GPU is tens of times faster)")
    return device


def checkpoint_paths(checkpoint) -> list[str]:
    """One path or a non-empty list of paths, as strings."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return [os.fspath(checkpoint)]
    if isinstance(checkpoint, Sequence) and checkpoint and all(isinstance(p, (str, os.PathLike)) for p in checkpoint):
        return [os.fspath(p) for p in checkpoint]
    raise ValueError(f"checkpoint must be a path or a non-empty list of paths (an ensemble), got {checkpoint!r}")


def check_same_identity(first: dict, first_path: str, state: dict, path: str) -> None:
    """Checkpoints of an ensemble must share the taxonomy fingerprint and the model identity."""
    mine, theirs = first.get("taxonomy", {}), state.get("taxonomy", {})
    if mine.get("fingerprint") != theirs.get("fingerprint"):
        raise ckpt.CheckpointError(
            f"ensemble checkpoints disagree on the taxonomy: {first_path} has {mine.get('kind', '?')} "
            f"{mine.get('source', '?')} (fingerprint {mine.get('fingerprint')}), {path} has "
            f"{theirs.get('kind', '?')} {theirs.get('source', '?')} (fingerprint {theirs.get('fingerprint')})")
    model_a = ckpt.model_identity(first.get("model_config", {}))
    model_b = ckpt.model_identity(state.get("model_config", {}))
    if model_a != model_b:
        raise ckpt.CheckpointError(f"ensemble checkpoints disagree on the model: {first_path} holds {model_a}, "
                                   f"{path} holds {model_b}")


def output_mapping(cfg: DictConfig, converter, output_dataset: str | None) -> tuple[torch.Tensor | None, list[str]]:
    """(test_matrix (n_test_classes, num_classes), test class names) for `output_dataset`, or
    (None, the model's class names) for the model's own label space."""
    if output_dataset is None:
        return None, list(converter.class_names)
    if not isinstance(output_dataset, str):
        raise ValueError(f"output_dataset must be a test dataset name or None, got {output_dataset!r}")
    # The test mapping lives in a converter built with that test column; its fingerprint differs from the
    # training one (built with none), but its label space must be the same.
    with_test = build_converter(cfg.taxonomy.kind, cfg.taxonomy.tsv, train_datasets=list(cfg.data.train_datasets),
                                test_datasets=[output_dataset])
    if with_test.class_names != converter.class_names:
        raise ValueError(f"the {cfg.taxonomy.kind} taxonomy {cfg.taxonomy.tsv} gives other classes when built with "
                         f"test dataset {output_dataset!r}; cannot map predictions to it")
    return with_test.test_matrix(output_dataset), with_test.dataset_class_names(output_dataset)


def load_model(cfg: DictConfig, state: dict, path: str, num_classes: int) -> tuple[Segmentor, dict]:
    """Build the config's model (without its pretrained backbone file) and load the checkpoint's weights;
    returned as a Segmentor in eval mode, with the config's normalisation."""
    inference_cfg = copy.deepcopy(cfg)
    if "pretrained" in inference_cfg.model:
        inference_cfg.model.pretrained = None  # the checkpoint holds every weight
    network, model_cfg = build_model_for(inference_cfg, num_classes)
    model = build_segmentor(cfg, network)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()][1:6]
        raise ckpt.CheckpointError(
            f"{path}: its weights do not fit the model the config builds ({model_cfg['type']} {model_cfg['backbone']}, "
            f"{num_classes} classes): " + "; ".join(lines)) from None
    return model.eval(), model_cfg


class Predictor:
    """A trained model (or an ensemble) ready to predict RGB images; see the module docstring."""

    def __init__(self, config, checkpoint, *, device=None, mode: str | None = None, short_side: int | None = None,
                 crop_size=None, stride=None, scales=None, flip: bool | None = None, tile_batch: int | None = None,
                 output_dataset: str | None = None, window: str | None = None, pad_mode: str | None = None,
                 class_chunk: int | None = None, amp: str = "off") -> None:
        cfg = config if isinstance(config, DictConfig) else load_config(config)
        # the config's `inference` section, with the arguments given here (not None) in its place
        self.settings = inference_settings(cfg.inference, training_crop=cfg.data.augmentation.crop_size, mode=mode,
                                           short_side=short_side, crop_size=crop_size, stride=stride, scales=scales,
                                           flip=flip, tile_batch=tile_batch, window=window, pad_mode=pad_mode,
                                           class_chunk=class_chunk)
        if amp not in AMP_MODES:
            raise ValueError(f"amp {amp!r} is unknown; valid: {', '.join(AMP_MODES)}")
        self.amp = amp
        self.config = cfg
        self.converter = training_converter(cfg)
        self.output_dataset = output_dataset
        test_matrix, self.class_names = output_mapping(cfg, self.converter, output_dataset)
        self.checkpoints = checkpoint_paths(checkpoint)
        self.device = resolve_device(device)

        model_identity = {**to_plain(cfg.model), "num_classes": cfg.model.get("num_classes", self.converter.num_classes)}
        self.models = []
        first = None
        for path in self.checkpoints:  # one checkpoint in memory at a time (they may hold optimizer states)
            state = ckpt.load_checkpoint(path)
            identity = {"taxonomy": state.get("taxonomy", {}), "model_config": state.get("model_config", {})}
            if first is None:
                first = identity
            else:
                check_same_identity(first, self.checkpoints[0], identity, path)
            ckpt.check_compatible(state, path=path, fingerprint=self.converter.fingerprint(),
                                  taxonomy_source=f"{self.converter.kind} {self.converter.source}",
                                  model_config=model_identity)
            model, _ = load_model(cfg, state, path, self.converter.num_classes)
            self.models.append(model.to(self.device))
            del state
        self.test_matrix = test_matrix.to(self.device) if test_matrix is not None else None

    @property
    def num_classes(self) -> int:
        """Classes of the output space (the model's, or output_dataset's)."""
        return len(self.class_names)

    def forward_passes(self, image_hw: Sequence[int]) -> int:
        """Network inputs one image of this size costs (all models of an ensemble together)."""
        return self.settings.forward_passes(image_hw) * len(self.models)

    def _forward(self, model: Segmentor):
        def forward(normalised: torch.Tensor) -> torch.Tensor:
            with autocast(self.device, self.amp):
                return model.predict_logits(normalised, normalized=True)
        return forward

    @torch.inference_mode()
    def predict_tensor(self, image: np.ndarray) -> torch.Tensor:
        """(C, H, W) float32 probabilities in the output space, on the predictor's device."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) \
                else type(image).__name__
            raise ValueError(f"image must be an RGB uint8 numpy array of shape (H, W, 3), got a {described} "
                             f"(grey images: np.repeat(image[..., None], 3, axis=2); BGR from cv2.imread: "
                             f"image[..., ::-1])")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: shape {image.shape}")
        chw = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
        probs = None
        for model in self.models:
            # normalised once per model (scales, flips and tiles are cut from it; "mean" padding is 0)
            model_probs = predict_probs(self._forward(model), model.normalize(chw), self.settings)
            probs = model_probs if probs is None else probs.add_(model_probs)
        if len(self.models) > 1:
            probs /= len(self.models)
        if self.test_matrix is not None:
            c, h, w = probs.shape
            probs = (self.test_matrix @ probs.reshape(c, h * w)).reshape(-1, h, w)
        return probs

    def predict(self, image: np.ndarray) -> Prediction:
        """Labels (H, W) and probabilities (C, H, W) for an RGB uint8 (H, W, 3) image; see the module docstring."""
        probs = self.predict_tensor(image)
        labels = probs.argmax(dim=0)
        return Prediction(labels=labels.cpu().numpy().astype(label_dtype(self.num_classes)),
                          probs=probs.float().cpu().numpy())

    def __repr__(self) -> str:
        space = self.output_dataset or f"{self.converter.kind} ({self.converter.num_classes} classes)"
        return (f"Predictor({len(self.models)} model(s) from {', '.join(self.checkpoints)}, output {space}, "
                f"{self.settings}, device {self.device})")
