"""Build a training run from a checked config and run it: taxonomy, data, the Segmentor (network and
losses), optimizer, schedule, resume, hooks (in the order unifiedseg/engine/hooks.py documents); at the
end `final_metrics.json` beside the checkpoints and the resolved config.

One run per work dir: the main rank holds the work dir's lock (`train.lock`, naming its host and pid)
for the whole run; a second run on it is refused, a lock left by a run that is gone is taken over with
a warning. With the lock held, the temporary files of writes that a kill interrupted are removed.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from unifiedseg.config import dump_config
from unifiedseg.config.builders import (build_model_for, build_segmentor, data_requests, training_converter,
                                       validation_names)
from unifiedseg.data.dataset import KeyedBatchSampler, MultiDataset, SegmentationDataset, collate, raise_worker_errors
from unifiedseg.data.labels import build_label_mapper
from unifiedseg.data.registry import DatasetRegistry, resolve_data_root
from unifiedseg.data.sampling import MultiDatasetSampler
from unifiedseg.data.status import require_data
from unifiedseg.data.transforms import TrainTransform, ValTransform, augmentation_kwargs
from unifiedseg.engine import checkpoint as ckpt
from unifiedseg.engine.distributed import DistContext, barrier, init_distributed, on_main_rank
from unifiedseg.engine.hooks import (CheckpointHook, LoggingHook, LRScheduleHook, StopOnSignalHook, SWAHook,
                                     TrainingMIoUHook, ValidationHook, build_hooks, ignore_stop_signals,
                                     legacy_hook_states)
from unifiedseg.engine.trainer import Hook, Trainer, TrainingError
from unifiedseg.evaluation.metrics import format_metric
from unifiedseg.evaluation.validate import summarize, validate
from unifiedseg.losses import build_losses
from unifiedseg.models import convert_sync_batchnorm
from unifiedseg.optim import build_optimizer, build_scheduler, build_swa, check_clip_cfg, format_param_groups
from unifiedseg.utils.fileio import atomic_write_text, format_bytes, remove_interrupted_writes
from unifiedseg.utils.lock import WorkDirLock, describe_holder
from unifiedseg.utils.plain import to_plain
from unifiedseg.utils.precision import make_grad_scaler, resolve_amp

logger = logging.getLogger("unifiedseg")
# Batches for recomputing batch-norm statistics of the SWA model at the end.
SWA_BN_BATCHES = 50
WORK_DIR_ADVICE = ("wait for it to end or stop it, or give this run another work dir (tools/train.py --work-dir DIR, "
                   "or the override work_dir=DIR)")


@dataclass(frozen=True)
class TrainingOutcome:
    """How a run ended: `finished` when every iteration ran (final.pth and final_metrics.json written),
    else it stopped early (a signal or a hook) after a checkpoint, and the same command resumes it."""

    finished: bool
    iteration: int
    max_iters: int
    metrics: dict = field(default_factory=dict)  # the final validation metrics (empty when stopped or unvalidated)


def setup_logging(work_dir: Path, is_main: bool) -> None:
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.handlers.clear()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if is_main:
        file_handler = logging.FileHandler(work_dir / "train.log")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    logger.addHandler(console)
    logger.propagate = False


def prepare_data_root(cfg: DictConfig, dist: DistContext) -> Path:
    """The data root; with data.generate_demo the demo datasets are written there first if absent."""
    if cfg.data.generate_demo:
        from unifiedseg.data.demo import make_demo_data

        root = Path(cfg.data.root or "data/demo")
        if dist.is_main:
            root.mkdir(parents=True, exist_ok=True)
            summary = make_demo_data(root, progress=True)
            if not summary.get("skipped"):
                logger.info("generated the demo datasets in %s", root)
        barrier()
        return root
    return resolve_data_root(cfg.data.root)


def augmentation(cfg: DictConfig) -> TrainTransform:
    # uint8 crops always: the Segmentor normalises on the device (data.normalize_on_device is a no-op)
    return TrainTransform(**augmentation_kwargs(cfg.data.augmentation))


def check_batch_norm(model, cfg: DictConfig, dist: DistContext, sync_bn: bool) -> None:
    """BatchNorm statistics over one image are degenerate: refuse that set-up with the ways out."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and cfg.data.batch_size == 1 and not cfg.train.norm_eval and not sync_bn:
        raise ValueError("data.batch_size=1 per process with BatchNorm: batch statistics of a single image make training "
                         "unstable. Use data.batch_size >= 2, SyncBatchNorm across several GPUs (train.sync_bn=true), "
                         "or freeze BN statistics with train.norm_eval=true")


