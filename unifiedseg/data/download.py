"""Get a dataset's archives into the raw layout: for each archive of the catalogue, skip it when it is
already unpacked (or its targets are already there), else take the file the user fetched by hand
(`from_files`, or already in the archive folder), or download it (a mirror first, then the publisher's
URLs in order), verify it and unpack it into place. Nothing is done twice; what cannot be done is
reported with why and what to do, e.g. which archives of a dataset that needs registration to fetch
by hand and from where. No credentials are asked for or stored.

Archives are kept in the dataset's folder under the data root (or `archive_dir`), as MSeg's scripts
keep them, unless `remove_archives`. `list_datasets` tells, for the --list option, the state of each
archive and what the status command finds of each dataset's raw release.

One run works in a dataset folder at a time: a lock file there (`.unifiedseg-download.lock`, holding
the pid, host and start time of the run that has it) makes a second run refuse that dataset at once,
naming the holder. The lock is advisory (flock on POSIX, msvcrt.locking on Windows): it keeps runs of
this command apart, not other programs, and on a network file system (NFS) it may not hold between
machines: do not start two runs on one dataset from different machines.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from unifiedseg.data.archives import (CORRUPT_SUFFIX, ArchiveError, CorruptArchiveError, Verified, is_unpacked,
                                      occupied, read_digest, remove_leftovers, unpack_into_place, verify_archive)
from unifiedseg.data.catalogue import ArchiveSpec, Catalogue, CatalogueError, DownloadDataset
from unifiedseg.data.fetch import BadDownload, FetchError, FetchOptions, fetch, mirror_urls, part_file
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.splits import available_splits
from unifiedseg.data.status import SplitRequest, data_status
from unifiedseg.utils.fileio import os_error_message
from unifiedseg.utils.names import suggest

MIRROR_ENV = "UNIFIEDSEG_DATA_MIRROR"
PUBLIC = "public"  # the name that stands for every dataset without registration
COMMAND = "unifiedseg-data download"
LOCK_FILE = ".unifiedseg-download.lock"


@dataclass(frozen=True)
class DownloadOptions:
    archive_dir: Path | None = None  # where archives are kept (default: each dataset's folder)
    mirror: str | None = None  # an HTTP folder holding the archives under their names, tried first
    from_files: dict[str, Path] = field(default_factory=dict)  # archive name -> a file the user fetched
    remove_archives: bool = False
    fetch: FetchOptions = FetchOptions()

    @property
    def progress(self) -> bool:
        return self.fetch.progress


@dataclass(frozen=True)
class Outcome:
    """What became of one archive: done (unpacked now or before, or present) or not, and the message."""

    dataset: str
    archive: str
    done: bool
    message: str


def resolve_mirror(given: str | None) -> str | None:
    return given or os.environ.get(MIRROR_ENV) or None


def select_datasets(catalogue: Catalogue, names: Iterable[str]) -> list[DownloadDataset]:
    """The named datasets (`public` = every dataset without registration), each once, in order."""
    chosen: dict[str, DownloadDataset] = {}
    for name in names:
        group = [d for d in catalogue.datasets.values() if d.public] if name == PUBLIC else [catalogue.get(name)]
        chosen.update((dataset.name, dataset) for dataset in group)
    return list(chosen.values())


def match_files(catalogue: Catalogue, paths: Iterable[Path]) -> dict[str, Path]:
    """Archive name -> file, for the files given (a folder: the files in it whose names the catalogue
    knows). A file given by name that is no catalogue archive is a CatalogueError naming the closest."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            candidates = sorted(entry for entry in path.iterdir() if entry.is_file())
        elif path.is_file():
            candidates = [path]
            if catalogue.archive_named(path.name) is None:
                raise CatalogueError(f"{path}: not an archive the catalogue knows{suggest(path.name, catalogue.archive_names())}; "
                                     f"known archives: {', '.join(catalogue.archive_names())}")
        else:
            raise CatalogueError(f"--from-file {path}: no such file or folder")
        for candidate in candidates:
            hit = catalogue.archive_named(candidate.name)
            if hit is not None:
                found.setdefault(hit[1].name, candidate)
    return found


def archive_folder(dataset: DownloadDataset, root: Path, options: DownloadOptions) -> Path:
    return Path(options.archive_dir) if options.archive_dir else root / dataset.folder


def _local_copy(spec: ArchiveSpec, home: Path) -> Path | None:
    """The archive in its folder, under any of its names."""
    return next((home / name for name in spec.names if (home / name).is_file()), None)


