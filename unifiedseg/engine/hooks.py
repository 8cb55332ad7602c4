"""The trainer's hooks: the lr schedule, SWA, stopping on signals, validation, checkpointing, training
mIoU and logging; a registry of hook types that configs may name; and the order they run in.

Order. `run_training` (unifiedseg/engine/launch.py) gives the trainer its hooks in this order, and
every hook point (before_train, before_step, after_step, after_train) goes through them in it:

 1. LRScheduleHook   steps the lr schedule (with SWA: the SWAState, which averages the weights and owns
                     the lr from swa.start_iter on) right after each step, so every later hook sees, and
                     saves, the schedule of the next iteration;
 2. SWAHook          (with `swa`) holds the averaged weights; at the end recomputes their BatchNorm
                     statistics, before the validation and the final checkpoint use them;
 3. ValidationHook   (with validation datasets) every data.val.interval steps and at the end;
 4. TrainingMIoUHook confusion matrices of the training predictions, for the log records;
 5. the hooks of `train.hooks` in the config, in their order;
 6. the hooks passed to `run_training(cfg, extra_hooks=...)`, in their order;
 7. LoggingHook      writes the step's record (every hook before it has done its part, and any hook with
                     a `log_record(trainer) -> dict` method adds to the record), and at the end writes
                     the interval in progress and closes the TensorBoard file;
 8. CheckpointHook   periodic checkpoints, the final one, and one on a stop request, so a
                     checkpoint holds every hook's state after the step. The logging hook also writes a
                     record at every checkpoint's iteration, so no checkpoint falls inside a log interval:
                     a resumed run logs exactly what an uninterrupted one does;
 9. StopOnSignalHook SIGTERM / SIGINT ask the trainer to stop after the current step. Last, so that its
                     after_train restores the previous handlers only after the final validation and
                     checkpoint: a signal during those is still a stop request, not a kill.

after_train runs for every hook in a `finally`; when training raised, `trainer.exception` is set and
ValidationHook, CheckpointHook and SWAHook do nothing, while StopOnSignalHook and LoggingHook still
restore the signal handlers and close their files.

log.jsonl: one JSON record per line: the interval records (`iter`, `lr`, losses, times, ...), the
validation records (`iter`, `val_miou`, ...), and an event record at each start (`{"event": "start" |
"resume", "iter": ..., "time": ...}`). A resumed run first removes the records of iterations after the
checkpoint it resumes from (a run killed after its last checkpoint logged steps that are replayed
now; the resume event counts them in `replayed_records_removed`), so no iteration is logged twice.

State. A hook with `state_dict()` / `load_state_dict(state)` is saved in every checkpoint under
`hooks`, by class name (LRScheduleHook: the scheduler; SWAHook: the averaged model and its scheduler),
and restored on resume. Checkpoints written before hooks had state keep the scheduler and SWA state
at the top level (`scheduler`, `swa`); `legacy_hook_states` reads them.

Hook types from a config: `train.hooks: [{type: TimeLimitHook, seconds: 3600}, ...]`; `type` names a
class registered with `@register_hook_type` (the others are keyword arguments of its constructor). The
registry refuses a name that is taken and an unknown type lists the registered ones. The registry, the
`Hook` interface and the built-in TimeLimitHook live in unifiedseg/config/hooks.py (so that `load_config`
checks the entries); register your own in a module you import before loading the config.

Logged losses are averaged over ranks: on each log step every rank's interval averages are gathered
(`average_across_ranks`) and the mean of each value over the ranks that have it is written, as
Detectron2 does; training mIoU counts the predictions of every rank (their confusion matrices are
summed); the fault counters agree across ranks. `log_record` runs on every rank (it may gather across
ranks); the main rank writes the record.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from tqdm import tqdm

from unifiedseg.config.hooks import (HOOK_TYPES, Hook, TimeLimitHook, build_hook, build_hooks, check_hook_cfg,
                                     check_hook_cfgs, register_hook_type)
from unifiedseg.engine.checkpoint import FINAL_NAME, checkpoint_dir, periodic_path, prune_checkpoints, save_checkpoint
from unifiedseg.engine.distributed import average_across_ranks, names_across_ranks, on_main_rank
from unifiedseg.engine.trainer import Trainer
from unifiedseg.evaluation.confusion import ConfusionMatrix
from unifiedseg.evaluation.metrics import format_metric, json_metric
from unifiedseg.optim.schedule import load_scheduler_state
from unifiedseg.utils.fileio import atomic_write_text

logger = logging.getLogger(__name__)

# ---- the schedule and SWA -----------------------------------------------------------------------------


class LRScheduleHook(Hook):
    """After every step (a skipped one too: the iteration happened) steps the lr scheduler; with `swa`,
    hands the step to the SWAState, which steps the scheduler before swa.start_iter and from then on
    averages the weights and anneals the lr itself. State: the scheduler's."""

    def __init__(self, *, scheduler, swa=None):
        self.scheduler = scheduler
        self.swa = swa

    def after_step(self, trainer: Trainer) -> None:
        if self.swa is not None:
            self.swa.after_optimizer_step(trainer.iter - 1, self.scheduler)  # the 0-based iteration just done
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        load_scheduler_state(self.scheduler, state)


