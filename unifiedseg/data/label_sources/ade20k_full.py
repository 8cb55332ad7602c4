"""`ade20k_full`: ADEChallengeData2016 labels, with segments from the full ADE20K release.

The label is the listed `annotations/{training,validation}/ADE_*.png`, a PNG of ids (as `id` reads it).
A relabel record's segment is an instance value of the full release's `*_seg.png` (ADE20K_2016_07_26,
unpacked beside ADEChallengeData2016: `<dataset folder>/../ADE20K_2016_07_26/images/{training,validation}/
{letter}/{scene}/ADE_*_seg.png`), which stores instances in its B channel at another resolution. As in
mseg-api's `Ade20kMaskLevelDataset`, the B channel is resized to the label's size with nearest-neighbour
interpolation (cv2.INTER_NEAREST) and the mask is B == segment (0, the background, is a legal segment).
MSeg's preparation aborts on a mask of fewer than 10 pixels, so the records of its release all have at
least that many; an empty mask is an error here.

The full release's tree is walked once per process (and folder) to find each image's `_seg.png`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.label_sources.base import RawLabel, empty_segment_error, register_label_source
from unifiedseg.data.label_sources.files import read_color_png
from unifiedseg.data.label_sources.simple import IdPng
from unifiedseg.data.listfile import ListEntry
from unifiedseg.paths import cache_dir
from unifiedseg.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

FULL_RELEASE = "ADE20K_2016_07_26"
SEG_SUFFIX = "_seg.png"

# images folder -> stem -> the paths of its _seg.png files (more than one only for a duplicated stem)
_SEG_INDEX: dict[str, dict[str, list[str]]] = {}
_SEG_LOCK = threading.Lock()


def seg_index(images: Path) -> dict[str, list[str]]:
    """Stem (`ADE_train_00001001`) -> paths of `ADE_train_00001001_seg.png` under `images`, walked once
    per process. Hidden entries are skipped, as glob does."""
    key = str(images)
    with _SEG_LOCK:
        index = _SEG_INDEX.get(key)
        if index is None:
            index = {}
            _walk(key, index)
            _SEG_INDEX[key] = index
    return index


def _walk(folder: str, index: dict[str, list[str]]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            _walk(entry.path, index)
        elif entry.name.endswith(SEG_SUFFIX):
            index.setdefault(entry.name[: -len(SEG_SUFFIX)], []).append(entry.path)


@register_label_source("ade20k_full")
class Ade20kFull(IdPng):
    def images_folder(self, entry: ListEntry) -> Path:
        """The full release's `images/` folder, beside the dataset folder (ADEChallengeData2016)."""
        folder = self.context.folder if self.context.folder is not None else self.label_file(entry).parents[2]
        return Path(folder).parent / FULL_RELEASE / "images"

    def segment_file(self, entry: ListEntry) -> Path:
        try:
            return self.seg_file(entry)
        except BadSampleError:  # not under the full release: name where it would be
            return self.images_folder(entry) / f"{self.label_file(entry).stem}{SEG_SUFFIX}"

    def seg_file(self, entry: ListEntry) -> Path:
        images = self.images_folder(entry)
        stem = self.label_file(entry).stem
        paths = seg_index(images).get(stem)
        if not paths:
            raise BadSampleError(self.label_file(entry), f"no {stem}{SEG_SUFFIX} under {images} (the full ADE20K "
                                                         f"release, {FULL_RELEASE}.zip, has the instance masks)")
        if len(paths) > 1:
            first = Path(paths[0]).read_bytes()
            differing = [p for p in paths[1:] if Path(p).read_bytes() != first]
            if differing:
                raise BadSampleError(self.label_file(entry), f"{stem}{SEG_SUFFIX} is in {images} more than once, "
                                                             f"with different contents: {paths[0]}, {differing[0]}")
        return Path(paths[0])

    def segment_mask(self, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
        instances = label.context.get("instances")
        if instances is None:
            path = label.context["seg_file"] = self.seg_file(entry)
            instances = label.context["instances"] = resized_instances(path, label.ids.shape)
        mask = instances == segment if 0 <= segment <= 255 else np.zeros(instances.shape, dtype=bool)
        if not mask.any():
            raise empty_segment_error(label.context["seg_file"], segment,
                                      f"no pixel of its B channel (resized to the label's {instances.shape[1]}x"
                                      f"{instances.shape[0]}) has that value")
        return mask


def resized_instances(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The B channel of a full-release `*_seg.png`, nearest-resized to the label's size (MSeg's
    instance mask). Decoding the full-resolution colour PNG is most of a crop's cost, so the resized
    channel is cached as a small PNG under unifiedseg.paths.cache_dir(), keyed by the file's path, size
    and modification time (a changed file is read again; an unwritable cache is only slower)."""
    try:
        stat = path.stat()
    except OSError as err:
        raise BadSampleError(path, f"cannot read the instance mask: {err.strerror}") from None
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{shape}".encode()).hexdigest()
    cached = cache_dir() / "ade20k_instances" / key[:2] / f"{key}.png"
    if cached.is_file():
        instances = cv2.imread(str(cached), cv2.IMREAD_UNCHANGED)
        if instances is not None and instances.shape == shape:
            return instances
    blue = np.ascontiguousarray(read_color_png(path)[:, :, 2])
    height, width = shape
    instances = cv2.resize(blue, (width, height), interpolation=cv2.INTER_NEAREST)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        encoded = cv2.imencode(".png", instances)[1]
        atomic_write(cached, lambda handle: handle.write(encoded.tobytes()))
    except OSError as err:
        logger.debug("cannot cache ADE20K instances in %s: %s", cached, err)
    return instances
