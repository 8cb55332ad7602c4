"""For tests that run a model: an untrained checkpoint of a config's model, as training would save it
(loadable like a trained one, seconds faster to make), and a fixture that runs small models on one thread."""

from pathlib import Path

import pytest
import torch

from unifiedseg.config import load_config
from unifiedseg.engine.checkpoint import identity_entries, save_checkpoint
from unifiedseg.config.builders import build_model_for, training_converter
from unifiedseg.engine.trainer import Hook

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "train" / "demo" / "unified.yaml"


def write_untrained_checkpoint(path, config=DEMO_CONFIG, overrides=(), seed: int = 0) -> Path:
    """Save the freshly initialised (seeded) model of `config` with the taxonomy identity training stores."""
    cfg = load_config(config, list(overrides))
    converter = training_converter(cfg)
    torch.manual_seed(seed)
    model, model_cfg = build_model_for(cfg, converter.num_classes)
    save_checkpoint(path, {
        "iteration": 0, "model": model.state_dict(), **identity_entries(converter, model_cfg),
    })
    return Path(path)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These inputs are tiny: one thread is as fast as two, and does not stall spin-waiting for a second
    core when other processes share the machine (two threads then made each forward ~100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StepCount(Hook):
    """A hook with state: the steps it has seen, carried over a resume in the checkpoint's `hooks`."""

    def __init__(self):
        self.steps = 0

    def after_step(self, trainer):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]
