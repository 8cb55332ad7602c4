"""Reading a torch.save file with `weights_only=True` (tensors and plain values only: a file cannot run
code when it loads), and saying in one line why a file could not be read. Training checkpoints
(unifiedseg/engine/checkpoint.py), pretrained backbone files (unifiedseg/models/pretrained.py) and MSeg's
checkpoints (unifiedseg/models/mseg_checkpoint.py) all read through `load_weights_only` and word the
error for their file."""

from __future__ import annotations

import pickle
import warnings

import torch

from unifiedseg.utils.names import first_line


class TorchFileError(Exception):
    """torch.load could not read a file. `refused`: weights_only refused objects other than tensors and plain
    values (or a plain pickle); otherwise the file is damaged or no torch.save file. `reason`: one line."""

    def __init__(self, reason: str, *, refused: bool):
        super().__init__(reason)
        self.reason = reason
        self.refused = refused


def load_weights_only(path, map_location="cpu"):
    """`torch.load(path, weights_only=True)`; any failure is a TorchFileError with a one-line reason."""
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol warning: the error says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise TorchFileError(_unpickler_reason(err), refused=True) from None
    except Exception as err:  # noqa: BLE001 -- a damaged file raises RuntimeError, EOFError, KeyError, ValueError...
        raise TorchFileError(f"{type(err).__name__}: {first_line(err)}", refused=False) from None


def _unpickler_reason(err: Exception) -> str:
    """The line of torch's weights_only refusal that says what was refused (the rest is boilerplate)."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.replace("WeightsUnpickler error:", "").strip() for line in str(err).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(boilerplate)]
    return reasons[0] if reasons else first_line(err)
