"""Per-iteration learning-rate schedules with warmup (MMCV LrUpdaterHook semantics, by_epoch=False only).

Config (`schedule:` section)::

    policy: poly          # poly | step | cosine | constant
    power: 0.9            # poly: lr = (base - min_lr) * (1 - it / max_iters) ** power + min_lr   (power default 1.0)
    min_lr: 0.0           # poly, cosine: the final lr; step: lower bound of the lr (default 0)
    milestones: [60, 80]  # step: lr = base * gamma ** (number of milestones <= it)
    gamma: 0.1            # step (default 0.1)
    warmup: linear        # null | linear | constant | exp
    warmup_iters: 10      # warmup applies for it < warmup_iters (required with warmup)
    warmup_ratio: 0.1     # lr at it=0 is regular_lr * warmup_ratio (default 0.1, in (0, 1])
    by_epoch: false       # only false (iteration-based) is supported

cosine: lr = min_lr + (base - min_lr) * (1 + cos(pi * it / max_iters)) / 2; constant: lr = base.
Warmup multiplies the regular lr of the same iteration, as MMCV does:
linear: regular * (1 - (1 - it / warmup_iters) * (1 - warmup_ratio)); constant: regular * warmup_ratio;
exp: regular * warmup_ratio ** (1 - it / warmup_iters).

`it` is the 0-based index of the optimizer step the lr is used for (MMCV's runner.iter in
before_train_iter): the trainer calls `scheduler.step()` after each `optimizer.step()`.

Paramwise multipliers are kept exactly: every param group's lr is lr_at(base_lr, it) * lr_mult, where base_lr
is the optimizer's base lr (`optimizer.defaults["lr"]`). MMCV instead applies min_lr to each group's own
initial lr, so with min_lr > 0 a group with lr_mult 10 there ends at min_lr, not 10 * min_lr; with
min_lr = 0 (and for step/constant) the two agree.

`build_scheduler` returns a stock `torch.optim.lr_scheduler.LambdaLR` whose factor is a `ScheduleFactor`
(lr_at(base_lr, it) / base_lr). LambdaLR saves the factor's fields (the checked config, base lr, max_iters) in
its state dict, so a resumed run continues the saved schedule exactly; `load_scheduler_state` refuses a
saved state whose schedule differs from the current config, naming the differing fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unifiedseg.utils.checks import check_choice, check_int, check_keys, check_number, is_finite_number
from unifiedseg.utils.plain import to_plain

POLICIES = ("poly", "step", "cosine", "constant")
WARMUPS = ("linear", "constant", "exp")
# Keys each policy accepts besides the common ones.
POLICY_KEYS: dict[str, tuple[str, ...]] = {
    "poly": ("power", "min_lr"),
    "step": ("milestones", "gamma", "min_lr"),
    "cosine": ("min_lr",),
    "constant": (),
}
COMMON_KEYS = ("policy", "warmup", "warmup_iters", "warmup_ratio", "by_epoch")
# Every key a `schedule` section may hold, whatever its policy (for suggestions across sections).
SCHEDULE_KEYS = COMMON_KEYS + tuple(dict.fromkeys(key for keys in POLICY_KEYS.values() for key in keys))
WARMUP_KEYS = ("warmup_iters", "warmup_ratio")
DEFAULT_POWER = 1.0  # MMCV PolyLrUpdaterHook's default; MSeg configs set 0.9
DEFAULT_GAMMA = 0.1
DEFAULT_WARMUP_RATIO = 0.1


def check_schedule_cfg(cfg: Mapping, max_iters: int | None = None, *, base_lr: float | None = None) -> dict[str, Any]:
    """The schedule config with defaults filled in; errors name the key.

    The rules that need the run's length (milestones and warmup_iters within it) apply when `max_iters` is
    given, and min_lr <= the optimizer's lr when `base_lr` is: the config loader gives both when the config
    sets them (train.max_iters, optimizer.lr), `build_scheduler` always."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, dict):
        raise ValueError(f"schedule: must be a mapping with a policy ({', '.join(POLICIES)}), got {cfg!r}")
    if max_iters is not None:
        check_int(max_iters, "max_iters", minimum=1)
    policy = check_choice(cfg.get("policy"), "schedule.policy", POLICIES)
    check_keys(cfg, COMMON_KEYS + POLICY_KEYS[policy], "schedule", note=f" for policy {policy}")
    if cfg.get("by_epoch", False) is not False:
        raise ValueError(f"schedule.by_epoch: only false (iteration-based schedules) is supported, "
                         f"got {cfg['by_epoch']!r}")
    out: dict[str, Any] = {"policy": policy}
    if policy in ("poly", "cosine", "step"):
        out["min_lr"] = check_number(cfg.get("min_lr", 0.0), "schedule.min_lr")
        if base_lr is not None and out["min_lr"] > base_lr:
            raise ValueError(f"schedule.min_lr: {out['min_lr']} is above the optimizer's base lr = {base_lr}")
    if policy == "poly":
        out["power"] = check_number(cfg.get("power", DEFAULT_POWER), "schedule.power")
    if policy == "step":
        if "milestones" not in cfg:
            raise ValueError("schedule: policy step needs 'milestones' (a list of iterations)")
        milestones = cfg["milestones"]
        if not isinstance(milestones, list) or not milestones:
            raise ValueError(f"schedule.milestones: must be a non-empty list of iterations, got {milestones!r}")
        for i, milestone in enumerate(milestones):
            check_int(milestone, f"schedule.milestones[{i}]", minimum=1)
            if max_iters is not None and milestone > max_iters:
                raise ValueError(f"schedule.milestones[{i}]: {milestone} is beyond max_iters = {max_iters}")
            if i and milestone <= milestones[i - 1]:
                raise ValueError(f"schedule.milestones: must increase strictly, got {milestones}")
        out["milestones"] = list(milestones)
        out["gamma"] = check_number(cfg.get("gamma", DEFAULT_GAMMA), "schedule.gamma")
    warmup = cfg.get("warmup")
    if warmup is None:
        for key in WARMUP_KEYS:
            if key in cfg:
                raise ValueError(f"schedule.{key}: is set but schedule.warmup is null; set warmup to one of "
                                 f"{', '.join(WARMUPS)} or remove {key}")
        out["warmup"] = None
        return out
    check_choice(warmup, "schedule.warmup", WARMUPS)
    if "warmup_iters" not in cfg:
        raise ValueError(f"schedule: warmup {warmup} needs 'warmup_iters'")
    warmup_iters = check_int(cfg["warmup_iters"], "schedule.warmup_iters", minimum=1)
    if max_iters is not None and warmup_iters > max_iters:
        raise ValueError(f"schedule.warmup_iters: {warmup_iters} is beyond max_iters = {max_iters}")
    ratio = cfg.get("warmup_ratio", DEFAULT_WARMUP_RATIO)
    if not (is_finite_number(ratio) and 0.0 < ratio <= 1.0):
        raise ValueError(f"schedule.warmup_ratio: must be a number in (0, 1], got {ratio!r}")
    out.update(warmup=warmup, warmup_iters=warmup_iters, warmup_ratio=float(ratio))
    return out


