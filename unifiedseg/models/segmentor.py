"""The Segmentor: what stands between pixels and the network in training, validation, inference and export.

It owns
- the pixel normalisation: `normalize(images)` takes uint8 or float images with values 0-255 and returns
  (images - mean) / std in float32 (mean and std on the 0-255 scale are non-persistent buffers). No
  other place normalises pixels: data loaders send uint8 crops;
- the network (`network`: HRNetV2Seg, PSPNet, or any module with the contract of unifiedseg/models/__init__.py),
  and the resizing around it: the input is zero-padded bottom/right (zeros are the mean colour once
  normalised) to the network's `size_multiple`, and its logits, which come at 1/`logits_stride` of the
  input, are upsampled bilinearly to `logits_stride` x their size and cropped to the input (logit cell i
  covers pixels [i s, (i + 1) s)); a network whose `logits_align_corners` is True (MSeg's HRNet) has its
  logits resized straight to the input size with align_corners=True instead. This is the only place
  logits are resized. The padding and upsampling are arithmetic on the input's size, so a traced export
  (unifiedseg/inference/export.py) takes any size;
- the losses, for training: a LossSet (`unifiedseg.losses.build_losses`), the auxiliary weight (the
  network's `aux_weight` unless given), the label space (`num_classes`, `ignore_index`) and the
  partial-label target sets (`TaxonomyConverter.partial_target_sets`).

Entry points:
- `forward_train(batch, dataset_losses=False) -> dict` (also `segmentor(batch)`, so that
  DistributedDataParallel wraps it): for a collated batch (`image` uint8 or float 0-255 (N, 3, H, W),
  `label` (N, H, W) training ids, `dataset` names), the named weighted losses `loss_*` of the logits
  and `aux_loss_*` (aux_weight x the losses of the auxiliary logits), plus what logging reads:
  `ohem_kept` when OHEM samples, `predictions` (N, H, W) and `labels` (N, H, W) (detached, for training
  mIoU) and, with `dataset_losses=True`, `dataset_losses` {dataset: summed loss of its samples} (no
  gradient). `total_loss(outputs)` sums the loss entries (`is_loss_name`). Logits are resized to the
  label size for the losses (as MMSeg does), so a PSPNet with zoom_factor below its output stride trains.
  The network runs under the caller's autocast; the losses are computed in float32 outside it.
- `predict_logits(images, normalized=False)`: (N, C, H, W) logits at the input size (uint8 or float
  0-255 images; `normalized=True` for images already through `normalize`, e.g. the tiles of a sliding
  window). Runs in whatever mode and grad context the caller set.

Checkpoints: `state_dict()` and `load_state_dict()` are the network's, key for key, so checkpoints
hold exactly the bare network's weights (older checkpoints load as they are); mean, std, target sets
and the loss set are not saved. `with_network(other)` is the same Segmentor around another network
(e.g. SWA's averaged copy). With `norm_eval`, `train()` keeps every BatchNorm layer in eval mode
(frozen statistics); with `channels_last`, the network and its inputs use that memory format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from unifiedseg.losses.build import LOSS_PREFIX
from unifiedseg.taxonomy.converter import split_partial_labels

AUX_PREFIX = "aux_"


def is_loss_name(name: str) -> bool:
    """Whether an output of `forward_train` is a loss term (summed for backward): loss_* and aux_loss_*."""
    return name.startswith(LOSS_PREFIX) or name.startswith(AUX_PREFIX + LOSS_PREFIX)


def total_loss(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the loss terms of `forward_train`'s outputs."""
    terms = [value for name, value in outputs.items() if is_loss_name(name)]
    if not terms:
        raise ValueError(f"no loss terms among the outputs {sorted(outputs)}")
    return sum(terms[1:], terms[0])


def _colour(name: str, values: Sequence[float], *, positive: bool = False) -> torch.Tensor:
    values = [float(v) for v in values]
    if len(values) != 3 or (positive and min(values) <= 0):
        raise ValueError(f"{name} must be 3 numbers (RGB, 0-255 scale){' > 0' if positive else ''}, got {values}")
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1)


