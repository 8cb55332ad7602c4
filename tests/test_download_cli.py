"""`unifiedseg-data download` with the shipped catalogue: a public dataset from a mirror (the local test
server) end to end with --list's view of it, datasets that need registration (instructions, then
--from-file), renamed archives and folders, nested archives, and the argument errors."""

import errno
import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from download_fixtures import archive_server, only_local_network, tar_bytes, zip_bytes  # noqa: F401
from unifiedseg.cli import data as data_cli
from unifiedseg.data import fetch as fetch_module
from unifiedseg.utils.progress import format_bytes

REPO = Path(__file__).resolve().parent.parent
# CamVid's first train line in MSeg's list: 701_StillsRaw_full/0001TP_006690.png Labels32-RGB/0001TP_006690_L.png
STEM = "0001TP_006690"


def png(colour=(0, 0, 0)) -> bytes:
    return cv2.imencode(".png", np.full((6, 8, 3), colour, np.uint8))[1].tobytes()


def download(argv, capsys):
    """Run `unifiedseg-data download ARGV`: (exit code, stdout, stderr), with no traceback printed."""
    code = data_cli.main(["download", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_a_public_dataset_from_a_mirror_end_to_end(archive_server, tmp_path, capsys):
    archive_server.files.update({
        "mseg/701_StillsRaw_full.zip": zip_bytes({f"701_StillsRaw_full/{STEM}.png": png()}),
        "mseg/LabeledApproved_full.zip": zip_bytes({f"{STEM}_L.png": png()}),
    })
    root = tmp_path / "mseg_dataset"
    code, out, _ = download(["camvid", "--root", root, "--mirror", f"{archive_server.url}/mseg", "--no-progress"], capsys)
    assert code == 0, out
    assert (root / "Camvid" / "701_StillsRaw_full" / f"{STEM}.png").is_file()
    assert (root / "Camvid" / "Labels32-RGB" / f"{STEM}_L.png").is_file()  # a flat zip into its own folder
    assert f"downloaded from {archive_server.url}/mseg/701_StillsRaw_full.zip" in out
    assert "done: camvid" in out and f"next: unifiedseg-data status --root {root} --label-source raw --datasets camvid-32" in out

    served = len(archive_server.requests)
    code, out, _ = download(["camvid", "--root", root, "--no-progress"], capsys)
    assert code == 0 and out.count("already unpacked") == 2 and len(archive_server.requests) == served

    code, out, _ = download(["--list", "camvid", "--root", root], capsys)
    assert code == 0
    assert "camvid: CamVid, into Camvid/" in out and "access: public" in out
    assert "  701_StillsRaw_full.zip    size unknown  unpacked" in out
    assert "status of camvid-32: test missing (0/233 images), train incomplete (1/367 images)" in out


def test_a_dataset_that_needs_an_account_says_what_to_fetch_then_takes_the_files(tmp_path, capsys):
    root = tmp_path / "mseg_dataset"
    code, out, _ = download(["cityscapes", "--root", root], capsys)
    assert code == 1
    assert "cityscapes (Cityscapes) needs an account" in out and "https://www.cityscapes-dataset.com/downloads/" in out
    assert "gtFine_trainvaltest.zip, about 241 MB: packageID=1" in out and "leftImg8bit_trainvaltest.zip" in out
    assert f"put them in {root / 'Cityscapes'}/" in out
    assert "not done:\n  cityscapes: gtFine_trainvaltest.zip: to fetch by hand" in out

    fetched = tmp_path / "Downloads"
    fetched.mkdir()
    (fetched / "gtFine_trainvaltest.zip").write_bytes(zip_bytes({
        "gtFine/train/aachen/a_gtFine_labelIds.png": png(), "README": b"r", "license.txt": b"l"}))
    (fetched / "leftImg8bit_trainvaltest.zip").write_bytes(zip_bytes({"leftImg8bit/train/aachen/a_leftImg8bit.png": png(),
                                                                      "README": b"r"}))
    (fetched / "notes.txt").write_text("not an archive")
    code, out, _ = download(["cityscapes", "--root", root, "--from-file", fetched, "--no-progress"], capsys)
    assert code == 0, out
    city = root / "Cityscapes"
    assert (city / "gtFine" / "train" / "aachen" / "a_gtFine_labelIds.png").is_file()
    assert (city / "leftImg8bit" / "train" / "aachen" / "a_leftImg8bit.png").is_file()
    assert not (city / "README").exists() and (fetched / "gtFine_trainvaltest.zip").exists()  # the user's file stays
    assert (fetched / "gtFine_trainvaltest.zip.sha256").is_file()


def test_from_files_alone_find_their_datasets_renames_and_nested_archives(tmp_path, capsys):
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    # WildDash's benchmark archive under its other name, holding a folder of that name
    (fetched / "wd_bench_01.zip").write_bytes(zip_bytes({"wd_bench_01/au0000_100000.png": png(), "readme.txt": b"r"}))
    # SUN RGB-D ships its 38-id labels as label37/, and depth/ that raw mode does not read
    buffer = io.BytesIO(tar_bytes({"image/train/img-000001.jpg": b"i", "label37/train/00000001.png": png(),
                                   "depth/train/1.png": b"d"}))
    (fetched / "sun_rgbd.tgz").write_bytes(buffer.getvalue())
    # COCO's panoptic annotations hold one zip of PNGs per split
    (fetched / "panoptic_annotations_trainval2017.zip").write_bytes(zip_bytes({
        "annotations/panoptic_val2017.json": b"{}", "annotations/panoptic_train2017.json": b"{}",
        "annotations/panoptic_val2017.zip": zip_bytes({"panoptic_val2017/000000000139.png": png()}),
        "annotations/panoptic_train2017.zip": zip_bytes({"panoptic_train2017/000000000009.png": png()})}))
    root = tmp_path / "root"
    code, out, _ = download(["--root", root, "--from-file", *sorted(fetched.iterdir()), "--no-progress"], capsys)
    assert code == 0, out  # without NAMEs, only the archives given
    assert (root / "WildDash" / "wd_both_01" / "au0000_100000.png").is_file()
    assert (root / "SUNRGBD" / "label38" / "train" / "00000001.png").is_file() and not (root / "SUNRGBD" / "depth").exists()
    assert (root / "COCOPanoptic" / "annotations" / "panoptic_val2017" / "000000000139.png").is_file()
    assert not (root / "COCOPanoptic" / "annotations" / "panoptic_val2017.zip").exists()
    assert "done: coco, sunrgbd, wilddash" in out and "train2017.zip" not in out and "wd_val_01.zip" not in out


def camvid_mirror(server) -> str:
    server.files.update({"mseg/701_StillsRaw_full.zip": zip_bytes({f"701_StillsRaw_full/{STEM}.png": png()}),
                         "mseg/LabeledApproved_full.zip": zip_bytes({f"{STEM}_L.png": png()})})
    return f"{server.url}/mseg"


def test_file_system_errors_are_one_line_each(archive_server, tmp_path, capsys, monkeypatch):
    """A folder that cannot be made, a full disk: each archive's line names the file and what is
    wrong (a full disk: the folder and the bytes still needed), no traceback, exit 1."""
    mirror, root = camvid_mirror(archive_server), tmp_path / "root"
    (tmp_path / "a_file").write_text("")
    code, out, _ = download(["camvid", "--root", root, "--mirror", mirror, "--archive-dir", tmp_path / "a_file" / "archives",
                             "--no-progress"], capsys)
    assert code == 1 and archive_server.requests == []
    assert f"camvid: 701_StillsRaw_full.zip: {tmp_path / 'a_file' / 'archives'}: Not a directory" in out

    class FullDisk:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *args):
            pass

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch_module, "open", FullDisk, raising=False)
    code, out, _ = download(["camvid", "--root", root, "--mirror", mirror, "--no-progress"], capsys)
    size = len(archive_server.files["mseg/701_StillsRaw_full.zip"])
    part = root / "Camvid" / "701_StillsRaw_full.zip.part"
    assert code == 1 and f"  camvid: 701_StillsRaw_full.zip: {part}: no space left on the device of {root / 'Camvid'}; " \
                         f"{format_bytes(size)} more are needed" in out


