"""`python tools/dataset_stats.py --datasets A B --taxonomy TSV --out stats.json`: class statistics and weights.

Every registered dataset works, training or test: statistics are counted in the dataset's own taxonomy;
the unified table and the class weights cover the datasets that are training columns of the taxonomy."""

from __future__ import annotations

import argparse
import json
import sys

from unifiedseg.cli.common import add_dataset_arguments, load_registry_and_root
from unifiedseg.constants import WEIGHT_METHODS
from unifiedseg.data.labels import build_label_mapper, read_entries
from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.listfile import ListFileError
from unifiedseg.data.registry import RegistryError
from unifiedseg.data.stats import class_weights, dataset_stats, unified_stats
from unifiedseg.taxonomy import TaxonomyConverter, TaxonomyError, TaxonomyTable
from unifiedseg.taxonomy.table import dataset_names
from unifiedseg.utils.fileio import atomic_write_text


def _print_table(title: str, stats, top: int) -> None:
    print(f"\n{title}: {int(stats.pixels.sum())} labelled pixels, {stats.ignored_pixels} ignored"
          + (f", {stats.unassigned_pixels} one-to-many" if stats.unassigned_pixels else ""))
    order = stats.frequency().argsort()[::-1][:top]
    for i in order:
        print(f"  {stats.class_names[i]:<28} {stats.frequency()[i]:8.4%} {int(stats.images[i]):7d} images")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Pixel frequency and images per class, per dataset (in its own taxonomy; test datasets too) "
                    "and in the unified space (the taxonomy's training datasets), and class weights for a "
                    "class-balanced loss (inverse and median frequency), written as JSON.",
        epilog="example: python tools/dataset_stats.py --datasets demo-city demo-ade --taxonomy demo "
               "--root data/demo --out work_dirs/demo_stats.json")
    add_dataset_arguments(parser, many=True)
    parser.add_argument("--taxonomy", default="mseg", help="unified taxonomy TSV: shipped name or path (default: mseg)")
    parser.add_argument("--out", required=True, help="JSON file to write (per dataset, unified, class_weight)")
    parser.add_argument("--top", type=int, default=10, help="classes shown per table (default: 10)")
    args = parser.parse_args(argv)
    try:
        registry, root = load_registry_and_root(args)
        infos = [registry.get(name) for name in args.datasets]
        trained = [name for name in args.datasets if name in TaxonomyTable.load(args.taxonomy).train_datasets]
        converter = TaxonomyConverter.from_tsv(args.taxonomy, train_datasets=trained, test_datasets=[]) if trained else None
        per_dataset = {}
        for info in infos:
            entries = read_entries(info, args.split, root, args.label_source)
            names = converter.dataset_class_names(info.name) if info.name in trained else \
                dataset_names(info.name)
            per_dataset[info.name] = dataset_stats(entries, build_label_mapper(info, mode=args.label_source, data_root=root), names)
    except (RegistryError, ListFileError, TaxonomyError, BadSampleError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {"split": args.split, "datasets": {name: stats.to_dict() for name, stats in per_dataset.items()}}
    unified = None
    if converter is not None:
        unified = unified_stats({name: per_dataset[name] for name in trained}, converter)
        result.update({
            "taxonomy": converter.source,
            "fingerprint": converter.fingerprint(),
            "unified_datasets": trained,
            "unified": unified.to_dict(),
            "class_weight": {m: [round(float(w), 6) for w in class_weights(unified, m)] for m in WEIGHT_METHODS},
        })
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    for name, stats in per_dataset.items():
        _print_table(name, stats, args.top)
    if unified is not None:
        _print_table(f"unified ({', '.join(trained)})", unified, args.top)
    untrained = [name for name in args.datasets if name not in trained]
    if untrained:
        print(f"\nno unified table for {', '.join(untrained)}: not training columns of {args.taxonomy}")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
