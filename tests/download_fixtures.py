"""For the download tests: small archives built in memory (zip, tar, tar.gz, with unsafe members on
demand), an HTTP server on 127.0.0.1 that serves them and can misbehave, and a guard that fails a test
which would open any other address."""

import io
import random
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from unifiedseg.data import fetch as fetch_module


def zip_bytes(members: dict, links: dict | None = None) -> bytes:
    """A zip of `members` (name -> bytes; a name ending in '/' is a folder) and symlinks (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symlink, as Info-ZIP stores it
            archive.writestr(info, target)
    return buffer.getvalue()


def tar_bytes(members: dict, mode: str = "w:gz", special: list | None = None) -> bytes:
    """A tar (gzip-compressed by default) of `members` (name -> bytes) and of `special` TarInfo members
    (links, devices) built by `special_member`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in special or []:
            archive.addfile(info)
    return buffer.getvalue()


def special_member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    """A tar member of type `kind` (tarfile.SYMTYPE, LNKTYPE, CHRTYPE...) pointing at `link`."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def payload(seed: int, size: int = 3000) -> bytes:
    """Bytes that do not compress away, so archives have some length to cut."""
    return random.Random(seed).randbytes(size)


class ArchiveServer:
    """Serves `files` (name -> bytes) at `url`/NAME, honouring Range and If-Range (against `etags[name]`,
    sent as ETag). Misbehaviour per name: `cuts[name] = (n, times)` sends only the first n bytes of the
    body for the next `times` requests and closes the connection; `no_ranges` answers 200 with the
    whole file to a Range request; `no_length` sends no Content-Length (`chunked`: the body in chunked
    encoding, so a cut is an error to the client); `unknown_total` answers ranges with `bytes A-B/*`;
    `wrong_start[name] = k` starts a 206 k bytes before the byte asked; a name not in `files` is a 404.
    `requests` records (name, Range header) per request, `if_ranges` the If-Range header of each."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.cuts: dict[str, tuple[int, int]] = {}
        self.no_ranges: set[str] = set()
        self.no_length: set[str] = set()
        self.chunked: set[str] = set()
        self.unknown_total: set[str] = set()
        self.wrong_start: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.if_ranges: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def names_requested(self) -> list[str]:
        return [name for name, _ in self.requests]

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        name = urllib.parse.unquote(urllib.parse.urlparse(request.path).path.lstrip("/"))
        asked, if_range = request.headers.get("Range"), request.headers.get("If-Range")
        self.requests.append((name, asked))
        self.if_ranges.append(if_range)
        body = self.files.get(name)
        if body is None:
            request.send_error(404)
            return
        ranged = asked and name not in self.no_ranges and (if_range is None or if_range == self.etags.get(name))
        start = int(asked.split("=")[1].split("-")[0]) if ranged else 0
        if start >= len(body) and ranged:
            request.send_response(416)
            request.send_header("Content-Range", f"bytes */{len(body)}")
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        start = max(0, start - self.wrong_start.get(name, 0))
        request.send_response(206 if ranged else 200)
        if ranged:
            total = "*" if name in self.unknown_total else len(body)
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{total}")
        if name in self.etags:
            request.send_header("ETag", self.etags[name])
        if name in self.chunked:
            request.send_header("Transfer-Encoding", "chunked")
        elif name not in self.no_length:
            request.send_header("Content-Length", str(len(body) - start))
        request.end_headers()
        sent = body[start:]
        cut, times = self.cuts.get(name, (0, 0))
        if times:
            self.cuts[name] = (cut, times - 1)
            request.close_connection = True
        if name in self.chunked:  # one chunk, announced whole, cut if asked
            request.wfile.write(f"{len(sent):x}\r\n".encode() + (sent[:cut] if times else sent + b"\r\n0\r\n\r\n"))
        else:
            request.wfile.write(sent[:cut] if times else sent)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive_server():
    server = ArchiveServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def only_local_network(monkeypatch):
    """Every HTTP request of the download code must go to 127.0.0.1 (the test server)."""
    real = fetch_module.urlopen

    def guarded(request, *args, **kwargs):
        host = urllib.parse.urlparse(getattr(request, "full_url", request)).hostname
        assert host == "127.0.0.1", f"a test tried to open {getattr(request, 'full_url', request)}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(fetch_module, "urlopen", guarded)