def run_training(cfg: DictConfig, extra_hooks: tuple = ()) -> dict:
    """Train as configured; returns the final validation metrics (empty when stopped early).

    `extra_hooks` run after the built-in ones and the config's `train.hooks`, before the logging and
    checkpoint hooks, at each hook point (unifiedseg/engine/hooks.py documents the order).
    """
    return launch_training(cfg, extra_hooks).metrics


def launch_training(cfg: DictConfig, extra_hooks: tuple = ()) -> TrainingOutcome:
    """`run_training`, telling also whether the run finished (see TrainingOutcome). WorkDirLockedError
    when another live run holds the work dir."""
    dist = init_distributed(cfg.train.device)
    work_dir = Path(cfg.work_dir)
    if dist.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    setup_logging(work_dir, dist.is_main)
    lock = WorkDirLock(work_dir, advice=WORK_DIR_ADVICE)
    try:
        on_main_rank(lambda: claim_work_dir(lock), is_main=dist.is_main)  # every rank stops when it is taken
        return _train(cfg, extra_hooks, dist, work_dir)
    finally:
        lock.release()


def claim_work_dir(lock: WorkDirLock) -> None:
    """Take the work dir's lock (a stale one with a warning), then remove what interrupted writes left."""
    stale = lock.acquire()
    if stale:
        logger.warning("took over the lock of a training run that is no longer running (%s)", describe_holder(stale))
    work_dir = lock.path.parent
    removed = remove_interrupted_writes(work_dir) + remove_interrupted_writes(ckpt.checkpoint_dir(work_dir))
    if removed:
        logger.warning("removed %d temporary file%s of writes that were interrupted (%s): %s", len(removed),
                       "s" if len(removed) > 1 else "", format_bytes(sum(size for _, size in removed)),
                       ", ".join(path.name for path, _ in removed))


