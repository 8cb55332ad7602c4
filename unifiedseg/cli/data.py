"""`unifiedseg-data status --root DIR` (or `python tools/data.py status`): what is on disk for each
registered dataset and split, and what to do about what is missing. `unifiedseg-data download NAME...
--root DIR`: download, verify and unpack datasets into the raw layout (unifiedseg/data/download.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from unifiedseg.data.registry import DATA_ROOT_ENV, DatasetRegistry, RegistryError, resolve_data_root
from unifiedseg.data.labels import LABEL_MODES
from unifiedseg.data.status import SplitRequest, all_requests, data_status, format_status
from unifiedseg.data.catalogue import Catalogue, CatalogueError
from unifiedseg.data.download import (COMMAND, MIRROR_ENV, PUBLIC, DownloadOptions, download_dataset, list_datasets,
                                      match_files, release_entries, resolve_mirror, select_datasets)
from unifiedseg.data.fetch import FetchOptions
from unifiedseg.utils.checks import check_int, check_number
from unifiedseg.utils.fileio import os_error_message


def config_requests(config_path: str, overrides: list[str]) -> tuple[list[SplitRequest], object]:
    """The splits a config trains and validates on (required) and the zero-shot test datasets of its
    taxonomy (optional: tools/test.py reads their val split)."""
    from unifiedseg.config import load_config
    from unifiedseg.config.builders import data_requests
    from unifiedseg.taxonomy import TaxonomyTable

    cfg = load_config(config_path, overrides)
    requests = data_requests(cfg)
    if cfg.taxonomy.kind != "oracle":
        for name in TaxonomyTable.load(cfg.taxonomy.tsv).test_datasets:
            requests.append(SplitRequest(name, "val", False, "test"))
    return requests, cfg


def _merge_duplicates(requests: list[SplitRequest]) -> list[SplitRequest]:
    """One request per dataset split (a --datasets name may also be one a --config trains on): the first,
    required when any of its copies is."""
    merged: dict[tuple[str, str], SplitRequest] = {}
    for request in requests:
        key = (request.dataset, request.split)
        first = merged.setdefault(key, request)
        if request.required and not first.required:
            merged[key] = SplitRequest(first.dataset, first.split, True, first.role)
    return list(merged.values())


def _split_overrides(args) -> None:
    """`--datasets a b data.root=X` hands the override to --datasets (argparse's nargs="+" takes every
    word): KEY=VALUE words (a dataset or split name has no '=') go back to the overrides."""
    for option in ("datasets", "splits"):
        values = getattr(args, option)
        if values:
            setattr(args, option, [v for v in values if "=" not in v])
            args.overrides += [v for v in values if "=" in v]


def status_main(args) -> int:
    _split_overrides(args)
    try:
        cfg = None
        for option in ("datasets", "splits"):
            if getattr(args, option) == []:
                raise ValueError(f"--{option} needs at least one name")
        if args.overrides and not args.config:
            raise ValueError(f"config overrides ({' '.join(args.overrides)}) need --config; without one, give the data "
                             f"root as --root DIR")
        if args.config:
            requests, cfg = config_requests(args.config, args.overrides)
        registry = DatasetRegistry.load(extra_files=list(args.registry) + (list(cfg.data.registry_files) if cfg else []))
        root = resolve_data_root(args.root or (cfg.data.root if cfg else None))
        if not args.config:
            requests = all_requests(registry, args.datasets, required=bool(args.datasets))
        elif args.datasets:
            requests += all_requests(registry, args.datasets, required=True)
        if args.splits:
            known = {r.split for r in requests}
            unknown = [split for split in args.splits if split not in known]
            if unknown:  # a typo would otherwise check nothing and exit 0
                raise RegistryError(f"no requested dataset has a split {', '.join(map(repr, unknown))}; "
                                    f"their splits: {', '.join(sorted(known))}")
            requests = [r for r in requests if r.split in args.splits]
        requests = _merge_duplicates(requests)
        # a custom taxonomy's test column need not be registered; anything else unknown is an error
        requests = [r for r in requests if r.required or r.dataset in registry]
        for request in requests:
            registry.get(request.dataset)  # an unknown name is an error listing the valid ones
    except (RegistryError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    label_source = args.label_source or (cfg.data.label_source if cfg else "prepared")
    rows = data_status(registry, root, requests, progress=not args.no_progress, generate_lists=not args.no_generate,
                       label_source=label_source)
    if args.json:
        print(json.dumps({"root": str(root), "splits": [row.to_dict() for row in rows]}, indent=1))
    else:
        print(format_status(rows, root))
    return 1 if any(row.required and not row.ok for row in rows) else 0


def _download_targets(args, catalogue: Catalogue, from_files: dict) -> list:
    """The datasets to work on: those named, else (with --list) all, else (with --from-file) those the
    files belong to (only the archives given are then worked on)."""
    if args.names:
        return select_datasets(catalogue, args.names)
    if args.list:
        return select_datasets(catalogue, catalogue.names())
    if from_files:
        return select_datasets(catalogue, dict.fromkeys(catalogue.archive_named(name)[0].name for name in from_files))
    if args.from_file:
        raise CatalogueError(f"no file in {', '.join(args.from_file)} is an archive the catalogue knows; known archives: "
                             f"{', '.join(catalogue.archive_names())}")
    raise CatalogueError(f"name the datasets to download ({', '.join(catalogue.names())}, or {PUBLIC} for every one "
                         f"without registration), or give --list")


def _download_root(args) -> Path | None:
    given = args.root or os.environ.get(DATA_ROOT_ENV)
    if given:
        return Path(given).expanduser()
    if args.list:
        return None
    raise RegistryError(f"no data root: give --root DIR (created if missing) or set {DATA_ROOT_ENV}")


def download_main(args) -> int:
    try:
        catalogue = Catalogue.load(args.catalogue)
        from_files = match_files(catalogue, args.from_file) if args.from_file else {}
        datasets = _download_targets(args, catalogue, from_files)
        root = _download_root(args)
        fetch_options = FetchOptions(retries=check_int(args.retries, "--retries"),
                                     timeout=check_number(args.timeout, "--timeout", strictly_above=True),
                                     progress=not args.no_progress)
        options = DownloadOptions(archive_dir=Path(args.archive_dir).expanduser() if args.archive_dir else None,
                                  mirror=resolve_mirror(args.mirror), from_files=from_files,
                                  remove_archives=args.remove_archives, fetch=fetch_options)
        if args.list:
            print(list_datasets(catalogue, datasets, root, options, DatasetRegistry.load() if root else None))
            return 0
        root.mkdir(parents=True, exist_ok=True)
    except (CatalogueError, RegistryError, ValueError, OSError) as err:
        print(f"error: {os_error_message(err) if isinstance(err, OSError) else err}", file=sys.stderr)
        return 2
    unused = sorted(name for name in from_files if catalogue.archive_named(name)[0] not in datasets)
    if unused:
        print(f"note: {', '.join(unused)} belong(s) to datasets not named here; left alone")
    outcomes = []
    try:
        for dataset in datasets:
            outcomes += download_dataset(dataset, root, options, only=None if args.names else set(from_files))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as err:  # each archive reports its own; this is for what lies around them
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        return 1
    return _summary(outcomes, datasets, root)


def _summary(outcomes: list, datasets: list, root: Path) -> int:
    """Print what was done and what was not; 0 when every archive is done, else 1."""
    done = [dataset.name for dataset in datasets if all(o.done for o in outcomes if o.dataset == dataset.name)]
    failed = [outcome for outcome in outcomes if not outcome.done]
    print(f"\ndone: {', '.join(done) or 'none'}")
    if failed:
        print("not done:")
        for outcome in failed:
            print(f"  {outcome.dataset}: {outcome.archive}: {outcome.message.splitlines()[0].rstrip(':')}")
    if done:
        registry = DatasetRegistry.load()
        entries = [name for dataset in datasets if dataset.name in done for name in release_entries(registry, dataset)]
        print(f"next: unifiedseg-data status --root {root} --label-source raw --datasets {' '.join(entries)}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="unifiedseg-data", description="Datasets on disk: get them (download), and what is there and what is "
                                            "missing (status).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser(
        "status", help="one row per dataset and split: found or missing, images and labels counted against the "
                       "list, label releases on disk, the first missing file and what to do about it",
        description="Check a data root (e.g. the mseg_dataset folder MSeg's preparation writes) against every "
                    "registered dataset's lists, with stat calls only (one label decoded per split to check its "
                    "ids). Exits 1 when a needed split (those of --datasets, or those a --config trains and "
                    "validates on) is not complete, 2 on bad arguments, else 0.",
        epilog="examples:\n  unifiedseg-data status --root /data/mseg_dataset\n"
               "  unifiedseg-data status --root /data/mseg_dataset --datasets cityscapes-19 kitti-19\n"
               "  unifiedseg-data status --config config/train/1080/mseg.yaml data.root=/data/mseg_dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--root", default=None, help=f"data root (default: the config's data.root, else ${DATA_ROOT_ENV})")
    status.add_argument("--datasets", nargs="+", default=None, metavar="NAME", help="only these datasets (all their splits)")
    status.add_argument("--config", default=None, help="the datasets this training config trains, validates and tests on")
    status.add_argument("--splits", nargs="+", default=None, metavar="SPLIT", help="only these splits (e.g. train val)")
    status.add_argument("--registry", nargs="*", default=[], metavar="YAML", help="extra dataset registry files")
    status.add_argument("--label-source", choices=LABEL_MODES, default=None,
                        help="prepared: the files MSeg's preparation writes (default) | raw: the publishers' files that "
                             "data.label_source=raw reads (default with --config: the config's data.label_source)")
    status.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    status.add_argument("--no-progress", action="store_true", help="no progress bars")
    status.add_argument("--no-generate", action="store_true",
                        help="do not build generated lists (COCO's train lists, from the panoptic JSON) that are not cached yet")
    status.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, with --config")
    _add_download_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "status":
        return status_main(args)
    if args.command == "download":
        return download_main(args)
    return 2


def _add_download_parser(commands) -> None:
    download = commands.add_parser(
        "download", help="download, verify and unpack datasets into the raw layout (resumable; nothing done twice)",
        description="For each named dataset, bring every archive into the raw layout under the data root: download it "
                    "(a mirror first, then the publisher's URLs in order; an interrupted download resumes), verify it "
                    "(recorded size and sha256, else the archive's own integrity, its sha256 then written beside it; a "
                    "copy that fails is set aside and the next URL tried), "
                    "and unpack it through a temporary folder renamed into place. What is already unpacked is "
                    "skipped. For datasets that need an account or a licence it prints which archives to fetch by "
                    "hand and from where; put them in the dataset's folder (or pass --from-file) and run it again. "
                    "Exits 0 when everything is done, 1 when something could not be done (listed at the end), "
                    "2 on bad arguments.",
        epilog=f"examples:\n  {COMMAND} --list --root /data/mseg_dataset\n"
               f"  {COMMAND} camvid ade20k --root /data/mseg_dataset\n"
               f"  {COMMAND} {PUBLIC} --root /data/mseg_dataset --mirror http://datasets.example.org/mseg\n"
               f"  {COMMAND} cityscapes --root /data/mseg_dataset --from-file ~/Downloads\n"
               f"then: unifiedseg-data status --root /data/mseg_dataset --label-source raw",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("names", nargs="*", metavar="NAME",
                          help=f"datasets (see --list), or {PUBLIC} for every one without registration")
    download.add_argument("--root", default=None, help=f"data root (default ${DATA_ROOT_ENV}); created if missing")
    download.add_argument("--list", action="store_true",
                          help="list the datasets, their archives and sizes, whether they need registration, and with a "
                               "root what is already there (archives, and the status of each raw release)")
    download.add_argument("--from-file", nargs="+", default=None, metavar="PATH",
                          help="archives fetched by hand, or folders holding them (matched by file name): verified and "
                               "unpacked from where they are (put NAMEs before this option; without NAMEs, only the "
                               "archives given are worked on)")
    download.add_argument("--mirror", default=None, metavar="URL",
                          help=f"an HTTP folder holding the archives under their file names, tried first (default "
                               f"${MIRROR_ENV})")
    download.add_argument("--archive-dir", default=None, metavar="DIR",
                          help="keep downloaded archives here (default: each dataset's folder under the root)")
    download.add_argument("--remove-archives", action="store_true",
                          help="delete each downloaded archive once unpacked (a second run still does nothing)")
    download.add_argument("--retries", type=int, default=FetchOptions.retries,
                          help="resumes of a transfer cut short, per URL (default %(default)s)")
    download.add_argument("--timeout", type=float, default=FetchOptions.timeout,
                          help="seconds to wait for an answer or data (default %(default)s)")
    download.add_argument("--catalogue", default=None, metavar="YAML",
                          help="an archive catalogue of your own instead of the shipped one (unifiedseg/resources/downloads.yaml)")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")


if __name__ == "__main__":
    raise SystemExit(main())
