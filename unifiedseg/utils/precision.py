"""Mixed precision through torch.amp, and MSeg's apex-style `opt_level` mapped onto it.

    amp: off | fp16 | bf16
    opt_level: O0 -> off; O1, O2, O3 -> fp16

apex's O1 (autocast-style casting of whitelisted ops) is what torch.amp.autocast does. O2 ("almost
fp16": fp16 weights with fp32 master copies) and O3 (pure fp16) have no torch.amp counterpart; they
map to fp16 autocast with a GradScaler, which keeps fp32 weights and so is at least as accurate. A
config may set one of amp and opt_level; both is an error unless they agree.
"""

from __future__ import annotations

import contextlib

import torch

AMP_MODES = ("off", "fp16", "bf16")
OPT_LEVELS = {"O0": "off", "O1": "fp16", "O2": "fp16", "O3": "fp16"}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_amp(amp: str, opt_level: str | None) -> str:
    """The amp mode from `train.amp` and `train.opt_level`; errors name the bad value and the valid ones."""
    if amp is False or amp == "False":  # YAML 1.1 reads an unquoted `amp: off` (or train.amp=off) as false
        amp = "off"
    if amp not in AMP_MODES:
        raise ValueError(f"train.amp: must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if opt_level is None:
        return amp
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"train.opt_level: must be one of {', '.join(OPT_LEVELS)} (apex levels), got {opt_level!r}")
    mapped = OPT_LEVELS[opt_level]
    if amp != "off" and amp != mapped:
        raise ValueError(f"train.opt_level: {opt_level} (= amp {mapped}) disagrees with train.amp={amp}; set one of them")
    return mapped


def autocast(device: torch.device, mode: str):
    """The autocast context for `mode` on `device` (a no-op context for 'off')."""
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[mode])


def make_grad_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler:
    """A GradScaler that scales only for fp16 (bf16 and fp32 need none); disabled scalers are no-ops."""
    return torch.amp.GradScaler(device.type, enabled=(mode == "fp16"))
