"""Throughput of TaxonomyConverter.to_universal on a 1920x1080 uint8 label map, one core.

Run: python benchmarks/taxonomy.py [--repeats N]. Goal: at least 1 GB/s per core.
"""

import argparse
import platform
import time

import cv2
import numpy as np
import torch

from unifiedseg.taxonomy import TaxonomyConverter


def throughput(fn, nbytes: int, repeats: int) -> float:
    fn()  # warm-up: builds the lookup table
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per case; the best is reported")
    parser.add_argument("--dataset", default="cityscapes-19", help="MSeg training dataset whose ids are mapped")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    converter = TaxonomyConverter.from_tsv("mseg")
    n = len(converter.dataset_class_names(args.dataset))
    label = np.random.default_rng(0).integers(0, n, size=(1080, 1920), dtype=np.uint8)
    cases = {
        "numpy uint8": lambda: converter.to_universal(label, args.dataset),
        "numpy uint8 strict": lambda: converter.to_universal(label, args.dataset, strict=True),
        "torch uint8 (cpu)": lambda: converter.to_universal(torch.from_numpy(label), args.dataset),
        "numpy int64": lambda: converter.to_universal(label.astype(np.int64), args.dataset),
    }
    print(f"to_universal on a 1920x1080 label map ({args.dataset}), 1 thread, {platform.processor() or platform.machine()}")
    for name, fn in cases.items():
        # throughput in input-label-map bytes at uint8 (2.07 MB per map), whatever the dtype
        print(f"{name:>20}: {throughput(fn, label.nbytes, args.repeats):6.2f} GB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
