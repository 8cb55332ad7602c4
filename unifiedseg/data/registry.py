"""The dataset registry: where each dataset lives under the data root, which split lists it has, how
its labels are stored.

Entries are read from YAML files, by default every `taxonomy/datasets/*.yaml`; a user adds a dataset
by adding an entry (in a new YAML file, passed as `extra_files` / `data.registry_files`) and a
class-name list, with no code change:

    my-dataset:                       # the dataset's name = its taxonomy TSV column
      root: MyDataset                 # folder under the data root; list lines are relative to it
      lists: {train: list/train.txt, val: list/val.txt}   # relative to root; "image_rel label_rel" per line
      num_classes: 12                 # checked against dataset_lists/my-dataset/my-dataset_names.txt
      disk_taxonomy: my-dataset-raw   # optional: the listed label files hold this release's ids, mapped
                                      # by taxonomy/remap/my-dataset-raw_to_my-dataset.tsv
      label_source: id                # optional: how label files are read (unifiedseg.data.label_sources):
                                      # id (PNG of ids, default) | palette | color | coco_panoptic | ...
      raw: {from: my-dataset-raw, source: id, relabel: null}   # optional: data.label_source=raw reads the
                                      # lists of entry `from` with that source and maps its ids to this
                                      # dataset's through taxonomy/remap/ (chained), then applies MSeg's
                                      # relabel records of group `relabel` (unifiedseg.data.relabel)

MSeg's datasets name MSeg's split lists instead (`mseg_lists: NAME`, shipped with the project, see
unifiedseg.data.splits); a list of name X lists label files in X's ids, so an entry reading X's lists
has `disk_taxonomy` X exactly when X is not its own name (a test checks every entry). COCO's train
lists are too large to ship: `generated_lists` says how to build them from the data's own index.

The registry refuses a name defined twice and lists the valid names on a miss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from unifiedseg.paths import taxonomy_dir
from unifiedseg.utils.checks import is_int
from unifiedseg.utils.fileio import read_yaml_mapping
from unifiedseg.utils.names import suggest

DATA_ROOT_ENV = "UNIFIEDSEG_DATA_ROOT"
REQUIRED_KEYS = ("root", "num_classes")
OPTIONAL_KEYS = ("lists", "mseg_lists", "generated_lists", "disk_taxonomy", "label_source", "raw", "images_from",
                 "labels_from", "description")
GENERATED_LIST_KEYS = ("from_json", "image", "label")
RAW_KEYS = ("from", "source", "release", "relabel", "segments_in")


class RegistryError(ValueError):
    """A registry file or lookup is wrong; the message names the file, dataset and key."""


@dataclass(frozen=True)
class GeneratedList:
    """A split list built from an annotation index on disk (COCO's train lists: every image of the JSON's
    `images`), `image` and `label` being templates with `{stem}` (the file name without suffix)."""

    from_json: str  # relative to the dataset folder
    image: str
    label: str


@dataclass(frozen=True)
class RawSpec:
    """How `data.label_source=raw` reads a dataset from the publisher's files: the lists of entry
    `from_entry` (resolved to `lists_of` when the registry loads), read with label source `source`
    (default: that entry's), MSeg's relabel records of `relabel` (a group of unifiedseg.data.relabel),
    class-id segments numbered in `segments_in` (default: the source's release)."""

    from_entry: str
    source: str | None = None
    release: str | None = None  # the ids the source yields, when not the `from` entry's (COCO: 201 ids)
    relabel: str | None = None
    segments_in: str | None = None
    lists_of: "DatasetInfo | None" = None


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry."""

    name: str
    root: str
    num_classes: int
    lists: dict[str, str] = field(default_factory=dict)  # split -> the user's list file (relative to root)
    mseg_lists: str | None = None  # the shipped MSeg list set read for splits not in `lists`
    generated_lists: dict[str, GeneratedList] = field(default_factory=dict)
    disk_taxonomy: str | None = None
    label_source: str = "id"
    raw: RawSpec | None = None
    images_from: str = ""  # what brings the images (archive, publisher), for the status command
    labels_from: str = ""  # what writes the listed label files (archive or preparation step)
    description: str = ""
    source: str = ""  # the registry file that defined it

    def folder(self, data_root: str | os.PathLike) -> Path:
        return Path(data_root) / self.root

    @property
    def label_ids(self) -> str:
        """The taxonomy whose ids the listed label files hold."""
        return self.disk_taxonomy or self.name


@dataclass
class DatasetRegistry:
    """Dataset name -> DatasetInfo, from one or more YAML files."""

    entries: dict[str, DatasetInfo] = field(default_factory=dict)

    @classmethod
    def load(cls, extra_files=(), include_shipped: bool = True) -> "DatasetRegistry":
        files = sorted((taxonomy_dir() / "datasets").glob("*.yaml")) if include_shipped else []
        files += [Path(f) for f in extra_files]
        registry = cls()
        for path in files:
            registry.add_file(path)
        registry.link_raw()
        return registry

    def link_raw(self) -> None:
        """Resolve each entry's `raw.from` to that entry (an unknown name is an error naming both)."""
        for name, info in list(self.entries.items()):
            if info.raw is None:
                continue
            if info.raw.from_entry not in self.entries:
                names = sorted(self.entries)
                raise RegistryError(f"{info.source}: dataset {name!r}: raw.from names unknown dataset {info.raw.from_entry!r}"
                                    f"{suggest(info.raw.from_entry, names)}")
            source = self.entries[info.raw.from_entry]
            self.entries[name] = replace(info, raw=replace(info.raw, lists_of=replace(source, raw=None)))

    def add_file(self, path: Path) -> None:
        data = read_yaml_mapping(path, RegistryError, "a mapping of dataset name -> entry")
        for name, entry in data.items():
            self.add(_parse_entry(str(name), entry, path))

    def add(self, info: DatasetInfo) -> None:
        if info.name in self.entries:
            raise RegistryError(f"dataset {info.name!r} is defined twice: in {self.entries[info.name].source} and in {info.source}")
        self.entries[info.name] = info

    def get(self, name: str) -> DatasetInfo:
        try:
            return self.entries[name]
        except KeyError:
            names = sorted(self.entries)
            raise RegistryError(f"unknown dataset {name!r}{suggest(name, names)}; registered datasets: {', '.join(names)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return sorted(self.entries)


def _parse_entry(name: str, entry, path: Path) -> DatasetInfo:
    where = f"{path}: dataset {name!r}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping with keys {', '.join(REQUIRED_KEYS)}")
    valid = REQUIRED_KEYS + OPTIONAL_KEYS
    for key in entry:
        if key not in valid:
            raise RegistryError(f"{where}: unknown key {key!r}{suggest(str(key), list(valid))}; valid keys: {', '.join(valid)}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise RegistryError(f"{where}: missing key(s) {', '.join(missing)}")
    lists = entry.get("lists") or {}
    if not isinstance(lists, dict):
        raise RegistryError(f"{where}: 'lists' must map split names to list files, e.g. {{train: list/train.txt}}")
    if not lists and not entry.get("mseg_lists"):
        raise RegistryError(f"{where}: give 'lists' (split -> list file) or 'mseg_lists' (a shipped MSeg list set)")
    num_classes = entry["num_classes"]
    if not is_int(num_classes) or num_classes < 1:
        raise RegistryError(f"{where}: 'num_classes' must be a positive integer, got {num_classes!r}")
    label_source = _check_source(str(entry.get("label_source", "id")), where, "label_source")
    return_raw = _parse_raw(entry.get("raw"), where)
    return DatasetInfo(name=name, root=str(entry["root"]), num_classes=num_classes,
                       lists={str(k): str(v) for k, v in lists.items()},
                       mseg_lists=str(entry["mseg_lists"]) if entry.get("mseg_lists") else None,
                       generated_lists=_parse_generated(entry.get("generated_lists") or {}, where),
                       disk_taxonomy=entry.get("disk_taxonomy"), label_source=label_source, raw=return_raw,
                       images_from=str(entry.get("images_from", "")), labels_from=str(entry.get("labels_from", "")),
                       description=str(entry.get("description", "")), source=str(path))


def _check_source(name: str, where: str, key: str) -> str:
    from unifiedseg.data.label_sources import LABEL_SOURCES  # the sources register themselves on import

    if name not in LABEL_SOURCES:
        names = sorted(LABEL_SOURCES)
        raise RegistryError(f"{where}: unknown {key} {name!r}{suggest(name, names)}; valid: {', '.join(names)}")
    return name


def _parse_raw(spec, where: str) -> RawSpec | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or "from" not in spec:
        raise RegistryError(f"{where}: 'raw' must be a mapping with 'from' (the entry whose lists to read) and "
                            f"optionally {', '.join(RAW_KEYS[1:])}")
    for key in spec:
        if key not in RAW_KEYS:
            raise RegistryError(f"{where}: unknown key raw.{key}{suggest(str(key), list(RAW_KEYS))}; valid: {', '.join(RAW_KEYS)}")
    if spec.get("source") is not None:
        _check_source(str(spec["source"]), where, "raw.source")
    if spec.get("relabel") is not None:
        from unifiedseg.data.relabel import GROUPS

        if spec["relabel"] not in GROUPS:
            raise RegistryError(f"{where}: unknown raw.relabel {spec['relabel']!r}{suggest(str(spec['relabel']), list(GROUPS))}; "
                                f"valid: {', '.join(GROUPS)}")
    return RawSpec(from_entry=str(spec["from"]), source=spec.get("source"), release=spec.get("release"),
                   relabel=spec.get("relabel"),
                   segments_in=spec.get("segments_in"))


def _parse_generated(spec, where: str) -> dict[str, GeneratedList]:
    if not isinstance(spec, dict):
        raise RegistryError(f"{where}: 'generated_lists' must map split names to {{{', '.join(GENERATED_LIST_KEYS)}}}")
    result = {}
    for split, recipe in spec.items():
        if not isinstance(recipe, dict) or sorted(recipe) != sorted(GENERATED_LIST_KEYS):
            raise RegistryError(f"{where}: generated_lists.{split} must have exactly the keys {', '.join(GENERATED_LIST_KEYS)}")
        result[str(split)] = GeneratedList(**{k: str(v) for k, v in recipe.items()})
    return result


def resolve_data_root(configured: str | os.PathLike | None = None) -> Path:
    """`data.root` from the config, else $UNIFIEDSEG_DATA_ROOT; an error says how to set either."""
    root = configured or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise RegistryError(f"no data root: set data.root in the config (or data.root=DIR on the command line), "
                            f"or the environment variable {DATA_ROOT_ENV}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise RegistryError(f"data root {path} is not a folder (from {'data.root' if configured else DATA_ROOT_ENV})")
    return path
