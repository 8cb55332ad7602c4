"""File writes: atomic (a reader sees the old or the new content, never a half-written file), with the
mode the umask gives, and a clear error when the disk is full; the temporary files of writes that a
kill interrupted found and removed; free space checked before a large write. Also a file's sha256 read
in chunks, one-line OSError messages, and YAML files that must hold a mapping."""

import errno
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, BinaryIO

from unifiedseg.utils.progress import byte_progress

CHUNK = 1 << 20  # bytes per read when streaming a large file
# atomic_write's temporary files: `.NAME.XXXXXXXX.tmp` beside NAME (XXXXXXXX: tempfile's random part)
TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskSpaceError(OSError):
    """A write does not fit on its disk; the message names the folder, the space needed and the space free."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def format_bytes(n: int) -> str:
    """`1.2 GB`, `3.4 MB`, `56 kB`, `120 bytes` (decimal units)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n} bytes"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, size_hint: int | None = None) -> None:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then rename it over `path`. The
    file gets the mode an ordinary write would (0666 less the umask). When the disk is full the temporary
    file is removed and DiskSpaceError names the folder (and `size_hint`, the bytes the write needs, if known)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600 files: colleagues could not read results
        except OSError:
            pass  # a file system without modes keeps the private default
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _out_of_space(err):
            free = shutil.disk_usage(path.parent).free
            needed = f"about {format_bytes(size_hint)} needed, " if size_hint else ""
            raise DiskSpaceError(f"no space left in {path.parent} while writing {path.name} ({needed}"
                                 f"{format_bytes(free)} free; the partial file was removed); free some space "
                                 f"or choose another folder") from None
        raise


def _out_of_space(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from or during, is a full disk or quota (torch.save turns
    the OSError of its file into a RuntimeError `unexpected pos`, keeping the OSError as its context)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in OUT_OF_SPACE:
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def check_free_space(folder: str | os.PathLike, needed: int, *, writing: str) -> None:
    """DiskSpaceError when `folder`'s disk has less than `needed` bytes free for the file `writing`."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskSpaceError(f"not enough free space in {folder} to write {writing}: about {format_bytes(needed)} "
                             f"needed, {format_bytes(free)} free; free some space or choose another folder")


def remove_interrupted_writes(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """Delete the temporary files that writes killed midway (kill -9, power loss) left in `folder`;
    returns (path, size) of each. Only for a folder no other process is writing to (hold its lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if TEMP_FILE.match(path.name) and path.is_file():
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append((path, size))
    return removed


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
