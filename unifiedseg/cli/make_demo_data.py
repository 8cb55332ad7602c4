"""`python tools/make_demo_data.py OUT`: write the generated demo datasets under OUT, which becomes a data root."""

from __future__ import annotations

import argparse
import sys

from unifiedseg.data.demo import (
    DEFAULT_NUM_TEST,
    DEFAULT_NUM_TRAIN,
    DEFAULT_NUM_VAL,
    DEFAULT_SIZE,
    DEMO_DATASET_SPECS,
    MARKER_NAME,
    DemoDataError,
    make_demo_data,
)
from unifiedseg.utils.fileio import format_bytes


def parse_size(text: str) -> tuple[int, int]:
    """`128x192` -> (128, 192): height x width."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in pixels, e.g. 128x192, got {text!r}")
    return int(parts[0]), int(parts[1])


def main(argv=None) -> int:
    datasets = ", ".join(f"{name} ({spec.role})" for name, spec in DEMO_DATASET_SPECS.items())
    parser = argparse.ArgumentParser(
        description=f"Write the procedurally drawn demo datasets ({datasets}) in their real on-disk layouts, "
                    f"with list files, under OUT/<dataset>/. OUT then serves as the data root "
                    f"(data.root / UNIFIEDSEG_DATA_ROOT). Output is identical for a seed; a second run with the "
                    f"same parameters finds OUT/{MARKER_NAME} and skips.",
        epilog="example: python tools/make_demo_data.py data/demo --num-train 300 --size 128x192")
    parser.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the scenes (default: 0)")
    parser.add_argument("--num-train", type=int, default=DEFAULT_NUM_TRAIN,
                        help=f"train images per dataset (default: {DEFAULT_NUM_TRAIN})")
    parser.add_argument("--num-val", type=int, default=DEFAULT_NUM_VAL,
                        help=f"val images per training dataset (default: {DEFAULT_NUM_VAL})")
    parser.add_argument("--num-test", type=int, default=DEFAULT_NUM_TEST,
                        help=f"val images of the held-out test dataset, its zero-shot evaluation split (default: {DEFAULT_NUM_TEST})")
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, metavar="HxW",
                        help=f"image size, height x width in pixels (default: {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if OUT already holds this data, and replace demo dataset folders "
                             "that this tool did not write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = make_demo_data(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                                 num_test=args.num_test, size=args.size, force=args.force, progress=not args.quiet)
    except (DemoDataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    h, w = summary["params"]["size"]
    if summary["skipped"]:
        print(f"{args.out} already holds complete demo data (version {summary['params']['version']}, seed "
              f"{summary['params']['seed']}, {h}x{w}); nothing to do (--force regenerates)")
        return 0
    if summary["note"]:
        print(summary["note"])
    for name, splits in summary["datasets"].items():
        counts = ", ".join(f"{n} {split}" for split, n in splits.items())
        print(f"{name:12s} {DEMO_DATASET_SPECS[name].role:5s} {counts}, {format_bytes(summary['bytes'][name])}")
    total = format_bytes(sum(summary["bytes"].values()))
    print(f"wrote {summary['num_images']} images of {h}x{w} ({total}) to {args.out} in {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
