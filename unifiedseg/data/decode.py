"""Read images and label maps from disk, refusing missing, corrupt and truncated files by name.

Images decode to RGB uint8 (optionally at 1/2, 1/4 or 1/8 size through libjpeg's DCT scaling, which
is several times cheaper than a full decode followed by a downscale); labels decode unchanged
(uint8, or uint16 for releases with more than 256 ids).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

JPEG_SUFFIXES = (".jpg", ".jpeg")
# libjpeg decodes at 1/k size in the DCT domain, much faster than a full decode plus a downscale.
REDUCED_DECODE_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                        8: cv2.IMREAD_REDUCED_COLOR_8}


class BadSampleError(ValueError):
    """A sample's file is missing, unreadable, corrupt, truncated or inconsistent."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self):  # pickled by its two arguments: loader workers send it to the main process
        return type(self), (self.path, self.problem)


def read_bytes(path: str | os.PathLike) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise BadSampleError(path, "file does not exist") from None
    except OSError as err:
        raise BadSampleError(path, f"cannot read: {err.strerror}") from None
    if not data:
        raise BadSampleError(path, "file is empty")
    return np.frombuffer(data, dtype=np.uint8)


def _check_complete(path, data: np.ndarray) -> None:
    """libjpeg decodes a truncated JPEG into a grey-padded image without failing, so check the end marker."""
    suffix = Path(path).suffix.lower()
    if suffix in JPEG_SUFFIXES:
        # Some writers pad after the end-of-image marker; look for it near the end.
        tail = data[-64:].tobytes()
        if b"\xff\xd9" not in tail:
            raise BadSampleError(path, "truncated JPEG (no end-of-image marker)")
    elif suffix == ".png":
        if b"IEND" not in data[-16:].tobytes():
            raise BadSampleError(path, "truncated PNG (no IEND chunk)")


def read_image(path: str | os.PathLike, reduce: int = 1) -> np.ndarray:
    """RGB uint8 HxWx3. `reduce` in {1, 2, 4, 8} decodes JPEGs at 1/reduce size (ceil of each side,
    by libjpeg's DCT scaling); other formats are decoded fully and resized by 1/reduce."""
    if reduce not in REDUCED_DECODE_FLAGS:
        raise ValueError(f"reduce must be one of {sorted(REDUCED_DECODE_FLAGS)}, got {reduce}")
    data = read_bytes(path)
    _check_complete(path, data)
    is_jpeg = Path(path).suffix.lower() in JPEG_SUFFIXES
    image = cv2.imdecode(data, REDUCED_DECODE_FLAGS[reduce] if is_jpeg else cv2.IMREAD_COLOR)
    if image is None:
        raise BadSampleError(path, "corrupt or unsupported image (decoder failed)")
    if reduce > 1 and not is_jpeg:
        # exactly 1/reduce (size rounded), which is what the augmentation's warp assumes
        image = cv2.resize(image, None, fx=1 / reduce, fy=1 / reduce, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Single-channel label map, uint8 or uint16, exactly as stored."""
    data = read_bytes(path)
    _check_complete(path, data)
    label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise BadSampleError(path, "corrupt or unsupported label image (decoder failed)")
    if label.ndim != 2:
        raise BadSampleError(path, f"label map must have one channel, got shape {label.shape} "
                                   f"(colour-coded labels need converting to ids first)")
    if label.dtype not in (np.uint8, np.uint16):
        raise BadSampleError(path, f"label map must be uint8 or uint16, got {label.dtype}")
    return label


def read_palette_label(path: str | os.PathLike) -> np.ndarray:
    """The palette indices of an 8-bit palette PNG (e.g. Mapillary Vistas' `labels/`): they are the ids.

    OpenCV expands palettes into colours, so Pillow reads these; a greyscale (`L`) PNG is taken as ids."""
    from PIL import Image

    data = read_bytes(path)
    _check_complete(path, data)
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            image.load()
            if image.mode not in ("P", "L"):
                raise BadSampleError(path, f"expected a palette (P) or greyscale (L) PNG of label ids, got mode {image.mode}")
            return np.asarray(image, dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, BadSampleError):
            raise
        raise BadSampleError(path, f"corrupt or unsupported label image: {err}") from None


def read_color_label(path: str | os.PathLike, colors: np.ndarray) -> np.ndarray:
    """Ids of a colour-coded label PNG (e.g. CamVid's): pixel colour = `colors[id]` (N x 3 RGB, uint8).

    A colour that is not in the palette is an error naming it and how many pixels have it."""
    data = read_bytes(path)
    _check_complete(path, data)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise BadSampleError(path, "corrupt or unsupported label image (decoder failed)")
    rgb = image[..., ::-1].astype(np.int32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    palette = (colors[:, 0].astype(np.int32) << 16) | (colors[:, 1].astype(np.int32) << 8) | colors[:, 2]
    uniques, inverse = np.unique(codes.reshape(-1), return_inverse=True)
    palette_sorted = np.sort(palette)
    position = np.minimum(np.searchsorted(palette_sorted, uniques), len(palette) - 1)
    known = palette_sorted[position] == uniques
    if not known.all():
        counts = np.bincount(inverse, minlength=len(uniques))
        unknown = [f"({u >> 16}, {(u >> 8) & 255}, {u & 255}): {counts[i]} px" for i, u in enumerate(uniques.tolist()) if not known[i]]
        raise BadSampleError(path, f"{len(unknown)} colour(s) not in the dataset's palette: " + ", ".join(unknown[:8]))
    id_of_code = dict(zip(palette.tolist(), range(len(palette))))
    ids = np.array([id_of_code[u] for u in uniques.tolist()], dtype=np.uint8 if len(palette) <= 256 else np.uint16)
    return ids[inverse].reshape(codes.shape)
