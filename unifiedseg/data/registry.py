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
      label_format: id                # optional: id (PNG of ids, default) | palette | color (unifiedseg.data.decode)

MSeg's datasets name MSeg's split lists instead (`mseg_lists: NAME`, shipped with the project, see
unifiedseg.data.splits); a list of name X lists label files in X's ids, so an entry reading X's lists
has `disk_taxonomy` X exactly when X is not its own name (a test checks every entry). COCO's train
lists are too large to ship: `generated_lists` says how to build them from the data's own index.

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
REQUIRED_KEYS = ("root", "num_classes")
OPTIONAL_KEYS = ("lists", "mseg_lists", "generated_lists", "disk_taxonomy", "label_format", "images_from",
                 "labels_from", "description")
LABEL_FORMATS = ("id", "palette", "color")
GENERATED_LIST_KEYS = ("from_json", "image", "label")


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
class DatasetInfo:
    """One registry entry."""

    name: str
    root: str
    num_classes: int
    lists: dict[str, str] = field(default_factory=dict)  # split -> the user's list file (relative to root)
    mseg_lists: str | None = None  # the shipped MSeg list set read for splits not in `lists`
    generated_lists: dict[str, GeneratedList] = field(default_factory=dict)
    disk_taxonomy: str | None = None
    label_format: str = "id"
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
    lists = entry.get("lists") or {}
    if not isinstance(lists, dict):
        raise RegistryError(f"{where}: 'lists' must map split names to list files, e.g. {{train: list/train.txt}}")
    if not lists and not entry.get("mseg_lists"):
        raise RegistryError(f"{where}: give 'lists' (split -> list file) or 'mseg_lists' (a shipped MSeg list set)")
    num_classes = entry["num_classes"]
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise RegistryError(f"{where}: 'num_classes' must be a positive integer, got {num_classes!r}")
    label_format = str(entry.get("label_format", "id"))
    if label_format not in LABEL_FORMATS:
        raise RegistryError(f"{where}: unknown label_format {label_format!r}{suggest(label_format, list(LABEL_FORMATS))}; "
                            f"valid: {', '.join(LABEL_FORMATS)}")
    return DatasetInfo(name=name, root=str(entry["root"]), num_classes=num_classes,
                       lists={str(k): str(v) for k, v in lists.items()},
                       mseg_lists=str(entry["mseg_lists"]) if entry.get("mseg_lists") else None,
                       generated_lists=_parse_generated(entry.get("generated_lists") or {}, where),
                       disk_taxonomy=entry.get("disk_taxonomy"), label_format=label_format,
                       images_from=str(entry.get("images_from", "")), labels_from=str(entry.get("labels_from", "")),
                       description=str(entry.get("description", "")), source=str(path))


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
