"""Which list file a dataset split reads: the user's own, MSeg's shipped one, or one generated from the
data's own index.

For a registry entry and a split, in this order:
1. the entry's `lists[split]` (a user's registry file), relative to the dataset folder;
2. a user's copy at `<dataset folder>/list/<mseg_lists>/<split>.txt`, which overrides MSeg's list;
3. MSeg's list shipped with the project, `unifiedseg/resources/lists/<mseg_lists>/<split>.txt.xz`;
4. `generated_lists[split]`: built once from an annotation JSON on disk (COCO's train lists, too large
   to ship: every image of `panoptic_train2017.json`) and cached under unifiedseg.paths.cache_dir(),
   keyed by the JSON's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from unifiedseg.data.listfile import ListEntry, ListFileError, read_list
from unifiedseg.data.registry import DatasetInfo, GeneratedList, RegistryError
from unifiedseg.paths import CACHE_ENV, cache_dir, shipped_lists_dir
from unifiedseg.utils.fileio import atomic_write_text

SHIPPED_SUFFIX = ".txt.xz"
USER_LIST_FOLDER = "list"


@dataclass(frozen=True)
class SplitList:
    """A resolved split: the file to read and where it came from (shown by the status command)."""

    dataset: str
    split: str
    path: Path | None  # None: a generated list not built yet (see `pending`)
    origin: str
    pending: str = ""  # why `path` is None, e.g. the annotation file it would be generated from is missing


def shipped_list_names() -> list[str]:
    """Every MSeg list set shipped with the project."""
    return sorted(p.name for p in shipped_lists_dir().iterdir() if p.is_dir())


def shipped_splits(list_name: str) -> list[str]:
    folder = shipped_lists_dir() / list_name
    return sorted(p.name[: -len(SHIPPED_SUFFIX)] for p in folder.glob(f"*{SHIPPED_SUFFIX}")) if folder.is_dir() else []


def shipped_list_path(list_name: str, split: str) -> Path:
    return shipped_lists_dir() / list_name / f"{split}{SHIPPED_SUFFIX}"


def available_splits(info: DatasetInfo) -> list[str]:
    """The splits a dataset has: its own lists, MSeg's shipped ones, generated ones."""
    splits = set(info.lists) | set(info.generated_lists)
    if info.mseg_lists:
        splits |= set(shipped_splits(info.mseg_lists))
    return sorted(splits)


def user_list_path(info: DatasetInfo, split: str, data_root) -> Path:
    """Where a user's own copy of an MSeg list overrides the shipped one."""
    return info.folder(data_root) / USER_LIST_FOLDER / (info.mseg_lists or info.name) / f"{split}.txt"


def resolve_split(info: DatasetInfo, split: str, data_root, generate: bool = True) -> SplitList:
    """The list file of `split` (see the module docstring for the order). `generate=False` reports a
    generated list that is not cached yet as pending instead of building it."""
    if split in info.lists:
        path = Path(info.lists[split])
        path = path if path.is_absolute() else info.folder(data_root) / path
        return SplitList(info.name, split, path, f"registry list {path} (from {info.source})")
    if info.mseg_lists:
        override = user_list_path(info, split, data_root)
        if override.is_file():
            return SplitList(info.name, split, override, f"your list {override} (overrides MSeg's)")
        shipped = shipped_list_path(info.mseg_lists, split)
        if shipped.is_file():
            return SplitList(info.name, split, shipped, f"MSeg's list {info.mseg_lists}/{split}")
    if split in info.generated_lists:
        return _generated(info, split, info.generated_lists[split], data_root, generate)
    splits = available_splits(info)
    raise RegistryError(f"dataset {info.name!r} ({info.source}) has no {split!r} list; its splits: {', '.join(splits)}")


def read_split(info: DatasetInfo, split: str, data_root, require_labels: bool = True) -> list[ListEntry]:
    """The entries of a dataset split, paths joined to the dataset folder."""
    resolved = resolve_split(info, split, data_root)
    try:
        return read_list(resolved.path, info.folder(data_root), require_labels=require_labels)
    except ListFileError as err:
        raise ListFileError(f"dataset {info.name} split {split}: {err}") from None


def _generated(info: DatasetInfo, split: str, recipe: GeneratedList, data_root, generate: bool) -> SplitList:
    source = info.folder(data_root) / recipe.from_json
    origin = f"generated from {source}"
    try:
        stat = source.stat()
    except FileNotFoundError:
        return SplitList(info.name, split, None, origin, pending=f"{source} does not exist")
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{recipe}".encode()).hexdigest()[:16]
    cached = cache_dir() / "lists" / info.name / f"{split}-{key}.txt"
    if cached.is_file():
        return SplitList(info.name, split, cached, origin)
    if not generate:
        return SplitList(info.name, split, None, origin, pending=f"not generated yet (reads {source} on first use)")
    lines = generate_list_lines(source, recipe)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, "".join(lines))
    except OSError as err:
        raise ListFileError(f"cannot write the {split} list generated from {source} to {cached}: {err.strerror} "
                            f"(set {CACHE_ENV} to a writable folder)") from None
    return SplitList(info.name, split, cached, origin)


def generate_list_lines(source: Path, recipe: GeneratedList) -> list[str]:
    """One `image label` line per image of a COCO-style JSON (`images[].file_name`), sorted by name."""
    try:
        with open(source, encoding="utf-8") as handle:
            index = json.load(handle)
    except json.JSONDecodeError as err:
        raise ListFileError(f"{source}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except OSError as err:
        raise ListFileError(f"cannot read {source}: {err.strerror}") from None
    images = index.get("images") if isinstance(index, dict) else None
    if not isinstance(images, list):
        raise ListFileError(f"{source}: expected a JSON object with an 'images' list (COCO format)")
    stems = []
    for number, image in enumerate(images):
        name = image.get("file_name") if isinstance(image, dict) else None
        if not isinstance(name, str) or not name:
            raise ListFileError(f"{source}: images[{number}] has no 'file_name'")
        stems.append(Path(name).stem)
    if not stems:
        raise ListFileError(f"{source}: its 'images' list is empty")
    return [f"{recipe.image.format(stem=stem)} {recipe.label.format(stem=stem)}\n" for stem in sorted(stems)]