def download_dataset(dataset: DownloadDataset, root: Path, options: DownloadOptions,
                     log: Callable[[str], None] = print, only: set[str] | None = None) -> list[Outcome]:
    """One Outcome per archive of `dataset` (those named in `only`, if given; see the module
    docstring); the archives that must be fetched by hand are reported together, with instructions."""
    outcomes, by_hand = [], []
    specs = [spec for spec in dataset.archives if only is None or spec.name in only]
    try:
        with _folder_lock(root / dataset.folder):
            for spec in specs:
                outcome = prepare_archive(dataset, spec, root, options, log)
                if outcome is None:
                    by_hand.append(spec)
                else:
                    log(f"{dataset.name}: {spec.name}: {outcome.message}")
                    outcomes.append(outcome)
    except (_Busy, OSError) as err:  # before any archive (each reports its own errors)
        message = os_error_message(err) if isinstance(err, OSError) else \
            f"another {COMMAND} is working in {root / dataset.folder} ({err}); run this one when it has finished"
        log(f"{dataset.name}: {message}")
        return [Outcome(dataset.name, spec.name, False, message) for spec in specs]
    if by_hand:
        message = manual_instructions(dataset, by_hand, root, options)
        log(message)
        outcomes += [Outcome(dataset.name, spec.name, False, "to fetch by hand") for spec in by_hand]
    return outcomes


class _Busy(Exception):
    """Another run holds the dataset folder (the message: which, as it wrote in the lock file)."""


@contextmanager
def _folder_lock(folder: Path):
    """Hold the dataset folder's lock file, or raise _Busy at once (no waiting) naming the run that holds
    it: a second run would take the first one's temporary folders for leftovers and write into its
    downloads. The holder writes its pid, host and start time in the file for that message."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+", encoding="utf-8") as handle:
        if not _try_lock(handle):
            handle.seek(0)
            raise _Busy(handle.read(200).strip() or "a run that did not say which")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield


def _try_lock(handle) -> bool:
    """Take the advisory lock on an open file without waiting: flock on POSIX, one byte far past the
    holder's text with msvcrt.locking on Windows (fcntl exists on POSIX only)."""
    try:
        import fcntl
    except ImportError:
        import msvcrt

        handle.seek(1 << 30)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def prepare_archive(dataset: DownloadDataset, spec: ArchiveSpec, root: Path, options: DownloadOptions,
                    log: Callable[[str], None] = print) -> Outcome | None:
    """Bring one archive into the raw layout; None when it must be fetched by hand (no URL, and no
    mirror has it). What goes wrong is the Outcome's one-line message, naming the file."""
    try:
        return _prepare(dataset, spec, root, options, log)
    except ArchiveError as err:
        return Outcome(dataset.name, spec.name, False, str(err))
    except OSError as err:  # this machine's files: a folder that is a file, a full disk, no permission
        return Outcome(dataset.name, spec.name, False, os_error_message(err))


def _prepare(dataset: DownloadDataset, spec: ArchiveSpec, root: Path, options: DownloadOptions,
             log: Callable[[str], None]) -> Outcome | None:
    folder, home = root / dataset.folder, archive_folder(dataset, root, options)
    remove_leftovers(folder, spec.name, spec.targets)
    if is_unpacked(folder, spec.name, spec.targets):
        return Outcome(dataset.name, spec.name, True, "already unpacked")
    present = [target for target in spec.targets if occupied(folder / target)]
    if present and len(present) == len(spec.targets):
        return Outcome(dataset.name, spec.name, True, f"already present in {folder} ({', '.join(present)}; not "
                                                      f"unpacked by this command), left as it is")
    if present:
        return Outcome(dataset.name, spec.name, False, f"{', '.join(str(folder / t) for t in present)} already "
                                                       f"exist(s) but not the rest of what {spec.name} brings; move them "
                                                       f"away and run again")
    given = options.from_files.get(spec.name)
    path = given or _local_copy(spec, home)
    if path is not None:
        verified = _verify(spec, path, options, move_aside=given is None)
    else:
        path = home / spec.name
        verified = _download(dataset, spec, path, options, log)
        if not isinstance(verified, Verified):
            return verified  # what went wrong, or None: to fetch by hand
    log(f"{dataset.name}: {spec.name}: verified against {verified.how}")
    targets = unpack_into_place(path, folder, spec.parts, nested=spec.nested, name=spec.name, sha256=verified.sha256,
                                progress=options.progress)
    if options.remove_archives and given is None:
        path.unlink()
    return Outcome(dataset.name, spec.name, True, f"unpacked into {', '.join(map(str, targets))}")


def _verify(spec: ArchiveSpec, path: Path, options: DownloadOptions, *, move_aside: bool) -> Verified:
    return verify_archive(path, size=spec.size, sha256=spec.sha256, move_aside=move_aside, progress=options.progress)


