"""Download one file over HTTP(S) from the first of several URLs that gives a good copy, resuming where an
earlier transfer stopped.

Bytes go to `NAME.part` beside the destination, and `NAME.part.json` records where they come from: the
URL, and the server's ETag and Last-Modified when it sent them. An interrupted transfer is resumed only
from that same URL, with `Range: bytes=N-` and, when the server gave a validator, `If-Range` (a strong
ETag, else Last-Modified), so that a file changed on the server comes whole (200) instead of being
appended to the old bytes; a `.part` of another URL, or of unknown origin, is started afresh, and so is
one that a 206 would not continue (its range does not start at byte N). A server that answers 200 to a
Range request (ranges refused) is read from the start again.

The transfer is complete when the bytes reach the file's size: the 200's Content-Length, the 206's
Content-Range total, or the catalogue's size. One that stops short is resumed up to `retries` times
before the next URL is tried. A server that announces no size (no Content-Length, or `Content-Range:
bytes A-B/*`) leaves no way to tell a whole file from one cut at a clean connection close: such a file
is taken once the server has sent what it said (its EOF, or byte B), with a note that its completeness
rests on the check that follows (the archive's own integrity).

Each downloaded file goes through `check` (verification) before it is accepted; a check that raises
BadDownload has set the file aside, and the next URL is tried. A URL that answers an HTTP error, cannot
be reached, serves another size than recorded or a file that fails the check is skipped for the next
one: when every URL fails, FetchError lists each URL tried with what went wrong; when a later one
works, the URLs skipped come back as notes. Errors of this machine's files (a full disk, no
permission, a folder that is a file) are not the URL's fault: they are raised as OSError naming the
file (for a full disk, the folder and the bytes still needed).
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from unifiedseg.utils.fileio import CHUNK, atomic_write_text
from unifiedseg.utils.progress import byte_progress, format_bytes

PART_SUFFIX = ".part"
ORIGIN_SUFFIX = ".part.json"
USER_AGENT = "unifiedseg-data"


class FetchError(RuntimeError):
    """No URL gave the file; the message lists every URL tried with its error."""


class BadDownload(Exception):
    """Raised by a `check`: the downloaded file is not the right one and was set aside (the message
    says why and where); the next URL is tried."""


class _UrlFailed(Exception):
    """One URL did not give the file (the message says why); the next one is tried."""


@dataclass(frozen=True)
class FetchOptions:
    retries: int = 3  # resumes of a transfer that was cut short, per URL
    timeout: float = 60.0  # seconds without an answer or a byte
    progress: bool = True


@dataclass(frozen=True)
class Fetched:
    url: str  # the URL that gave the file
    checked: Any = None  # what `check` returned
    notes: list[str] = field(default_factory=list)  # URLs skipped with their errors; a size not announced


def part_file(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def origin_file(dest: Path) -> Path:
    return dest.with_name(dest.name + ORIGIN_SUFFIX)


def mirror_urls(mirror: str | None, names: Sequence[str]) -> list[str]:
    """`<mirror>/<name>` for each name an archive goes by (an institution's folder of the archives)."""
    if not mirror:
        return []
    return [f"{mirror.rstrip('/')}/{urllib.parse.quote(name)}" for name in names]


def fetch(urls: Sequence[str], dest: Path, *, expected_size: int | None = None, options: FetchOptions = FetchOptions(),
          check: Callable[[Path], Any] | None = None) -> Fetched:
    """Download `dest` from the first URL of `urls` that gives a file passing `check` (see the module
    docstring); FetchError lists every URL tried with its error."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        note = None
        try:
            note = _fetch_one(url, dest, expected_size, options)
            checked = check(dest) if check is not None else None
        except (_UrlFailed, BadDownload) as err:
            errors.append(f"{url}: {err}" + (f" ({note})" if note else ""))
            continue
        return Fetched(url, checked, [f"skipped {error}" for error in errors] + ([f"{url}: {note}"] if note else []))
    if not errors:
        raise FetchError(f"{dest.name}: no URL to download it from")
    kept = part_file(dest)
    note = (f"\n  ({kept.stat().st_size} bytes kept in {kept}: the next run resumes them from the same URL)"
            if kept.exists() else "")
    raise FetchError(f"could not download {dest.name} from any of its {len(errors)} URL(s):\n  " + "\n  ".join(errors) + note)


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """(first byte, last byte + 1, total) of a `Content-Range: bytes A-B/T` header (`bytes */T`: no
    range; `/*`: no total); None where absent."""
    match = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", (value or "").strip())
    if not match:
        return None, None, None
    start, last, total = match.groups()
    return (int(start) if start is not None else None, int(last) + 1 if last is not None else None,
            int(total) if total != "*" else None)


def _read_origin(dest: Path) -> dict:
    """Where the `.part` came from ({} when unknown: no record, or a damaged one)."""
    try:
        origin = json.loads(origin_file(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return origin if isinstance(origin, dict) else {}


def _discard_part(dest: Path) -> None:
    for path in (part_file(dest), origin_file(dest)):
        if path.exists():
            path.unlink()


def _finish(dest: Path) -> None:
    os.replace(part_file(dest), dest)
    origin_file(dest).unlink(missing_ok=True)


def _validator(origin: dict) -> str | None:
    """What If-Range can carry: a strong ETag, else Last-Modified (a weak ETag cannot be used there)."""
    etag = origin.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = origin.get("last_modified")
    return modified if isinstance(modified, str) and modified else None


@dataclass(frozen=True)
class _Received:
    total: int | None  # the whole file's size, when announced (or recorded)
    end: int | None  # where the bytes the server meant to send end, when it said
    cut: bool  # reading stopped on an error, not at the body's end
    restart: str = ""  # why the .part must be started afresh


def _fetch_one(url: str, dest: Path, expected_size: int | None, options: FetchOptions) -> str | None:
    """Download `dest` from `url` (resuming its .part when it came from there); a note when the size
    was never announced; _UrlFailed saying why the URL did not give the file."""
    part = part_file(dest)
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise _UrlFailed("not an http(s) URL")
    cuts = restarts = 0
    announced = expected_size  # the file's size, once known
    while True:
        origin = _read_origin(dest)
        # the bytes of another URL, or of no known URL, may be another file's: asked from the start,
        # and replaced once this URL answers with the file (kept when it does not)
        offset = part.stat().st_size if part.exists() and origin.get("url") == url else 0
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if _validator(origin):
                headers["If-Range"] = _validator(origin)
        try:
            response = urlopen(Request(url, headers=headers), timeout=options.timeout)
        except HTTPError as err:
            if err.code == 416 and offset:  # the part is the whole file already, or longer than it
                total = _content_range(err.headers.get("Content-Range"))[2]
                if total == offset and expected_size in (None, total):
                    _finish(dest)
                    return None
                _discard_part(dest)  # start afresh (without a Range header: no second 416)
                continue
            raise _UrlFailed(f"HTTP {err.code} {err.reason}") from None
        except (URLError, OSError, http.client.HTTPException) as err:
            raise _UrlFailed(f"cannot connect: {getattr(err, 'reason', err)}") from None
        with response:
            received = _receive(response, url, dest, offset, expected_size, options)
        if received.restart:
            restarts += 1
            if restarts > 1:
                raise _UrlFailed(received.restart)
            _discard_part(dest)
            continue
        size = part.stat().st_size
        announced = received.total if received.total is not None else announced
        if announced is not None and size > announced:
            _discard_part(dest)
            raise _UrlFailed(f"received {size} bytes, {announced} were announced")
        known = announced if announced is not None else received.end
        if known is not None and size >= known or known is None and not received.cut:
            _finish(dest)
            if announced is None:
                return (f"the server did not announce the file's size; the transfer ended at byte {size}, and only "
                        f"the archive's own check tells whether that is all of it")
            return None
        cuts += 1
        if cuts > options.retries:
            of = f" of {announced}" if announced is not None else " (the size was not announced)"
            raise _UrlFailed(f"transfer cut short at byte {size}{of} ({options.retries} resume(s) tried)")


def _receive(response, url: str, dest: Path, offset: int, expected_size: int | None,
             options: FetchOptions) -> _Received:
    """Write the response's body to the .part (appended when the server resumed at `offset`, from the
    start when it answered 200) and say what the server announced and whether the body came whole."""
    part = part_file(dest)
    if response.status == 206:
        start, end, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            return _Received(None, None, False, restart=f"asked to resume at byte {offset}, the server sent from byte {start}")
    else:  # 200: ranges refused (or none asked), or the file changed (If-Range): the whole file
        offset = 0
        length = response.headers.get("Content-Length")
        total = end = int(length) if length and length.isdigit() else None
    if not offset:  # a fresh .part: record where its bytes come from
        atomic_write_text(origin_file(dest), json.dumps({
            "url": url, "etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}))
    if expected_size is not None and total is not None and total != expected_size:
        raise _UrlFailed(f"serves {total} bytes, the catalogue records {expected_size}: not the same file")
    known = total if total is not None else expected_size
    cut = False
    written = offset
    with open(part, "ab" if offset else "wb") as out, byte_progress(dest.name, options.progress, known, offset) as bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException):  # a cut connection: the caller resumes
                cut = True
                break
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as err:
                raise _local_error(err, part, None if known is None else known - written) from None
            written += len(chunk)
            bar.update(len(chunk))
    return _Received(total, end, cut)


def _local_error(err: OSError, part: Path, needed: int | None) -> OSError:
    """A write error of this machine, named; for a full disk, the folder and the bytes still needed."""
    if err.errno != errno.ENOSPC:
        return err
    more = f"; {format_bytes(needed)} more are needed" if needed else ""
    return OSError(errno.ENOSPC, f"no space left on the device of {part.parent}{more} (free some and run again: the "
                                 f"download resumes)", str(part))
