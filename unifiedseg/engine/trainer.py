"""The training loop: a step (data, forward, named losses, backward, optimizer and schedule) and four
hook points around it (before/after train, before/after step) where checkpointing, validation and
logging live (unifiedseg/engine/hooks.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.losses.build import LOSS_PREFIX
from unifiedseg.optim.optimizer import clip_gradients
from unifiedseg.taxonomy.converter import split_partial_labels
from unifiedseg.utils.modules import unwrap
from unifiedseg.utils.precision import autocast

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says what to change."""


class Hook:
    """Override any of the four points; each receives the trainer."""

    def before_train(self, trainer: "Trainer") -> None: ...

    def after_train(self, trainer: "Trainer") -> None: ...

    def before_step(self, trainer: "Trainer") -> None: ...

    def after_step(self, trainer: "Trainer") -> None: ...

    def on_exception(self, trainer: "Trainer") -> None:
        """Training is ending with an exception: release what before_train took (handlers, files)."""


@dataclass
class StepResult:
    """What one optimizer step did, for the hooks that log it."""

    losses: dict[str, float]  # named losses (weighted), summed `loss`, and ohem_kept when sampled
    # summed loss per dataset of the batch; only on steps that `dataset_loss_interval` selects
    dataset_losses: dict[str, float]
    lr: float
    data_time: float
    step_time: float
    skipped_nonfinite: bool = False
    skipped_overflow: bool = False  # fp16 GradScaler skipped the update (inf/NaN gradients)
    grad_norm: float | None = None
    bad_samples: list[str] = field(default_factory=list)
    # (dataset, predictions, labels) of the batch on the training device, for training mIoU
    predictions: list[tuple[str, torch.Tensor, torch.Tensor]] = field(default_factory=list)


