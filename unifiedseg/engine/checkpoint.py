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

Before a write the free space is checked against the size of the newest checkpoint beside it; a full
disk is a DiskSpaceError naming the folder. Reading a file that is not a checkpoint of ours (empty,
truncated, text, a folder, another format, bare weights) is a one-line CheckpointError naming the
file and what it is; `load_latest_readable` resumes from the newest checkpoint that reads, saying
which ones it skipped.
"""

from __future__ import annotations

import logging
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from unifiedseg.models.build import IDENTITY_KEYS, model_identity
from unifiedseg.utils.fileio import atomic_write, check_free_space, format_bytes
from unifiedseg.utils.torchfile import TorchFileError, load_weights_only

logger = logging.getLogger(__name__)

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
    """torch.save into a temporary file beside `path`, then rename: a crash never leaves half a file.
    DiskSpaceError, before writing, when the disk has less room than the newest checkpoint beside `path`
    takes (and when the write meets a full disk)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = newest_checkpoint_size(path.parent)
    if expected:
        check_free_space(path.parent, expected, writing=f"{path.name} (the size of the last checkpoint)")
    atomic_write(path, lambda handle: torch.save({"format": CHECKPOINT_FORMAT, **state}, handle), size_hint=expected)


def newest_checkpoint_size(folder) -> int | None:
    """The size of the most recently written checkpoint in `folder` (None when there is none)."""
    found = [p.stat() for p in Path(folder).glob("*.pth") if p.is_file()] if Path(folder).is_dir() else []
    return max(found, key=lambda st: st.st_mtime).st_size if found else None


def periodic_checkpoints(work_dir) -> list[tuple[int, Path]]:
    """(iteration, path) of the periodic checkpoints, oldest first."""
    folder = checkpoint_dir(work_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PERIODIC.match(p.name))]
    return sorted(found)


def prune_checkpoints(work_dir, keep: int) -> list[Path]:
    """Delete all but the newest `keep` periodic checkpoints (the final one is never deleted)."""
    found = periodic_checkpoints(work_dir)
    removed = [p for _, p in found[:-keep]] if keep > 0 else [p for _, p in found]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load_latest_readable(work_dir) -> tuple[Path, dict] | None:
    """(path, state) of the checkpoint a `resume: auto` run continues from: the final one, else the newest
    periodic one, skipping (with a warning) any that cannot be read; None when there is none at all.
    CheckpointError when checkpoints exist but none reads."""
    final = checkpoint_dir(work_dir) / FINAL_NAME
    candidates = ([final] if final.exists() else []) + [p for _, p in reversed(periodic_checkpoints(work_dir))]
    skipped = []
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            logger.warning("cannot resume from %s", err)
            skipped.append(str(err))
            continue
        if skipped:
            logger.warning("resuming from %s, the newest readable checkpoint (%d newer one%s skipped)", path,
                           len(skipped), "s" if len(skipped) > 1 else "")
        return path, state
    if skipped:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(work_dir)} can be read: " + "; ".join(skipped)
                              + "; move them away to start afresh (or set train.resume to a checkpoint)")
    return None


# The first bytes of files that get mistaken for checkpoints.
FOREIGN_FORMATS = {b"\x93NUMPY": "a NumPy .npy file", b"\x89HDF": "an HDF5 file", b"\x1f\x8b": "a gzip file",
                   b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"\x7fELF": "a program"}


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with weights_only=True. A file that is not one of ours is a CheckpointError of
    one line that names it and says what it is (empty, truncated, text, another format, bare weights)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    problem = _file_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    try:
        state = load_weights_only(path, map_location=map_location)
    except TorchFileError as err:
        if err.refused:
            raise CheckpointError(f"{path}: not loaded: weights_only=True reads only tensors and plain values, and "
                                  f"this file holds other objects or is not a torch.save file ({err.reason})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err.reason}") from None
    problem = _contents_problem(state)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    return state


def _file_problem(path: Path) -> str | None:
    """What makes `path` unreadable as a checkpoint before torch tries it, or None."""
    if path.is_dir():
        return "is a folder, not a checkpoint file"
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): a write that was cut short, or a copy of one"
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as err:  # e.g. no read permission
        return f"cannot be read: {err.strerror or err}"
    if head.startswith(b"PK\x03\x04"):  # a zip archive: what torch.save writes
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return (f"is truncated or corrupt ({format_bytes(size)}; the end of its zip archive is missing: "
                    f"a write or copy that was cut short?)")
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return (f"is a zip archive but not a PyTorch checkpoint (no data.pkl; it holds "
                    f"{', '.join(names[:5]) or 'nothing'}{', ...' if len(names) > 5 else ''})")
        return None
    if head.startswith(b"\x80"):  # a pickle: torch's legacy format (or a plain pickle, refused by weights_only)
        return None
    for magic, kind in FOREIGN_FORMATS.items():
        if head.startswith(magic):
            return f"is {kind}, not a PyTorch checkpoint"
    if len(head) > 10 and head[8:10] == b'{"':
        return "is a safetensors file, not a unifiedseg checkpoint; bare weights go in model.pretrained"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # the 64 bytes may end inside a character
        text = head[:err.start].decode("utf-8") if err.start >= len(head) - 3 else ""
    if text.strip() and all(c.isprintable() or c.isspace() for c in text):
        return f"is a text file, not a PyTorch checkpoint (it starts with {text.strip().splitlines()[0][:40]!r})"
    return f"is not a PyTorch checkpoint (unknown format; it starts with bytes {head[:8].hex(' ')})"


def _contents_problem(state) -> str | None:
    """What makes a loaded object other than a unifiedseg checkpoint, or None."""
    if not isinstance(state, dict):
        return f"holds an object of type {type(state).__name__}, not a unifiedseg checkpoint (a dict with 'model', 'iteration', ...)"
    if "model" not in state:
        if state and all(isinstance(v, torch.Tensor) for v in state.values()):
            return (f"holds bare weights ({len(state)} tensors), not a unifiedseg checkpoint; to start from them "
                    f"use model.pretrained")
        found = ", ".join(repr(k) for k in list(state)[:6]) or "none"
        other = " (state_dict: MMSegmentation / Lightning?)" if "state_dict" in state else ""
        return (f"is not a unifiedseg checkpoint (no 'model' entry; entries: {found}){other}; to start from bare "
                f"weights of a backbone use model.pretrained")
    if not isinstance(state["model"], dict):
        return f"its 'model' entry is of type {type(state['model']).__name__}, not a state_dict"
    written = state.get("format", CHECKPOINT_FORMAT)
    if not isinstance(written, int) or written > CHECKPOINT_FORMAT:
        return (f"was written in checkpoint format {written!r}; this version of unifiedseg reads format "
                f"{CHECKPOINT_FORMAT} and older: update unifiedseg")
    return None


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
