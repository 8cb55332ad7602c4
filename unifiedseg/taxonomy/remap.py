"""Dataset-release remap tables: label ids of one release of a dataset to another (e.g. Cityscapes'
34 `labelIds` on disk to its 19 train ids), by class name.

A table `taxonomy/remap/SRC_to_DST.tsv` has a header line `SRC<TAB>DST` and one line per SRC class:
`src_name<TAB>dst_name`, where DST `unlabeled` maps to IGNORE_INDEX. Every SRC class must appear
(except one named `unlabeled`); label ids come from the two class-name lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.table import UNLABELED, TaxonomyError, load_names, suggest


def remap_table_path(src: str, dst: str, folder: Path | None = None) -> Path:
    return (folder or taxonomy_dir() / "remap") / f"{src}_to_{dst}.tsv"


def load_release_lut(src: str, dst: str, src_names: list[str], dst_names: list[str],
                     folder: Path | None = None) -> np.ndarray:
    """uint8 table from SRC label ids to DST label ids; unlabeled and 255 go to 255.

    Its length is 256, or more for a release with more classes (stored as uint16 PNGs).
    """
    path = remap_table_path(src, dst, folder)
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*_to_*.tsv"))
        raise TaxonomyError(f"no remap table {path}; available: {', '.join(available) or 'none'}")
    lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0].split("\t") != [src, dst]:
        raise TaxonomyError(f"{path}:1: header must be {src!r}<TAB>{dst!r}, got {lines[0] if lines else ''!r}")
    dst_ids = {}
    for i, name in enumerate(dst_names):
        dst_ids.setdefault(name, i)
    target: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise TaxonomyError(f"{path}:{number}: expected 2 tab-separated fields, got {len(fields)}: {line!r}")
        src_name, dst_name = fields
        if src_name == UNLABELED:
            continue  # the line for id 255 itself, which always stays 255
        if src_name not in src_names:
            raise TaxonomyError(f"{path}:{number}: {src} has no class {src_name!r}{suggest(src_name, src_names)}")
        if dst_name == UNLABELED:
            target[src_name] = IGNORE_INDEX
        elif dst_name in dst_ids:
            target[src_name] = dst_ids[dst_name]
        else:
            raise TaxonomyError(f"{path}:{number}: {dst} has no class {dst_name!r}{suggest(dst_name, dst_names)}")
    missing = [n for n in src_names if n not in target and n != UNLABELED]
    if missing:
        raise TaxonomyError(f"{path}: {src} classes {', '.join(repr(n) for n in missing)} are mapped nowhere; "
                            f"add a line for each (DST 'unlabeled' to ignore)")
    lut = np.full(max(256, len(src_names)), IGNORE_INDEX, dtype=np.uint8)
    for src_id, name in enumerate(src_names):
        lut[src_id] = target.get(name, IGNORE_INDEX)
    return lut


def release_lut(src: str, dst: str, names_dir: Path | None = None, folder: Path | None = None) -> np.ndarray:
    """`release_lut("cityscapes-34", "cityscapes-19")`: the remap table with the shipped names lists."""
    names_dir = names_dir or taxonomy_dir() / "dataset_lists"
    src_names = load_names(names_dir / src / f"{src}_names.txt")
    dst_names = load_names(names_dir / dst / f"{dst}_names.txt")
    return load_release_lut(src, dst, src_names, dst_names, folder)
