"""Atomic file writes (a reader sees the old or the new content, never a half-written file), a file's
sha256 read in chunks, and YAML files that must hold a mapping."""

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, BinaryIO

from unifiedseg.utils.progress import byte_progress

CHUNK = 1 << 20  # bytes per read when streaming a large file


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def file_sha256(path: str | os.PathLike, *, progress: bool = True) -> str:
    """The hex sha256 of a file, read in CHUNK-sized pieces (a byte progress bar unless `progress=False`)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle, byte_progress(f"sha256 {path.name}", progress, path.stat().st_size) as bar:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def os_error_message(err: OSError) -> str:
    """`FILE: what is wrong` for an OSError (`A -> B: ...` for a failed rename), for a one-line error."""
    where = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
    what = err.strerror or str(err)
    return f"{where}: {what}" if where else what


def read_yaml_mapping(path: str | os.PathLike, error: type[Exception], what: str) -> dict:
    """A YAML file that must hold a mapping; `error(message)` names the file when it is missing,
    not YAML, or not a mapping (`what` says what the mapping should be)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise error(f"{path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected {what}, got {type(data).__name__}")
    return data