class Trainer:
    """Runs steps from `start_iter` to `max_iters`; everything else is a hook."""

    def __init__(self, *, model: nn.Module, loss_set, optimizer, scheduler, batches, start_iter: int,
                 max_iters: int, device: torch.device, amp: str, scaler, num_classes: int,
                 ignore_index: int = IGNORE_INDEX, partial_target_sets: torch.Tensor | None = None,
                 accumulate_grad: int = 1, clip_grad=None, max_nonfinite_steps: int = 5, channels_last: bool = False,
                 norm_eval: bool = False, swa=None, hooks: list[Hook] = (), mean=(0.0, 0.0, 0.0),
                 std=(1.0, 1.0, 1.0), dataset_loss_interval: int = 1):
        self.model = model
        self.loss_set = loss_set
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches  # iterator of collated batches, accumulate_grad of them per step
        self.iter = start_iter
        self.start_iter = start_iter
        self.max_iters = max_iters
        self.device = device
        self.amp = amp
        self.scaler = scaler
        self.num_classes = num_classes
        self.ignore_index = ignore_index  # the label space's (TaxonomyConverter.ignore_index)
        self.partial_target_sets = partial_target_sets.to(device) if partial_target_sets is not None else None
        self.accumulate_grad = accumulate_grad
        self.clip_grad = clip_grad
        self.max_nonfinite_steps = max_nonfinite_steps
        self.channels_last = channels_last
        self.norm_eval = norm_eval  # batch-norm layers keep their running statistics (eval mode)
        self.swa = swa  # an SWAState owns the lr from swa.start_iter on and averages the weights
        self.hooks = list(hooks)
        # Per-dataset losses evaluate the loss set again on each dataset's samples (for logging only):
        # every this many steps (the logged ones), and never when 0 (ranks that do not log).
        self.dataset_loss_interval = dataset_loss_interval
        # uint8 batches (data.normalize_on_device) are normalised here, on the training device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.stop_requested = False  # set by a signal handler: stop after the current step
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.overflow_total = 0
        self.bad_sample_total = 0
        self.result: StepResult | None = None

    def train(self) -> None:
        for hook in self.hooks:
            hook.before_train(self)
        try:
            while self.iter < self.max_iters and not self._stop_agreed():
                for hook in self.hooks:
                    hook.before_step(self)
                self.result = self.run_step()
                self.iter += 1
                for hook in self.hooks:
                    hook.after_step(self)
        except BaseException:
            for hook in self.hooks:
                hook.on_exception(self)
            raise
        for hook in self.hooks:
            hook.after_train(self)

    def _stop_agreed(self) -> bool:
        """Under DDP every rank stops at the same step when any rank was asked to (a signal may reach one)."""
        if dist.is_available() and dist.is_initialized():
            flag = torch.tensor([float(self.stop_requested)], device=self._collective_device())
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.stop_requested = bool(flag.item())
        return self.stop_requested

    def _all_finite(self, value: torch.Tensor) -> bool:
        """Whether `value` is finite on every rank: all ranks then skip, or step, together."""
        finite = torch.isfinite(value.detach()).all().float().reshape(1).to(self._collective_device())
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _collective_device(self) -> torch.device:
        return self.device if dist.is_initialized() and dist.get_backend() == "nccl" else torch.device("cpu")

    @property
    def finished(self) -> bool:
        return self.iter >= self.max_iters

    def set_train_mode(self) -> None:
        self.model.train()
        if self.norm_eval:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def step_schedule(self) -> None:
        if self.swa is not None:
            self.swa.after_optimizer_step(self.iter, self.scheduler)
        else:
            self.scheduler.step()

    def run_step(self) -> StepResult:
        self.set_train_mode()
        start = time.perf_counter()
        data_time = 0.0
        totals: dict[str, float] = {}
        dataset_losses: dict[str, float] = {}
        bad_samples: list[str] = []
        predictions = []
        nonfinite = False
        step = self.iter + 1  # the number this step has once done (the hooks see it as trainer.iter)
        per_dataset = self.dataset_loss_interval > 0 and (step % self.dataset_loss_interval == 0
                                                          or step == self.max_iters)
        for micro in range(self.accumulate_grad):
            fetch = time.perf_counter()
            batch = next(self.batches)  # every micro-batch is read, even after a skip: the data stays in step
            data_time += time.perf_counter() - fetch
            bad_samples += batch["bad_samples"]
            if nonfinite:
                continue
            # DDP: reduce gradients only on the last micro-batch of the step.
            sync = micro == self.accumulate_grad - 1 or not hasattr(self.model, "no_sync")
            with (contextlib.nullcontext() if sync else self.model.no_sync()):
                losses, logits, labels, partial = self._forward(batch)
                total = sum(v for k, v in losses.items() if k.startswith(LOSS_PREFIX))
                if not self._all_finite(total):
                    nonfinite = True
                    continue
                self.scaler.scale(total / self.accumulate_grad).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) / self.accumulate_grad
            totals["loss"] = totals.get("loss", 0.0) + float(total.detach()) / self.accumulate_grad
            if per_dataset:
                for dataset, value in self._dataset_losses(batch, logits, labels, partial).items():
                    dataset_losses[dataset] = dataset_losses.get(dataset, 0.0) + value / self.accumulate_grad
            preds = logits.detach().argmax(1)
            predictions += [(d, preds[i], labels[i]) for i, d in enumerate(batch["dataset"])]
        self.bad_sample_total += len(bad_samples)
        lr = self.optimizer.param_groups[0]["lr"]
        if nonfinite:
            return self._skip_nonfinite(start, data_time, lr, bad_samples)
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = clip_gradients(params, self.clip_grad)
        if not self.scaler.is_enabled():
            # Without a GradScaler nothing else catches inf/NaN gradients of a finite loss (bf16, fp32);
            # after DDP's all-reduce every rank sees the same gradients, so they decide alike.
            norm = grad_norm if grad_norm is not None else _grad_norm(params)
            if norm is not None and not math.isfinite(norm):
                return self._skip_nonfinite(start, data_time, lr, bad_samples)
        self.nonfinite_in_a_row = 0
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        overflow = scale_before is not None and self.scaler.get_scale() < scale_before
        self.overflow_total += int(overflow)
        self.optimizer.zero_grad(set_to_none=True)
        self.step_schedule()
        return StepResult(losses=totals, dataset_losses=dataset_losses, lr=lr, data_time=data_time,
                          step_time=time.perf_counter() - start, skipped_overflow=overflow, grad_norm=grad_norm,
                          bad_samples=bad_samples, predictions=predictions)

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of images on the training device, normalised (uint8 batches are normalised here)."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:  # normalisation left to the device
            images = (images.float() - self.mean) / self.std
        return images

    def _forward(self, batch: dict):
        images = self.prepare_images(batch["image"])
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # uint8 or int32 from device-normalised loaders
        labels = batch["label"].to(self.device, non_blocking=True).long()
        labels, partial = split_partial_labels(labels, self.num_classes, self.ignore_index)
        with autocast(self.device, self.amp):
            outputs = self.model(images)
        logits = outputs["logits"].float()
        losses = self._losses(logits, labels, partial)
        aux_weight = getattr(unwrap(self.model), "aux_weight", 0.0)
        if "aux_logits" in outputs and aux_weight:
            for name, value in self._losses(outputs["aux_logits"].float(), labels, partial).items():
                if name.startswith(LOSS_PREFIX):
                    losses[f"aux_{name}"] = aux_weight * value
        return losses, logits, labels, partial

    def _losses(self, logits, labels, partial) -> dict:
        if self.loss_set.needs_partial_labels:
            return self.loss_set(logits, labels, partial_labels=partial, target_sets=self.partial_target_sets)
        return self.loss_set(logits, labels)

    @torch.no_grad()
    def _dataset_losses(self, batch, logits, labels, partial) -> dict[str, float]:
        """The loss of each dataset's samples in the batch (for logging only; no gradient)."""
        out = {}
        names = batch["dataset"]
        for dataset in dict.fromkeys(names):
            index = torch.tensor([i for i, d in enumerate(names) if d == dataset], device=logits.device)
            sub = self._losses(logits.index_select(0, index), labels.index_select(0, index),
                               partial.index_select(0, index))
            out[dataset] = float(sum(v for k, v in sub.items() if k.startswith(LOSS_PREFIX)))
        return out

    def _skip_nonfinite(self, start, data_time, lr, bad_samples) -> StepResult:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        logger.warning("iteration %d: non-finite loss or gradients, step skipped (%d in a row)", self.iter,
                       self.nonfinite_in_a_row)
        if self.nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise TrainingError(
                f"the loss or its gradients were non-finite for {self.nonfinite_in_a_row} steps in a row (up to iteration {self.iter}); "
                f"lower optimizer.lr, add clip_grad: {{max_norm: 35}}, use train.amp=bf16 instead of fp16, or check "
                f"the data with tools/verify_dataset.py (train.max_nonfinite_steps sets the limit)")
        # the schedule still advances: the iteration happened, only its update was dropped
        self.step_schedule()
        return StepResult(losses={}, dataset_losses={}, lr=lr, data_time=data_time,
                          step_time=time.perf_counter() - start, skipped_nonfinite=True, bad_samples=bad_samples)


def _grad_norm(params) -> float | None:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
