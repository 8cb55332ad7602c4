"""The dataset registry: where each dataset lives on disk, its list files and its label release.

Entries are read from YAML files, by default every `taxonomy/datasets/*.yaml`; a user adds a dataset
by adding an entry (in a new YAML file, passed as `extra_files` / `data.registry_files`) and a
class-name list, with no code change:

    my-dataset:                       # the dataset's name = its taxonomy TSV column
      root: MyDataset                 # folder under the data root
      lists: {train: list/train.txt, val: list/val.txt}   # relative to root; "image_rel label_rel" per line
      num_classes: 12                 # checked against dataset_lists/my-dataset/my-dataset_names.txt
      disk_taxonomy: my-dataset-raw   # optional: label ids on disk are of this release, mapped by
                                      # taxonomy/remap/my-dataset-raw_to_my-dataset.tsv

The registry refuses a name defined twice and lists the valid names on a miss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from unifiedseg.paths import taxonomy_dir
from unifiedseg.utils.fileio import read_yaml_mapping
from unifiedseg.utils.names import suggest

DATA_ROOT_ENV = "UNIFIEDSEG_DATA_ROOT"
REQUIRED_KEYS = ("root", "lists", "num_classes")
OPTIONAL_KEYS = ("disk_taxonomy", "description")


class RegistryError(ValueError):
    """A registry file or lookup is wrong; the message names the file, dataset and key."""


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry."""

    name: str
    root: str
    lists: dict[str, str]
    num_classes: int
    disk_taxonomy: str | None = None
    description: str = ""
    source: str = ""  # the registry file that defined it

    def folder(self, data_root: str | os.PathLike) -> Path:
        return Path(data_root) / self.root

    def list_path(self, split: str, data_root: str | os.PathLike) -> Path:
        if split not in self.lists:
            raise RegistryError(f"dataset {self.name!r} ({self.source}) has no {split!r} list; its lists: {', '.join(self.lists)}")
        path = Path(self.lists[split])
        return path if path.is_absolute() else self.folder(data_root) / path


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
        return registry

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
    lists = entry["lists"]
    if not isinstance(lists, dict) or not lists:
        raise RegistryError(f"{where}: 'lists' must map split names to list files, e.g. {{train: list/train.txt}}")
    num_classes = entry["num_classes"]
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise RegistryError(f"{where}: 'num_classes' must be a positive integer, got {num_classes!r}")
    return DatasetInfo(name=name, root=str(entry["root"]), lists={str(k): str(v) for k, v in lists.items()},
                       num_classes=num_classes, disk_taxonomy=entry.get("disk_taxonomy"),
                       description=str(entry.get("description", "")), source=str(path))


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
