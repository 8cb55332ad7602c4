"""`unifiedseg-data status --root DIR` (or `python tools/data.py status`): what is on disk for each
registered dataset and split, and what to do about what is missing."""

from __future__ import annotations

import argparse
import json
import sys

from unifiedseg.data.registry import DATA_ROOT_ENV, DatasetRegistry, RegistryError, resolve_data_root
from unifiedseg.data.labels import LABEL_MODES
from unifiedseg.data.status import SplitRequest, all_requests, data_status, format_status


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="unifiedseg-data", description="Datasets on disk: what is there and what is missing.")
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
    args = parser.parse_args(argv)
    if args.command == "status":
        return status_main(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