class SWAHook(Hook):
    """The SWA phase's state (the averaged model and its lr scheduler), and at the end of a finished run
    the averaged model's BatchNorm statistics recomputed over `bn_batches` training batches
    (`bn_loader()` gives them, `bn_forward(model, batch)` runs one), then rank 0's copied to every rank."""

    def __init__(self, *, swa, bn_loader: Callable[[], Iterable], bn_forward: Callable, bn_batches: int = 50):
        self.swa = swa
        self.bn_loader = bn_loader
        self.bn_forward = bn_forward
        self.bn_batches = bn_batches

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.finished or trainer.exception is not None:
            return
        used = self.swa.finalize(self.bn_loader(), max_batches=self.bn_batches, forward=self.bn_forward)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # each rank saw its own batches: use rank 0's statistics everywhere, as final.pth holds them
            for buffer in self.swa.averaged_module.buffers():
                torch.distributed.broadcast(buffer, src=0)
        logger.info("SWA: averaged %d iterations; batch-norm statistics recomputed over %d batches",
                    self.swa.num_averaged, used)

    def state_dict(self) -> dict:
        return self.swa.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.swa.load_state_dict(state)


def legacy_hook_states(state: Mapping) -> dict:
    """The hook states of a checkpoint written before hooks had state (top-level scheduler and swa)."""
    hooks = {}
    if state.get("scheduler") is not None:
        hooks["LRScheduleHook"] = state["scheduler"]
    if state.get("swa") is not None:
        hooks["SWAHook"] = state["swa"]
    return hooks


# ---- stopping ------------------------------------------------------------------------------------------


class StopOnSignalHook(Hook):
    """SIGTERM or SIGINT asks the trainer to stop after the current step (the checkpoint hook then saves);
    a second signal interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.previous = {}

    def before_train(self, trainer: Trainer) -> None:
        def handler(signum, frame):
            if trainer.stop_requested:
                raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}: stopping at once")
            logger.warning("received %s: stopping after iteration %d and saving a checkpoint",
                           signal.Signals(signum).name, trainer.iter + 1)
            trainer.stop_requested = True

        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, handler)

    def after_train(self, trainer: Trainer) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        self.previous = {}


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C or a group-wide SIGTERM must not kill the loader processes
    while the main process finishes its step and saves a checkpoint (they exit with the parent)."""
    for sig in StopOnSignalHook.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


# ---- validation and checkpoints -------------------------------------------------------------------------


