"""Label files that are images of ids: `id` (a PNG of ids), `palette` (an 8-bit palette PNG whose
indices are the ids, with Mapillary's uint16 `instances/` PNG for segments) and `color` (an RGB PNG
decoded through the dataset's colour list)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unifiedseg.data.decode import BadSampleError, read_color_label, read_label, read_palette_label
from unifiedseg.data.label_sources.base import LabelSource, RawLabel, empty_segment_error, register_label_source
from unifiedseg.data.listfile import ListEntry


def class_mask(source: LabelSource, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
    """Every pixel of class `segment` (BDD's person/rider records; SUN RGB-D's, numbered in sunrgbd-37)."""
    ids = label.ids if source.context.segment_lut is None else source.context.segment_lut[label.ids]
    mask = ids == segment
    if not mask.any():
        raise empty_segment_error(source.label_file(entry), segment, "no pixel of the label has that class")
    return mask


@register_label_source("id")
class IdPng(LabelSource):
    def read(self, entry: ListEntry) -> RawLabel:
        return RawLabel(read_label(self.label_file(entry)))

    segment_mask = class_mask


@register_label_source("palette")
class PalettePng(LabelSource):
    """Mapillary Vistas: `{training,validation}/labels/X.png`, segments in `.../instances/X.png`."""

    def read(self, entry: ListEntry) -> RawLabel:
        return RawLabel(read_palette_label(self.label_file(entry)))

    def segment_file(self, entry: ListEntry) -> Path:
        return self.instance_file(entry)

    def instance_file(self, entry: ListEntry) -> Path:
        label = self.label_file(entry)
        return label.parent.parent / "instances" / label.name

    def segment_mask(self, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
        instances = label.context.get("instances")
        if instances is None:
            path = self.instance_file(entry)
            instances = label.context["instances"] = read_label(path)
            if instances.shape != label.ids.shape:
                raise BadSampleError(path, f"instance map is {instances.shape[0]}x{instances.shape[1]} but the label "
                                           f"is {label.ids.shape[0]}x{label.ids.shape[1]}")
        mask = instances == segment
        if not mask.any():
            raise empty_segment_error(self.instance_file(entry), segment, "no pixel of the instance map has that value")
        return mask


@register_label_source("color")
class ColorPng(LabelSource):
    def read(self, entry: ListEntry) -> RawLabel:
        if self.context.colors is None:
            raise ValueError(f"dataset {self.context.dataset}: the color label source needs "
                             f"{self.context.release}_colors.txt")
        return RawLabel(read_color_label(self.label_file(entry), self.context.colors))
