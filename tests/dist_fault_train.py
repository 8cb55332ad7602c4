"""tools/train.py with fault hooks, for tests/test_dist_faults.py (run under torchrun): `KillRankAt`
kills one rank with SIGKILL after an iteration, once (a marker file stops a restarted job from doing it
again); `RaiseOnRank` makes one rank fail with a TrainingError."""

import os
import signal
import sys
from pathlib import Path

from unifiedseg.cli.train import main
from unifiedseg.engine.hooks import register_hook_type
from unifiedseg.engine.trainer import Hook, TrainingError


def this_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@register_hook_type
class KillRankAt(Hook):
    def __init__(self, rank: int, iteration: int, marker: str):
        self.rank, self.iteration, self.marker = rank, iteration, Path(marker)

    def after_step(self, trainer):
        if trainer.iter == self.iteration and this_rank() == self.rank and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


@register_hook_type
class RaiseOnRank(Hook):
    def __init__(self, rank: int, iteration: int):
        self.rank, self.iteration = rank, iteration

    def after_step(self, trainer):
        if trainer.iter == self.iteration and this_rank() == self.rank:
            raise TrainingError(f"rank {self.rank} fails on purpose after iteration {self.iteration}")


if __name__ == "__main__":
    sys.exit(main())
