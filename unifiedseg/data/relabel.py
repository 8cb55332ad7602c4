"""MSeg's relabeling, applied on the fly: which segments of which image change class, in MSeg's order.

MSeg's preparation rewrote 226,413 segments of its training datasets on disk (mseg-api's records:
one file per class change, one line per segment). Here they are one compact index shipped with the
project, `unifiedseg/resources/relabel/records.tsv.xz` (built once from MSeg's record files by
`tools/build_relabel_index.py`), with one line per segment in application order (MSeg's record-list
order, then line order):

    group  split  parent  stem  segment  orig_class  new_class

`group` names the dataset family (cocop, ade20k, cityscapes, idd, bdd, mapillary, sunrgbd); a sample
is found by (parent folder of its image, image file stem), e.g. ("aachen", "aachen_000000_000019_leftImg8bit");
`segment` is what the family's label source understands (a panoptic segment id, an ADE20K instance
value, a polygon index or id, a class id, a Mapillary instance value); the classes are names of the
dataset's `-relabeled` class list. The label sources (unifiedseg.data.label_sources) turn a segment
into a pixel mask; unifiedseg.data.labels applies the edits.
"""

from __future__ import annotations

import functools
import hashlib
import lzma
from dataclasses import dataclass
from pathlib import Path

from unifiedseg.paths import RESOURCES_DIR

INDEX_PATH = RESOURCES_DIR / "relabel" / "records.tsv.xz"
INDEX_COLUMNS = ("group", "split", "parent", "stem", "segment", "orig_class", "new_class")
GROUPS = ("cocop", "ade20k", "cityscapes", "idd", "bdd", "mapillary", "sunrgbd")


class RelabelError(ValueError):
    """The relabel index or a record file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class SegmentEdit:
    """One record: every pixel of `segment` becomes `new_class` (names of the -relabeled list)."""

    segment: int
    orig_class: str
    new_class: str
    line: int  # line of the index file, for messages


def record_key(group: str, split: str, record_line: str) -> tuple[str, str, int]:
    """(image parent folder, image stem, segment) of one line of an MSeg record file.

    The line is an image name with `_<segment>` appended; how its prefix names the image differs by
    dataset (mseg-api's dataset APIs), e.g. Cityscapes `seqaachen_aachen_000000_000019_leftImg8bit_59.jpg`
    is the polygon 59 of leftImg8bit/*/aachen/aachen_000000_000019_leftImg8bit.png."""
    stem = Path(record_line.strip()).stem
    tokens = stem.split("_")
    if len(tokens) < 2 or not tokens[-1].isdigit():
        raise RelabelError(f"record {record_line.strip()!r} does not end in _<segment id>")
    segment = int(tokens[-1])
    if group == "cocop":
        return f"{split}2017", tokens[0], segment
    if group == "ade20k":
        return {"train": "training", "val": "validation"}[split], "_".join(tokens[:-1]), segment
    if group in ("cityscapes", "idd"):
        if not tokens[0].startswith("seq"):
            raise RelabelError(f"record {record_line.strip()!r} does not start with seq<folder>")
        return tokens[0][3:], "_".join(tokens[1:-1]), segment
    if group == "bdd":
        return split, tokens[0], segment
    if group == "mapillary":
        return "images", "_".join(tokens[1:-1]), segment
    if group == "sunrgbd":
        return {"train": "train", "val": "test"}[split], tokens[0], segment
    raise RelabelError(f"unknown record group {group!r}; valid: {', '.join(GROUPS)}")


@dataclass(frozen=True)
class RelabelIndex:
    """group -> (image parent, image stem) -> ordered edits."""

    source: str
    fingerprint: str
    groups: dict[str, dict[tuple[str, str], tuple[SegmentEdit, ...]]]

    def edits(self, group: str, image: Path) -> tuple[SegmentEdit, ...]:
        """The edits of one image (empty for most images: only images with records pay for masks)."""
        return self.groups.get(group, {}).get((image.parent.name, image.stem), ())

    def class_names(self, group: str) -> set[str]:
        """Every class name the records of `group` use (original and new)."""
        return {name for edits in self.groups.get(group, {}).values() for e in edits for name in (e.orig_class, e.new_class)}

    def counts(self) -> dict[str, tuple[int, int]]:
        """group -> (images, segments)."""
        return {g: (len(by_image), sum(len(e) for e in by_image.values())) for g, by_image in self.groups.items()}


def parse_index(text: str, source: str) -> RelabelIndex:
    """Read the index text (see the module docstring); every malformed line is an error naming it."""
    lines = text.split("\n")
    if not lines or tuple(lines[0].split("\t")) != INDEX_COLUMNS:
        raise RelabelError(f"{source}:1: header must be {' '.join(INDEX_COLUMNS)}")
    groups: dict[str, dict[tuple[str, str], list[SegmentEdit]]] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(INDEX_COLUMNS) or not fields[4].isdigit():
            raise RelabelError(f"{source}:{number}: expected {len(INDEX_COLUMNS)} tab-separated fields "
                               f"({', '.join(INDEX_COLUMNS)}), got {line!r}")
        group, _split, parent, stem, segment, orig, new = fields
        groups.setdefault(group, {}).setdefault((parent, stem), []).append(SegmentEdit(int(segment), orig, new, number))
    frozen = {g: {key: tuple(edits) for key, edits in by_image.items()} for g, by_image in groups.items()}
    return RelabelIndex(source, hashlib.sha1(text.encode()).hexdigest()[:16], frozen)


@functools.lru_cache(maxsize=4)
def load_index(path: str | None = None) -> RelabelIndex:
    """The shipped index (or one at `path`), read once per process (about 226k lines, under a second)."""
    index_path = Path(path) if path else INDEX_PATH
    try:
        with lzma.open(index_path, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise RelabelError(f"relabel index {index_path} does not exist (build it with tools/build_relabel_index.py)") from None
    except (lzma.LZMAError, EOFError, OSError) as err:
        raise RelabelError(f"cannot read relabel index {index_path}: {err}") from None
    return parse_index(text, str(index_path))


def build_index_text(records_dir: Path) -> tuple[str, dict[str, int]]:
    """The index text from MSeg's `relabeled_data/` folder (RECORDS.tsv plus the record files it names,
    in its order), and counts per group. A record naming the same segment twice is an error."""
    records_tsv = records_dir / "RECORDS.tsv"
    rows = records_tsv.read_text(encoding="utf-8").splitlines()
    header = rows[0].split("\t")
    expected = ["records_list", "order", "dataset_tag", "split", "orig_class", "new_class", "record_file"]
    if header != expected:
        raise RelabelError(f"{records_tsv}:1: expected columns {' '.join(expected)}, got {' '.join(header)}")
    out = ["\t".join(INDEX_COLUMNS)]
    seen: dict[tuple, str] = {}
    counts: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        group, _order, _tag, split, orig, new, record_file = row.split("\t")
        if group not in GROUPS:
            raise RelabelError(f"{records_tsv}:{number}: unknown records list {group!r}; valid: {', '.join(GROUPS)}")
        path = records_dir / record_file
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parent, stem, segment = record_key(group, split, line)
            except RelabelError as err:
                raise RelabelError(f"{path}:{line_number}: {err}") from None
            key = (group, parent, stem, segment)
            if key in seen:
                raise RelabelError(f"{path}:{line_number}: segment {segment} of {stem} is already relabeled by {seen[key]}")
            seen[key] = f"{path}:{line_number}"
            out.append("\t".join((group, split, parent, stem, str(segment), orig, new)))
            counts[group] = counts.get(group, 0) + 1
    return "\n".join(out) + "\n", counts
