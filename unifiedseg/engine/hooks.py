"""The trainer's hooks: logging (progress bar, JSON lines, TensorBoard), periodic validation,
checkpointing, and stopping cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from unifiedseg.engine.checkpoint import FINAL_NAME, checkpoint_dir, periodic_path, prune_checkpoints, save_checkpoint
from unifiedseg.engine.distributed import barrier
from unifiedseg.engine.trainer import Hook, Trainer
from unifiedseg.evaluation.confusion import ConfusionMatrix
from unifiedseg.evaluation.metrics import format_metric, json_metric

logger = logging.getLogger(__name__)


class LoggingHook(Hook):
    """Main rank only: a tqdm bar with ETA; every `interval` steps a JSON line and TensorBoard scalars
    (lr, each named loss and the data and step times averaged over the interval, training mIoU per
    dataset over the interval, per-dataset losses of the logged step's batch, fault counters)."""

    def __init__(self, *, work_dir: Path, interval: int, num_classes: int, enabled: bool = True,
                 tensorboard: bool = True):
        self.work_dir = Path(work_dir)
        self.interval = max(1, interval)
        self.num_classes = num_classes
        self.enabled = enabled
        self.tensorboard = tensorboard
        self.bar = None
        self.writer = None
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.train_confusion: dict[str, ConfusionMatrix] = {}
        self.steps = 0

    def before_train(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        self.bar = tqdm(total=trainer.max_iters, initial=trainer.iter, desc="train", unit="it", dynamic_ncols=True)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.work_dir / "tensorboard"))

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value
        self.counts[key] = self.counts.get(key, 0) + 1

    def after_step(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        result = trainer.result
        self.steps += 1
        for name, value in result.losses.items():
            self._add(name, value)
        for name, value in result.dataset_losses.items():
            self._add(f"loss/{name}", value)
        self._add("data_time", result.data_time)
        self._add("step_time", result.step_time)
        for dataset, pred, label in result.predictions:
            # counted where the predictions are, unchecked (the pipeline made the labels): no GPU sync
            matrix = self.train_confusion.get(dataset)
            if matrix is None:
                matrix = self.train_confusion[dataset] = ConfusionMatrix(self.num_classes, trainer.ignore_index,
                                                                         device=pred.device)
            matrix.update(pred, label, check=False)
        self.bar.update(1)
        if "loss" in result.losses:
            self.bar.set_postfix(loss=f"{result.losses['loss']:.4f}", lr=f"{result.lr:.2e}", refresh=False)
        if trainer.iter % self.interval == 0 or trainer.finished:
            self.flush(trainer)

    def flush(self, trainer: Trainer) -> None:
        record = {"iter": trainer.iter, "lr": trainer.result.lr, "time": time.time()}
        record.update({k: self.sums[k] / self.counts[k] for k in self.sums})
        # a dataset whose crops held no labelled pixels has no mIoU (None)
        record["train_miou"] = {d: json_metric(m.miou()) for d, m in self.train_confusion.items()}
        record.update(nonfinite_skipped=trainer.nonfinite_total, fp16_overflow_skipped=trainer.overflow_total,
                      bad_samples_skipped=trainer.bad_sample_total)
        if torch.cuda.is_available():
            record["max_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.write_record(record)
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("iter", "time"):
                    self.writer.add_scalar(f"train/{key}", value, trainer.iter)
            for dataset, miou in record["train_miou"].items():
                if miou is not None:
                    self.writer.add_scalar(f"train_miou/{dataset}", miou, trainer.iter)
        losses = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss") and "/" not in k)
        logger.info("iter %d/%d lr %.3e %s data %.3fs step %.3fs", trainer.iter, trainer.max_iters, record["lr"],
                    losses, record.get("data_time", 0), record.get("step_time", 0))
        self._reset()

    def write_record(self, record: dict) -> None:
        with open(self.work_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def after_train(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    on_exception = after_train


class ValidationHook(Hook):
    """Every `interval` steps (and at the end) run `evaluate()` -> metrics dict; log and keep the last."""

    def __init__(self, *, evaluate: Callable[[], dict], interval: int, logging_hook: LoggingHook | None = None):
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

    def after_train(self, trainer: Trainer) -> None:
        if trainer.finished:
            self._run(trainer)


class CheckpointHook(Hook):
    """Main rank writes: every `interval` steps a periodic checkpoint (the newest `keep` are kept), at the
    end `final.pth`, and on a stop request (signal) a checkpoint of the current iteration."""

    def __init__(self, *, work_dir: Path, interval: int, keep: int, state: Callable[[int], dict], is_main: bool):
        self.work_dir = Path(work_dir)
        self.interval = interval
        self.keep = keep
        self.state = state
        self.is_main = is_main
        self.last_saved: Path | None = None

    def save(self, path: Path, iteration: int) -> None:
        if self.is_main:
            save_checkpoint(path, self.state(iteration))
            self.last_saved = path
            logger.info("saved checkpoint %s", path)
        barrier()

    def after_step(self, trainer: Trainer) -> None:
        if self.interval > 0 and trainer.iter % self.interval == 0 and not trainer.finished:
            self.save(periodic_path(self.work_dir, trainer.iter), trainer.iter)
            if self.is_main:
                prune_checkpoints(self.work_dir, self.keep)

    def after_train(self, trainer: Trainer) -> None:
        if trainer.finished:
            self.save(checkpoint_dir(self.work_dir) / FINAL_NAME, trainer.iter)
        elif trainer.stop_requested and trainer.iter > trainer.start_iter:
            self.save(periodic_path(self.work_dir, trainer.iter), trainer.iter)


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

    on_exception = after_train


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C or a group-wide SIGTERM must not kill the loader processes
    while the main process finishes its step and saves a checkpoint (they exit with the parent)."""
    for sig in StopOnSignalHook.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
