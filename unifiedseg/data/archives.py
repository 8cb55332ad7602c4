"""Archives on disk: verify one, and unpack it into place safely.

Verifying checks the recorded size and sha256 where the catalogue has them, else a digest written beside
the archive at its first check (`NAME.sha256`, `sha256sum` format), else the archive's own integrity,
after which that digest is written: every member is read through (a zip's CRC-32 per member), a tar to
its end-of-archive block (a damaged header or a cut does not pass for the end), and a compressed tar's
stream (gzip, bzip2, xz: told by its first bytes) to its end, where the decompressor checks its CRC and
length. A plain `.tar` carries no checksum of its data: a byte changed inside a member goes unnoticed
unless a size or sha256 is recorded (the download checks that the transfer gave the announced length).
A damaged archive can be moved aside to `NAME.corrupt`. Only format errors mean damage; an I/O error of
the file system (EIO, EACCES...) is reported as such and the file is left where it is.

Unpacking maps members to targets under a dataset folder (`UnpackPart`: members under one of `sources`
go to `target`, e.g. `label37/` -> `label38/`; members under no part are left out), refusing any member
with an absolute path, a `..` component, a link or a device file (the error names the archive and the
member). Everything is extracted into a temporary folder `.NAME.partial-XXXX` beside the targets, nested
archives are unpacked there too, then each target is renamed into place and a marker
`.unifiedseg-unpacked-NAME.json` (with the archive's sha256) is written: an interrupted unpack leaves
no half-written target, and the next start removes its leftovers. While targets are being renamed a
journal lists them, so that targets moved before a kill are removed and unpacked again.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from unifiedseg.utils.fileio import CHUNK, atomic_write_text, file_sha256
from unifiedseg.utils.progress import byte_progress, format_bytes

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # plain or compressed: the content says which
ARCHIVE_SUFFIXES = ZIP_SUFFIXES + TAR_SUFFIXES
DIGEST_SUFFIX = ".sha256"
CORRUPT_SUFFIX = ".corrupt"
MARKER_PREFIX = ".unifiedseg-unpacked-"
JOURNAL_PREFIX = ".unifiedseg-moving-"
PARTIAL_TAG = ".partial-"
# What reading a damaged archive raises; decompressors also raise OSErrors without an errno
# (gzip.BadGzipFile, bz2's "Invalid data stream"), see `_reading_error`.
DAMAGE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, EOFError)
# A compressed tar's first bytes -> how to open its stream.
COMPRESSED_STREAMS = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


class ArchiveError(RuntimeError):
    """An archive cannot be used or unpacked; the message names the archive (and the member)."""


class CorruptArchiveError(ArchiveError):
    """The archive's bytes are wrong: size, digest or its own integrity."""


class UnsafeArchiveError(ArchiveError):
    """A member would land outside the target folder, or is a link or a device file."""


@dataclass(frozen=True)
class UnpackPart:
    """Members under one of `sources` (member path prefixes; '' = every member) are unpacked to
    `target` (a path under the dataset folder), the prefix replaced by it."""

    sources: tuple[str, ...]
    target: str

    def route(self, member: str) -> str | None:
        """`member`'s path under the dataset folder, or None when it is not under this part."""
        for source in self.sources:
            if not source:
                rest = member
            elif member == source or member.startswith(source + "/"):
                rest = member[len(source) + 1:]
            else:
                continue
            return "/".join(part for part in (self.target, rest) if part)
        return None


@dataclass(frozen=True)
class Verified:
    sha256: str
    how: str  # what the archive was checked against, for the report


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # file | dir | link | device
    open: Callable[[], object] | None = None
    link: str = ""


def archive_kind(path: Path) -> str:
    """zip or tar (plain or compressed), from the file name, else from the content."""
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ArchiveError(f"{path}: not a zip or tar archive (expected a name ending in {', '.join(ARCHIVE_SUFFIXES)})")


