"""File helpers shared by the label sources: JSON and image reads that fail as BadSampleError naming the file."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from unifiedseg.data.decode import BadSampleError, _check_complete, read_bytes


def read_json(path: str | os.PathLike):
    """The parsed JSON document at `path`; a missing, empty, non-UTF-8 or malformed file is a
    BadSampleError naming it (and the line and column of a syntax error)."""
    data = read_bytes(path)
    try:
        return json.loads(data.tobytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadSampleError(path, f"malformed JSON: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise BadSampleError(path, f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise BadSampleError(path, "malformed JSON: nested too deeply") from None


def read_color_png(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit colour PNG as RGB uint8 HxWx3 (an alpha channel is dropped, a palette expanded), as
    imageio reads it for the first three channels. Greyscale or 16-bit images are refused."""
    data = read_bytes(path)
    _check_complete(path, data)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadSampleError(path, "corrupt or unsupported image (decoder failed)")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise BadSampleError(path, f"expected an RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise BadSampleError(path, f"expected 8 bits per channel, got {image.dtype}")
    return image[:, :, 2::-1]
