"""`python tools/train.py --config FILE [--work-dir DIR] [key=value ...]`: train a model (one process, or DDP under
torchrun). Exits FINISHED (0), STOPPED (75: resumable), ERROR (1) or USAGE (2): unifiedseg/cli/exit_codes.py."""

from __future__ import annotations

import argparse
import sys

from unifiedseg.cli import exit_codes
from unifiedseg.config import ConfigError, load_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a segmentation model on one or more datasets in a unified (or naive, or oracle) label "
                    "space. Runs as one process, or as DDP under torchrun (see tools/dist_train.sh). Resumes from "
                    "the latest checkpoint in the work dir by default (train.resume=auto).",
        epilog="examples:\n"
               "  python tools/train.py --config config/train/demo/unified.yaml\n"
               "  python tools/train.py --config config/train/1080/mseg.yaml data.root=/data/mseg train.amp=bf16\n"
               "  torchrun --nproc_per_node 8 tools/train.py --config config/train/1080/mseg.yaml\n"
               f"exit codes: {exit_codes.FINISHED} finished, {exit_codes.STOPPED} stopped by a signal (run the same "
               f"command to resume), {exit_codes.ERROR} failed, {exit_codes.USAGE} bad command line or config",
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
        return exit_codes.USAGE
    from unifiedseg.engine.launch import launch_training  # heavy imports after the config is known good
    from unifiedseg.engine.distributed import PeerFailedError, is_peer_failure, shutdown

    from unifiedseg.data.status import DataNotReadyError
    from unifiedseg.engine.trainer import TrainingError
    from unifiedseg.models import PretrainedLoadError
    from unifiedseg.utils.fileio import OUT_OF_SPACE, os_error_message
    from unifiedseg.utils.lock import WorkDirLockedError

    try:
        outcome = launch_training(cfg)
    except (ValueError, TrainingError, PretrainedLoadError, DataNotReadyError, WorkDirLockedError) as err:
        # the project's errors for user mistakes; bugs keep their traceback
        print(f"error: {err}", file=sys.stderr)
        return exit_codes.ERROR
    except KeyboardInterrupt:
        print(f"error: stopped at once by a second signal; run the same command to resume from the last checkpoint "
              f"in {cfg.work_dir}/checkpoints", file=sys.stderr)
        return exit_codes.STOPPED
    except OSError as err:
        if err.errno not in OUT_OF_SPACE:
            raise
        # a DiskSpaceError names the folder and the space needed; a bare ENOSPC (a log line) its file
        print(f"error: {os_error_message(err)}; then run the same command to resume", file=sys.stderr)
        return exit_codes.ERROR
    except RuntimeError as err:
        if not is_peer_failure(err):
            raise
        # rank 0's error, handed over (PeerFailedError); else a collective broke because a rank has gone
        print(f"error: {err}" if isinstance(err, PeerFailedError) else
              "error: another process of this job failed or was killed (its message is above); run the same "
              "command to resume from the last checkpoint", file=sys.stderr)
        return exit_codes.ERROR
    finally:
        shutdown()
    return exit_codes.FINISHED if outcome.finished else exit_codes.STOPPED


if __name__ == "__main__":
    raise SystemExit(main())
