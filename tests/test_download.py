"""The download engine (unifiedseg.data.fetch, archives, download, catalogue) against a local HTTP server
serving small generated archives: download with fallbacks and a mirror, resume after a cut, a fresh start
when ranges are refused, damaged archives set aside, unsafe members refused, nothing half-unpacked, the
second run a no-op; the catalogue's checks, and the shipped catalogue against the raw layout."""

import ast
import errno
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import types
import zipfile
from pathlib import Path

import pytest

from download_fixtures import (archive_server, only_local_network, payload, special_member, tar_bytes,  # noqa: F401
                               zip_bytes)
from unifiedseg.data import archives
from unifiedseg.data import download as download_module
from unifiedseg.data.archives import (ArchiveError, CorruptArchiveError, UnpackPart, UnsafeArchiveError,
                                      unpack_into_place, verify_archive)
from unifiedseg.data.catalogue import Catalogue, CatalogueError
from unifiedseg.data.download import DownloadOptions, download_dataset, release_entries, resolve_mirror
from unifiedseg.data.fetch import FetchOptions
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.splits import available_splits, resolve_split
from unifiedseg.taxonomy.table import dataset_names
from unifiedseg.utils.progress import format_bytes
from unifiedseg.data.labels import read_plan
from unifiedseg.data.label_sources.base import SourceContext, build_label_source
from unifiedseg.data.listfile import read_first_entry

REPO = Path(__file__).resolve().parent.parent
IMAGES = {"toy_images/a.png": payload(1), "toy_images/sub/b.png": payload(2), "README": b"not wanted"}
LABELS = {"labels_v2/a.png": payload(3)}


def toy_catalogue(tmp_path, url, *, images_extra="", locked_urls=""):
    """A catalogue of a public dataset `toy` (a zip whose first URL is dead, a renamed tar.gz) and one
    that needs registration."""
    path = tmp_path / "catalogue.yaml"
    path.write_text(f"""\
toy:
  folder: Toy
  page: {url}/
  archives:
    - name: images.zip
      urls: [{url}/gone/images.zip, {url}/images.zip]
      unpack:
        - {{from: toy_images, to: images}}
{images_extra}
    - name: labels.tar.gz
      other_names: [labels_v2.tar.gz]
      urls: [{url}/labels.tar.gz]
      unpack:
        - {{from: [labels, labels_v2], to: labels}}
locked:
  folder: Locked
  registration: an account
  page: {url}/login
  archives:
    - name: locked.zip
{locked_urls}
      unpack:
        - {{from: locked, to: locked}}
""")
    return Catalogue.load(path)


def run(catalogue, root, name="toy", **options):
    fetch = FetchOptions(retries=options.pop("retries", 0), timeout=10, progress=False)
    lines = []
    outcomes = download_dataset(catalogue.get(name), root, DownloadOptions(fetch=fetch, **options), log=lines.append)
    return outcomes, "\n".join(lines)


@pytest.fixture
def toy(archive_server, tmp_path):
    archive_server.files.update({"images.zip": zip_bytes(IMAGES), "labels.tar.gz": tar_bytes(LABELS)})
    return toy_catalogue(tmp_path, archive_server.url), tmp_path / "root"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_downloads_verifies_unpacks_and_the_second_run_does_nothing(toy, archive_server):
    catalogue, root = toy
    outcomes, log = run(catalogue, root)
    assert [o.done for o in outcomes] == [True, True], log
    toy_dir = root / "Toy"
    assert (toy_dir / "images" / "sub" / "b.png").read_bytes() == IMAGES["toy_images/sub/b.png"]
    assert (toy_dir / "labels" / "a.png").read_bytes() == LABELS["labels_v2/a.png"]  # renamed folder
    assert not (toy_dir / "README").exists() and not (toy_dir / "toy_images").exists()  # outside every part
    assert archive_server.requests[:2] == [("gone/images.zip", None), ("images.zip", None)]  # dead URL, then next
    assert f"toy: images.zip: warning: skipped {archive_server.url}/gone/images.zip: HTTP 404" in log
    digest = (toy_dir / "images.zip.sha256").read_text().split()
    assert digest == [sha256(archive_server.files["images.zip"]), "images.zip"]
    marker = json.loads((toy_dir / ".unifiedseg-unpacked-images.zip.json").read_text())
    assert marker["sha256"] == digest[0] and marker["targets"] == ["images"]
    assert "its own integrity" in log
    assert not [p for p in toy_dir.iterdir() if ".partial-" in p.name or p.name.endswith(".part")]

    served, stamp = len(archive_server.requests), (toy_dir / "images" / "a.png").stat().st_mtime_ns
    outcomes, log = run(catalogue, root)
    assert [o.message for o in outcomes] == ["already unpacked"] * 2
    assert len(archive_server.requests) == served and (toy_dir / "images" / "a.png").stat().st_mtime_ns == stamp

    # a deleted target is unpacked again from the kept archive (checked against its digest), no download
    (toy_dir / "labels" / "a.png").unlink()
    (toy_dir / "labels").rmdir()
    outcomes, log = run(catalogue, root)
    assert all(o.done for o in outcomes) and (toy_dir / "labels" / "a.png").exists()
    assert len(archive_server.requests) == served and "the digest in" in log


