"""`python tools/verify_dataset.py --dataset NAME --split train --root DIR`: check a whole list up front."""

from __future__ import annotations

import argparse
import sys

from unifiedseg.cli.common import add_dataset_arguments, load_registry_and_root
from unifiedseg.data.labels import build_label_mapper, read_entries, read_plan
from unifiedseg.data.listfile import ListFileError
from unifiedseg.data.registry import RegistryError
from unifiedseg.data.splits import resolve_split
from unifiedseg.data.verify import verify_samples
from unifiedseg.taxonomy.table import TaxonomyError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Check every sample of a dataset list: files exist and decode completely, image and "
                    "label sizes agree, label ids are within the dataset's taxonomy. Reports every bad "
                    "line; exits 1 if any.",
        epilog="example: python tools/verify_dataset.py --dataset demo-city --split train --root data/demo")
    add_dataset_arguments(parser)
    parser.add_argument("--workers", type=int, default=0, help="decode in this many processes (default: 0, in this one)")
    args = parser.parse_args(argv)
    try:
        registry, root = load_registry_and_root(args)
        info = registry.get(args.dataset)
        list_path = resolve_split(read_plan(info, args.label_source).list_info, args.split, root).path
        # test lists may give images alone
        entries = read_entries(info, args.split, root, args.label_source, require_labels=False)
        mapper = build_label_mapper(info, mode=args.label_source, data_root=root)
    except (RegistryError, ListFileError, TaxonomyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problems = verify_samples(entries, mapper, workers=args.workers)
    for problem in problems:
        print(f"{list_path}:{problem}")
    print(f"{info.name} {args.split}: {len(entries)} samples, {len(entries) - len(problems)} good, {len(problems)} bad")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
