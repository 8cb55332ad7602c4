"""Dataset-release remap tables: label ids of one release of a dataset to another (e.g. Cityscapes'
34 `labelIds` on disk to its 19 train ids), by class name.

A table `taxonomy/remap/SRC_to_DST.tsv` has a header line `SRC<TAB>DST` and one line per SRC class:
`src_name<TAB>dst_name`, where DST `unlabeled` maps to IGNORE_INDEX. Every SRC class must appear
(except one named `unlabeled`); label ids come from the two class-name lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unifiedseg.constants import IGNORE_INDEX, ignore_index_of, label_dtype
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.table import UNLABELED, TaxonomyError, dataset_names, suggest


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
            # id 255 always stays 255; a class of the release named `unlabeled` (PASCAL-Context's id 0)
            # goes where this line says (MSeg maps it to `background` there)
            unlabeled_target = IGNORE_INDEX if dst_name == UNLABELED else dst_ids.get(dst_name)
            if unlabeled_target is None:
                raise TaxonomyError(f"{path}:{number}: {dst} has no class {dst_name!r}{suggest(dst_name, dst_names)}")
            target[src_name] = unlabeled_target
            continue
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


def identity_lut(num_classes: int) -> np.ndarray:
    """Ids to themselves: uint8 (255 ignored), or uint16 above 255 classes (65535 ignored)."""
    dtype = label_dtype(num_classes)
    lut = np.full(max(256, num_classes), ignore_index_of(dtype), dtype=dtype)
    lut[:num_classes] = np.arange(num_classes)
    return lut


def remap_path(src: str, dst: str, folder: Path | None = None) -> list[str]:
    """The releases from `src` to `dst` through the remap tables (shortest chain), e.g. cityscapes-34,
    cityscapes-19, cityscapes-19-relabeled."""
    folder = folder or taxonomy_dir() / "remap"
    edges: dict[str, list[str]] = {}
    for table in sorted(folder.glob("*_to_*.tsv")):
        a, b = table.stem.split("_to_", 1)
        edges.setdefault(a, []).append(b)
    previous = {src: None}
    frontier = [src]
    while frontier and dst not in previous:
        following = []
        for name in frontier:
            for nxt in edges.get(name, []):
                if nxt not in previous:
                    previous[nxt] = name
                    following.append(nxt)
        frontier = following
    if dst not in previous:
        reachable = sorted(n for n in previous if n != src)
        raise TaxonomyError(f"no chain of remap tables in {folder} leads from {src} to {dst}"
                            f"{'; from ' + src + ' they reach: ' + ', '.join(reachable) if reachable else ''}")
    path = [dst]
    while path[-1] != src:
        path.append(previous[path[-1]])
    return path[::-1]


def chain_release_lut(src: str, dst: str, src_names: list[str], dst_names: list[str], names_dir: Path | None = None,
                      folder: Path | None = None) -> np.ndarray:
    """One table from `src` ids to `dst` ids through the chain of remap tables (identity when they are
    the same release; ids keep their dtype, uint16 above 255 classes)."""
    if src == dst:
        return identity_lut(len(src_names))
    names_dir = names_dir or taxonomy_dir() / "dataset_lists"
    releases = remap_path(src, dst, folder)
    lut, names = None, src_names
    for a, b in zip(releases, releases[1:]):
        b_names = dst_names if b == dst else dataset_names(b, names_dir)
        step = load_release_lut(a, b, names, b_names, folder)
        lut = step if lut is None else step[lut]
        names = b_names
    return lut


def release_lut(src: str, dst: str, names_dir: Path | None = None, folder: Path | None = None) -> np.ndarray:
    """`release_lut("cityscapes-34", "cityscapes-19")`: the remap table with the shipped names lists."""
    names_dir = names_dir or taxonomy_dir() / "dataset_lists"
    src_names = dataset_names(src, names_dir)
    dst_names = dataset_names(dst, names_dir)
    return load_release_lut(src, dst, src_names, dst_names, folder)
