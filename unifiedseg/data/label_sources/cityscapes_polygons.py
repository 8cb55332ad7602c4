"""`cityscapes_polygons`: Cityscapes `*_gtFine_labelIds.png`, with segments from `*_gtFine_polygons.json`.

The label is the listed `gtFine/{split}/{city}/X_gtFine_labelIds.png` (34 ids), a PNG of ids. A relabel
record's segment names an object of the polygons JSON beside it: the object whose `id` equals it, or,
for objects without an `id` (all of Cityscapes'), the object at that index of `objects`. Its mask is the
polygon rasterised as mseg-api's `get_mask_from_polygon` does it: a Pillow "L" image of the JSON's
imgWidth x imgHeight, `ImageDraw.polygon(points, outline=1, fill=1)`, or `ImageDraw.line(points, fill=1)`
when all points have the same y (a Pillow bug workaround in MSeg). Deleted objects are not skipped. So
the result follows the installed Pillow, as MSeg's did.

The polygon-JSON helpers here are shared with `idd_polygons`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.label_sources.base import RawLabel, empty_segment_error, register_label_source
from unifiedseg.data.label_sources.files import read_json
from unifiedseg.data.label_sources.simple import IdPng
from unifiedseg.data.listfile import ListEntry
from unifiedseg.utils.checks import is_int, is_number


@dataclass(frozen=True)
class PolygonObject:
    label: str
    points: tuple  # ((x, y), ...), numbers as in the JSON
    deleted: bool
    segment: object  # the object's `id`, or its index in `objects` when it has none
    has_id: bool


@dataclass(frozen=True)
class Polygons:
    """A Cityscapes-format polygons JSON, checked."""

    path: Path
    width: int
    height: int
    objects: tuple


def read_polygons(path) -> Polygons:
    """Parse and check a Cityscapes/IDD `*_polygons.json`: imgWidth, imgHeight and `objects`, each with a
    `label` and a `polygon` of [x, y] points (MSeg's parsers read every object, deleted or not)."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise BadSampleError(path, "not a polygons file (expected a JSON object)")
    size = []
    for key in ("imgWidth", "imgHeight"):
        value = document.get(key)
        if not is_int(value) or value <= 0:
            raise BadSampleError(path, f"{key} must be a positive integer, got {value!r}")
        size.append(value)
    objects = document.get("objects")
    if not isinstance(objects, list):
        raise BadSampleError(path, "has no 'objects' list")
    parsed = []
    for number, obj in enumerate(objects):
        where = f"objects[{number}]"
        if not isinstance(obj, dict):
            raise BadSampleError(path, f"{where} is not a JSON object")
        if "label" not in obj:
            raise BadSampleError(path, f"{where} has no 'label'")
        polygon = obj.get("polygon")
        if not isinstance(polygon, list):
            raise BadSampleError(path, f"{where} ({obj['label']}) has no 'polygon' list")
        for point in polygon:
            if not isinstance(point, list) or len(point) != 2 or not all(is_number(v) for v in point):
                raise BadSampleError(path, f"{where} ({obj['label']}) has a polygon point that is not [x, y]: {point!r}")
        parsed.append(PolygonObject(label=str(obj["label"]), points=tuple((x, y) for x, y in polygon),
                                    deleted=bool(obj.get("deleted", 0)), segment=obj["id"] if "id" in obj else number,
                                    has_id="id" in obj))
    return Polygons(Path(path), size[0], size[1], tuple(parsed))


def polygon_mask(polygons: Polygons, obj: PolygonObject, segment: int) -> np.ndarray:
    """mseg-api's get_mask_from_polygon: fill and outline 1, or a line when all y are equal."""
    image = Image.new("L", (polygons.width, polygons.height), 0)
    draw = ImageDraw.Draw(image)
    points = list(obj.points)
    try:
        if len({y for _, y in points}) == 1:
            draw.line(points, fill=1)
        else:
            draw.polygon(points, outline=1, fill=1)
    except (ValueError, TypeError, SystemError, OverflowError) as err:
        raise BadSampleError(polygons.path, f"segment {segment}: cannot rasterise its polygon ({err})") from None
    return np.asarray(image) == 1


def json_segment_mask(polygons: Polygons, segment: int, shape: tuple) -> np.ndarray:
    """The mask of the first object whose `id` (or index, for objects without one) is `segment`, checked
    against the label's shape."""
    if (polygons.height, polygons.width) != tuple(shape):
        raise BadSampleError(polygons.path, f"imgWidth x imgHeight is {polygons.width}x{polygons.height} but the "
                                            f"label is {shape[1]}x{shape[0]}")
    for obj in polygons.objects:
        if obj.segment == segment:
            mask = polygon_mask(polygons, obj, segment)
            if not mask.any():
                raise empty_segment_error(polygons.path, segment, f"its polygon ({obj.label}) covers no pixel")
            return mask
    kinds = {obj.has_id for obj in polygons.objects}
    what = "id" if kinds == {True} else "index" if kinds == {False} else "id (or index, for objects without one)"
    raise empty_segment_error(polygons.path, segment, f"none of its {len(polygons.objects)} objects has that {what}")


def polygons_file(label: Path, suffix: str) -> Path:
    """`X{suffix}` -> `X_gtFine_polygons.json` in the same folder."""
    if not label.name.endswith(suffix):
        raise BadSampleError(label, f"expected a label file name ending in {suffix} (the polygons JSON is named "
                                    f"after it)")
    return label.with_name(label.name[: -len(suffix)] + "_gtFine_polygons.json")


@register_label_source("cityscapes_polygons")
class CityscapesPolygons(IdPng):
    suffix = "_gtFine_labelIds.png"

    def segment_file(self, entry: ListEntry) -> Path:
        return polygons_file(self.label_file(entry), self.suffix)

    def segment_mask(self, entry: ListEntry, label: RawLabel, segment: int) -> np.ndarray:
        polygons = label.context.get("polygons")
        if polygons is None:
            polygons = label.context["polygons"] = read_polygons(polygons_file(self.label_file(entry), self.suffix))
        return json_segment_mask(polygons, segment, label.ids.shape)