class ValidationHook(Hook):
    """Every `interval` steps (and at the end) run `evaluate()` -> metrics dict; log and keep the last."""

    def __init__(self, *, evaluate: Callable[[], dict], interval: int, logging_hook: "LoggingHook | None" = None):
        self.evaluate = evaluate
        self.interval = interval
        self.logging_hook = logging_hook
        self.last_metrics: dict | None = None

    def _run(self, trainer: Trainer) -> None:
        metrics = self.evaluate()
        self.last_metrics = {"iter": trainer.iter, **metrics}
        summary = ", ".join(f"{d} {format_metric(m['miou'], digits=4, percent=False)}"
                            for d, m in metrics["datasets"].items())
        logger.info("validation at iter %d: mIoU %s (%s)", trainer.iter,
                    format_metric(metrics["miou"], digits=4, percent=False), summary)
        if self.logging_hook is not None and self.logging_hook.enabled:
            self.logging_hook.write_record({"iter": trainer.iter, "val_miou": metrics["miou"],
                                            "val_dataset_miou": {d: m["miou"] for d, m in metrics["datasets"].items()}})
            if self.logging_hook.writer is not None:  # a missing mIoU (None: no labelled pixels) is not plotted
                scalars = {"val/miou": metrics["miou"],
                           **{f"val_miou/{d}": m["miou"] for d, m in metrics["datasets"].items()}}
                for tag, value in scalars.items():
                    if value is not None:
                        self.logging_hook.writer.add_scalar(tag, value, trainer.iter)

    def after_step(self, trainer: Trainer) -> None:
        if self.interval > 0 and trainer.iter % self.interval == 0 and not trainer.finished:
            self._run(trainer)

    def state_dict(self) -> dict:
        """The last validation's metrics, so a resumed run still reports them."""
        return {"last_metrics": self.last_metrics}

    def load_state_dict(self, state: dict) -> None:
        self.last_metrics = state.get("last_metrics")

    def after_train(self, trainer: Trainer) -> None:
        if trainer.finished and trainer.exception is None:
            self._run(trainer)


class CheckpointHook(Hook):
    """Main rank writes: every `interval` steps a periodic checkpoint (the newest `keep` are kept), at the
    end `final.pth`, and on a stop request (signal) a checkpoint of the current iteration. A checkpoint
    is `state(trainer)` (model, optimizer, data position, ...) with `trainer.state_dict()` (iteration,
    counters, hook states). `before_final(trainer)` runs on the main rank just before final.pth is
    written (the run's final metrics: on disk even when the checkpoint does not fit). When a write
    fails (a full disk), every rank raises: the main rank its error, the others PeerFailedError."""

    def __init__(self, *, work_dir: Path, interval: int, keep: int, state: Callable[[Trainer], dict], is_main: bool,
                 before_final: Callable[[Trainer], None] | None = None):
        self.work_dir = Path(work_dir)
        self.interval = interval
        self.keep = keep
        self.state = state
        self.is_main = is_main
        self.before_final = before_final
        self.last_saved: Path | None = None

    def save(self, path: Path, trainer: Trainer, before: Callable[[Trainer], None] | None = None) -> None:
        def write() -> None:
            if before is not None:
                before(trainer)
            save_checkpoint(path, {**self.state(trainer), **trainer.state_dict()})
            self.last_saved = path
            logger.info("saved checkpoint %s", path)

        on_main_rank(write, is_main=self.is_main)  # the other ranks wait for it, and learn of its failure

    def after_step(self, trainer: Trainer) -> None:
        if self.interval > 0 and trainer.iter % self.interval == 0 and not trainer.finished:
            self.save(periodic_path(self.work_dir, trainer.iter), trainer)
            if self.is_main:
                prune_checkpoints(self.work_dir, self.keep)

    def after_train(self, trainer: Trainer) -> None:
        if trainer.exception is not None:
            return
        if trainer.finished:
            self.save(checkpoint_dir(self.work_dir) / FINAL_NAME, trainer, before=self.before_final)
        elif trainer.stop_requested and trainer.iter > trainer.start_iter:
            self.save(periodic_path(self.work_dir, trainer.iter), trainer)
            if self.is_main:  # a stop's checkpoint counts among the `keep` newest, as a periodic one does
                prune_checkpoints(self.work_dir, self.keep)


