"""Checkpoints: written atomically, pruned to the last N plus the final one, loaded with
`weights_only=True`, and refused when they belong to another taxonomy or another model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing else unpickles
under weights_only):
    format, iteration, model (the bare network's state_dict, as Segmentor.state_dict gives it),
    optimizer, scaler, sampler, rng, accumulate_grad, counters (the trainer's fault counts),
    hooks {hook class name: state} (LRScheduleHook: the scheduler; SWAHook: the SWA state),
    taxonomy {fingerprint, kind, source, class_names}, model_config {type, backbone, num_classes}
Checkpoints written before hooks had state hold `scheduler` and `swa` at the top level instead of
`hooks`; they resume as well (unifiedseg.engine.hooks.legacy_hook_states).
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from unifiedseg.utils.fileio import atomic_write

CHECKPOINT_FORMAT = 1
PERIODIC = re.compile(r"^iter_(\d+)\.pth$")
FINAL_NAME = "final.pth"
MODEL_IDENTITY_KEYS = ("type", "backbone", "num_classes")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the run; the message names both sides."""


def checkpoint_dir(work_dir) -> Path:
    return Path(work_dir) / "checkpoints"


def periodic_path(work_dir, iteration: int) -> Path:
    return checkpoint_dir(work_dir) / f"iter_{iteration:08d}.pth"


def save_checkpoint(path, state: dict) -> None:
    """torch.save into a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: torch.save({"format": CHECKPOINT_FORMAT, **state}, handle))


def periodic_checkpoints(work_dir) -> list[tuple[int, Path]]:
    """(iteration, path) of the periodic checkpoints, oldest first."""
    folder = checkpoint_dir(work_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PERIODIC.match(p.name))]
    return sorted(found)


def latest_checkpoint(work_dir) -> Path | None:
    """The checkpoint a `resume: auto` run continues from: the final one if present, else the newest."""
    final = checkpoint_dir(work_dir) / FINAL_NAME
    if final.exists():
        return final
    found = periodic_checkpoints(work_dir)
    return found[-1][1] if found else None


def prune_checkpoints(work_dir, keep: int) -> list[Path]:
    """Delete all but the newest `keep` periodic checkpoints (the final one is never deleted)."""
    found = periodic_checkpoints(work_dir)
    removed = [p for _, p in found[:-keep]] if keep > 0 else [p for _, p in found]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with weights_only=True; errors say what the file is and what to do."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} holds objects other than tensors and plain values, so it is not loaded "
                              f"(weights_only=True): {str(err).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): "
                              f"{str(err).splitlines()[0]}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a unifiedseg checkpoint (no 'model' entry); to start from bare weights "
                              f"of a backbone use model.pretrained")
    return state


def check_compatible(state: dict, *, path, fingerprint: str, taxonomy_source: str, model_config: dict) -> None:
    """Refuse a checkpoint trained against another taxonomy or another architecture, naming both."""
    saved = state.get("taxonomy", {})
    if saved.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} was trained on taxonomy {saved.get('kind', '?')} {saved.get('source', '?')} "
            f"(fingerprint {saved.get('fingerprint')}, {len(saved.get('class_names', []))} classes), but this run uses "
            f"{taxonomy_source} (fingerprint {fingerprint}); evaluate or resume it with the taxonomy it was trained on")
    saved_model = state.get("model_config", {})
    differing = [k for k in MODEL_IDENTITY_KEYS if saved_model.get(k) != model_config.get(k)]
    if differing:
        mine = {k: model_config.get(k) for k in MODEL_IDENTITY_KEYS}
        theirs = {k: saved_model.get(k) for k in MODEL_IDENTITY_KEYS}
        raise CheckpointError(f"{path} holds a model {theirs}, but the config builds {mine} (differing: {', '.join(differing)})")


def rng_state() -> dict:
    """The global random states a training step may use (dropout, Python and numpy callers)."""
    state = {"torch": torch.get_rng_state(), "python": list(_flatten(random.getstate())),
             "numpy": _numpy_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, *internal, gauss = state["python"]
    random.setstate((version, tuple(internal), None if gauss == "none" else gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _flatten(python_state):
    version, internal, gauss = python_state
    return [version, *internal, "none" if gauss is None else gauss]


def _numpy_state() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
