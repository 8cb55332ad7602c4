"""One process per folder: a lock file that names its holder (host, pid, start time, command) and is
locked with a POSIX record lock for as long as the holder runs.

The kernel drops a POSIX lock when its process ends, however it ends (kill -9 included), and a forked
child (a DataLoader worker) does not inherit it. So a lock file that can be locked again belongs to a
process that is gone: it is taken over, and `acquire` returns the old holder for a warning. A file that
cannot be locked belongs to a live process, named in the WorkDirLockedError. The holder deletes the
file when it releases the lock. Two locks of one folder in one process conflict as well (POSIX locks
do not, so this process's locks are tracked).

    with WorkDirLock(work_dir, advice="choose another work dir") as lock:
        if lock.taken_over:
            logger.warning("took over the lock of %s", describe_holder(lock.taken_over))
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = "train.lock"
_HELD: set[str] = set()  # lock files this process holds


class WorkDirLockedError(RuntimeError):
    """The folder's lock cannot be had: another live process holds it (the message names it and what to
    do), or the folder's file system has no locks."""


def describe_holder(holder: dict) -> str:
    """`pid 123 on host gpu1, started 2024-05-01 12:00:03: python tools/train.py ...` (what is known of it)."""
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    if holder.get("started"):
        text += f", started {holder['started']}"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text


class WorkDirLock:
    """The lock of `folder` (its file `name` in it). `advice` ends the message when it is held elsewhere."""

    def __init__(self, folder, *, name: str = LOCK_NAME, advice: str = "wait for it to end, or use another folder"):
        self.path = Path(folder) / name
        self.advice = advice
        self.fd: int | None = None
        self.taken_over: dict | None = None  # the holder of a stale lock file this lock replaced

    def acquire(self) -> dict | None:
        """Lock the folder; returns the previous holder when a stale lock file was taken over, else None.
        WorkDirLockedError when a live process holds it."""
        key = os.path.realpath(self.path)
        if key in _HELD:
            raise WorkDirLockedError(f"{self.path.parent} is already in use by this process (pid {os.getpid()}); "
                                     f"{self.advice}")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read(fd)
                os.close(fd)
                if err.errno in (errno.EACCES, errno.EAGAIN):
                    raise WorkDirLockedError(f"{self.path.parent} is in use by another run ({describe_holder(holder)}; "
                                             f"lock file {self.path}); {self.advice}") from None
                raise WorkDirLockedError(f"cannot lock {self.path}: {err.strerror} (a file system without locks, as some "
                                         f"network file systems are?); use a folder on another disk") from None
            try:  # the holder may have released (deleted) the file between our open and our lock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read(fd)
        self.taken_over = previous or None
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join([os.path.basename(sys.executable), *sys.argv])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
        self.fd = fd
        _HELD.add(key)
        return self.taken_over

    def release(self) -> None:
        """Delete the lock file and drop the lock (nothing happens when it is not held)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still locked: a waiting process then retries on a new file
        os.close(self.fd)
        self.fd = None
        _HELD.discard(os.path.realpath(self.path))

    def __enter__(self) -> "WorkDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    """The holder a lock file names ({} when empty or unreadable), read through `fd`: opening the file
    again and closing it would drop this process's POSIX lock on it."""
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "command": "(unreadable lock file)"}
    return holder if isinstance(holder, dict) else {}
