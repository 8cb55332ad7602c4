"""The taxonomy TSV as a table: read it, find each dataset's class names, and write it back unchanged
except where edited.

Format (documented for users in taxonomy/README.md): one header line, then one row per universal
class and a final row whose `universal` cell is `unlabeled`. Columns left of `universal` are training
datasets, columns right of it are test datasets; metadata columns (parent category, WordNet synset,
definition) may stand anywhere. A training cell names the dataset classes that map to the row's
universal class: `road`, or a set `{house, building}` (many-to-one). A name written `~rider` in
several rows is one-to-many: that dataset class may be any of those universal classes. A test cell
names the one test class the universal class counts towards.

A companion YAML file beside the TSV (`mseg.tsv` -> `mseg.yaml`) may say where class-name lists are,
which columns to skip and which test classes are known to be unreachable; see `TaxonomyMeta`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unifiedseg.constants import MAX_WIDE_CLASSES, WIDE_IGNORE_INDEX
from unifiedseg.paths import taxonomy_dir
from unifiedseg.utils.fileio import atomic_write_text, read_yaml_mapping
from unifiedseg.utils.names import suggest

UNIVERSAL_COLUMN = "universal"
UNLABELED = "unlabeled"
PARTIAL_MARK = "~"
# Columns of MSeg's TSV that describe a universal class rather than map a dataset.
DEFAULT_METADATA_COLUMNS = (
    "Parent Category",
    "WordNet 3.1 Synset",
    "Defn (Most of the meanings are derived from WordNet 3.1)",
    "Modification of WordNet Node",
)
PARENT_COLUMN = "Parent Category"


class TaxonomyError(ValueError):
    """A taxonomy file, class list or request is wrong; the message says where and what to fix."""


class CellSyntaxError(ValueError):
    """A cell is not a name, a `~name`, or a `{a, b}` set."""


@dataclass(frozen=True)
class CellEntry:
    """One dataset class named in a cell; `partial` when written `~name` (one-to-many)."""

    name: str
    partial: bool = False

    def __str__(self) -> str:
        return PARTIAL_MARK + self.name if self.partial else self.name


def parse_cell(text: str) -> list[CellEntry]:
    """Parse a mapping cell into its entries; raises CellSyntaxError on malformed text."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("{") or text.endswith("}"):
        if not (text.startswith("{") and text.endswith("}")):
            raise CellSyntaxError("unbalanced braces: a set is written {a, b}")
        items = text[1:-1].split(",")
    else:
        items = [text]
    entries = []
    for item in items:
        item = item.strip()
        partial = item.startswith(PARTIAL_MARK)
        name = item[len(PARTIAL_MARK):].strip() if partial else item
        if not name:
            raise CellSyntaxError("empty name in set" if len(items) > 1 else "empty name after ~")
        if any(ch in name for ch in "{}"):
            raise CellSyntaxError(f"stray brace in name {name!r}")
        entries.append(CellEntry(name, partial))
    return entries


def format_cell(entries: list[CellEntry]) -> str:
    """Inverse of parse_cell: a bare name for one plain entry, a `{...}` set otherwise."""
    if not entries:
        return ""
    if len(entries) == 1:
        return str(entries[0])
    return "{" + ", ".join(str(e) for e in entries) + "}"


def load_names(path: Path) -> list[str]:
    """Read a class-name list: line i (from 0) names label id i; a trailing newline is optional."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte order mark is not part of the first name
    except OSError as err:
        raise TaxonomyError(f"cannot read class-name list {path}: {err.strerror}") from err
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, name in enumerate(lines, start=1):
        if not name.strip():
            raise TaxonomyError(f"{path}:{number}: empty class name (line {number} is label id {number - 1})")
        if name != name.strip():
            raise TaxonomyError(f"{path}:{number}: class name {name!r} has leading or trailing whitespace")
    return lines


def names_file(dataset: str, names_dir: Path | None = None) -> Path:
    """`dataset_lists/NAME/NAME_names.txt` of the shipped taxonomy folder (or of `names_dir`)."""
    return (names_dir or taxonomy_dir() / "dataset_lists") / dataset / f"{dataset}_names.txt"


def dataset_names(dataset: str, names_dir: Path | None = None) -> list[str]:
    """The class names of a dataset (shipped list, or the one in `names_dir`)."""
    return load_names(names_file(dataset, names_dir))


def read_palette(path) -> np.ndarray:
    """(N, 3) uint8 from a colours file: line i is "R G B" (integers 0-255) of class id i; at most
    MAX_WIDE_CLASSES lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TaxonomyError(f"cannot read palette {path}: {err.strerror}") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    colors = []
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise TaxonomyError(f"{path}:{number}: expected 'R G B' with three integers 0-255 "
                                f"(line {number} is class id {number - 1}), got {line!r}")
        colors.append([int(p) for p in parts])
    if len(colors) > MAX_WIDE_CLASSES:
        raise TaxonomyError(f"{path}: {len(colors)} colours; label maps hold at most {MAX_WIDE_CLASSES} classes "
                            f"(ids 0-{MAX_WIDE_CLASSES - 1}, {WIDE_IGNORE_INDEX} being the ignore label)")
    return np.array(colors, dtype=np.uint8).reshape(len(colors), 3)


