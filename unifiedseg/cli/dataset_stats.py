"""`python tools/dataset_stats.py --datasets A B --taxonomy TSV --out stats.json`: class statistics and weights."""

from __future__ import annotations

import argparse
import json
import sys

from unifiedseg.cli.common import add_dataset_arguments, load_registry_and_root
from unifiedseg.data.labels import build_label_mapper
from unifiedseg.data.listfile import ListFileError, read_list
from unifiedseg.data.registry import RegistryError
from unifiedseg.data.stats import WEIGHT_METHODS, class_weights, dataset_stats, unified_stats
from unifiedseg.taxonomy import TaxonomyConverter, TaxonomyError
from unifiedseg.utils.fileio import atomic_write_text


def _print_table(title: str, stats, top: int) -> None:
    print(f"\n{title}: {int(stats.pixels.sum())} labelled pixels, {stats.ignored_pixels} ignored"
          + (f", {stats.unassigned_pixels} one-to-many" if stats.unassigned_pixels else ""))
    order = stats.frequency().argsort()[::-1][:top]
    for i in order:
        print(f"  {stats.class_names[i]:<28} {stats.frequency()[i]:8.4%} {int(stats.images[i]):7d} images")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Pixel frequency and images per class, per dataset and in the unified space, and class "
                    "weights for a class-balanced loss (inverse and median frequency), written as JSON.",
        epilog="example: python tools/dataset_stats.py --datasets demo-city demo-ade --taxonomy demo "
               "--root data/demo --out work_dirs/demo_stats.json")
    add_dataset_arguments(parser, many=True)
    parser.add_argument("--taxonomy", default="mseg", help="unified taxonomy TSV: shipped name or path (default: mseg)")
    parser.add_argument("--out", required=True, help="JSON file to write (per dataset, unified, class_weight)")
    parser.add_argument("--top", type=int, default=10, help="classes shown per table (default: 10)")
    args = parser.parse_args(argv)
    try:
        registry, root = load_registry_and_root(args)
        converter = TaxonomyConverter.from_tsv(args.taxonomy, train_datasets=args.datasets, test_datasets=[])
        per_dataset = {}
        for name in args.datasets:
            info = registry.get(name)
            entries = read_list(info.list_path(args.split, root), info.folder(root))
            per_dataset[name] = dataset_stats(entries, build_label_mapper(info), converter.dataset_class_names(name))
    except (RegistryError, ListFileError, TaxonomyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    unified = unified_stats(per_dataset, converter)
    result = {
        "split": args.split,
        "taxonomy": converter.source,
        "fingerprint": converter.fingerprint(),
        "datasets": {name: stats.to_dict() for name, stats in per_dataset.items()},
        "unified": unified.to_dict(),
        "class_weight": {m: [round(float(w), 6) for w in class_weights(unified, m)] for m in WEIGHT_METHODS},
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    for name, stats in per_dataset.items():
        _print_table(name, stats, args.top)
    _print_table("unified", unified, args.top)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
