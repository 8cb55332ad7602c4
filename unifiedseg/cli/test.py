"""`python tools/test.py --config FILE --checkpoint CKPT --datasets D1 D2 ... [--out DIR]`: evaluate a model
on datasets, each in its own label space (MSeg's zero-shot protocol for test datasets).

How each image is predicted (whole or sliding window, short side, crop, stride, scales, flip, tile
weights) comes from the config's `inference` section (config/mseg_zoo/*.yaml hold MSeg's), each flag
given on the command line replacing its value."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from unifiedseg.config import ConfigError, load_config
from unifiedseg.config.inference import MODES, WINDOWS
from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.labels import LABEL_MODES
from unifiedseg.data.listfile import ListFileError
from unifiedseg.data.registry import RegistryError
from unifiedseg.engine.checkpoint import CheckpointError
from unifiedseg.evaluation.metrics import format_metric
from unifiedseg.taxonomy import TaxonomyError

logger = logging.getLogger("unifiedseg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a trained model on datasets, each in its own label space: a test column of the "
                    "model's taxonomy zero-shot (universal probabilities summed into its classes), a training "
                    "dataset in the model's label space, an oracle's dataset in its own ids. Writes results.json, "
                    "results.md, results.csv and a confusion-matrix PNG per dataset.",
        epilog="example: python tools/test.py --config config/train/demo/unified.yaml "
               "--checkpoint work_dirs/demo/unified/checkpoints/final.pth --datasets demo-camvid demo-city "
               "--out work_dirs/demo/unified/test")
    parser.add_argument("--config", required=True, help="the training config of the checkpoint")
    parser.add_argument("--checkpoint", required=True, nargs="+", help="checkpoint(s); several = an ensemble")
    parser.add_argument("--datasets", required=True, nargs="+", metavar="NAME", help="registry datasets to evaluate")
    parser.add_argument("--out", default=None, help="output folder (default: WORK_DIR/test)")
    parser.add_argument("--split", default="val", help="which list of each dataset (default: val)")
    parser.add_argument("--label-source", choices=LABEL_MODES, default=None,
                        help="prepared: the files MSeg's preparation writes | raw: the publishers' files (default: the "
                             "config's data.label_source)")
    parser.add_argument("--root", default=None, help="data root (default: data.root of the config, else $UNIFIEDSEG_DATA_ROOT)")
    # The inference settings default to the config's `inference` section (unifiedseg/config/inference.py).
    parser.add_argument("--mode", default=None, choices=MODES,
                        help="whole image or sliding window (default: inference.mode of the config, whole)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize the short side first (MSeg: 480/720/1080; default: inference.short_side)")
    parser.add_argument("--crop-size", type=int, default=None,
                        help="sliding-window crop (default: inference.crop_size, else the training crop)")
    parser.add_argument("--stride", type=int, default=None,
                        help="sliding-window stride (default: inference.stride, else 2/3 of the crop)")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="multi-scale test, e.g. 0.5 0.75 1.0 1.25 1.5 1.75 (costs one pass per scale; "
                             "default: inference.scales, [1.0])")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="also average horizontally flipped passes (2x cost; default: inference.flip)")
    parser.add_argument("--window", default=None, choices=WINDOWS,
                        help="tile blending: hann, or uniform as MSeg (default: inference.window)")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count unreadable samples instead of stopping")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate at most this many images per dataset")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = load_config(args.config)
        results = run(cfg, args)
    except (ConfigError, CheckpointError, TaxonomyError, RegistryError, ListFileError, BadSampleError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for result in results:
        extra = f", {len(result.skipped)} skipped" if result.skipped else ""
        print(f"{result.name:<24} {result.space:<14} mIoU {format_metric(result.miou()):>5}  ({result.images} images{extra})")
    return 0


def run(cfg, args) -> list:
    """Evaluate every dataset of `args`; returns the DatasetResults (and writes the files)."""
    from unifiedseg.config.builders import training_converter
    from unifiedseg.data.labels import build_label_mapper, read_entries
    from unifiedseg.data.registry import DatasetRegistry, resolve_data_root
    from unifiedseg.evaluation.evaluate import evaluate_dataset, write_results
    from unifiedseg.inference import Predictor
    from unifiedseg.taxonomy import TaxonomyTable

    converter = training_converter(cfg)
    test_columns = TaxonomyTable.load(cfg.taxonomy.tsv).test_datasets if cfg.taxonomy.kind != "oracle" \
        else list(cfg.data.train_datasets)
    registry = DatasetRegistry.load(extra_files=list(cfg.data.registry_files))
    root = resolve_data_root(args.root or cfg.data.root)
    label_source = args.label_source or cfg.data.label_source
    out = Path(args.out or Path(cfg.work_dir) / "test")
    results = []
    for name in args.datasets:
        info = registry.get(name)
        if name in test_columns:
            output, mapper_converter, space = name, None, "test classes" if cfg.taxonomy.kind != "oracle" else "oracle"
        elif name in converter.train_datasets:
            output, mapper_converter, space = None, converter, converter.kind
        else:
            raise ValueError(f"dataset {name!r} is neither a test column of taxonomy {cfg.taxonomy.tsv} "
                             f"({', '.join(test_columns)}) nor a training dataset of this model "
                             f"({', '.join(converter.train_datasets)})")
        predictor = Predictor(cfg, args.checkpoint, device=args.device, mode=args.mode, short_side=args.short_side,
                              crop_size=args.crop_size, stride=args.stride, scales=args.scales, flip=args.flip,
                              window=args.window, output_dataset=output)
        entries = read_entries(info, args.split, root, label_source)
        result = evaluate_dataset(name, entries, build_label_mapper(info, mapper_converter, mode=label_source,
                                                                    data_root=root),
                                  lambda image: predictor.predict(image).labels, predictor.class_names, space=space,
                                  skip_bad=args.skip_bad, max_images=args.max_images)
        if space not in ("test classes", "oracle"):  # score only the classes this dataset can label
            result.scored_classes = converter.labelable_classes(name)
        results.append(result)
    meta = {"config": str(args.config) if hasattr(args, "config") else "", "checkpoint": ", ".join(args.checkpoint),
            "taxonomy_kind": cfg.taxonomy.kind, "taxonomy_fingerprint": converter.fingerprint(),
            **dataclasses.asdict(predictor.settings), "split": args.split}
    write_results(out, results, meta)
    try:
        from unifiedseg.drawing import confusion_png
    except ImportError:  # the drawing package (OpenCV) is optional for scoring
        confusion_png = None
    if confusion_png is not None:
        for result in results:
            confusion_png(out / f"confusion_{result.name}.png", result.matrix.matrix.numpy(), result.class_names)
    print(f"results in {out}/results.md (.json, .csv)")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