def test_archives_kept_elsewhere_or_removed_once_unpacked(toy, archive_server, tmp_path):
    catalogue, root = toy
    outcomes, _ = run(catalogue, root, archive_dir=tmp_path / "archives", remove_archives=True)
    assert all(o.done for o in outcomes) and (root / "Toy" / "images" / "a.png").is_file()
    assert sorted(p.name for p in (tmp_path / "archives").iterdir()) == ["images.zip.sha256", "labels.tar.gz.sha256"]
    assert not list((root / "Toy").glob("images.zip*"))
    served = len(archive_server.requests)
    outcomes, _ = run(catalogue, root, archive_dir=tmp_path / "archives", remove_archives=True)
    assert [o.message for o in outcomes] == ["already unpacked"] * 2 and len(archive_server.requests) == served


def test_an_interrupted_download_resumes_with_a_range_request(toy, archive_server):
    catalogue, root = toy
    body = archive_server.files["images.zip"]
    archive_server.cuts["images.zip"] = (1000, 1)
    outcomes, _ = run(catalogue, root)
    assert not outcomes[0].done and "transfer cut short at byte 1000" in outcomes[0].message
    assert "HTTP 404" in outcomes[0].message  # every URL tried is listed
    part = root / "Toy" / "images.zip.part"
    assert part.stat().st_size == 1000 and not (root / "Toy" / "images").exists()

    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done
    assert ("images.zip", "bytes=1000-") in archive_server.requests
    assert (root / "Toy" / "images.zip").read_bytes() == body and not part.exists()


def test_a_cut_is_resumed_within_the_run(toy, archive_server):
    catalogue, root = toy
    archive_server.cuts["images.zip"] = (700, 2)
    outcomes, _ = run(catalogue, root, retries=2)
    assert outcomes[0].done
    assert [r for r in archive_server.requests if r[0] == "images.zip"] == [
        ("images.zip", None), ("images.zip", "bytes=700-"), ("images.zip", "bytes=1400-")]


def put_part(root, url: str, data: bytes, **origin) -> Path:
    """A .part of images.zip as an earlier run from `url` left it (with its record of where from)."""
    (root / "Toy").mkdir(parents=True, exist_ok=True)
    (root / "Toy" / "images.zip.part.json").write_text(json.dumps({"url": url, **origin}))
    part = root / "Toy" / "images.zip.part"
    part.write_bytes(data)
    return part


def test_a_server_that_refuses_ranges_gets_a_fresh_start(toy, archive_server):
    catalogue, root = toy
    put_part(root, f"{archive_server.url}/images.zip", b"stale bytes of something else")
    archive_server.no_ranges.add("images.zip")
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done
    assert ("images.zip", "bytes=29-") in archive_server.requests
    assert (root / "Toy" / "images.zip").read_bytes() == archive_server.files["images.zip"]


def test_a_part_that_is_already_whole_is_taken_as_it_is(toy, archive_server):
    catalogue, root = toy
    put_part(root, f"{archive_server.url}/images.zip", archive_server.files["images.zip"])
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done and ("images.zip", f"bytes={len(archive_server.files['images.zip'])}-") in archive_server.requests


def test_a_part_longer_than_the_file_is_replaced(toy, archive_server):
    catalogue, root = toy
    body = archive_server.files["images.zip"]
    put_part(root, f"{archive_server.url}/images.zip", b"x" * (len(body) + 10))
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done and (root / "Toy" / "images.zip").read_bytes() == body
    assert [r for r in archive_server.requests if r[0] == "images.zip"] == [
        ("images.zip", f"bytes={len(body) + 10}-"), ("images.zip", None)]  # 416, then from the start