MSDOS_DIRECTORY = 0x10  # the folder bit of a zip entry's MS-DOS attributes (the low byte)


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """A folder is `name/`, or has the folder bit of its Unix mode or of its MS-DOS attributes."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "link"
    if info.is_dir() or stat.S_ISDIR(mode) or info.external_attr & MSDOS_DIRECTORY:
        return "dir"
    return "file" if stat.S_IFMT(mode) in (0, stat.S_IFREG) else "device"


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return "link"
    return "file" if member.isreg() else "dir" if member.isdir() else "device"


def _reading_error(path: Path, err: Exception, what: str) -> ArchiveError:
    """The error to raise for `err`, met while reading the archive: CorruptArchiveError for a format
    error (`what` says where), ArchiveError for an I/O error of the file system or an unsupported
    feature (the file is fine, or at least not known to be damaged)."""
    if isinstance(err, ArchiveError):
        return err
    cause = err
    while cause is not None:  # zipfile turns an OSError reading the central directory into BadZipFile
        if isinstance(cause, OSError) and cause.errno is not None:
            return ArchiveError(f"{path}: cannot read it: {cause.strerror}; the file is left where it is")
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, NotImplementedError):  # e.g. a zip compression method Python lacks
        return ArchiveError(f"{path}: cannot read it: {err}; the file is left where it is")
    return CorruptArchiveError(f"{path}: {what}: {err}")


READ_ERRORS = DAMAGE_ERRORS + (OSError, NotImplementedError)


class _Tracked:
    """A file object (a decompressed tar stream) that remembers where its last read started and what it
    gave: tarfile stops at the first block that is not a header without saying whether that block
    was the end-of-archive marker, a damaged header or a cut; this block tells."""

    def __init__(self, handle):
        self.handle, self.last, self.last_at = handle, b"", -1

    def read(self, size=-1) -> bytes:
        self.last_at = self.handle.tell()
        self.last = self.handle.read(size)
        return self.last

    def seek(self, *args) -> int:
        return self.handle.seek(*args)

    def tell(self) -> int:
        return self.handle.tell()

    def seekable(self) -> bool:
        return True


def _tar_stream(raw):
    """The tar stream of an open archive file: decompressed when its first bytes say gzip, bzip2 or xz."""
    magic = raw.read(6)
    raw.seek(0)
    opener = next((opener for prefix, opener in COMPRESSED_STREAMS if magic.startswith(prefix)), None)
    return opener(raw) if opener else raw


def _check_tar_end(path: Path, handle: tarfile.TarFile, stream: _Tracked) -> None:
    """After the last member: the block tarfile stopped at must be the end-of-archive marker (zeros),
    and a compressed stream is read to its end (its CRC and length are checked there)."""
    if stream.last_at != handle.offset:  # not the block tarfile read last: read it again
        stream.seek(handle.offset)
        stream.read(tarfile.BLOCKSIZE)
    block = stream.last
    if len(block) < tarfile.BLOCKSIZE:
        raise CorruptArchiveError(f"{path}: damaged tar archive: its tar stream ends at byte {handle.offset + len(block)} "
                                  f"without the end-of-archive blocks (cut short?)")
    if block.count(0) != len(block):
        raise CorruptArchiveError(f"{path}: damaged tar archive: no valid member header at byte {handle.offset} of its "
                                  f"tar stream")
    while stream.read(CHUNK):
        pass


def _members(path: Path) -> Iterator[_Member]:
    """The archive's members in order (a tar is read once, front to back, and checked to its end); a
    damaged archive raises CorruptArchiveError naming it, an I/O error ArchiveError."""
    kind = archive_kind(path)
    try:
        raw = open(path, "rb")
    except OSError as err:
        raise _reading_error(path, err, "") from None
    with raw:
        try:
            if kind == "zip":
                handle = zipfile.ZipFile(raw)
            else:
                stream = _Tracked(_tar_stream(raw))
                handle = tarfile.open(fileobj=stream, mode="r:")
        except READ_ERRORS as err:
            raise _reading_error(path, err, f"not a readable {kind} archive") from None
        with handle:
            if kind == "zip":
                found = (_Member(info.filename, _zip_kind(info), lambda info=info: handle.open(info))
                         for info in handle.infolist())
            else:
                found = (_Member(item.name, _tar_kind(item), lambda item=item: handle.extractfile(item), item.linkname)
                         for item in handle)
            while True:
                try:
                    member = next(found, None)
                    if member is None and kind == "tar":
                        _check_tar_end(path, handle, stream)
                except READ_ERRORS as err:
                    raise _reading_error(path, err, f"damaged {kind} archive") from None
                if member is None:
                    return
                yield member


def _chunks(path: Path, member: _Member) -> Iterator[bytes]:
    """A file member's bytes; a damaged member (bad CRC, cut stream) raises CorruptArchiveError."""
    try:
        with member.open() as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
    except READ_ERRORS as err:
        raise _reading_error(path, err, f"member {member.name!r} is damaged") from None


