"""`python tools/train.py --config FILE [--work-dir DIR] [key=value ...]`: train a model (one process, or DDP under torchrun)."""

from __future__ import annotations

import argparse
import sys

from unifiedseg.config import ConfigError, load_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a segmentation model on one or more datasets in a unified (or naive, or oracle) label "
                    "space. Runs as one process, or as DDP under torchrun (see tools/dist_train.sh). Resumes from "
                    "the latest checkpoint in the work dir by default (train.resume=auto).",
        epilog="examples:\n"
               "  python tools/train.py --config config/train/demo/unified.yaml\n"
               "  python tools/train.py --config config/train/1080/mseg.yaml data.root=/data/mseg train.amp=bf16\n"
               "  torchrun --nproc_per_node 8 tools/train.py --config config/train/1080/mseg.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (with _base_ inheritance)")
    parser.add_argument("--work-dir", default=None, help="output folder (overrides work_dir)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted config overrides, values in YAML, e.g. data.batch_size=4 train.max_iters=1000")
    args = parser.parse_args(argv)
    overrides = list(args.overrides) + ([f"work_dir={args.work_dir}"] if args.work_dir else [])
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from unifiedseg.engine.launch import run_training  # heavy imports after the config is known good
    from unifiedseg.engine.distributed import shutdown

    from unifiedseg.data.status import DataNotReadyError
    from unifiedseg.engine.trainer import TrainingError
    from unifiedseg.models import PretrainedLoadError

    try:
        run_training(cfg)
    except (ValueError, TrainingError, PretrainedLoadError, DataNotReadyError) as err:  # the project's errors for user mistakes; bugs keep their traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
