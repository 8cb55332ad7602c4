"""`idd_polygons`: IDD labels rasterised from `*_gtFine_polygons.json`, as MSeg's preparation did.

List entries are idd-40's `leftImg8bit/{split}/{seq}/N_leftImg8bit.png gtFine/{split}/{seq}/N_gtFine_labelids.png`;
the PNG is what MSeg's preparation wrote (mseg-api `dump_idd_semantic_labels.py`, after AutoNUE's
`createLabels.py`), so this source reads the JSON beside it instead (`label_file`) and draws the same
label: a Pillow "L" image of imgWidth x imgHeight filled with the id of `unlabeled`, then each object in
JSON order with `ImageDraw.polygon(points, fill=id)` (no outline), skipping deleted objects and polygons
of fewer than 3 points. A label not among idd-40's names loses a trailing "group" ("cargroup" -> "car");
one still unknown is skipped, with a warning (once per name and process), as MSeg does.

A relabel record's segment is an object's `id` in that JSON (index in `objects` for an object without
one), rasterised as `cityscapes_polygons` does (fill and outline, deleted objects included).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.label_sources.base import LabelSource, RawLabel, register_label_source
from unifiedseg.data.label_sources.cityscapes_polygons import json_segment_mask, polygons_file, read_polygons
from unifiedseg.data.listfile import ListEntry

logger = logging.getLogger(__name__)

UNLABELED = "unlabeled"
GROUP = "group"
_warned: set[str] = set()


@register_label_source("idd_polygons")
class IddPolygons(LabelSource):
    suffix = "_gtFine_labelids.png"

    def __init__(self, context):
        super().__init__(context)
        # a repeated name: the last id wins, as in MSeg's {name: id} dictionary
        self.ids = {name: i for i, name in enumerate(context.release_names)}
        if UNLABELED not in self.ids:
            raise ValueError(f"dataset {context.dataset}: the idd_polygons label source needs a class named "
                             f"{UNLABELED!r} in {context.release}'s names (the background of the rasterised labels)")
        if max(self.ids.values()) > 255:
            raise ValueError(f"dataset {context.dataset}: idd_polygons draws 8-bit labels, but {context.release} "
                             f"has {len(context.release_names)} classes")

    def label_file(self, entry: ListEntry) -> Path:
        return polygons_file(entry.label, self.suffix)

    def read(self, entry: ListEntry) -> RawLabel:
        polygons = read_polygons(self.label_file(entry))
        image = Image.new("L", (polygons.width, polygons.height), self.ids[UNLABELED])
        draw = ImageDraw.Draw(image)
        for number, obj in enumerate(polygons.objects):
            if obj.deleted or len(obj.points) < 3:
                continue
            name = obj.label
            if name not in self.ids and name.endswith(GROUP):
                name = name[: -len(GROUP)]
            if name not in self.ids:
                if obj.label not in _warned:
                    _warned.add(obj.label)
                    logger.warning("%s: label %r is not one of %s's classes; its polygons are skipped (as MSeg "
                                   "does; warned once per label)", polygons.path, obj.label, self.context.release)
                continue
            try:
                draw.polygon(list(obj.points), fill=self.ids[name])
            except (ValueError, TypeError, SystemError, OverflowError) as err:
                raise BadSampleError(polygons.path, f"objects[{number}] ({obj.label}): cannot rasterise its "
                                                    f"polygon ({err})") from None
        return RawLabel(np.array(image, dtype=np.uint8), {"polygons": polygons})

    def segment_mask(self, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
        return json_segment_mask(label.context["polygons"], segment, label.ids.shape)