class Segmentor(nn.Module):
    """Normalisation, network and losses in one module; see the module docstring."""

    def __init__(self, *, network: nn.Module, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, loss_set: nn.Module | None = None, num_classes: int | None = None,
                 ignore_index: int = IGNORE_INDEX, partial_target_sets: torch.Tensor | None = None,
                 aux_weight: float | None = None, norm_eval: bool = False, channels_last: bool = False):
        super().__init__()
        self.network = network
        self.loss_set = loss_set  # None: for inference only
        self.num_classes = num_classes if num_classes is not None else getattr(network, "num_classes", None)
        self.ignore_index = ignore_index
        self.aux_weight = float(getattr(network, "aux_weight", 0.0) if aux_weight is None else aux_weight)
        self.size_multiple = int(getattr(network, "size_multiple", 1))
        self.logits_stride = int(getattr(network, "logits_stride", 1))
        self.logits_align_corners = bool(getattr(network, "logits_align_corners", False))
        self.norm_eval = norm_eval
        self.channels_last = channels_last
        if channels_last:
            network.to(memory_format=torch.channels_last)
        self.register_buffer("mean", _colour("mean", mean), persistent=False)
        self.register_buffer("std", _colour("std", std, positive=True), persistent=False)
        self.register_buffer("partial_target_sets", partial_target_sets, persistent=False)
        if loss_set is not None and self.num_classes is None:
            raise ValueError("a Segmentor with losses needs num_classes (the network has no num_classes attribute)")

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def with_network(self, network: nn.Module) -> "Segmentor":
        """The same normalisation, losses and settings around another network (on this one's device)."""
        return Segmentor(network=network, mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist(),
                         loss_set=self.loss_set, num_classes=self.num_classes, ignore_index=self.ignore_index,
                         partial_target_sets=self.partial_target_sets, aux_weight=self.aux_weight,
                         norm_eval=self.norm_eval, channels_last=self.channels_last).to(self.device)

    # ---- checkpoints: the network's weights only ----------------------------------------------------
    def state_dict(self, *args, **kwargs):
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

    def train(self, mode: bool = True) -> "Segmentor":
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ---- pixels in, logits out ------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float images with values 0-255, (N, 3, H, W) or (3, H, W) -> float32 (images - mean) / std
        on this Segmentor's device."""
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 or float with values 0-255, got {images.dtype}")
        if images.dim() not in (3, 4) or images.shape[-3] != 3:
            raise ValueError(f"images must be (N, 3, H, W) or (3, H, W), got shape {tuple(images.shape)}")
        mean, std = (self.mean, self.std) if images.dim() == 4 else (self.mean[0], self.std[0])
        return (images.to(self.device, non_blocking=True).float() - mean) / std

    def _network_outputs(self, normalized: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's outputs for normalised images, padded to size_multiple first."""
        if self.size_multiple > 1:
            # (m - h % m) % m: 0 when already a multiple; traced as arithmetic on the input's size
            m = self.size_multiple
            height, width = normalized.shape[-2], normalized.shape[-1]
            normalized = F.pad(normalized, (0, (m - width % m) % m, 0, (m - height % m) % m))
        if self.channels_last:
            normalized = normalized.contiguous(memory_format=torch.channels_last)
        return self.network(normalized)

    def _at_input_size(self, logits: torch.Tensor, height, width) -> torch.Tensor:
        """Logits of an input of height x width, at 1/logits_stride and maybe padded, upsampled and cropped to it."""
        if self.logits_align_corners:
            if tuple(logits.shape[-2:]) == (height, width):
                return logits
            return F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=True)
        if self.logits_stride > 1:
            s = self.logits_stride
            logits = F.interpolate(logits.float(), size=(logits.shape[-2] * s, logits.shape[-1] * s),
                                   mode="bilinear", align_corners=False)
        return logits[..., :height, :width]

    def predict_logits(self, images: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
        """(N, C, H, W) logits at the input size for (N, 3, H, W) images (uint8 or float 0-255, or already
        normalised with `normalized=True`)."""
        x = images if normalized else self.normalize(images)
        if x.dim() != 4:
            raise ValueError(f"images must be a (N, 3, H, W) batch, got shape {tuple(x.shape)}")
        height, width = x.shape[-2], x.shape[-1]
        return self._at_input_size(self._network_outputs(x)["logits"], height, width)

    # ---- training ---------------------------------------------------------------------------------------
    def forward(self, batch: Mapping, *, dataset_losses: bool = False) -> dict:
        """`forward_train` (the module's forward, so that DistributedDataParallel wraps it)."""
        return self.forward_train(batch, dataset_losses=dataset_losses)

    def forward_train(self, batch: Mapping, *, dataset_losses: bool = False) -> dict:
        """Named losses and what logging reads for a collated batch; see the module docstring."""
        if self.loss_set is None:
            raise RuntimeError("this Segmentor has no loss set (it was built for inference); pass loss_set= to train")
        images = self.normalize(batch["image"])
        labels = batch["label"].to(self.device, non_blocking=True).long()  # uint8 or int32 from the loaders
        labels, partial = split_partial_labels(labels, self.num_classes, self.ignore_index)
        height, width = images.shape[-2], images.shape[-1]
        outputs = self._network_outputs(images)
        with torch.autocast(device_type=self.device.type, enabled=False):  # losses in float32
            logits = self._to_label_size(self._at_input_size(outputs["logits"].float(), height, width), labels)
            result = dict(self._losses(logits, labels, partial))
            if "aux_logits" in outputs and self.aux_weight:
                aux_logits = self._to_label_size(self._at_input_size(outputs["aux_logits"].float(), height, width),
                                                 labels)
                for name, value in self._losses(aux_logits, labels, partial).items():
                    if name.startswith(LOSS_PREFIX):
                        result[AUX_PREFIX + name] = self.aux_weight * value
            detached = logits.detach()
            result["predictions"] = detached.argmax(1)
            result["labels"] = labels
            if dataset_losses:
                result["dataset_losses"] = self.dataset_losses(detached, labels, partial, list(batch["dataset"]))
        return result

    @staticmethod
    def _to_label_size(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if tuple(logits.shape[-2:]) == tuple(labels.shape[-2:]):
            return logits
        return F.interpolate(logits, size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False)

    def _losses(self, logits: torch.Tensor, labels: torch.Tensor, partial: torch.Tensor) -> dict:
        if self.loss_set.needs_partial_labels:
            return self.loss_set(logits, labels, partial_labels=partial, target_sets=self.partial_target_sets)
        return self.loss_set(logits, labels)

    @torch.no_grad()
    def dataset_losses(self, logits: torch.Tensor, labels: torch.Tensor, partial: torch.Tensor,
                       datasets: list[str]) -> dict[str, float]:
        """The summed loss (loss_* terms) of each dataset's samples in the batch, for logging (no gradient)."""
        out = {}
        for dataset in dict.fromkeys(datasets):
            index = torch.tensor([i for i, d in enumerate(datasets) if d == dataset], device=logits.device)
            terms = self._losses(logits.index_select(0, index), labels.index_select(0, index),
                                 partial.index_select(0, index))
            out[dataset] = float(sum(v for k, v in terms.items() if k.startswith(LOSS_PREFIX)))
        return out


__all__ = ["Segmentor", "is_loss_name", "total_loss"]