@dataclass
class TaxonomyMeta:
    """Companion metadata of a TSV, read from `<tsv stem>.yaml` beside it when present.

    Keys of the YAML file (all optional):
      names_dir: folder of class-name lists, `NAME/NAME_names.txt` or `NAME_names.txt`, relative to
        the YAML file. The TSV's own `dataset_lists/` and the shipped `taxonomy/dataset_lists/` are
        searched after it.
      names: {dataset: path to its names list}, relative to the YAML file.
      metadata_columns: extra column names that describe universal classes instead of mapping datasets.
      skip_columns: {column: reason}: dataset columns to leave out (e.g. no class-name list exists).
      unreachable_test_classes: {test dataset: [class, ...]}: test classes that no universal class
        reaches, acknowledged (they score 0 IoU in zero-shot evaluation); `validate` warns instead
        of failing.
    """

    path: Path | None = None
    names_dirs: list[Path] = field(default_factory=list)
    names_files: dict[str, Path] = field(default_factory=dict)
    metadata_columns: set[str] = field(default_factory=lambda: set(DEFAULT_METADATA_COLUMNS))
    skip_columns: dict[str, str] = field(default_factory=dict)
    unreachable_test_classes: dict[str, list[str]] = field(default_factory=dict)

    KEYS = ("names_dir", "names", "metadata_columns", "skip_columns", "unreachable_test_classes")

    @classmethod
    def for_tsv(cls, tsv_path: Path) -> "TaxonomyMeta":
        companion = tsv_path.with_suffix(".yaml")
        meta = cls(path=companion if companion.exists() else None)
        data = {}
        if meta.path is not None:
            data = read_yaml_mapping(companion, TaxonomyError, f"a mapping of keys {', '.join(cls.KEYS)}")
            unknown = sorted(set(data) - set(cls.KEYS))
            if unknown:
                raise TaxonomyError(f"{companion}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(cls.KEYS)}")
        base = companion.parent
        if data.get("names_dir"):
            meta.names_dirs.append(base / data["names_dir"])
        meta.names_dirs += [tsv_path.parent / "dataset_lists", taxonomy_dir() / "dataset_lists"]
        meta.names_files = {str(k): base / str(v) for k, v in (data.get("names") or {}).items()}
        meta.metadata_columns |= {str(c) for c in data.get("metadata_columns") or []}
        meta.skip_columns = {str(k): str(v) for k, v in (data.get("skip_columns") or {}).items()}
        meta.unreachable_test_classes = {
            str(k): [str(n) for n in v] for k, v in (data.get("unreachable_test_classes") or {}).items()
        }
        return meta

    def names_file(self, dataset: str) -> Path | None:
        """The class-name list of `dataset`, or None when none is found."""
        if dataset in self.names_files:
            return self.names_files[dataset]
        for folder in self.names_dirs:
            for candidate in (folder / dataset / f"{dataset}_names.txt", folder / f"{dataset}_names.txt"):
                if candidate.exists():
                    return candidate
        return None

    def searched_places(self, dataset: str) -> str:
        return ", ".join(str(folder / dataset / f"{dataset}_names.txt") for folder in self.names_dirs)


def resolve_tsv(tsv: str | os.PathLike) -> Path:
    """`"mseg"` or `"demo"` -> the shipped `taxonomy/<name>.tsv`; anything else is a path."""
    text = str(tsv)
    if os.sep not in text and "/" not in text and not text.endswith(".tsv"):
        shipped = taxonomy_dir() / f"{text}.tsv"
        if shipped.exists():
            return shipped
        available = sorted(p.stem for p in taxonomy_dir().glob("*.tsv"))
        raise TaxonomyError(f"no shipped taxonomy named {text!r}; available: {', '.join(available)} (or give a path to a .tsv file)")
    path = Path(text)
    if not path.exists():
        raise TaxonomyError(f"taxonomy TSV {path} does not exist")
    if path.is_dir():
        raise TaxonomyError(f"taxonomy TSV {path} is a folder, not a .tsv file")
    return path