def regular_lr_at(cfg: Mapping, base_lr: float, iteration: int, max_iters: int) -> float:
    """The lr of the policy alone (no warmup) at 0-based `iteration`."""
    policy = cfg["policy"]
    if policy == "poly":
        coeff = (1.0 - iteration / max_iters) ** cfg["power"]
        return (base_lr - cfg["min_lr"]) * coeff + cfg["min_lr"]
    if policy == "cosine":
        return cfg["min_lr"] + 0.5 * (base_lr - cfg["min_lr"]) * (1.0 + math.cos(math.pi * iteration / max_iters))
    if policy == "step":
        passed = sum(1 for milestone in cfg["milestones"] if iteration >= milestone)
        return max(base_lr * cfg["gamma"] ** passed, cfg["min_lr"])
    return base_lr  # constant


def warmup_factor(cfg: Mapping, iteration: int) -> float:
    """What warmup multiplies the regular lr by at 0-based `iteration` (1 after warmup or without one)."""
    warmup = cfg.get("warmup")
    if warmup is None or iteration >= cfg["warmup_iters"]:
        return 1.0
    ratio, progress = cfg["warmup_ratio"], iteration / cfg["warmup_iters"]
    if warmup == "linear":
        return 1.0 - (1.0 - progress) * (1.0 - ratio)
    if warmup == "constant":
        return ratio
    return ratio ** (1.0 - progress)  # exp


