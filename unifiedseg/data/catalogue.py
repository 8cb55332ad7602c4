"""The archive catalogue: for each dataset the download command knows, whether it needs registration,
the publisher's page, and its archives (file names, URL alternatives in order, sizes and digests where
known, and how each unpacks into the raw layout). Read from `unifiedseg/resources/downloads.yaml` (or a
file of the user's) and checked, every error naming the file and the key:

    camvid:                            # the name `unifiedseg-data download` takes
      title: CamVid
      folder: Camvid                   # the dataset's folder under the data root
      registration: null               # public; else what it takes ("an account", ...): no urls then
      page: http://...                 # the publisher's page (where to fetch by hand)
      archives:
        - name: 701_StillsRaw_full.zip # the file name (also its name on a mirror)
          other_names: []              # the same archive under other names (renamed by the publisher)
          urls: [http://...]           # tried in order
          size: 123                    # optional: exact bytes, checked
          sha256: 0123...              # optional: checked; else the archive's own integrity is
          approx_size: 557 MB          # optional, shown by --list
          note: ...                    # optional: which link to take on the page
          unpack:                      # members under `from` (a prefix, or a list of alternatives;
            - {from: 701_StillsRaw_full, to: 701_StillsRaw_full}  # '' = all) go to `to` in the folder
          nested: []                   # archives inside it (paths under the folder) unpacked in place
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from unifiedseg.data.archives import ARCHIVE_SUFFIXES, UnpackPart
from unifiedseg.paths import RESOURCES_DIR
from unifiedseg.utils.checks import check_keys, is_int
from unifiedseg.utils.fileio import read_yaml_mapping
from unifiedseg.utils.names import suggest

CATALOGUE_FILE = RESOURCES_DIR / "downloads.yaml"
DATASET_KEYS = ("title", "folder", "registration", "page", "archives")
ARCHIVE_KEYS = ("name", "other_names", "urls", "size", "sha256", "approx_size", "note", "unpack", "nested")
PART_KEYS = ("from", "to")


class CatalogueError(ValueError):
    """The archive catalogue is malformed, or a name is not in it; the message names file and key."""


@dataclass(frozen=True)
class ArchiveSpec:
    name: str
    parts: tuple[UnpackPart, ...]
    urls: tuple[str, ...] = ()
    other_names: tuple[str, ...] = ()
    nested: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    approx_size: str = ""
    note: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.other_names)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(part.target for part in self.parts)

    @property
    def shown_size(self) -> str:
        return f"{self.size} bytes" if self.size else f"about {self.approx_size}" if self.approx_size else "size unknown"


@dataclass(frozen=True)
class DownloadDataset:
    name: str
    folder: str
    page: str
    archives: tuple[ArchiveSpec, ...]
    title: str = ""
    registration: str | None = None  # None: public

    @property
    def public(self) -> bool:
        return self.registration is None


@dataclass
class Catalogue:
    datasets: dict[str, DownloadDataset] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Catalogue":
        path = Path(path) if path else CATALOGUE_FILE
        data = read_yaml_mapping(path, CatalogueError, "a mapping of dataset name -> entry")
        catalogue = cls({str(name): _parse_dataset(str(name), entry, path) for name, entry in data.items()}, str(path))
        catalogue._check_unique_names()
        return catalogue

    def _check_unique_names(self) -> None:
        """An archive name (any of its names) belongs to one archive: --from-file matches by name."""
        owner: dict[str, str] = {}
        for dataset in self.datasets.values():
            for spec in dataset.archives:
                for name in spec.names:
                    if name in owner:
                        raise CatalogueError(f"{self.source}: archive name {name!r} is used twice: by {owner[name]} "
                                             f"and by {dataset.name}")
                    owner[name] = dataset.name

    def names(self) -> list[str]:
        return sorted(self.datasets)

    def get(self, name: str) -> DownloadDataset:
        if name not in self.datasets:
            raise CatalogueError(f"unknown dataset {name!r}{suggest(name, self.names())}; datasets that can be "
                                 f"downloaded: {', '.join(self.names())} (unifiedseg-data download --list)")
        return self.datasets[name]

    def archive_named(self, file_name: str) -> tuple[DownloadDataset, ArchiveSpec] | None:
        """The dataset and archive that go by `file_name`, or None."""
        for dataset in self.datasets.values():
            for spec in dataset.archives:
                if file_name in spec.names:
                    return dataset, spec
        return None

    def archive_names(self) -> list[str]:
        return sorted(name for dataset in self.datasets.values() for spec in dataset.archives for name in spec.names)


def _relative_path(value, where: str, *, empty_ok: bool = False) -> str:
    """A path under a folder, as `a/b` (no absolute path, no `..`)."""
    if not isinstance(value, str) or (not value and not empty_ok):
        raise CatalogueError(f"{where}: must be a {'' if empty_ok else 'non-empty '}relative path, got {value!r}")
    parts = [part for part in value.strip("/").split("/") if part not in ("", ".")]
    if value.startswith("/") or ".." in parts:
        raise CatalogueError(f"{where}: must be a path inside the folder (no leading '/', no '..'), got {value!r}")
    return "/".join(parts)


def _string_list(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise CatalogueError(f"{where}: must be a list of non-empty strings, got {value!r}")
    return value


def _archive_name(value, where: str) -> str:
    if not isinstance(value, str) or "/" in value or not value.lower().endswith(ARCHIVE_SUFFIXES):
        raise CatalogueError(f"{where}: must be a file name ending in {', '.join(ARCHIVE_SUFFIXES)}, got {value!r}")
    return value


def _parse_dataset(name: str, entry, path: Path) -> DownloadDataset:
    where = f"{path}: {name}"
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: expected a mapping with keys {', '.join(DATASET_KEYS)}")
    check_keys(entry, DATASET_KEYS, where, error=CatalogueError)
    missing = [key for key in ("folder", "page", "archives") if key not in entry]
    if missing:
        raise CatalogueError(f"{where}: missing key(s) {', '.join(missing)}")
    registration = entry.get("registration")
    if registration is not None and (not isinstance(registration, str) or not registration.strip()):
        raise CatalogueError(f"{where}.registration: must be null (public) or say what it takes, got {registration!r}")
    archives = entry["archives"]
    if not isinstance(archives, list) or not archives:
        raise CatalogueError(f"{where}.archives: must be a non-empty list of archives")
    specs = tuple(_parse_archive(item, f"{where}.archives[{index}]", registration is None)
                  for index, item in enumerate(archives))
    targets = [(target, spec.name) for spec in specs for target in spec.targets]
    for target, owner in targets:
        for other, other_owner in targets:
            if (target, owner) != (other, other_owner) and (other == target or other.startswith(target + "/")):
                raise CatalogueError(f"{where}: target {other!r} of {other_owner} is inside target {target!r} of {owner}; "
                                     f"targets must not overlap (each is renamed into place whole)")
    return DownloadDataset(name=name, folder=_relative_path(entry["folder"], f"{where}.folder"), page=str(entry["page"]),
                           archives=specs, title=str(entry.get("title") or name), registration=registration)


def _parse_archive(item, where: str, public: bool) -> ArchiveSpec:
    if not isinstance(item, dict):
        raise CatalogueError(f"{where}: expected a mapping with keys {', '.join(ARCHIVE_KEYS)}")
    check_keys(item, ARCHIVE_KEYS, where, error=CatalogueError)
    for key in ("name", "unpack"):
        if key not in item:
            raise CatalogueError(f"{where}: missing key {key!r}")
    name = _archive_name(item["name"], f"{where}.name")
    other_names = [_archive_name(other, f"{where}.other_names") for other in _string_list(item.get("other_names"), f"{where}.other_names")]
    urls = _string_list(item.get("urls"), f"{where}.urls")
    for url in urls:
        if urllib.parse.urlparse(url).scheme not in ("http", "https"):
            raise CatalogueError(f"{where}.urls: {url!r} is not an http(s) URL")
    if public and not urls:
        raise CatalogueError(f"{where}.urls: a public dataset's archive needs at least one URL")
    if not public and urls:
        raise CatalogueError(f"{where}.urls: a dataset that needs registration lists no URLs (they are fetched by hand)")
    size = item.get("size")
    if size is not None and (not is_int(size) or size < 1):
        raise CatalogueError(f"{where}.size: must be a positive number of bytes, got {size!r}")
    sha256 = item.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise CatalogueError(f"{where}.sha256: must be 64 hex digits (quoted in YAML), got {sha256!r}")
    parts = item["unpack"]
    if not isinstance(parts, list) or not parts:
        raise CatalogueError(f"{where}.unpack: must be a non-empty list of {{from: PREFIX, to: PATH}}")
    parsed = tuple(_parse_part(part, f"{where}.unpack[{index}]") for index, part in enumerate(parts))
    nested = tuple(_relative_path(inner, f"{where}.nested") for inner in _string_list(item.get("nested"), f"{where}.nested"))
    for inner in nested:
        if not any(inner.startswith(part.target + "/") for part in parsed):
            raise CatalogueError(f"{where}.nested: {inner!r} is under no target of unpack "
                                 f"({', '.join(part.target for part in parsed)})")
    return ArchiveSpec(name=name, parts=parsed, urls=tuple(urls), other_names=tuple(other_names), nested=nested,
                       size=size, sha256=sha256.lower() if sha256 else None,
                       approx_size=str(item.get("approx_size") or ""), note=str(item.get("note") or ""))


def _parse_part(part, where: str) -> UnpackPart:
    if not isinstance(part, dict):
        raise CatalogueError(f"{where}: expected {{from: PREFIX, to: PATH}}, got {part!r}")
    check_keys(part, PART_KEYS, where, error=CatalogueError)
    if sorted(part) != sorted(PART_KEYS):
        raise CatalogueError(f"{where}: needs both 'from' (a member prefix in the archive, '' for all) and 'to' "
                             f"(a path under the dataset folder)")
    sources = part["from"] if isinstance(part["from"], list) else [part["from"]]
    if not sources:
        raise CatalogueError(f"{where}.from: must be a prefix or a non-empty list of alternatives")
    return UnpackPart(tuple(_relative_path(source, f"{where}.from", empty_ok=True) for source in sources),
                      _relative_path(part["to"], f"{where}.to"))
