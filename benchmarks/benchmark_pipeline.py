"""`python benchmarks/benchmark_pipeline.py --root DIR --list FILE --resolution 1080 --dataset cityscapes-19 --num-crops N`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unifiedseg.data.dataset import SegmentationDataset
from unifiedseg.data.labels import build_label_mapper
from unifiedseg.data.listfile import ListFileError, read_list
from pipeline_bench import (CROP_FOR_RESOLUTION, limit_to_one_thread, time_decode_floor,
                                            time_fused, time_sequential, train_transform_for)
from unifiedseg.data.registry import DatasetRegistry, RegistryError
from unifiedseg.taxonomy import TaxonomyConverter, TaxonomyError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Training-pipeline throughput for one process on one core (cv2 and torch limited to one "
                    "thread): decode, label check and mapping to the unified taxonomy, full training transform. "
                    "Prints 'crops/s: X'.",
        epilog="example: python benchmarks/benchmark_pipeline.py --root /data/Cityscapes --list list/train.txt "
               "--resolution 1080 --dataset cityscapes-19 --num-crops 200")
    parser.add_argument("--root", required=True, help="the dataset's folder; list paths are relative to it")
    parser.add_argument("--list", required=True, help="list file (MSeg format), relative to --root or absolute")
    parser.add_argument("--resolution", type=int, default=1080, choices=sorted(CROP_FOR_RESOLUTION),
                        help="MSeg training resolution (short side); crop 473/593/713")
    parser.add_argument("--dataset", required=True, help="registry dataset whose label release the files are in")
    parser.add_argument("--taxonomy", default="mseg", help="unified taxonomy TSV (default: mseg)")
    parser.add_argument("--num-crops", type=int, default=100)
    parser.add_argument("--no-reduced-decoding", action="store_true", help="always decode JPEGs at full size")
    parser.add_argument("--compare", action="store_true", help="also time the sequential reference and decoding floor")
    args = parser.parse_args(argv)
    limit_to_one_thread()
    try:
        info = DatasetRegistry.load().get(args.dataset)
        converter = TaxonomyConverter.from_tsv(args.taxonomy, train_datasets=[args.dataset], test_datasets=[])
        list_path = Path(args.list) if Path(args.list).is_absolute() else Path(args.root) / args.list
        dataset = SegmentationDataset(name=info.name, entries=read_list(list_path, Path(args.root)),
                                      label_mapper=build_label_mapper(info, converter),
                                      transform=train_transform_for(args.resolution),
                                      reduced_decoding=not args.no_reduced_decoding)
    except (RegistryError, ListFileError, TaxonomyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    fused = time_fused(dataset, args.num_crops)
    if args.compare:
        sequential = time_sequential(dataset, args.num_crops)
        image, label = time_decode_floor(dataset, args.num_crops)
        print(f"sequential reference crops/s: {sequential.per_second:.1f} ({sequential.ms_each:.1f} ms each)")
        print(f"decode floor: JPEG {image.ms_each:.1f} ms + PNG {label.ms_each:.1f} ms per frame "
              f"= {1000 / (image.ms_each + label.ms_each):.1f} frames/s")
        print(f"speed-up over the sequential reference: {fused.per_second / sequential.per_second:.2f}x")
    print(f"crops/s: {fused.per_second:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