@dataclass
class TaxonomyTable:
    """A taxonomy TSV held as raw text cells, so that an edit rewrites only what it changes."""

    header: list[str]
    rows: list[list[str]]
    path: Path | None = None
    newline: str = "\n"
    trailing_newline: bool = True
    meta: TaxonomyMeta = field(default_factory=TaxonomyMeta)
    byte_order_mark: bool = False  # the file began with a UTF-8 byte order mark (some editors add one); kept on write
    _names_cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ---- reading and writing -------------------------------------------------------------------
    @classmethod
    def load(cls, tsv: str | os.PathLike) -> "TaxonomyTable":
        path = resolve_tsv(tsv)
        try:
            text = path.read_bytes().decode("utf-8")  # bytes: keep CRLF line ends to write them back
        except UnicodeDecodeError as err:
            raise TaxonomyError(f"{path}: not UTF-8 text ({err})") from err
        return cls.parse(text, path=path, meta=TaxonomyMeta.for_tsv(path))

    @classmethod
    def parse(cls, text: str, path: Path | None = None, meta: TaxonomyMeta | None = None) -> "TaxonomyTable":
        bom = text.startswith("\ufeff")
        text = text.removeprefix("\ufeff")
        newline = "\r\n" if "\r\n" in text else "\n"
        lines = text.replace("\r\n", "\n").split("\n")
        trailing = bool(lines) and lines[-1] == ""
        if trailing:
            lines.pop()
        if not lines or not lines[0].strip():
            raise TaxonomyError(f"{path or 'TSV'}: line 1: empty header; expected tab-separated column names including {UNIVERSAL_COLUMN!r}")
        header = lines[0].split("\t")
        rows = [line.split("\t") for line in lines[1:]]
        return cls(header=header, rows=rows, path=path, newline=newline, trailing_newline=trailing,
                   meta=meta or TaxonomyMeta(), byte_order_mark=bom)

    def to_text(self) -> str:
        lines = ["\t".join(self.header)] + ["\t".join(row) for row in self.rows]
        return (("\ufeff" if self.byte_order_mark else "") + self.newline.join(lines)
                + (self.newline if self.trailing_newline else ""))

    def write(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        atomic_write_text(Path(path), self.to_text())

    def copy(self) -> "TaxonomyTable":
        return TaxonomyTable(header=list(self.header), rows=[list(r) for r in self.rows], path=self.path,
                             newline=self.newline, trailing_newline=self.trailing_newline, meta=self.meta,
                             byte_order_mark=self.byte_order_mark)

    # ---- positions -----------------------------------------------------------------------------
    @staticmethod
    def line_of(row_index: int) -> int:
        """File line number of body row `row_index` (the header is line 1)."""
        return row_index + 2

    def cell(self, row_index: int, column: str) -> str:
        row = self.rows[row_index]
        col = self.header.index(column)
        return row[col] if col < len(row) else ""

    def set_cell(self, row_index: int, column: str, value: str) -> None:
        row = self.rows[row_index]
        col = self.header.index(column)
        row.extend([""] * (col + 1 - len(row)))
        row[col] = value

    # ---- columns -------------------------------------------------------------------------------
    @property
    def universal_col(self) -> int:
        if self.header.count(UNIVERSAL_COLUMN) != 1:
            raise TaxonomyError(f"{self.path}: line 1: the header must have exactly one {UNIVERSAL_COLUMN!r} column, "
                                f"found {self.header.count(UNIVERSAL_COLUMN)}")
        return self.header.index(UNIVERSAL_COLUMN)

    def _dataset_columns(self, left: bool, include_skipped: bool = False) -> list[str]:
        u = self.universal_col
        span = self.header[:u] if left else self.header[u + 1:]
        return [c for c in span if c not in self.meta.metadata_columns
                and (include_skipped or c not in self.meta.skip_columns)]

    @property
    def train_datasets(self) -> list[str]:
        return self._dataset_columns(left=True)

    @property
    def test_datasets(self) -> list[str]:
        return self._dataset_columns(left=False)

    @property
    def skipped_columns(self) -> list[str]:
        return [c for c in self._dataset_columns(True, True) + self._dataset_columns(False, True)
                if c in self.meta.skip_columns]

    # ---- rows ----------------------------------------------------------------------------------
    def universal_name(self, row_index: int) -> str:
        return self.cell(row_index, UNIVERSAL_COLUMN).strip()

    @property
    def class_row_indices(self) -> list[int]:
        """Body rows that are universal classes, in order (every row but `unlabeled`)."""
        return [i for i in range(len(self.rows)) if self.universal_name(i) != UNLABELED]

    @property
    def unlabeled_row_index(self) -> int | None:
        for i in range(len(self.rows)):
            if self.universal_name(i) == UNLABELED:
                return i
        return None

    @property
    def class_names(self) -> list[str]:
        return [self.universal_name(i) for i in self.class_row_indices]

    def row_index_of(self, universal: str) -> int:
        for i in range(len(self.rows)):
            if self.universal_name(i) == universal:
                return i
        raise TaxonomyError(f"{self.path}: no universal class {universal!r}{suggest(universal, self.class_names + [UNLABELED])}")

    # ---- class-name lists ----------------------------------------------------------------------
    def dataset_names(self, dataset: str) -> list[str]:
        """Class names of a dataset column (line i of its list is label id i)."""
        if dataset not in self._names_cache:
            path = self.meta.names_file(dataset)
            if path is None:
                raise TaxonomyError(
                    f"no class-name list for dataset {dataset!r} of {self.path}; looked for {self.meta.searched_places(dataset)}. "
                    f"Add one, give its path under `names:` in {self.path.with_suffix('.yaml') if self.path else 'the companion YAML'}, "
                    f"or list the column under `skip_columns:` there.")
            self._names_cache[dataset] = load_names(path)
        return self._names_cache[dataset]