# ---- logging ------------------------------------------------------------------------------------------------


class TrainingMIoUHook(Hook):
    """Confusion matrices of the training predictions per dataset, counted where the predictions are
    (unchecked: the pipeline made the labels; no GPU sync); each log record gets the mIoU per dataset
    since the previous record (`log_record`), from the matrices of all ranks summed."""

    def __init__(self, *, num_classes: int, ignore_index: int):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrices: dict[str, ConfusionMatrix] = {}

    def after_step(self, trainer: Trainer) -> None:
        for datasets, outputs in trainer.result.outputs:
            self.count(datasets, outputs["predictions"], outputs["labels"])

    def count(self, datasets: list[str], predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch's (N, H, W) predictions and labels to the matrices of their samples' datasets."""
        for dataset, pred, label in zip(datasets, predictions, labels):
            matrix = self.matrices.get(dataset)
            if matrix is None:
                matrix = self.matrices[dataset] = ConfusionMatrix(self.num_classes, self.ignore_index,
                                                                  device=pred.device)
            matrix.update(pred, label, check=False)

    def state_dict(self) -> dict:
        """The matrices counted since the last log record (a resumed run logs the same interval)."""
        return {"matrices": {d: m.matrix.cpu() for d, m in self.matrices.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.matrices = {}
        for dataset, counts in state.get("matrices", {}).items():
            matrix = ConfusionMatrix(self.num_classes, self.ignore_index)
            matrix.matrix.copy_(counts)
            self.matrices[dataset] = matrix

    def log_record(self, trainer: Trainer) -> dict:
        # every rank's counts (ranks may train on different datasets); a dataset whose crops held no
        # labelled pixels has no mIoU (None)
        record = {}
        for dataset in names_across_ranks(list(self.matrices)):
            matrix = self.matrices.get(dataset) or ConfusionMatrix(self.num_classes, self.ignore_index)
            record[dataset] = json_metric(matrix.merge().miou())  # merge(): summed over the ranks
        self.matrices = {}
        return {"train_miou": record}


class LoggingHook(Hook):
    """Every `interval` steps (and the last) a record of the interval: lr, each named loss, the per-dataset
    losses of the logged steps' batches, data and step times -- averaged over the interval's steps, then
    over the ranks -- plus what other hooks add (`log_record`) and the fault counters. The main rank
    (`enabled`) writes it as a JSON line of log.jsonl, TensorBoard scalars and a log line, and shows a
    tqdm bar with ETA. Every rank must have this hook: the average over ranks is a collective."""

    def __init__(self, *, work_dir: Path, interval: int, enabled: bool = True, tensorboard: bool = True,
                 checkpoint_interval: int = 0):
        self.work_dir = Path(work_dir)
        self.interval = max(1, interval)
        self.checkpoint_interval = checkpoint_interval  # a record at every checkpoint too (see the module docstring)
        self.enabled = enabled
        self.tensorboard = tensorboard
        self.bar = None
        self.writer = None
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def is_log_step(self, step: int, trainer: Trainer) -> bool:
        return (step % self.interval == 0 or step >= trainer.max_iters
                or (self.checkpoint_interval > 0 and step % self.checkpoint_interval == 0))

    def before_train(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        self._start_event(trainer)
        self.bar = tqdm(total=trainer.max_iters, initial=trainer.iter, desc="train", unit="it", dynamic_ncols=True)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.work_dir / "tensorboard"))

    def before_step(self, trainer: Trainer) -> None:
        # per-dataset losses evaluate the loss set again on each dataset's samples: on logged steps only
        trainer.forward_kwargs["dataset_losses"] = self.is_log_step(trainer.iter + 1, trainer)

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.counts[key] = self.counts.get(key, 0) + 1

    def after_step(self, trainer: Trainer) -> None:
        result = trainer.result
        for name, value in result.losses.items():
            self._add(name, value)
        dataset_losses: dict[str, float] = {}  # summed over the step's micro-batches, as the losses are
        for _, outputs in result.outputs:
            for name, value in outputs.get("dataset_losses", {}).items():
                dataset_losses[name] = dataset_losses.get(name, 0.0) + value / len(result.outputs)
        for name, value in dataset_losses.items():
            self._add(f"loss/{name}", value)
        self._add("data_time", result.data_time)
        self._add("step_time", result.step_time)
        if self.bar is not None:
            self.bar.update(1)
            if "loss" in result.losses:
                self.bar.set_postfix(loss=f"{result.losses['loss']:.4f}", lr=f"{result.lr:.2e}", refresh=False)
        if self.is_log_step(trainer.iter, trainer):
            self.flush(trainer)

    def flush(self, trainer: Trainer) -> None:
        averages = average_across_ranks({k: self.sums[k] / self.counts[k] for k in self.sums})
        self._reset()
        added = {}
        for hook in trainer.hooks:  # on every rank: a hook may gather across ranks
            if hook is not self and hasattr(hook, "log_record"):
                added.update(hook.log_record(trainer))
        if not self.enabled:
            return
        record = {"iter": trainer.iter, "lr": trainer.result.lr, "time": time.time(), **averages, **added}
        record.update(nonfinite_skipped=trainer.nonfinite_total, fp16_overflow_skipped=trainer.overflow_total,
                      bad_samples_skipped=trainer.bad_sample_total)
        if torch.cuda.is_available():
            record["max_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.write_record(record)
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("iter", "time"):
                    self.writer.add_scalar(f"train/{key}", value, trainer.iter)
            for dataset, miou in record.get("train_miou", {}).items():
                if miou is not None:
                    self.writer.add_scalar(f"train_miou/{dataset}", miou, trainer.iter)
        losses = ", ".join(f"{k}={v:.4f}" for k, v in record.items()
                           if (k.startswith("loss") or k.startswith("aux_loss")) and "/" not in k)
        logger.info("iter %d/%d lr %.3e %s data %.3fs step %.3fs", trainer.iter, trainer.max_iters, record["lr"],
                    losses, record.get("data_time", 0), record.get("step_time", 0))

    def _start_event(self, trainer: Trainer) -> None:
        """A start or resume event in log.jsonl; on resume, the records of the iterations after the
        checkpoint (logged by a run that was killed later) go first: they are replayed now."""
        path = self.work_dir / "log.jsonl"
        removed = 0
        if trainer.iter > 0 and path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if not _after(line, trainer.iter)]
            removed = len(lines) - len(kept)
            if removed:
                atomic_write_text(path, "".join(line + "\n" for line in kept))
        event = {"event": "resume" if trainer.iter > 0 else "start", "iter": trainer.iter, "time": time.time()}
        self.write_record({**event, "replayed_records_removed": removed} if trainer.iter > 0 else event)

    def write_record(self, record: dict) -> None:
        with open(self.work_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def after_train(self, trainer: Trainer) -> None:
        # the interval in progress when a stop request (signal, time limit) ended the run: every rank
        # stopped at the same step, so the average over ranks can run
        if self.sums and trainer.exception is None and trainer.iter > trainer.start_iter:
            self.flush(trainer)
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _after(line: str, iteration: int) -> bool:
    """Whether a log.jsonl line is the record of an iteration after `iteration` (event records are kept)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False  # a line cut short by a kill is kept as it is: nothing here rewrites what it cannot read
    return isinstance(record, dict) and "event" not in record and isinstance(record.get("iter"), int) \
        and record["iter"] > iteration


__all__ = [  # the registry and TimeLimitHook live in unifiedseg/config/hooks.py; named here too for users
    "HOOK_TYPES", "CheckpointHook", "Hook", "LRScheduleHook", "LoggingHook", "StopOnSignalHook", "SWAHook",
    "TimeLimitHook", "TrainingMIoUHook", "ValidationHook", "build_hook", "build_hooks", "check_hook_cfg",
    "check_hook_cfgs", "ignore_stop_signals", "legacy_hook_states", "register_hook_type",
]
