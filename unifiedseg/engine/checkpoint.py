"""Checkpoints: written atomically, pruned to the last N plus the final one, loaded with
`weights_only=True`, and refused when they belong to another taxonomy or another model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing else unpickles
under weights_only):
    format, iteration, model (the bare network's state_dict, as Segmentor.state_dict gives it),
    optimizer, scaler, sampler, rng, accumulate_grad, counters (the trainer's fault counts),
    hooks {hook class name: state} (LRScheduleHook: the scheduler; SWAHook: the SWA state),
    taxonomy {fingerprint, kind, source, class_names}, model_config (`model_identity`: type, backbone,
    num_classes and the architecture options that change what the network computes)
Checkpoints written before hooks had state hold `scheduler` and `swa` at the top level instead of
`hooks`; they resume as well (unifiedseg.engine.hooks.legacy_hook_states). A weights-only checkpoint
(`model`, `taxonomy`, `model_config`, e.g. one imported by tools/import_checkpoint.py, with an
`imported` entry saying from what) is evaluated, exported and fine-tuned from (train.load_from) like a
trained one, but cannot be resumed.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from unifiedseg.models.build import IDENTITY_KEYS, model_identity
from unifiedseg.utils.fileio import atomic_write

CHECKPOINT_FORMAT = 1
PERIODIC = re.compile(r"^iter_(\d+)\.pth$")
FINAL_NAME = "final.pth"
# The keys of every model identity (model_identity adds the model type's architecture options).
MODEL_IDENTITY_KEYS = IDENTITY_KEYS


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


def identity_entries(converter, model_cfg: dict) -> dict:
    """The `taxonomy` and `model_config` entries of a checkpoint: what inference, resume and load_from check."""
    return {"taxonomy": {"fingerprint": converter.fingerprint(), "kind": converter.kind, "source": converter.source,
                         "class_names": list(converter.class_names)},
            "model_config": model_identity(model_cfg)}


def check_compatible(state: dict, *, path, fingerprint: str, taxonomy_source: str, model_config: dict,
                     class_names: list[str] | None = None) -> None:
    """Refuse a checkpoint trained against another taxonomy or another architecture, naming both.

    With `class_names` (starting a run from the weights: train.load_from) the label space must be the same
    classes in the same order, whatever the datasets the checkpoint was trained on; without, the whole
    taxonomy fingerprint must match (evaluation, resume)."""
    saved = state.get("taxonomy", {})
    saved_names = list(saved.get("class_names", []))
    same = saved_names == list(class_names) if class_names is not None else saved.get("fingerprint") == fingerprint
    if not same:
        first = next((i for i, (a, b) in enumerate(zip(saved_names, class_names or [])) if a != b),
                     min(len(saved_names), len(class_names or [])))
        need = (f"train.load_from needs the same classes in the same order ({len(class_names)} here; first "
                f"difference at class {first})" if class_names is not None
                else "evaluate or resume it with the taxonomy it was trained on")
        raise CheckpointError(
            f"{path} was trained on taxonomy {saved.get('kind', '?')} {saved.get('source', '?')} "
            f"(fingerprint {saved.get('fingerprint')}, {len(saved_names)} classes), but this run uses "
            f"{taxonomy_source} (fingerprint {fingerprint}); {need}")
    theirs, mine = model_identity(state.get("model_config", {})), model_identity(model_config)
    differing = [k for k in dict.fromkeys([*theirs, *mine]) if theirs.get(k) != mine.get(k)]
    if differing:
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