def lr_at(cfg: Mapping, base_lr: float, iteration: int, max_iters: int) -> float:
    """The learning rate of the optimizer step with 0-based index `iteration` (0 <= iteration <= max_iters)."""
    checked = check_schedule_cfg(cfg, max_iters)
    check_number(base_lr, "base_lr")
    check_int(iteration, "iteration")
    if iteration > max_iters:
        raise ValueError(f"iteration {iteration} is beyond max_iters = {max_iters}")
    return regular_lr_at(checked, base_lr, iteration, max_iters) * warmup_factor(checked, iteration)


@dataclass
class ScheduleFactor:
    """LambdaLR's factor: lr_at(base_lr, it) / base_lr. A callable object, so LambdaLR saves its fields."""

    cfg: dict[str, Any]
    base_lr: float
    max_iters: int

    def __call__(self, iteration: int) -> float:
        if self.base_lr == 0.0:
            return 0.0  # every group's lr is 0 * lr_mult; nothing to scale
        if iteration > self.max_iters:
            raise ValueError(f"lr scheduler stepped to iteration {iteration}, beyond max_iters = {self.max_iters}")
        lr = regular_lr_at(self.cfg, self.base_lr, iteration, self.max_iters) * warmup_factor(self.cfg, iteration)
        return lr / self.base_lr


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Mapping, max_iters: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR giving every param group lr_at(base_lr, it) * its lr_mult; call step() after each optimizer step."""
    base_lr = float(optimizer.defaults["lr"])
    checked = check_schedule_cfg(cfg, max_iters, base_lr=base_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, ScheduleFactor(checked, base_lr, max_iters))


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR, state: Mapping) -> None:
    """Load a saved scheduler state after checking it was saved with the same schedule as `scheduler`'s."""
    saved = state.get("lr_lambdas")
    current = [fn.__dict__ for fn in scheduler.lr_lambdas]
    if not isinstance(saved, list) or len(saved) != len(current):
        raise ValueError(f"scheduler state holds {len(saved) if isinstance(saved, list) else 'no'} lr factors, "
                         f"the optimizer has {len(current)} param groups")
    for saved_fields, current_fields in zip(saved, current):
        if saved_fields is None:
            raise ValueError("scheduler state was not saved from a build_scheduler scheduler (no schedule fields)")
        saved_flat, current_flat = _flatten(saved_fields), _flatten(current_fields)
        differing = [f"{key}: saved {saved_flat.get(key)!r}, config {current_flat.get(key)!r}"
                     for key in sorted(set(saved_flat) | set(current_flat))
                     if saved_flat.get(key) != current_flat.get(key)]
        if differing:
            raise ValueError("the checkpoint's lr schedule differs from the config's: " + "; ".join(differing))
    scheduler.load_state_dict(dict(state))


def _flatten(fields: Mapping[str, Any]) -> dict[str, Any]:
    """{"cfg": {"power": 0.9}, "max_iters": 10} -> {"cfg.power": 0.9, "max_iters": 10}, for naming differences."""
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat
