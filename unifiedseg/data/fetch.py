"""Download one file over HTTP(S) from the first of several URLs that works, resuming where an earlier
transfer stopped.

Bytes go to `NAME.part` beside the destination, renamed to NAME once complete. A `.part` left by an
interrupted transfer is resumed with a `Range: bytes=N-` request; a server that answers 200 instead of
206 (ranges refused) is read from the start again. A transfer cut short (fewer bytes than announced) is
resumed up to `retries` times before the next URL is tried; a URL that answers an HTTP error, cannot be
reached or serves a file of another size than recorded is skipped for the next one, and when every URL
fails the error lists each URL tried with what went wrong.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from unifiedseg.utils.fileio import CHUNK
from unifiedseg.utils.progress import byte_progress

PART_SUFFIX = ".part"
USER_AGENT = "unifiedseg-data"


class FetchError(RuntimeError):
    """No URL gave the file; the message lists every URL tried with its error."""


class _UrlFailed(Exception):
    """One URL did not give the file (the message says why); the next one is tried."""


@dataclass(frozen=True)
class FetchOptions:
    retries: int = 3  # resumes of a transfer that was cut short, per URL
    timeout: float = 60.0  # seconds without an answer or a byte
    progress: bool = True


def part_file(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def mirror_urls(mirror: str | None, names: Sequence[str]) -> list[str]:
    """`<mirror>/<name>` for each name an archive goes by (an institution's folder of the archives)."""
    if not mirror:
        return []
    return [f"{mirror.rstrip('/')}/{urllib.parse.quote(name)}" for name in names]


def fetch(urls: Sequence[str], dest: Path, *, expected_size: int | None = None,
          options: FetchOptions = FetchOptions()) -> str:
    """Download `dest` from the first URL of `urls` that works and return that URL (see the module
    docstring); FetchError lists every URL tried with its error."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            _fetch_one(url, dest, expected_size, options)
            return url
        except _UrlFailed as err:
            errors.append(f"{url}: {err}")
    if not errors:
        raise FetchError(f"{dest.name}: no URL to download it from")
    kept = part_file(dest)
    note = f"\n  ({kept.stat().st_size} bytes kept in {kept}: the next run resumes)" if kept.exists() else ""
    raise FetchError(f"could not download {dest.name} from any of its {len(errors)} URL(s):\n  " + "\n  ".join(errors) + note)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a `Content-Range: bytes A-B/T` (or `bytes */T`) header."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start is not None else None), (int(total) if total != "*" else None)


def _fetch_one(url: str, dest: Path, expected_size: int | None, options: FetchOptions) -> None:
    part = part_file(dest)
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise _UrlFailed("not an http(s) URL")
    cuts = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
        try:
            response = urlopen(Request(url, headers=headers), timeout=options.timeout)
        except HTTPError as err:
            if err.code == 416 and offset:  # the part is the whole file already, or longer than it
                total = _content_range(err.headers.get("Content-Range"))[1]
                if total == offset and expected_size in (None, total):
                    os.replace(part, dest)
                    return
                part.unlink()  # start afresh (without a Range header: no second 416)
                continue
            raise _UrlFailed(f"HTTP {err.code} {err.reason}") from None
        except (URLError, OSError, http.client.HTTPException) as err:
            raise _UrlFailed(f"cannot connect: {getattr(err, 'reason', err)}") from None
        with response:
            total = _receive(response, part, offset, expected_size, dest.name, options)
        size = part.stat().st_size
        if total is None or size == total:
            os.replace(part, dest)
            return
        if size > total:
            part.unlink()
            raise _UrlFailed(f"received {size} bytes, {total} were announced")
        cuts += 1
        if cuts > options.retries:
            raise _UrlFailed(f"transfer cut short at byte {size} of {total} ({options.retries} resume(s) tried)")


def _receive(response, part: Path, offset: int, expected_size: int | None, name: str,
             options: FetchOptions) -> int | None:
    """Write the response's body to `part` (appending when the server resumed at `offset`, from the
    start when it answered 200) and return the file's announced total size (None when not announced)."""
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            raise _UrlFailed(f"asked to resume at byte {offset}, the server sent from byte {start}")
    else:  # 200: ranges refused (or none asked): the whole file
        offset = 0
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if expected_size is not None and total is not None and total != expected_size:
        raise _UrlFailed(f"serves {total} bytes, the catalogue records {expected_size}: not the same file")
    with open(part, "ab" if offset else "wb") as out, byte_progress(name, options.progress, total, offset) as bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException):  # a cut connection: the caller resumes
                break
            if not chunk:
                break
            out.write(chunk)
            bar.update(len(chunk))
    return total