def test_a_part_is_resumed_only_from_its_own_url(toy, archive_server):
    """Bytes from one URL are not continued from another (it may serve another version), nor when
    there is no record of where they came from; a dead URL does not cost the part."""
    catalogue, root = toy
    body = archive_server.files["images.zip"]
    archive_server.files["mirror/images.zip"] = archive_server.files.pop("images.zip")
    archive_server.cuts["mirror/images.zip"] = (1000, 1)
    outcomes, _ = run(catalogue, root, mirror=f"{archive_server.url}/mirror")
    assert not outcomes[0].done and (root / "Toy" / "images.zip.part").stat().st_size == 1000  # kept: 404s after
    assert json.loads((root / "Toy" / "images.zip.part.json").read_text())["url"] == f"{archive_server.url}/mirror/images.zip"

    archive_server.files["images.zip"] = body
    served = len(archive_server.requests)
    outcomes, _ = run(catalogue, root)  # no mirror now: the publisher's URLs, from the start
    assert outcomes[0].done and (root / "Toy" / "images.zip").read_bytes() == body
    assert archive_server.requests[served:] == [("gone/images.zip", None), ("images.zip", None)]
    assert not (root / "Toy" / "images.zip.part.json").exists()

    root = root.parent / "root2"  # a .part without its record
    (root / "Toy").mkdir(parents=True)
    (root / "Toy" / "images.zip.part").write_bytes(body[:1000])
    served = len(archive_server.requests)
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done and ("images.zip", None) in archive_server.requests[served:]
    assert all(asked is None for _, asked in archive_server.requests[served:])


def test_a_file_changed_on_the_server_is_not_appended_to(toy, archive_server):
    """The .part's ETag goes with the Range request as If-Range: a changed file comes whole."""
    catalogue, root = toy
    archive_server.etags["images.zip"] = '"v1"'
    archive_server.cuts["images.zip"] = (1000, 1)
    outcomes, _ = run(catalogue, root)
    assert not outcomes[0].done
    new = zip_bytes({**IMAGES, "toy_images/c.png": payload(9)})
    archive_server.files["images.zip"], archive_server.etags["images.zip"] = new, '"v2"'
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done and (root / "Toy" / "images" / "c.png").is_file()
    assert archive_server.requests[-1] == ("images.zip", "bytes=1000-") and archive_server.if_ranges[-1] == '"v1"'


def test_a_206_from_another_byte_starts_afresh(toy, archive_server):
    catalogue, root = toy
    body = archive_server.files["images.zip"]
    put_part(root, f"{archive_server.url}/images.zip", body[:1000])
    archive_server.wrong_start["images.zip"] = 10
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done and (root / "Toy" / "images.zip").read_bytes() == body
    assert [r for r in archive_server.requests if r[0] == "images.zip"] == [("images.zip", "bytes=1000-"), ("images.zip", None)]


def test_a_cut_is_found_without_a_total_size(toy, archive_server):
    """A 206 of `bytes A-B/*` is whole at byte B, not after any chunk; a chunked 200 cut short is an
    error to the client and is resumed."""
    catalogue, root = toy
    body = archive_server.files["images.zip"]
    archive_server.unknown_total.add("images.zip")
    archive_server.cuts["images.zip"] = (1000, 2)
    outcomes, _ = run(catalogue, root, retries=2)
    assert outcomes[0].done and (root / "Toy" / "images.zip").read_bytes() == body
    assert [r for r in archive_server.requests if r[0] == "images.zip"] == [
        ("images.zip", None), ("images.zip", "bytes=1000-"), ("images.zip", "bytes=2000-")]

    archive_server.chunked.add("labels.tar.gz")
    archive_server.cuts["labels.tar.gz"] = (1000, 1)
    (root / "Toy" / "labels" / "a.png").unlink()
    (root / "Toy" / "labels").rmdir()
    (root / "Toy" / "labels.tar.gz").unlink()
    served = len(archive_server.requests)
    outcomes, _ = run(catalogue, root, retries=1)
    assert outcomes[1].done and archive_server.requests[served:] == [("labels.tar.gz", None)] * 2  # the cut chunk is lost


def test_a_size_never_announced_is_left_to_the_archive_check(toy, archive_server):
    """A 200 without Content-Length that is cut at a clean close looks whole to the transfer: the
    archive's check finds it out, and the log says the size was not announced."""
    catalogue, root = toy
    archive_server.no_length.add("labels.tar.gz")
    archive_server.cuts["labels.tar.gz"] = (1500, 1)
    outcomes, _ = run(catalogue, root)
    failed = outcomes[1]
    assert not failed.done and "damaged" in failed.message and "the server did not announce the file's size" in failed.message
    assert (root / "Toy" / "labels.tar.gz.corrupt").stat().st_size == 1500
    assert not (root / "Toy" / "labels.tar.gz.sha256").exists()

    outcomes, log = run(catalogue, root)
    assert outcomes[1].done and "warning: " in log and "the server did not announce the file's size" in log