def check_integrity(path: Path, *, progress: bool = True) -> None:
    """Read every member through (zip CRCs, the gzip stream's end); CorruptArchiveError when damaged."""
    with byte_progress(f"check {path.name}", progress) as bar:
        for member in _members(path):
            if member.kind == "file":
                for chunk in _chunks(path, member):
                    bar.update(len(chunk))


def digest_file(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def read_digest(path: Path) -> str | None:
    """The sha256 written beside the archive at its first check, or None."""
    try:
        text = digest_file(path).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0].lower() if text and re.fullmatch(r"[0-9a-fA-F]{64}", text[0]) else None


def verify_archive(path: Path, *, size: int | None = None, sha256: str | None = None, move_aside: bool = True,
                   progress: bool = True) -> Verified:
    """Check `path` (see the module docstring); a damaged archive raises CorruptArchiveError saying
    what is wrong and, with `move_aside`, that it was moved to NAME.corrupt (else that it is left)."""
    try:
        return _verify(path, size, sha256, progress)
    except CorruptArchiveError as err:
        if not move_aside:
            raise CorruptArchiveError(f"{err}; the file is left where it is, nothing was unpacked") from None
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        os.replace(path, aside)
        raise CorruptArchiveError(f"{err}; moved aside to {aside}, nothing was unpacked") from None


def _verify(path: Path, size: int | None, sha256: str | None, progress: bool) -> Verified:
    try:
        return _verify_file(path, size, sha256, progress)
    except OSError as err:  # reading the file for its digest or its size
        raise _reading_error(path, err, "") from None


def _verify_file(path: Path, size: int | None, sha256: str | None, progress: bool) -> Verified:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise CorruptArchiveError(f"{path}: {actual_size} bytes, the catalogue records {size}")
    written = read_digest(path)
    known, how = (sha256.lower(), "the catalogue's sha256") if sha256 else (written, f"the digest in {digest_file(path)}")
    if known:
        actual = file_sha256(path, progress=progress)
        if actual != known:
            hint = "" if sha256 else " at its first check (delete that file if you replaced the archive on purpose)"
            raise CorruptArchiveError(f"{path}: sha256 {actual} differs from {known}, {how}{hint}")
        return Verified(actual, how)
    check_integrity(path, progress=progress)
    actual = file_sha256(path, progress=progress)
    try:
        atomic_write_text(digest_file(path), f"{actual}  {path.name}\n")
        how = f"its own integrity; sha256 written to {digest_file(path)}"
    except OSError as err:  # e.g. a read-only folder of the user's archives
        how = f"its own integrity (could not write {digest_file(path)}: {err.strerror})"
    return Verified(actual, how)


def _safe_name(archive: Path, member: _Member) -> str | None:
    """The member's path as `a/b/c`, or UnsafeArchiveError naming the archive and the member."""
    name = member.name
    if member.kind == "link":
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a link (to {member.link or '?'}); archives with links "
                                 f"are refused, a link can point outside the target folder")
    if member.kind == "device":
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a device or special file; refused")
    if "\x00" in name or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refused")
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component that would escape the target "
                                 f"folder; refused")
    return "/".join(parts) or None


