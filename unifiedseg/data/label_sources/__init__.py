"""Label sources: how a dataset's label files are read, one module per format.

A source turns one list entry into label ids of its release (`read`) and, for MSeg's relabeling,
a record's segment into a pixel mask (`segment_mask`). A new format is one small module defining a
`LabelSource` subclass decorated with `@register_label_source("name")` and one import line below;
registry entries name it (`label_source:` for the files MSeg's preparation wrote, `raw: {source: ...}`
for the publisher's files). Nothing else in the data path changes.

| name | reads | segments (relabel records) |
| --- | --- | --- |
| id | PNG of ids (uint8, or uint16 for wide releases) | a class id of the label (BDD), or of a remapped space (`segments_in`, SUN RGB-D) |
| palette | 8-bit palette PNG, indices are ids (Mapillary `labels/`) | a value of the uint16 `instances/` PNG beside it |
| color | RGB PNG, `NAME_colors.txt` gives each id's colour (CamVid) | - |
| coco_panoptic | COCO panoptic PNG + the JSON's `segments_info` (category ids, VOID -> 255) | a panoptic segment id |
| ade20k_full | ADEChallengeData2016 PNG of ids | a B-channel value of the full release's `*_seg.png`, nearest-resized |
| cityscapes_polygons | `*_labelIds.png` | the index of an object in `*_polygons.json` |
| idd_polygons | rasterised from `*_polygons.json` | an object's `id` in that JSON |
| pascal_mat | PASCAL-Context `.mat` LabelMap | - |
"""

from unifiedseg.data.label_sources.base import (LABEL_SOURCES, LabelSource, RawLabel, build_label_source,
                                                register_label_source)
from unifiedseg.data.label_sources import simple  # noqa: F401  (registers id, palette, color)
from unifiedseg.data.label_sources import ade20k_full, cityscapes_polygons, coco_panoptic, idd_polygons, pascal_mat  # noqa: F401

__all__ = ["LABEL_SOURCES", "LabelSource", "RawLabel", "build_label_source", "register_label_source"]
