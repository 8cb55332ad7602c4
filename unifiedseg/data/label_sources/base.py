"""The label-source contract and its registry (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.listfile import ListEntry
from unifiedseg.utils.names import suggest

LABEL_SOURCES: dict[str, type["LabelSource"]] = {}


@dataclass
class RawLabel:
    """A decoded label: ids of the source's release, and what the source keeps to make segment masks
    (decoded panoptic ids, parsed polygons, ...), so a sample is decoded once."""

    ids: np.ndarray
    context: dict = field(default_factory=dict)


@dataclass
class SourceContext:
    """What a source is built with: the dataset folder (list paths are relative to it), the data root,
    the release's class names and colours, and `segments_in` (the class list that class-id segments
    are numbered in, when not the release's: SUN RGB-D's records number sunrgbd-37 classes)."""

    dataset: str
    folder: Path
    data_root: Path
    release: str
    release_names: list[str]
    colors: np.ndarray | None = None
    segment_lut: np.ndarray | None = None  # release id -> segments_in id


class LabelSource:
    """Reads one dataset's label files. Subclasses implement `read`, and `segment_mask` when MSeg's
    relabel records can name their segments."""

    name = ""

    def __init__(self, context: SourceContext):
        self.context = context

    def label_file(self, entry: ListEntry) -> Path:
        """The file `read` opens for this entry (the list's label path unless the format keeps its
        labels elsewhere, e.g. polygons beside a listed PNG name)."""
        return entry.label

    def read(self, entry: ListEntry) -> RawLabel:
        raise NotImplementedError

    def segment_file(self, entry: ListEntry) -> Path | None:
        """The file relabel segments of this entry come from, when it is not the label file itself (for
        the status command: an instance-mask tree can be missing while the labels are there)."""
        return None

    def segment_mask(self, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
        raise BadSampleError(self.label_file(entry), f"label source {self.name!r} has no segments to relabel "
                                                    f"(segment {segment} asked)")


def register_label_source(name: str):
    """Class decorator: add a LabelSource under `name`; a name registered twice is an error."""

    def register(cls):
        if name in LABEL_SOURCES:
            raise ValueError(f"label source {name!r} is registered twice: {LABEL_SOURCES[name].__module__} and {cls.__module__}")
        cls.name = name
        LABEL_SOURCES[name] = cls
        return cls

    return register


def build_label_source(name: str, context: SourceContext) -> LabelSource:
    try:
        cls = LABEL_SOURCES[name]
    except KeyError:
        names = sorted(LABEL_SOURCES)
        raise ValueError(f"unknown label source {name!r}{suggest(name, names)}; valid: {', '.join(names)}") from None
    return cls(context)


def empty_segment_error(path, segment: int, what: str) -> BadSampleError:
    """The one message for a record naming a segment that the image does not have."""
    return BadSampleError(path, f"relabel record names segment {segment}, but {what}")
