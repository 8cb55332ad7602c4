"""The training loop, as small as Detectron2's SimpleTrainer: each step reads `accumulate_grad`
micro-batches, runs the model (a Segmentor, maybe inside DistributedDataParallel) under autocast,
backpropagates the sum of its losses, and steps the optimizer (through the GradScaler; with gradient
clipping when configured). Everything else -- the lr schedule, SWA, validation, checkpointing, logging,
training mIoU -- is a hook (unifiedseg/engine/hooks.py, where their order is documented).

Hook points, in the order of `trainer.hooks`: `before_train`, then per step `before_step` and
`after_step` (trainer.iter is then the number of steps done, trainer.result the step's StepResult, whose
`outputs` hold what the model returned besides its losses, per micro-batch, for the hooks to read),
and `after_train`, which runs in a `finally`: also when a step or a hook raised (then
`trainer.exception` holds the exception, and hooks that validate or save leave it alone). A hook may
have `state_dict()` / `load_state_dict(state)`: `trainer.state_dict()` saves them under `hooks`, by
hook class name, and `trainer.load_state_dict()` gives them back on resume.

Faults: a non-finite loss (or, without a GradScaler, non-finite gradients) skips the step's update on
every rank alike (the check is all-reduced) and stops training after `max_nonfinite_steps` in a row;
a stop request (`trainer.stop_requested`, set by a signal or a hook) stops every rank at the same step.
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

from unifiedseg.config.hooks import Hook
from unifiedseg.models.segmentor import is_loss_name, total_loss
from unifiedseg.optim.optimizer import clip_gradients
from unifiedseg.utils.precision import autocast

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says what to change."""


@dataclass
class StepResult:
    """What one optimizer step did, for the hooks that log it."""

    losses: dict[str, float]  # named losses (weighted), summed `loss`, and ohem_kept when sampled
    lr: float
    data_time: float
    step_time: float
    skipped_nonfinite: bool = False
    skipped_overflow: bool = False  # fp16 GradScaler skipped the update (inf/NaN gradients)
    grad_norm: float | None = None
    bad_samples: list[str] = field(default_factory=list)
    # per micro-batch: (the dataset of each sample, the model's outputs other than its loss terms, e.g. the
    # Segmentor's detached `predictions` and `labels`, and `dataset_losses` when trainer.forward_kwargs asks)
    outputs: list[tuple[list[str], dict]] = field(default_factory=list)


COUNTERS = ("nonfinite_total", "nonfinite_in_a_row", "overflow_total", "bad_sample_total")


