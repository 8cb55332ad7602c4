"""Read MSeg-format list files: one sample per line, `image_rel label_rel`, paths relative to the dataset folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ListFileError(ValueError):
    """A list file is missing or has a malformed line; the message names the file and line."""


@dataclass(frozen=True)
class ListEntry:
    image: Path
    label: Path
    line: int  # 1-based line in the list file, for messages


def read_list(list_path: Path, folder: Path) -> list[ListEntry]:
    """All entries of a list file; every malformed line is reported at once."""
    try:
        text = Path(list_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ListFileError(f"list file {list_path} does not exist") from None
    except OSError as err:
        raise ListFileError(f"cannot read list file {list_path}: {err.strerror}") from None
    entries, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue  # blank lines separate nothing and hide nothing
        if len(fields) != 2:
            problems.append(f"{list_path}:{number}: expected 'image_path label_path', got {len(fields)} field(s): {line.strip()!r}")
            continue
        entries.append(ListEntry(folder / fields[0], folder / fields[1], number))
    if problems:
        raise ListFileError(f"{len(problems)} malformed line(s):\n  " + "\n  ".join(problems))
    if not entries:
        raise ListFileError(f"list file {list_path} lists no samples")
    return entries