def _train(cfg: DictConfig, extra_hooks: tuple, dist: DistContext, work_dir: Path) -> TrainingOutcome:
    torch.manual_seed(cfg.train.seed + dist.rank)
    amp = resolve_amp(cfg.train.amp, cfg.train.opt_level)
    config_hooks = build_hooks(to_plain(cfg.train.hooks))  # a bad hook type fails here, before any data is read

    # The data first: a missing dataset is reported as one table before any model is built. (Every config
    # value was checked when the config loaded: unifiedseg.config.loader.)
    converter = training_converter(cfg)
    num_classes = converter.num_classes
    root = prepare_data_root(cfg, dist)
    registry = DatasetRegistry.load(extra_files=list(cfg.data.registry_files))
    on_main_rank(lambda: require_data(  # one process stats the files; all stop when they are not ready
        registry, root, data_requests(cfg), label_source=cfg.data.label_source,
        mapper_for=lambda info: build_label_mapper(info, converter, mode=cfg.data.label_source, data_root=root)),
        is_main=dist.is_main)
    loss_cfg = to_plain(cfg.loss)
    loss_set = build_losses(loss_cfg.get("loss_decode", {"type": "CrossEntropyLoss"}), num_classes,
                            sampler=loss_cfg.get("sampler"), ignore_index=converter.ignore_index)
    model, model_cfg = build_model_for(cfg, num_classes)

    transform = augmentation(cfg)
    train_sets = [SegmentationDataset.from_registry(
        registry.get(name), cfg.data.train_split, root, converter=converter, partial=loss_set.needs_partial_labels,
        transform=transform, on_bad_sample=cfg.data.on_bad_sample, seed=cfg.train.seed,
        reduced_decoding=cfg.data.reduced_decoding, label_source=cfg.data.label_source,
        strict_relabel=cfg.data.relabel_strict) for name in cfg.data.train_datasets]
    multi = MultiDataset(train_sets)
    accumulate = cfg.train.accumulate_grad
    sampling = {k: v for k, v in to_plain(cfg.data.sampling).items() if v is not None}  # unset: sampler defaults
    sampler = MultiDatasetSampler(
        dataset_sizes=multi.sizes(), batch_size=cfg.data.batch_size, world_size=dist.world_size, rank=dist.rank,
        seed=cfg.train.seed, max_iters=cfg.train.max_iters * accumulate if cfg.train.max_iters else None,
        num_examples=cfg.train.num_examples, **sampling)
    max_iters = len(sampler) // accumulate
    logger.info("training %s on %s: %d classes (%s taxonomy %s, fingerprint %s; %s label maps, ignore label %d); "
                "%d iterations, effective batch %d = %d per process x %d processes x %d accumulated", model_cfg["type"],
                ", ".join(multi.sizes()), num_classes, cfg.taxonomy.kind, cfg.taxonomy.tsv, converter.fingerprint(),
                converter.label_dtype, converter.ignore_index, max_iters,
                cfg.data.batch_size * dist.world_size * accumulate, cfg.data.batch_size, dist.world_size, accumulate)

    sync_bn = cfg.train.sync_bn and dist.distributed and dist.device.type == "cuda"
    if cfg.train.sync_bn and dist.distributed and not sync_bn:
        logger.warning("SyncBatchNorm needs CUDA; on CPU each process keeps its own BatchNorm statistics")
    check_batch_norm(model, cfg, dist, sync_bn)
    network = convert_sync_batchnorm(model, enabled=sync_bn, world_size=dist.world_size).to(dist.device)
    segmentor = build_segmentor(cfg, network, loss_set=loss_set, num_classes=num_classes,
                          ignore_index=converter.ignore_index, partial_target_sets=converter.partial_target_sets(),
                          norm_eval=cfg.train.norm_eval, channels_last=cfg.train.channels_last).to(dist.device)
    # the optimizer, SWA and parameter names see the network (names as checkpoints and paramwise rules have them)
    optimizer = build_optimizer(network, to_plain(cfg.optimizer))
    scheduler = build_scheduler(optimizer, to_plain(cfg.schedule), max_iters)
    swa = build_swa(network, optimizer, to_plain(cfg.swa), max_iters, device=dist.device)
    scaler = make_grad_scaler(dist.device, amp)
    logger.info("parameter groups:\n%s", format_param_groups(optimizer, network))

    resumed = restore(cfg, segmentor=segmentor, optimizer=optimizer, scaler=scaler, sampler=sampler,
                      converter=converter, model_cfg=model_cfg, work_dir=work_dir, dist=dist)
    if dist.is_main:
        dump_config(cfg, work_dir / "config.yaml")
    if cfg.train.compile:
        network.compile()  # in place: parameter and state_dict names stay the bare network's
    train_model = segmentor
    if dist.distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            segmentor, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)

    loader = torch.utils.data.DataLoader(
        multi, batch_sampler=KeyedBatchSampler(sampler), collate_fn=collate,  # starts where the sampler resumed
        num_workers=cfg.data.num_workers, pin_memory=dist.device.type == "cuda",
        worker_init_fn=ignore_stop_signals if cfg.data.num_workers else None)
    val_sets = validation_datasets(cfg, registry, root, converter)
    labelable = {name: converter.labelable_classes(name) for name in val_sets}

    averaged = segmentor.with_network(swa.averaged_module) if swa is not None else None

    def evaluate() -> dict:
        net = averaged if averaged is not None and trainer.finished else segmentor
        matrices = validate(net, val_sets, num_classes=num_classes, device=dist.device, amp=amp, rank=dist.rank,
                            world_size=dist.world_size, max_images=cfg.data.val.max_images,
                            ignore_index=converter.ignore_index, progress=dist.is_main)
        return summarize(matrices, converter.class_names, labelable)

    def state(trainer: Trainer) -> dict:
        """A checkpoint's contents besides the trainer's own state (iteration, counters, hook states)."""
        iteration = trainer.iter
        return {
            # a finished SWA run's weights are the average (its BN statistics recomputed by then)
            "model": (swa.averaged_module if swa is not None and iteration >= max_iters else segmentor).state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "sampler": sampler.state_dict(iteration=iteration * accumulate), "rng": ckpt.rng_state(),
            **ckpt.identity_entries(converter, model_cfg),
            "accumulate_grad": accumulate,
        }

    # The order of unifiedseg/engine/hooks.py: schedule, SWA statistics, validation, training mIoU, the
    # config's hooks, extra_hooks, logging, the checkpoints (they hold every hook's state), and the signal
    # handlers last (restored only once the final validation and checkpoint are done).
    logging_hook = LoggingHook(work_dir=work_dir, interval=cfg.train.log_interval, enabled=dist.is_main,
                               checkpoint_interval=cfg.train.checkpoint_interval)
    hooks: list[Hook] = [LRScheduleHook(scheduler=scheduler, swa=swa)]
    if swa is not None:
        hooks.append(SWAHook(swa=swa, bn_loader=lambda: raise_worker_errors(iter(loader_for_bn(multi, sampler, cfg))),
                             bn_forward=lambda model, batch: averaged.predict_logits(batch["image"]),
                             bn_batches=SWA_BN_BATCHES))
    validation = ValidationHook(evaluate=evaluate, interval=cfg.data.val.interval, logging_hook=logging_hook) \
        if val_sets else None
    if validation is not None:
        hooks.append(validation)
    def write_final_metrics(trainer: Trainer) -> None:
        """final_metrics.json, written before final.pth: a disk too full for the checkpoint keeps them."""
        metrics = validation.last_metrics if validation is not None else {}
        final = {"iteration": trainer.iter, "taxonomy_fingerprint": converter.fingerprint(), **(metrics or {}),
                 "nonfinite_skipped": trainer.nonfinite_total, "fp16_overflow_skipped": trainer.overflow_total,
                 "bad_samples_skipped": trainer.bad_sample_total}
        atomic_write_text(work_dir / "final_metrics.json", json.dumps(final, indent=1) + "\n")

    hooks.append(TrainingMIoUHook(num_classes=num_classes, ignore_index=converter.ignore_index))
    hooks += config_hooks + list(extra_hooks)
    hooks.append(logging_hook)
    hooks.append(CheckpointHook(work_dir=work_dir, interval=cfg.train.checkpoint_interval,
                                keep=cfg.train.keep_checkpoints, state=state, is_main=dist.is_main,
                                before_final=write_final_metrics))
    hooks.append(StopOnSignalHook())
    loader_batches = iter(loader)
    batches = raise_worker_errors(loader_batches)  # a worker's error arrives as the error it was
    trainer = Trainer(model=train_model, batches=batches, optimizer=optimizer, max_iters=max_iters,
                      accumulate_grad=accumulate, clip_grad=check_clip_cfg(cfg.clip_grad), amp=amp, scaler=scaler,
                      max_nonfinite_steps=cfg.train.max_nonfinite_steps, hooks=hooks)
    if resumed is not None:  # the iteration, fault counts and hook states (schedule, SWA) carry over a resume
        trainer.load_state_dict({"iteration": resumed["iteration"], "counters": resumed.get("counters", {}),
                                 "hooks": resumed.get("hooks") or legacy_hook_states(resumed)})
    try:
        trainer.train()
    finally:
        if hasattr(loader_batches, "_shutdown_workers"):  # loader processes end with the run, not at garbage collection
            loader_batches._shutdown_workers()
    if not trainer.finished:
        logger.warning("stopped at iteration %d of %d; run the same command again to resume", trainer.iter, max_iters)
        return TrainingOutcome(finished=False, iteration=trainer.iter, max_iters=max_iters)
    metrics = validation.last_metrics if validation is not None else {}
    if dist.is_main:
        if metrics:
            print(f"validation mIoU: {format_metric(metrics['miou'], digits=4, percent=False)} ("
                  + ", ".join(f"{d} {format_metric(m['miou'], digits=4, percent=False)}"
                              for d, m in metrics["datasets"].items()) + ")")
        print(f"final checkpoint and metrics in {work_dir}")
    return TrainingOutcome(finished=True, iteration=trainer.iter, max_iters=max_iters, metrics=metrics or {})


