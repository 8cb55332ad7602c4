"""Stochastic weight averaging over the last iterations of training, and batch-norm statistics recomputed after.

Config (`swa:` section, null disables)::

    start_iter: 72000        # first 0-based iteration whose weights enter the average (1 <= start_iter < max_iters)
    swa_lr: 0.001            # lr the SWA phase anneals to, times each param group's lr_mult
    anneal_iters: 0          # iterations to anneal from the lr in effect at start_iter to swa_lr (0: at once)
    anneal_strategy: cos     # cos | linear

The trainer builds `SWAState` with `build_swa` and calls `swa.after_optimizer_step(iteration, scheduler)`
after every optimizer step instead of `scheduler.step()`: before the SWA phase it steps the regular
scheduler; from start_iter on it adds the model's weights to a `torch.optim.swa_utils.AveragedModel`
(parameters only; iterations start_iter..end each count once) and a `SWALR` owns the learning rate (created
at the end of iteration start_iter - 1, so iteration start_iter is the first one it governs). At the end,
`swa.finalize(loader)` recomputes the averaged model's batch-norm statistics with
`recompute_bn_statistics`: the averaged weights never produced the running statistics they hold.

`recompute_bn_statistics` does what `torch.optim.swa_utils.update_bn` does, for loaders of dict batches
(update_bn only takes tensors or tuples): reset every BN layer's running statistics, set momentum=None
(a cumulative average over batches), forward every batch in train mode without gradients, then restore the
momenta and the train/eval mode. The model is not wrapped in DDP; under torch.distributed, SyncBatchNorm
layers synchronise, so every rank must call it.

`state_dict` / `load_state_dict` hold the averaged model, the SWA lr scheduler (plain values only, so
`torch.load(weights_only=True)` reads it) and the config, which must match on resume.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel
from tqdm import tqdm

from unifiedseg.utils.checks import check_choice, check_int, check_keys, check_number
from unifiedseg.utils.modules import unwrap
from unifiedseg.utils.plain import to_plain

SWA_KEYS = ("start_iter", "swa_lr", "anneal_iters", "anneal_strategy")
ANNEAL_STRATEGIES = ("cos", "linear")
# SWALR attributes that are code, not state: rebuilt from the config rather than saved.
_SWALR_UNSAVED = ("anneal_func",)


def check_swa_cfg(cfg: Mapping | None, max_iters: int | None = None) -> dict[str, Any] | None:
    """The `swa` config with defaults filled in, or None when SWA is off; errors name the key.

    start_iter below the run's length is checked when `max_iters` is given (the config loader gives
    train.max_iters when the config sets it, `build_swa` always)."""
    if cfg is None:
        return None
    cfg = to_plain(cfg)
    if not isinstance(cfg, dict):
        raise ValueError(f"swa: must be a mapping with {', '.join(SWA_KEYS)} or null, got {cfg!r}")
    check_keys(cfg, SWA_KEYS, "swa")
    for key in ("start_iter", "swa_lr"):
        if key not in cfg:
            raise ValueError(f"swa: missing key {key!r}")
    start_iter = check_int(cfg["start_iter"], "swa.start_iter", minimum=1)
    if max_iters is not None and start_iter >= max_iters:
        raise ValueError(f"swa.start_iter: {start_iter} must be below max_iters = {max_iters}")
    return {
        "start_iter": start_iter,
        "swa_lr": check_number(cfg["swa_lr"], "swa.swa_lr"),
        "anneal_iters": check_int(cfg.get("anneal_iters", 0), "swa.anneal_iters"),
        "anneal_strategy": check_choice(cfg.get("anneal_strategy", "cos"), "swa.anneal_strategy", ANNEAL_STRATEGIES),
    }


def default_bn_forward(model: nn.Module, batch: Any) -> None:
    """Forward a batch for BN statistics: a dict's "image", a tuple's first item, or a tensor itself."""
    if isinstance(batch, Mapping):
        if "image" not in batch:
            raise ValueError(f"a dict batch needs an 'image' key for the BN statistics pass, got keys {sorted(batch)}")
        inputs = batch["image"]
    elif isinstance(batch, (list, tuple)):
        inputs = batch[0]
    else:
        inputs = batch
    device = next(model.parameters()).device
    model(inputs.to(device, non_blocking=True))


def recompute_bn_statistics(
    model: nn.Module,
    loader: Iterable,
    *,
    forward: Callable[[nn.Module, Any], Any] = default_bn_forward,
    max_batches: int | None = None,
    progress: bool = False,
) -> int:
    """Recompute the running mean/var of every batch-norm layer of `model` over `loader`; the batches used.

    `forward(model, batch)` runs the model on one batch (default: `default_bn_forward`). Without
    `max_batches` the loader must have a length (an endless sampler would never stop).
    """
    bn_layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bn_layers:
        return 0
    if max_batches is None:
        try:
            total = len(loader)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("recompute_bn_statistics: the loader has no length; pass max_batches") from None
    else:
        total = check_int(max_batches, "max_batches", minimum=1)
    saved_stats = [copy.deepcopy(m.state_dict()) for m in bn_layers]
    momenta = [m.momentum for m in bn_layers]
    was_training = model.training
    for layer in bn_layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: every batch weighs the same
    model.train()
    used = 0
    try:
        with torch.no_grad():
            for batch in tqdm(loader, total=total, desc="BN statistics", unit="batch", disable=not progress):
                if used == total:
                    break
                forward(model, batch)
                used += 1
    finally:
        for layer, momentum in zip(bn_layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
        if used == 0:  # nothing seen: the reset statistics would be meaningless, put the old ones back
            for layer, stats in zip(bn_layers, saved_stats):
                layer.load_state_dict(stats)
    if used == 0:
        raise ValueError("recompute_bn_statistics: the loader yielded no batch; BN statistics left unchanged")
    return used


class SWAState:
    """The SWA phase of one run: the averaged model and, once the phase starts, its lr scheduler."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        start_iter: int,
        swa_lr: float,
        anneal_iters: int = 0,
        anneal_strategy: str = "cos",
        device: torch.device | str | None = None,
    ) -> None:
        model = unwrap(model)  # average the bare model, so the averaged one has plain parameter names
        self.model = model
        self.optimizer = optimizer
        self.start_iter = start_iter
        self.swa_lr = swa_lr
        self.anneal_iters = anneal_iters
        self.anneal_strategy = anneal_strategy
        self.averaged = AveragedModel(model, device=device, use_buffers=False)
        self.scheduler: SWALR | None = None

    @property
    def averaged_module(self) -> nn.Module:
        """The averaged network (same class and parameter names as the trained one)."""
        return self.averaged.module

    @property
    def num_averaged(self) -> int:
        return int(self.averaged.n_averaged)

    def _make_scheduler(self) -> SWALR:
        # Keep paramwise multipliers: each group anneals to swa_lr times its lr_mult.
        swa_lrs = [self.swa_lr * group.get("lr_mult", 1.0) for group in self.optimizer.param_groups]
        return SWALR(self.optimizer, swa_lr=swa_lrs, anneal_epochs=self.anneal_iters,
                     anneal_strategy=self.anneal_strategy)

    def after_optimizer_step(self, iteration: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        """Call after the optimizer step of 0-based `iteration`, in place of `scheduler.step()`."""
        if iteration >= self.start_iter:
            self.averaged.update_parameters(self.model)
        if iteration + 1 < self.start_iter:
            scheduler.step()
        elif self.scheduler is None:
            self.scheduler = self._make_scheduler()  # its constructor sets the lr of iteration start_iter
        else:
            self.scheduler.step()

    def finalize(self, loader: Iterable, **kwargs: Any) -> int:
        """Recompute the averaged model's BN statistics over `loader` (see recompute_bn_statistics)."""
        if self.num_averaged == 0:
            raise ValueError(f"SWA averaged no weights: training ended before swa.start_iter = {self.start_iter}")
        return recompute_bn_statistics(self.averaged_module, loader, **kwargs)

    def _config(self) -> dict[str, Any]:
        return {"start_iter": self.start_iter, "swa_lr": self.swa_lr, "anneal_iters": self.anneal_iters,
                "anneal_strategy": self.anneal_strategy}

    def state_dict(self) -> dict[str, Any]:
        scheduler_state = None
        if self.scheduler is not None:
            scheduler_state = {k: v for k, v in self.scheduler.state_dict().items() if k not in _SWALR_UNSAVED}
        return {"config": self._config(), "averaged_model": self.averaged.state_dict(), "scheduler": scheduler_state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved SWA phase; the config must match. Sets the optimizer's lrs to the saved SWA lrs."""
        saved, current = state["config"], self._config()
        differing = [f"{key}: saved {saved.get(key)!r}, config {current[key]!r}" for key in current
                     if saved.get(key) != current[key]]
        if differing:
            raise ValueError("the checkpoint's swa settings differ from the config's: " + "; ".join(differing))
        self.averaged.load_state_dict(state["averaged_model"])
        if state["scheduler"] is None:
            self.scheduler = None
            return
        self.scheduler = self._make_scheduler()
        self.scheduler.load_state_dict(dict(state["scheduler"]))
        # SWALR derives each step's lr from the group's current lr, so the saved lrs must be in place.
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = lr


def build_swa(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: Mapping | None,
    max_iters: int,
    device: torch.device | str | None = None,
) -> SWAState | None:
    """The SWAState of a `swa` config, or None when it is null."""
    checked = check_swa_cfg(cfg, max_iters)
    if checked is None:
        return None
    return SWAState(model=model, optimizer=optimizer, device=device, **checked)