def _download(dataset: DownloadDataset, spec: ArchiveSpec, path: Path, options: DownloadOptions,
              log: Callable[[str], None]) -> Verified | Outcome | None:
    """Download the archive to `path` from the mirror, then the publisher's URLs, until a copy passes
    verification (a bad copy is set aside and the next URL tried; the URLs skipped are logged as
    warnings). None when there is no URL (to fetch by hand), or when none worked for a dataset that
    needs registration (its mirror may lack it); an Outcome saying why for a public dataset."""
    urls = mirror_urls(options.mirror, spec.names) + list(spec.urls)
    if not urls:
        return None

    def check(path: Path) -> Verified:
        try:
            return _verify(spec, path, options, move_aside=True)
        except CorruptArchiveError as err:
            raise BadDownload(str(err)) from None

    log(f"{dataset.name}: {spec.name}: downloading ({spec.shown_size})")
    try:
        fetched = fetch(urls, path, expected_size=spec.size, options=options.fetch, check=check)
    except FetchError as err:
        if dataset.public:
            return Outcome(dataset.name, spec.name, False, str(err))
        log(f"{dataset.name}: {spec.name}: {err}")
        return None
    for note in fetched.notes:
        log(f"{dataset.name}: {spec.name}: warning: {note}")
    log(f"{dataset.name}: {spec.name}: downloaded from {fetched.url}")
    return fetched.checked


def manual_instructions(dataset: DownloadDataset, specs: list[ArchiveSpec], root: Path, options: DownloadOptions) -> str:
    """Which archives to fetch by hand, from where, and the two ways to go on."""
    needs = f"needs {dataset.registration}" if dataset.registration else "has archives to fetch by hand"
    lines = [f"{dataset.name} ({dataset.title}) {needs}. Fetch these by hand from {dataset.page} :"]
    for spec in specs:
        other = f" (also named {', '.join(spec.other_names)})" if spec.other_names else ""
        note = f": {spec.note}" if spec.note else ""
        lines.append(f"  {spec.name}{other}, {spec.shown_size}{note}")
    lines += [f"then put them in {archive_folder(dataset, root, options)}/ and run this command again, or run",
              f"  {COMMAND} {dataset.name} --root {root} --from-file FILE_OR_FOLDER...",
              "(log in with your browser: this command asks for no password and stores none)"]
    return "\n".join(lines)


def _archive_state(dataset: DownloadDataset, spec: ArchiveSpec, root: Path, options: DownloadOptions) -> str:
    folder, home = root / dataset.folder, archive_folder(dataset, root, options)
    if is_unpacked(folder, spec.name, spec.targets):
        return "unpacked"
    if all(occupied(folder / target) for target in spec.targets):
        return "present (not unpacked by this command)"
    local = _local_copy(spec, home)
    if local is not None:
        return f"downloaded{' and verified' if read_digest(local) else ''}, not unpacked"
    part = part_file(home / spec.name)
    if part.exists():
        return f"partly downloaded ({part.stat().st_size} bytes)"
    if (home / (spec.name + CORRUPT_SUFFIX)).exists():
        return f"absent (a damaged copy is set aside as {spec.name + CORRUPT_SUFFIX})"
    return "absent"


def release_entries(registry: DatasetRegistry, dataset: DownloadDataset) -> list[str]:
    """The registry entries that read the publisher's files of `dataset` as they are (no `raw` mapping
    from another entry): what the unpacked archives should hold."""
    return [info.name for info in registry.entries.values()
            if (info.root == dataset.folder or info.root.startswith(dataset.folder + "/"))
            and (info.raw is None or info.raw.from_entry == info.name)]


def list_datasets(catalogue: Catalogue, datasets: list[DownloadDataset], root: Path | None,
                  options: DownloadOptions, registry: DatasetRegistry | None = None) -> str:
    """For --list: each dataset, whether it needs registration, its archives and sizes, and with a
    root, each archive's state and the status command's view of its raw releases (raw label source)."""
    lines = [f"data root: {root}" if root else "no data root given (--root or $UNIFIEDSEG_DATA_ROOT): catalogue only",
             f"archive catalogue: {catalogue.source}"]
    for dataset in datasets:
        access = f"needs {dataset.registration}" if dataset.registration else "public (downloaded by this command)"
        lines += [f"{dataset.name}: {dataset.title}, into {dataset.folder}/", f"  access: {access}; page: {dataset.page}"]
        names = [spec.name + (f" (also {', '.join(spec.other_names)})" if spec.other_names else "")
                 for spec in dataset.archives]
        width = max(map(len, names))
        for spec, name in zip(dataset.archives, names):
            state = f"  {_archive_state(dataset, spec, root, options)}" if root else ""
            lines.append(f"  {name.ljust(width)}  {spec.shown_size}{state}")
        if root and registry is not None:
            lines += _status_lines(registry, dataset, root)
    return "\n".join(lines)


def _status_lines(registry: DatasetRegistry, dataset: DownloadDataset, root: Path) -> list[str]:
    """One line per raw release entry: each split's status and its images found against the list."""
    names = release_entries(registry, dataset)
    requests = [SplitRequest(name, split, False) for name in names for split in available_splits(registry.get(name))]
    rows = data_status(registry, root, requests, progress=False, generate_lists=False, label_source="raw")
    lines = []
    for name in names:
        splits = [f"{row.split} {row.state} ({row.images}/{row.listed} images)" for row in rows if row.dataset == name]
        lines.append(f"  status of {name}: {', '.join(splits)}")
    return lines