def validation_datasets(cfg: DictConfig, registry, root: Path, converter) -> dict:
    names = validation_names(cfg)
    transform = ValTransform(short_side=cfg.data.val.short_side, mean=tuple(cfg.data.augmentation.mean))
    return {name: SegmentationDataset.from_registry(registry.get(name), cfg.data.val.split, root, converter=converter,
                                                    transform=transform, on_bad_sample=cfg.data.on_bad_sample,
                                                    label_source=cfg.data.label_source,
                                                    strict_relabel=cfg.data.relabel_strict)
            for name in names}


def loader_for_bn(multi: MultiDataset, sampler, cfg: DictConfig):
    """Training batches for recomputing the SWA model's batch-norm statistics."""
    return torch.utils.data.DataLoader(multi, batch_sampler=KeyedBatchSampler(sampler, start_iter=0),
                                       collate_fn=collate, num_workers=cfg.data.num_workers,
                                       worker_init_fn=ignore_stop_signals if cfg.data.num_workers else None)


def restore(cfg: DictConfig, *, segmentor, optimizer, scaler, sampler, converter, model_cfg,
            work_dir: Path, dist: DistContext) -> dict | None:
    """Resume: load the weights, optimizer, scaler, data position and random state, and return the
    checkpoint (its iteration, counters and hook states are the trainer's to load). load_from: the
    weights only (same classes, same model), and None; neither: None.

    Precedence: a checkpoint to resume (train.resume: a path, or `auto` and the work dir has one) wins, and
    train.load_from is then ignored: a fine-tuning run started from load_from and interrupted continues
    from its own checkpoint, not from the start weights again."""
    resume = cfg.train.resume
    path, state = None, None
    if resume == "auto":  # the newest checkpoint that reads (unreadable newer ones are skipped, with a warning)
        path, state = ckpt.load_latest_readable(work_dir) or (None, None)
    elif resume:
        path = Path(resume)
        state = ckpt.load_checkpoint(path)
    identity = dict(fingerprint=converter.fingerprint(), taxonomy_source=f"{converter.kind} {converter.source}",
                    model_config=model_cfg)
    if path is not None:
        if "optimizer" not in state:
            raise ckpt.CheckpointError(f"{path} holds weights only (no optimizer or iteration: an imported checkpoint?), "
                                       f"so it cannot be resumed; start a run from it with train.load_from={path}")
        ckpt.check_compatible(state, path=path, **identity)
        saved_accumulate = state.get("accumulate_grad", 1)
        if saved_accumulate != cfg.train.accumulate_grad:
            raise ckpt.CheckpointError(
                f"{path} was trained with train.accumulate_grad={saved_accumulate}, this run sets "
                f"{cfg.train.accumulate_grad}; resume with the same value (or start anew with train.load_from)")
        segmentor.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        ckpt.set_rng_state(state["rng"])
        if dist.distributed:  # the saved state is rank 0's: give each rank its own stream again
            torch.manual_seed(cfg.train.seed + dist.rank + 100003 * int(state["iteration"]))
        logger.info("resumed from %s at iteration %d", path, state["iteration"])
        return state
    if cfg.train.load_from:
        state = ckpt.load_checkpoint(cfg.train.load_from)
        ckpt.check_compatible(state, path=cfg.train.load_from, class_names=list(converter.class_names), **identity)
        segmentor.load_state_dict(state["model"])
        logger.info("loaded weights from %s (fresh optimizer and schedule)", cfg.train.load_from)
    return None


__all__ = ["launch_training", "run_training", "TrainingError", "TrainingOutcome"]
