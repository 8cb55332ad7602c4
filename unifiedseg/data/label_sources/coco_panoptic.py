"""`coco_panoptic`: COCO panoptic PNGs read as semantic ids through the JSON's `segments_info`.

List entries are `images/{s}2017/ID.jpg annotations/panoptic_{s}2017/ID.png`; the JSON beside that
folder, `annotations/panoptic_{s}2017.json`, lists for each PNG (`file_name`) its segments (`id`,
`category_id`). A pixel's segment id is R + 256 G + 65536 B of the RGB PNG; it takes the category id of
its segment (the coco-panoptic-201 ids are COCO's category ids, 1-200), and VOID (0) or any id the
JSON does not list stays 255 (unlabeled), as MSeg's preparation wrote `semantic_annotations201/`
(mseg-api `dump_coco_semantic_labels.py`). That preparation aborts on a listed segment with no pixel
or listed twice, so those are errors here too.

A relabel record's segment is a panoptic segment id; one the image's `segments_info` does not list is an
error (MSeg's preparation fails there as well).

Each JSON is parsed once (`panoptic_train2017.json` is large) into a compact index, file name ->
(segment ids, category ids), kept per process and cached on disk under unifiedseg.paths.cache_dir()
(keyed by the JSON's path, size and modification time) so loader workers and later runs skip the parse.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.label_sources.base import LabelSource, RawLabel, empty_segment_error, register_label_source
from unifiedseg.data.label_sources.files import read_color_png, read_json
from unifiedseg.data.listfile import ListEntry
from unifiedseg.paths import cache_dir
from unifiedseg.utils.fileio import atomic_write
from unifiedseg.utils.checks import is_int

UNLABELED = 255
NUM_CATEGORIES = 200  # COCO panoptic category ids are 1-200 (coco-panoptic-201 index 0 is unlabeled)

# JSON path -> ((mtime_ns, size), index or the BadSampleError that reading it raised)
_INDEX_CACHE: dict[str, tuple[tuple[int, int], object]] = {}
_INDEX_LOCK = threading.Lock()


def panoptic_json(label: Path) -> Path:
    """`.../annotations/panoptic_{s}2017/ID.png` -> `.../annotations/panoptic_{s}2017.json`."""
    return label.parent.parent / f"{label.parent.name}.json"


def load_panoptic_index(path: Path) -> dict:
    """file_name -> int64 array (n, 2) of (segment id, category id), or a string saying what is wrong
    with that image's entry; parsed once per process and file version. A file that cannot be parsed
    raises the same BadSampleError on every call without being read again."""
    key = str(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise BadSampleError(path, "file does not exist (COCO panoptic annotations JSON)") from None
    except OSError as err:
        raise BadSampleError(path, f"cannot read: {err.strerror}") from None
    version = (stat.st_mtime_ns, stat.st_size)
    with _INDEX_LOCK:
        cached = _INDEX_CACHE.get(key)
        if cached is None or cached[0] != version:
            index = _read_cached_index(path, version)
            if index is None:
                try:
                    index = _build_index(path, read_json(path))
                    _write_cached_index(path, version, index)
                except BadSampleError as err:
                    index = err
            _INDEX_CACHE[key] = cached = (version, index)
    if isinstance(cached[1], BadSampleError):
        raise cached[1]
    return cached[1]


def _cache_file(path: Path, version: tuple[int, int]) -> Path:
    key = hashlib.sha1(f"{path.resolve()}|{version}".encode()).hexdigest()[:20]
    return cache_dir() / "coco_panoptic" / f"{path.stem}-{key}.npz"


def _read_cached_index(path: Path, version: tuple[int, int]) -> dict | None:
    """The compact index written by an earlier process (parsing panoptic_train2017.json takes seconds and
    GBs; every loader worker would pay it), or None."""
    cached = _cache_file(path, version)
    try:
        with np.load(cached, allow_pickle=False) as arrays:
            names, offsets, table = arrays["names"].tolist(), arrays["offsets"], arrays["table"]
            problems = dict(zip(arrays["problem_names"].tolist(), arrays["problems"].tolist()))
    except (OSError, KeyError, ValueError):
        return None
    index = {name: table[offsets[i]:offsets[i + 1]] for i, name in enumerate(names)}
    index.update(problems)
    return index


def _write_cached_index(path: Path, version: tuple[int, int], index: dict) -> None:
    tables = {name: value for name, value in index.items() if not isinstance(value, str)}
    problems = {name: value for name, value in index.items() if isinstance(value, str)}
    offsets = np.cumsum([0] + [len(t) for t in tables.values()]).astype(np.int64)
    table = np.concatenate(list(tables.values())) if tables else np.empty((0, 2), np.int64)
    cached = _cache_file(path, version)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, names=np.array(list(tables), dtype=str), offsets=offsets, table=table,
                 problem_names=np.array(list(problems), dtype=str), problems=np.array(list(problems.values()), dtype=str))
        atomic_write(cached, lambda handle: handle.write(buffer.getvalue()))
    except OSError:
        pass  # an unwritable cache only costs the next process a parse


def _build_index(path: Path, document) -> dict:
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise BadSampleError(path, "not a COCO panoptic annotations file (no 'annotations' list)")
    index = {}
    for number, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict) or not isinstance(annotation.get("file_name"), str):
            raise BadSampleError(path, f"annotations[{number}] has no 'file_name'")
        index[annotation["file_name"]] = _segments(annotation)  # a repeated file name: the last wins, as in MSeg
    return index


def _segments(annotation: dict):
    segments = annotation.get("segments_info")
    if not isinstance(segments, list):
        return "has no 'segments_info' list"
    table = np.empty((len(segments), 2), dtype=np.int64)
    for number, segment in enumerate(segments):
        if not isinstance(segment, dict):
            return f"segments_info[{number}] is not an object"
        segment_id, category = segment.get("id"), segment.get("category_id")
        if not is_int(segment_id) or not 0 <= segment_id < 1 << 24:
            return f"segments_info[{number}] has no integer 'id' in 0-{(1 << 24) - 1} (got {segment_id!r})"
        if category is None:
            return f"segments_info[{number}] (segment {segment_id}) has no 'category_id'"
        if not is_int(category) or not 1 <= category <= NUM_CATEGORIES:
            return (f"segments_info[{number}] (segment {segment_id}) has category_id {category!r}, "
                    f"outside COCO panoptic's 1-{NUM_CATEGORIES}")
        table[number] = segment_id, category
    return table


def panoptic_ids(path) -> np.ndarray:
    """The segment id of each pixel of a COCO panoptic PNG: R + 256 G + 65536 B, uint32 (cast before
    combining: on uint8 arrays NumPy 2 refuses 256 G)."""
    rgb = read_color_png(path).astype(np.uint32)
    return rgb[:, :, 0] + (rgb[:, :, 1] << 8) + (rgb[:, :, 2] << 16)


def segment_pixels(bgr: np.ndarray, segment: int) -> np.ndarray:
    """uint8 mask (255 where set) of the pixels whose colour encodes `segment` (R + 256 G + 65536 B)."""
    colour = (segment >> 16 & 255, segment >> 8 & 255, segment & 255)  # B, G, R
    return cv2.inRange(bgr, colour, colour)


@register_label_source("coco_panoptic")
class CocoPanoptic(LabelSource):
    def read(self, entry: ListEntry) -> RawLabel:
        path = self.label_file(entry)
        json_path = panoptic_json(path)
        file_name = f"{path.stem}.png"
        table = load_panoptic_index(json_path).get(file_name)
        if table is None:
            raise BadSampleError(path, f"{file_name} is not among the annotations of {json_path}")
        if isinstance(table, str):
            raise BadSampleError(json_path, f"the annotation of {file_name} {table}")
        # One exact-colour test per listed segment (cv2.inRange on the decoded BGR image) instead of
        # decoding every pixel's id: 4x faster on COCO's 640x480 frames, the same labels.
        bgr = np.ascontiguousarray(read_color_png(path)[:, :, ::-1])
        segment_ids, categories = table[:, 0], table[:, 1]
        sorted_ids = np.sort(segment_ids)
        repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
        if repeated.size:
            raise BadSampleError(json_path, f"the segments_info of {file_name} lists segment {int(repeated[0])} twice")
        semantic = np.full(bgr.shape[:2], UNLABELED, dtype=np.uint8)  # VOID and unlisted ids stay unlabeled
        for segment, category in zip(segment_ids.tolist(), categories.tolist()):
            mask = segment_pixels(bgr, segment)
            if not cv2.countNonZero(mask):
                raise BadSampleError(path, f"segment {segment} of {json_path.name}'s segments_info has no pixel "
                                           f"in the PNG")
            cv2.copyTo(np.full_like(semantic, category), mask, semantic)  # semantic[mask] = category, in C
        return RawLabel(semantic, {"bgr": bgr, "segments": frozenset(segment_ids.tolist()), "json": json_path})

    def segment_mask(self, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
        if segment not in label.context["segments"]:
            raise empty_segment_error(self.label_file(entry), segment,
                                      f"the segments_info of {label.context['json']} for this PNG does not list it")
        return segment_pixels(label.context["bgr"], segment) != 0
