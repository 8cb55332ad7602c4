"""Read MSeg-format list files: one sample per line, `image_rel label_rel`, paths relative to the dataset
folder. Test splits may list images alone (`image_rel`). Files ending in `.xz` are read decompressed
(MSeg's shipped lists)."""

from __future__ import annotations

import lzma
from dataclasses import dataclass
from pathlib import Path


class ListFileError(ValueError):
    """A list file is missing or has a malformed line; the message names the file and line."""


@dataclass(frozen=True)
class ListEntry:
    image: Path
    label: Path | None  # None in image-only (test) lists
    line: int  # 1-based line in the list file, for messages


def read_list_text(list_path: Path) -> str:
    """The text of a list file, `.xz` decompressed; a missing or unreadable file is a ListFileError."""
    list_path = Path(list_path)
    try:
        with _open_list(list_path) as handle:
            return handle.read()
    except (OSError, lzma.LZMAError, EOFError, UnicodeDecodeError) as err:
        raise _read_error(list_path, err) from None


def read_first_entry(list_path: Path, folder: Path) -> ListEntry | None:
    """The first sample of a list file (None when it lists none), reading no further than its line, so
    a long `.xz` list is not decompressed whole; a malformed first line is a ListFileError."""
    list_path = Path(list_path)
    try:
        with _open_list(list_path) as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if fields:
                    break
            else:
                return None
    except (OSError, lzma.LZMAError, EOFError, UnicodeDecodeError) as err:
        raise _read_error(list_path, err) from None
    if len(fields) > 2:
        raise ListFileError(f"{list_path}:{number}: expected 'image_path [label_path]', got {len(fields)} field(s): "
                            f"{line.strip()!r}")
    return ListEntry(folder / fields[0], folder / fields[1] if len(fields) == 2 else None, number)


def _open_list(list_path: Path):
    if list_path.suffix == ".xz":
        return lzma.open(list_path, "rt", encoding="utf-8")
    return open(list_path, encoding="utf-8")


def _read_error(list_path: Path, err: Exception) -> ListFileError:
    """The ListFileError for an exception raised while opening or reading a list file."""
    if isinstance(err, FileNotFoundError):
        return ListFileError(f"list file {list_path} does not exist")
    if isinstance(err, IsADirectoryError):
        return ListFileError(f"list file {list_path} is a folder")
    if isinstance(err, (lzma.LZMAError, EOFError)):
        return ListFileError(f"list file {list_path} is not a valid .xz file: {err}")
    if isinstance(err, UnicodeDecodeError):
        return ListFileError(f"list file {list_path} is not UTF-8 text: {err.reason} at byte {err.start}")
    return ListFileError(f"cannot read list file {list_path}: {err.strerror}")


def read_list(list_path: Path, folder: Path, require_labels: bool = True) -> list[ListEntry]:
    """All entries of a list file; every malformed line is reported at once.

    `require_labels=False` also accepts image-only lines (their entries have `label=None`)."""
    text = read_list_text(list_path)
    entries, problems = [], []
    allowed = (2,) if require_labels else (1, 2)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue  # blank lines separate nothing and hide nothing
        if len(fields) not in allowed:
            expected = "'image_path label_path'" if require_labels else "'image_path [label_path]'"
            hint = " (an image-only test list: it has no labels to train or evaluate on)" if len(fields) == 1 else ""
            problems.append(f"{list_path}:{number}: expected {expected}, got {len(fields)} field(s): {line.strip()!r}{hint}")
            continue
        entries.append(ListEntry(folder / fields[0], folder / fields[1] if len(fields) == 2 else None, number))
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ListFileError(f"{len(problems)} malformed line(s):\n  " + "\n  ".join(shown))
    if not entries:
        raise ListFileError(f"list file {list_path} lists no samples")
    return entries