def test_a_url_that_serves_a_web_page_is_skipped_for_the_next(toy, archive_server):
    """A login page answered with 200 is set aside and the next URL tried; the log names the first."""
    catalogue, root = toy
    archive_server.files["gone/images.zip"] = b"<html><body>Please log in</body></html>"
    outcomes, log = run(catalogue, root)
    assert outcomes[0].done and (root / "Toy" / "images" / "a.png").is_file()
    first = f"{archive_server.url}/gone/images.zip"
    assert f"warning: skipped {first}: {root / 'Toy' / 'images.zip'}: not a readable zip archive" in log
    assert (root / "Toy" / "images.zip.corrupt").read_bytes().startswith(b"<html>")
    assert archive_server.names_requested()[:2] == ["gone/images.zip", "images.zip"]


def damaged(data: bytes) -> bytes:
    """`data` with one byte flipped inside the first member's bytes."""
    position = len(data) // 4
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]


DAMAGED = {  # name of the archive, how to damage it (from the served files)
    "zip member": ("images.zip", lambda files: damaged(files["images.zip"])),
    "tar.gz cut": ("labels.tar.gz", lambda files: files["labels.tar.gz"][:-200]),
    # the tar reads fine from these: only the gzip stream's CRC-32 and length say they are wrong
    "tar.gz byte flipped": ("labels.tar.gz", lambda files: flipped(files["labels.tar.gz"], len(files["labels.tar.gz"]) // 2)),
    "tar.gz crc": ("labels.tar.gz", lambda files: flipped(files["labels.tar.gz"], len(files["labels.tar.gz"]) - 8)),
    "tar.gz no trailer": ("labels.tar.gz", lambda files: files["labels.tar.gz"][:-8]),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_archive_is_set_aside_with_a_clear_error(toy, archive_server, case):
    name, bad = DAMAGED[case]
    catalogue, root = toy
    good = archive_server.files[name]
    archive_server.files[name] = bad(archive_server.files)
    outcomes, _ = run(catalogue, root)
    failed = {o.archive: o for o in outcomes}[name]
    aside = root / "Toy" / f"{name}.corrupt"
    assert not failed.done and "damaged" in failed.message and f"moved aside to {aside}" in failed.message
    assert aside.read_bytes() == archive_server.files[name] and not (root / "Toy" / name).exists()
    target = "images" if name == "images.zip" else "labels"
    assert not (root / "Toy" / target).exists() and not (root / "Toy" / f".unifiedseg-unpacked-{name}.json").exists()

    archive_server.files[name] = good  # the next run downloads it afresh
    outcomes, _ = run(catalogue, root)
    assert all(o.done for o in outcomes) and (root / "Toy" / target).is_dir()


def test_recorded_size_and_sha256_are_checked(archive_server, tmp_path):
    body = zip_bytes(IMAGES)
    archive_server.files.update({"images.zip": body, "labels.tar.gz": tar_bytes(LABELS)})
    catalogue = toy_catalogue(tmp_path, archive_server.url, images_extra=f"      size: {len(body) + 5}")
    outcomes, _ = run(catalogue, tmp_path / "root")
    assert not outcomes[0].done
    assert f"serves {len(body)} bytes, the catalogue records {len(body) + 5}: not the same file" in outcomes[0].message

    catalogue = toy_catalogue(tmp_path, archive_server.url, images_extra=f"      sha256: '{'0' * 64}'")
    outcomes, _ = run(catalogue, tmp_path / "root")
    assert not outcomes[0].done and f"sha256 {sha256(body)} differs from {'0' * 64}, the catalogue's sha256" in outcomes[0].message

    catalogue = toy_catalogue(tmp_path, archive_server.url, images_extra=f"      size: {len(body)}\n      sha256: {sha256(body)}")
    outcomes, log = run(catalogue, tmp_path / "root")
    assert outcomes[0].done and "verified against the catalogue's sha256" in log
    assert not (tmp_path / "root" / "Toy" / "images.zip.sha256").exists()


def test_every_dead_url_is_reported(archive_server, tmp_path):
    catalogue = toy_catalogue(tmp_path, archive_server.url)
    outcomes, _ = run(catalogue, tmp_path / "root")
    message = outcomes[0].message
    assert message.startswith("could not download images.zip from any of its 2 URL(s):\n")
    assert f"{archive_server.url}/gone/images.zip: HTTP 404" in message and f"{archive_server.url}/images.zip: HTTP 404" in message

    catalogue = toy_catalogue(tmp_path, "http://127.0.0.1:9")  # nothing listens there
    outcomes, _ = run(catalogue, tmp_path / "root")
    assert "http://127.0.0.1:9/images.zip: cannot connect" in outcomes[0].message


def test_a_mirror_is_tried_first_for_every_name_of_an_archive(toy, archive_server, monkeypatch):
    catalogue, root = toy
    archive_server.files["mirror/images.zip"] = archive_server.files.pop("images.zip")
    monkeypatch.setenv("UNIFIEDSEG_DATA_MIRROR", f"{archive_server.url}/mirror/")
    outcomes, _ = run(catalogue, root, mirror=resolve_mirror(None))
    assert all(o.done for o in outcomes)
    assert archive_server.names_requested() == ["mirror/images.zip", "mirror/labels.tar.gz", "mirror/labels_v2.tar.gz",
                                                "labels.tar.gz"]


def test_a_dataset_that_needs_registration_is_fetched_by_hand_or_from_a_mirror(toy, archive_server):
    catalogue, root = toy
    outcomes, log = run(catalogue, root, name="locked")
    assert [(o.done, o.message) for o in outcomes] == [(False, "to fetch by hand")]
    assert f"needs an account. Fetch these by hand from {archive_server.url}/login" in log
    assert f"put them in {root / 'Locked'}/" in log and "--from-file" in log

    archive_server.files["mirror/locked.zip"] = zip_bytes({"locked/x.txt": b"x"})
    outcomes, _ = run(catalogue, root, name="locked", mirror=f"{archive_server.url}/mirror")
    assert outcomes[0].done and (root / "Locked" / "locked" / "x.txt").read_bytes() == b"x"


def test_targets_already_there_are_left_alone(toy, archive_server):
    catalogue, root = toy
    (root / "Toy" / "images").mkdir(parents=True)
    (root / "Toy" / "images" / "mine.png").write_bytes(b"mine")
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done and "already present" in outcomes[0].message
    assert "images.zip" not in archive_server.names_requested() and (root / "Toy" / "images" / "mine.png").exists()


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(toy, archive_server):
    """The lock does not wait: a second run reports which run holds the folder and does nothing."""
    catalogue, root = toy
    with download_module._folder_lock(root / "Toy"):  # as another run would hold it
        outcomes, log = run(catalogue, root)
    assert [o.done for o in outcomes] == [False, False] and "is working in" in outcomes[0].message
    assert f"(pid {os.getpid()} on {socket.gethostname()} since " in outcomes[0].message
    assert archive_server.requests == []
    outcomes, _ = run(catalogue, root)  # released
    assert all(o.done for o in outcomes)


def test_the_lock_needs_no_fcntl(tmp_path, monkeypatch):
    """Windows has no fcntl: the module does not import it at load, and locks with msvcrt.locking."""
    tree = ast.parse(Path(download_module.__file__).read_text())
    assert not [node for node in tree.body if isinstance(node, ast.Import) and "fcntl" in [a.name for a in node.names]]
    held = []

    def locking(fd, mode, count):
        if held:
            raise OSError(errno.EACCES, "locked")
        held.append((mode, count))

    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl raises ImportError
    monkeypatch.setitem(sys.modules, "msvcrt", types.SimpleNamespace(LK_NBLCK=2, locking=locking))
    with download_module._folder_lock(tmp_path / "Toy"):
        with pytest.raises(download_module._Busy, match=f"pid {os.getpid()} on "):
            with download_module._folder_lock(tmp_path / "Toy"):
                pass
    assert held == [(2, 1)]


UNSAFE = {
    "zip parent": (".zip", lambda: zip_bytes({"data/ok.txt": b"ok", "../evil.txt": b"x"}), "../evil.txt", "'..'"),
    "zip absolute": (".zip", lambda: zip_bytes({"/tmp/evil.txt": b"x"}), "/tmp/evil.txt", "absolute"),
    "zip symlink": (".zip", lambda: zip_bytes({"data/ok.txt": b"ok"}, links={"data/link": "/etc/passwd"}), "data/link", "link"),
    "tar parent": (".tar.gz", lambda: tar_bytes({"data/../../evil.txt": b"x"}), "data/../../evil.txt", "'..'"),
    "tar absolute": (".tar", lambda: tar_bytes({"/evil.txt": b"x"}, mode="w"), "/evil.txt", "absolute"),
    "tar symlink": (".tar.gz", lambda: tar_bytes({"data/ok.txt": b"ok"}, special=[special_member("data/l", tarfile.SYMTYPE, "/etc")]),
                    "data/l", "link"),
    "tar hardlink": (".tar.gz", lambda: tar_bytes({}, special=[special_member("data/h", tarfile.LNKTYPE, "../../outside")]),
                     "data/h", "link"),
    "tar device": (".tar.gz", lambda: tar_bytes({}, special=[special_member("data/dev", tarfile.CHRTYPE)]), "data/dev", "device"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_members_that_could_escape_the_target_are_refused(tmp_path, case):
    suffix, build, member, why = UNSAFE[case]
    archive = tmp_path / f"bad{suffix}"
    archive.write_bytes(build())
    folder = tmp_path / "root" / "Data"
    with pytest.raises(UnsafeArchiveError) as caught:
        unpack_into_place(archive, folder, (UnpackPart(("",), "data"),), progress=False)
    assert str(archive) in str(caught.value) and repr(member) in str(caught.value) and why in str(caught.value)
    assert sorted(p.name for p in folder.iterdir()) == []  # no target, no leftover temporary folder
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "root" / "evil.txt").exists()


def test_zip_folder_entries_without_a_slash_are_folders(tmp_path):
    """Some zip writers store a folder as `name` with the folder bit of its attributes (Unix mode, or
    the MS-DOS attribute 0x10) instead of `name/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        unix = zipfile.ZipInfo("data/sub")
        unix.external_attr = (0o40755 << 16) | 0x10
        archive.writestr(unix, b"")
        dos = zipfile.ZipInfo("data/empty")
        dos.create_system, dos.external_attr = 0, 0x10
        archive.writestr(dos, b"")
        archive.writestr("data/sub/x.txt", b"x")
    path = tmp_path / "folders.zip"
    path.write_bytes(buffer.getvalue())
    unpack_into_place(path, tmp_path / "Data", (UnpackPart(("data",), "data"),), progress=False)
    assert (tmp_path / "Data" / "data" / "sub" / "x.txt").read_bytes() == b"x"
    assert (tmp_path / "Data" / "data" / "empty").is_dir()


def test_renames_nested_archives_and_a_missing_folder(tmp_path):
    inner = zip_bytes({"panoptic_val/1.png": b"p"})
    archive = tmp_path / "ann.zip"
    archive.write_bytes(zip_bytes({"annotations/val.json": b"{}", "annotations/panoptic_val.zip": inner}))
    folder = tmp_path / "Coco"
    unpack_into_place(archive, folder, (UnpackPart(("annotations",), "annotations"),),
                      nested=("annotations/panoptic_val.zip",), progress=False)
    assert (folder / "annotations" / "panoptic_val" / "1.png").read_bytes() == b"p"
    assert not (folder / "annotations" / "panoptic_val.zip").exists()

    archive = tmp_path / "sun.tgz"
    archive.write_bytes(tar_bytes({"image/1.jpg": b"i", "labels37/1.png": b"l", "depth/1.png": b"d"}))
    with pytest.raises(ArchiveError, match=r"nothing under 'label37/' \(for label38\); its top-level entries: depth, "
                                           r"image, labels37 \(the publisher may have renamed them"):
        unpack_into_place(archive, tmp_path / "Sun", (UnpackPart(("image",), "image"), UnpackPart(("label37",), "label38")),
                          progress=False)
    assert [p.name for p in (tmp_path / "Sun").iterdir()] == []


def plain_tar(members: dict) -> bytes:
    return tar_bytes(members, mode="w")


PLAIN_TAR = {"a/1": payload(1, 700), "a/2": payload(2, 700)}
SECOND_HEADER = 512 + 1024  # the first member's header and its 700 bytes padded to 1024


@pytest.mark.parametrize("bad, why", [
    (lambda data: data[:SECOND_HEADER], "without the end-of-archive blocks"),  # cut between two members
    (lambda data: data[:SECOND_HEADER + 100], "without the end-of-archive blocks"),  # cut in the second header
    (lambda data: data[:SECOND_HEADER + 700], "member 'a/2' is damaged"),  # cut in the second member
    (lambda data: flipped(data, SECOND_HEADER + 3), f"no valid member header at byte {SECOND_HEADER}"),
])
def test_a_plain_tar_is_checked_to_its_end(tmp_path, bad, why):
    """A plain tar has no checksum of its own: a cut or damaged header must not read as its end."""
    archive = tmp_path / "v.tar"
    archive.write_bytes(bad(plain_tar(PLAIN_TAR)))
    with pytest.raises(CorruptArchiveError, match=why):
        verify_archive(archive, progress=False)
    assert (tmp_path / "v.tar.corrupt").exists()
    archive.write_bytes(plain_tar(PLAIN_TAR))
    assert "its own integrity" in verify_archive(archive, progress=False).how


@pytest.mark.parametrize("name, data", [("io.zip", zip_bytes(IMAGES)), ("io.tar.gz", tar_bytes(LABELS))])
def test_an_io_error_while_reading_is_not_taken_for_damage(tmp_path, monkeypatch, name, data):
    """EIO (a failing disk, a network file system) says nothing about the archive: it stays in place."""
    archive = tmp_path / name
    archive.write_bytes(data)
    class FailingDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *args):
            self.handle.close()

        def read(self, size=-1):
            if self.handle.tell() >= 600:
                raise OSError(errno.EIO, "Input/output error")
            return self.handle.read(size)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(archives, "open", lambda *args, **kwargs: FailingDisk(open(*args, **kwargs)), raising=False)
    with pytest.raises(ArchiveError) as caught:
        verify_archive(archive, progress=False)
    assert not isinstance(caught.value, CorruptArchiveError)
    assert f"{archive}: cannot read it: Input/output error; the file is left where it is" in str(caught.value)
    assert archive.exists() and not (tmp_path / f"{name}.corrupt").exists()


def test_verify_leaves_a_users_file_in_place(tmp_path):
    archive = tmp_path / "mine.zip"
    archive.write_bytes(damaged(zip_bytes(IMAGES)))
    with pytest.raises(CorruptArchiveError, match="the file is left where it is"):
        verify_archive(archive, move_aside=False, progress=False)
    assert archive.exists() and not (tmp_path / "mine.zip.corrupt").exists()


SLOW_UNPACK = """
import sys, time
from pathlib import Path
from unifiedseg.data import archives
from unifiedseg.data import download as download_module
write = archives._write_member
def slow(*args):
    write(*args)
    time.sleep(0.3)
archives._write_member = slow  # the test slows the unpack down to kill it midway
archives.unpack_into_place(Path(sys.argv[1]), Path(sys.argv[2]), (archives.UnpackPart(("toy_images",), "images"),),
                           progress=False)
"""


def test_a_kill_during_unpacking_leaves_nothing_half_written(tmp_path):
    archive = tmp_path / "images.zip"
    archive.write_bytes(zip_bytes({f"toy_images/{i}.png": payload(i, 100) for i in range(40)}))
    folder = tmp_path / "Toy"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", SLOW_UNPACK, str(archive), str(folder)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(folder.glob(".images.zip.partial-*/images/*.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, "the unpack ended before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert [p.name for p in folder.iterdir()][0].startswith(".images.zip.partial-")  # only the temporary folder
    assert not (folder / "images").exists()

    unpack_into_place(archive, folder, (UnpackPart(("toy_images",), "images"),), progress=False)
    assert len(list((folder / "images").iterdir())) == 40
    assert sorted(p.name for p in folder.iterdir()) == [".unifiedseg-unpacked-images.zip.json", "images"]


def test_a_damaged_journal_is_reported_with_what_to_do(toy, archive_server):
    catalogue, root = toy
    (root / "Toy").mkdir(parents=True)
    journal = root / "Toy" / ".unifiedseg-moving-images.zip.json"
    journal.write_text('{"targets": ["ima')
    outcomes, _ = run(catalogue, root)
    assert not outcomes[0].done and outcomes[1].done
    assert outcomes[0].message.startswith(f"{journal}: damaged (")
    assert f"delete {root / 'Toy' / 'images'} if it is there" in outcomes[0].message and "then run again" in outcomes[0].message
    journal.unlink()
    outcomes, _ = run(catalogue, root)
    assert outcomes[0].done


def test_a_full_disk_while_unpacking_names_the_folder_and_the_size(toy, archive_server, monkeypatch):
    catalogue, root = toy

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archives, "_write_member", full)
    outcomes, _ = run(catalogue, root)
    size = format_bytes(sum(map(len, IMAGES.values())))
    assert f"no space left on the device of {root / 'Toy'}; unpacked, images.zip takes {size}" in outcomes[0].message
    assert not (root / "Toy" / "images").exists() and (root / "Toy" / "images.zip").exists()  # kept for the next run


def test_targets_renamed_before_a_kill_are_unpacked_again(tmp_path):
    """A kill between two renames leaves a journal: the next start removes what it had moved."""
    archive = tmp_path / "k.zip"
    archive.write_bytes(zip_bytes({"training/1": b"1", "testing/2": b"2"}))
    folder = tmp_path / "Kitti"
    (folder / "training").mkdir(parents=True)
    (folder / "training" / "1").write_bytes(b"half")
    (folder / ".unifiedseg-moving-k.zip.json").write_text(json.dumps({"targets": ["training", "testing"]}))
    unpack_into_place(archive, folder, (UnpackPart(("training",), "training"), UnpackPart(("testing",), "testing")),
                      progress=False)
    assert (folder / "training" / "1").read_bytes() == b"1" and not (folder / ".unifiedseg-moving-k.zip.json").exists()


# ---- the catalogue -------------------------------------------------------------------------------
BASE = """\
toy:
  folder: Toy
  page: http://127.0.0.1/
  archives:
    - name: a.zip
      urls: [http://127.0.0.1/a.zip]
      unpack:
        - {from: a, to: a}
"""


@pytest.mark.parametrize("edit, message", [
    (("urls:", "urlz:"), "toy.archives[0].urlz: unknown key; did you mean 'urls'?"),
    (("      urls: [http://127.0.0.1/a.zip]\n", ""), "toy.archives[0].urls: a public dataset's archive needs at least one URL"),
    (("page:", "registration: an account\n  page:"), "toy.archives[0].urls: a dataset that needs registration lists no URLs"),
    (("{from: a, to: a}", "{from: a, to: ../a}"), "toy.archives[0].unpack[0].to: must be a path inside the folder"),
    (("{from: a, to: a}", "{from: a, to: a}\n        - {from: b, to: a/b}"), "target 'a/b' of a.zip is inside target 'a'"),
    (("name: a.zip", "name: a.rar"), "toy.archives[0].name: must be a file name ending in .zip"),
    (("[http://127.0.0.1/a.zip]", "[ftp://x/a.zip]"), "toy.archives[0].urls: 'ftp://x/a.zip' is not an http(s) URL"),
    (("unpack:", "sha256: abc\n      unpack:"), "toy.archives[0].sha256: must be 64 hex digits"),
    (("{from: a, to: a}", "{from: a}"), "toy.archives[0].unpack[0]: needs both 'from'"),
])
def test_catalogue_errors_name_the_file_and_the_key(tmp_path, edit, message):
    path = tmp_path / "catalogue.yaml"
    path.write_text(BASE.replace(*edit))
    with pytest.raises(CatalogueError) as caught:
        Catalogue.load(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_catalogue_archive_names_are_unique_and_lookups_suggest(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(BASE + BASE.replace("toy:", "toy2:").replace("Toy", "Toy2"))
    with pytest.raises(CatalogueError, match="archive name 'a.zip' is used twice: by toy and by toy2"):
        Catalogue.load(path)
    with pytest.raises(CatalogueError, match="unknown dataset 'camvd'; did you mean 'camvid'?.*cityscapes"):
        Catalogue.load().get("camvd")


def test_the_shipped_catalogue_unpacks_into_the_raw_layout():
    """Every registered dataset's folder is a catalogue dataset's, and the files the raw releases read
    lie under a target of that dataset's archives: the first line of each split (image, label), and
    the files raw mode opens beside them (the label source's label file, e.g. PASCAL-Context's
    trainval/X.mat, and its segment file, e.g. ADE20K's full release ADE20K_2016_07_26/)."""
    catalogue, registry = Catalogue.load(), DatasetRegistry.load()
    mseg = [info for info in registry.entries.values() if not info.name.startswith("demo")]
    for info in mseg:
        assert any(info.root == d.folder or info.root.startswith(d.folder + "/") for d in catalogue.datasets.values()), info.name
    side = set()
    for dataset in catalogue.datasets.values():
        entries = release_entries(registry, dataset)
        assert entries, dataset.name
        folder = Path("/root") / dataset.folder
        targets = [folder / target for spec in dataset.archives for target in spec.targets]
        raw_readers = [info for info in mseg if info.raw is not None and info.raw.from_entry in entries] + \
            [registry.get(name) for name in entries]
        for info in raw_readers:
            plan = read_plan(info, "raw")
            source = build_label_source(plan.source, SourceContext(
                dataset=info.name, folder=plan.list_info.folder("/root"), data_root=Path("/root"), release=plan.release,
                release_names=dataset_names(plan.release)))
            for split in available_splits(plan.list_info):
                resolved = resolve_split(plan.list_info, split, "/root", generate=False)
                if resolved.path is None:  # COCO's generated train list
                    continue
                first = read_first_entry(resolved.path, plan.list_info.folder("/root"))
                paths = [first.image]
                if first.label is not None:
                    paths += [source.label_file(first), source.segment_file(first)]
                for path in filter(None, paths):
                    assert any(target in path.parents for target in targets), (dataset.name, info.name, split, path)
                    if path not in (first.image, first.label):
                        side.add(path.relative_to("/root").parts[:2])
    assert {("ADE20K", "ADE20K_2016_07_26"), ("PASCAL_Context", "trainval")} <= side, side
