"""Optimizer (MMCV paramwise rules), per-iteration lr schedules with warmup, SWA, gradient clipping."""

from unifiedseg.optim.optimizer import (
    GradClip,
    build_optimizer,
    check_clip_cfg,
    check_optimizer_cfg,
    clip_gradients,
    format_param_groups,
    param_settings,
)
from unifiedseg.optim.schedule import build_scheduler, check_schedule_cfg, load_scheduler_state, lr_at
from unifiedseg.optim.swa import SWAState, build_swa, check_swa_cfg, recompute_bn_statistics

__all__ = [
    "GradClip",
    "SWAState",
    "build_optimizer",
    "build_scheduler",
    "build_swa",
    "check_clip_cfg",
    "check_optimizer_cfg",
    "check_schedule_cfg",
    "check_swa_cfg",
    "clip_gradients",
    "format_param_groups",
    "load_scheduler_state",
    "lr_at",
    "param_settings",
    "recompute_bn_statistics",
]