class Trainer:
    """Runs steps from `start_iter` to `max_iters`; everything else is a hook (see the module docstring).

    model: the Segmentor (or DDP / torch.compile around it): `model(batch, **trainer.forward_kwargs)`
    returns its named losses and logging outputs (hooks may set `forward_kwargs` in before_step). batches: an iterator of collated batches. scaler: a
    torch.amp.GradScaler (disabled unless amp is fp16). clip_grad: the `clip_grad` config or None.
    """

    def __init__(self, *, model: nn.Module, batches, optimizer: torch.optim.Optimizer, max_iters: int,
                 start_iter: int = 0, accumulate_grad: int = 1, clip_grad=None, amp: str = "off", scaler=None,
                 max_nonfinite_steps: int = 5, hooks: list[Hook] = ()):
        self.model = model
        self.batches = batches  # accumulate_grad of them per step
        self.optimizer = optimizer
        self.iter = start_iter
        self.start_iter = start_iter
        self.max_iters = max_iters
        self.accumulate_grad = accumulate_grad
        self.clip_grad = clip_grad
        self.amp = amp
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(enabled=False)
        self.max_nonfinite_steps = max_nonfinite_steps
        self.hooks = list(hooks)
        named = [type(h).__name__ for h in self.hooks if hasattr(h, "state_dict")]
        repeated = sorted({n for n in named if named.count(n) > 1})
        if repeated:
            raise ValueError(f"hooks with state are saved by class name, and several are of class "
                             f"{', '.join(repeated)}; give each its own class")
        self.device = next(model.parameters()).device
        self.forward_kwargs: dict = {}  # the model's keyword arguments for the next step, set by hooks
        self.stop_requested = False  # set by a signal handler or a hook: stop after the current step
        self.exception: BaseException | None = None
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.overflow_total = 0
        self.bad_sample_total = 0
        self.result: StepResult | None = None

    @property
    def finished(self) -> bool:
        return self.iter >= self.max_iters

    def train(self) -> None:
        try:
            for hook in self.hooks:
                hook.before_train(self)
            while self.iter < self.max_iters and not self._stop_agreed():
                for hook in self.hooks:
                    hook.before_step(self)
                self.result = self.run_step()
                self.iter += 1
                for hook in self.hooks:
                    hook.after_step(self)
        except BaseException as err:
            self.exception = err
            raise
        finally:
            self._after_train()

    def _after_train(self) -> None:
        """Every hook's after_train, even when one raises; the first error is raised after all ran
        (unless training itself failed: its exception is the one that propagates)."""
        first = None
        for hook in self.hooks:
            try:
                hook.after_train(self)
            except BaseException as err:  # noqa: BLE001 -- re-raised below
                if first is None:
                    first = err
                logger.error("after_train of %s failed: %r", type(hook).__name__, err)
        if first is not None and self.exception is None:
            raise first

    # ---- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The iteration, the fault counters and the state of each hook that has one (by class name)."""
        return {"iteration": self.iter, "counters": {name: getattr(self, name) for name in COUNTERS},
                "hooks": {type(h).__name__: h.state_dict() for h in self.hooks if hasattr(h, "state_dict")}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved; hooks missing from `state["hooks"]` keep their fresh state."""
        self.iter = self.start_iter = int(state["iteration"])
        for name, value in state.get("counters", {}).items():
            if name in COUNTERS:
                setattr(self, name, value)
        saved = state.get("hooks") or {}
        for hook in self.hooks:
            name = type(hook).__name__
            if hasattr(hook, "load_state_dict") and saved.get(name) is not None:
                hook.load_state_dict(saved[name])
            elif hasattr(hook, "load_state_dict"):
                logger.warning("the checkpoint holds no state for hook %s; it starts afresh", name)

    # ---- one step ---------------------------------------------------------------------------------------
    def run_step(self) -> StepResult:
        self.model.train()
        start = time.perf_counter()
        data_time = 0.0
        totals: dict[str, float] = {}
        bad_samples: list[str] = []
        step_outputs = []
        nonfinite = False
        for micro in range(self.accumulate_grad):
            fetch = time.perf_counter()
            batch = next(self.batches)  # every micro-batch is read, even after a skip: the data stays in step
            data_time += time.perf_counter() - fetch
            bad_samples += batch.get("bad_samples", [])
            if nonfinite:
                continue
            # DDP: reduce gradients only on the last micro-batch of the step.
            sync = micro == self.accumulate_grad - 1 or not hasattr(self.model, "no_sync")
            with (contextlib.nullcontext() if sync else self.model.no_sync()):
                with autocast(self.device, self.amp):
                    outputs = self.model(batch, **self.forward_kwargs)
                total = total_loss(outputs)
                if not self._all_finite(total):
                    nonfinite = True
                    continue
                self.scaler.scale(total / self.accumulate_grad).backward()
            for name, value in outputs.items():
                if is_loss_name(name) or (isinstance(value, torch.Tensor) and value.dim() == 0):
                    totals[name] = totals.get(name, 0.0) + float(value.detach()) / self.accumulate_grad
            totals["loss"] = totals.get("loss", 0.0) + float(total.detach()) / self.accumulate_grad
            step_outputs.append((list(batch["dataset"]), {k: v for k, v in outputs.items() if not is_loss_name(k)}))
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
        return StepResult(losses=totals, lr=lr, data_time=data_time, step_time=time.perf_counter() - start,
                          skipped_overflow=overflow, grad_norm=grad_norm, bad_samples=bad_samples, outputs=step_outputs)

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
        # the hooks still see the iteration (the schedule advances): only its update was dropped
        return StepResult(losses={}, lr=lr, data_time=data_time,
                          step_time=time.perf_counter() - start, skipped_nonfinite=True, bad_samples=bad_samples)

    # ---- agreement across ranks -----------------------------------------------------------------------
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


def _grad_norm(params) -> float | None:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