def test_argument_errors(tmp_path, capsys):
    code, _, err = download(["camvd", "--root", tmp_path], capsys)
    assert code == 2 and "unknown dataset 'camvd'; did you mean 'camvid'?" in err
    code, _, err = download(["--root", tmp_path], capsys)
    assert code == 2 and "name the datasets to download (ade20k, bdd," in err and "or public for every one" in err
    stray = tmp_path / "gtfine_trainvaltest.zip"
    stray.write_bytes(b"x")
    code, _, err = download(["--root", tmp_path, "--from-file", stray], capsys)
    assert code == 2 and "not an archive the catalogue knows; did you mean 'gtFine_trainvaltest.zip'?" in err
    code, _, err = download(["camvid", "--root", tmp_path, "--retries", "-1"], capsys)
    assert code == 2 and "--retries: must be an integer >= 0, got -1" in err


def test_list_without_a_root_shows_the_catalogue(capsys, monkeypatch):
    monkeypatch.delenv("UNIFIEDSEG_DATA_ROOT", raising=False)
    code, out, _ = download(["--list"], capsys)
    assert code == 0 and "catalogue only" in out
    for name in ("ade20k", "bdd", "camvid", "cityscapes", "coco", "idd", "kitti", "mapillary", "pascal-context",
                 "scannet", "sunrgbd", "voc2012", "wilddash"):
        assert f"\n{name}: " in out
    assert "access: needs a licence request" in out and "mapillary-vistas-dataset_public_v1.1.zip" in out
    assert "  wd_both_01.zip (also wd_bench_01.zip)  about 255 MB" in out  # what the file may be called


def test_the_script_and_tool_wrappers_have_help(tmp_path):
    """download_scripts/download.sh runs tools/data.py with python3 where there is no `python` (as on
    many systems; $PYTHON chooses another)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    done = subprocess.run(["/bin/sh", str(REPO / "download_scripts" / "download.sh"), tmp_path / "root", "--help"],
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "--from-file" in done.stdout and "--mirror" in done.stdout