def _write_member(archive: Path, member: _Member, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for chunk in _chunks(archive, member):
            out.write(chunk)


def _extract(archive: Path, base: Path, parts: tuple[UnpackPart, ...], progress: bool) -> None:
    """Every member under a part to `base/<its target path>`; a part that no member is under is an
    error listing the archive's top-level entries (the publisher may have renamed a folder)."""
    matched = [False] * len(parts)
    top = set()
    with tqdm(desc=f"unpack {archive.name}", unit="file", disable=not progress, leave=False) as bar:
        for member in _members(archive):
            name = _safe_name(archive, member)
            if name is None:
                continue
            top.add(name.split("/")[0])
            for index, part in enumerate(parts):
                routed = part.route(name)
                if routed is not None:
                    break
            else:
                continue
            matched[index] = True
            dest = base / routed
            try:
                if member.kind == "dir":
                    dest.mkdir(parents=True, exist_ok=True)
                else:
                    _write_member(archive, member, dest)
            except OSError as err:
                raise ArchiveError(f"{archive}: cannot write member {name!r} to {dest}: {_write_error(err, archive, base)}") from None
            bar.update()
    missing = [part for part, found in zip(parts, matched) if not found]
    if missing:
        wanted = "; ".join(f"{' or '.join(repr(s + '/') for s in part.sources)} (for {part.target})" for part in missing)
        raise ArchiveError(f"{archive}: nothing under {wanted}; its top-level entries: {', '.join(sorted(top)[:12]) or 'none'}"
                           f" (the publisher may have renamed them: the archive catalogue says how it unpacks)")


def _write_error(err: OSError, archive: Path, base: Path) -> str:
    """What went wrong writing a member; for a full disk, the folder and (a zip) the space it takes."""
    if err.errno != errno.ENOSPC:
        return err.strerror or str(err)
    size = ""
    if archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as handle:
            size = f"; unpacked, {archive.name} takes {format_bytes(sum(info.file_size for info in handle.infolist()))}"
    folder = next(path for path in (base, *base.parents) if PARTIAL_TAG not in path.name)  # not the temporary one
    return f"no space left on the device of {folder}{size}"


def marker_file(folder: Path, name: str) -> Path:
    return folder / f"{MARKER_PREFIX}{name}.json"


def occupied(path: Path) -> bool:
    """A file, or a folder that is not empty (an empty folder stands for nothing)."""
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def is_unpacked(folder: Path, name: str, targets) -> bool:
    """The archive's marker is there and so is every target (a deleted target is unpacked again)."""
    return marker_file(folder, name).is_file() and all((folder / target).exists() for target in targets)


def remove_leftovers(folder: Path, name: str, targets: Sequence[str] = ()) -> None:
    """What a killed unpack of archive `name` left in `folder`: its temporary folders, and the targets
    it had renamed into place before it could write its marker. A damaged journal is an ArchiveError
    saying how to recover (`targets`, the archive's, name what to delete)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(f".{name}{PARTIAL_TAG}"):
            shutil.rmtree(entry, ignore_errors=True)
    journal = folder / f"{JOURNAL_PREFIX}{name}.json"
    if not journal.exists():
        return
    if not marker_file(folder, name).exists():
        for target in _journal_targets(journal, name, targets):
            path = folder / target
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    journal.unlink()


def _journal_targets(journal: Path, name: str, targets: Sequence[str]) -> list[str]:
    try:
        listed = json.loads(journal.read_text(encoding="utf-8"))["targets"]
        if not isinstance(listed, list) or not all(isinstance(target, str) and target for target in listed):
            raise ValueError(f"'targets' is not a list of paths: {listed!r}")
    except (ValueError, KeyError, TypeError) as err:
        where = "; ".join(f"delete {journal.parent / target} if it is there" for target in targets) or \
            "delete what it unpacks (the archive catalogue names it) where it is there"
        raise ArchiveError(f"{journal}: damaged ({err}); it lists what an interrupted unpack of {name} had moved into "
                           f"place, which the unpack had made. To recover: {where} (nothing else was there when "
                           f"the unpack started), delete {journal.name}, then run again") from None
    return listed


def unpack_into_place(archive: Path, folder: Path, parts: tuple[UnpackPart, ...], *, nested: tuple[str, ...] = (),
                      name: str | None = None, sha256: str = "", progress: bool = True) -> list[Path]:
    """Unpack `archive` into `folder` (see the module docstring) and return the targets. `name` is the
    archive's catalogue name (the file may carry another); `nested` are archives inside it, as paths
    under `folder`, unpacked where they lie and removed."""
    name = name or archive.name
    folder.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder, name)
    targets = [folder / part.target for part in parts]
    busy = [str(target) for target in targets if occupied(target)]
    if busy:
        raise ArchiveError(f"cannot unpack {archive.name}: {', '.join(busy)} already exist(s) and did not come from "
                           f"unpacking it here; move it away and run again")
    temp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}{PARTIAL_TAG}"))
    try:
        _extract(archive, temp, parts, progress)
        for inner in nested:
            inner_path = temp / inner
            if not inner_path.is_file():
                raise ArchiveError(f"{archive}: holds no {inner} (the archive catalogue says it nests one)")
            _extract(inner_path, inner_path.parent, (UnpackPart(("",), ""),), progress)
            inner_path.unlink()
        journal = folder / f"{JOURNAL_PREFIX}{name}.json"
        atomic_write_text(journal, json.dumps({"archive": name, "targets": [part.target for part in parts]}))
        for part, target in zip(parts, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                target.rmdir()  # empty (checked above)
            os.replace(temp / part.target, target)
        atomic_write_text(marker_file(folder, name), json.dumps(
            {"archive": name, "file": str(archive), "sha256": sha256, "targets": [part.target for part in parts],
             "unpacked": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
        journal.unlink()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return targets
