"""The trainer and its hooks on a toy model (no data, no network): after_train in a finally, hook states
by class name, the hook-type registry, and losses averaged over ranks (one process, and two gloo
processes)."""

import json
import time
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from unifiedseg.engine.distributed import average_across_ranks
from unifiedseg.engine.hooks import (HOOK_TYPES, CheckpointHook, LoggingHook, TimeLimitHook, ValidationHook, build_hook,
                                     build_hooks, legacy_hook_states, register_hook_type)
from checkpoint_fixtures import StepCount
from unifiedseg.engine.trainer import Hook, Trainer


class ToyModel(nn.Module):
    """One weight; its loss is (w - target)^2, named as a Segmentor names its losses."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, batch, dataset_losses=False):
        loss = (self.weight - batch["target"]) ** 2
        out = {"loss_toy": loss, "predictions": torch.zeros(1, 2, 2, dtype=torch.long),
               "labels": torch.zeros(1, 2, 2, dtype=torch.long)}
        if dataset_losses:
            out["dataset_losses"] = {"toy": float(loss.detach())}
        return out


def batches(fail_at=None):
    step = 0
    while True:
        step += 1
        if step == fail_at:
            raise RuntimeError(f"batch {step} is broken")
        yield {"target": torch.tensor(1.0), "dataset": ["toy"], "bad_samples": []}


def toy_trainer(hooks, max_iters=4, fail_at=None):
    model = ToyModel()
    return Trainer(model=model, batches=batches(fail_at), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   max_iters=max_iters, hooks=hooks)


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def before_train(self, trainer):
        self.calls.append("before_train")

    def after_step(self, trainer):
        self.calls.append(f"after_step {trainer.iter}")

    def after_train(self, trainer):
        self.calls.append(f"after_train {type(trainer.exception).__name__ if trainer.exception else 'ok'}")


def test_after_train_runs_when_a_step_raises_and_validation_and_checkpoints_stay_away(tmp_path):
    recorder = Recorder()

    def never(*args):
        raise AssertionError("must not run after a failure")

    hooks = [ValidationHook(evaluate=never, interval=0),
             CheckpointHook(work_dir=tmp_path, interval=0, keep=1, state=never, is_main=True), recorder]
    trainer = toy_trainer(hooks, max_iters=4, fail_at=3)
    with pytest.raises(RuntimeError, match="batch 3 is broken"):
        trainer.train()
    assert recorder.calls == ["before_train", "after_step 1", "after_step 2", "after_train RuntimeError"]
    assert isinstance(trainer.exception, RuntimeError) and not (tmp_path / "checkpoints").exists()


def test_every_after_train_runs_even_when_one_fails():
    class Broken(Hook):
        def after_train(self, trainer):
            raise OSError("disk full")

    recorder = Recorder()
    trainer = toy_trainer([Broken(), recorder], max_iters=2)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    assert recorder.calls[-1] == "after_train ok"


def test_hook_states_round_trip_by_class_name():
    counter = StepCount()
    trainer = toy_trainer([counter, Recorder()], max_iters=3)
    trainer.train()
    state = trainer.state_dict()
    assert state["iteration"] == 3 and state["hooks"] == {"StepCount": {"steps": 3}}
    assert set(state["counters"]) == {"nonfinite_total", "nonfinite_in_a_row", "overflow_total", "bad_sample_total"}
    resumed_counter = StepCount()
    resumed = toy_trainer([resumed_counter], max_iters=5)
    resumed.load_state_dict(state)
    assert resumed.iter == resumed.start_iter == 3 and resumed_counter.steps == 3
    resumed.train()
    assert resumed_counter.steps == 5
    # a checkpoint from before hooks had state: the schedule and SWA were top-level entries
    assert legacy_hook_states({"scheduler": {"last_epoch": 2}, "swa": None}) == {"LRScheduleHook": {"last_epoch": 2}}
    with pytest.raises(ValueError, match="several are of class StepCount"):
        toy_trainer([StepCount(), StepCount()])


def test_the_logging_hook_writes_interval_averages_and_asks_for_dataset_losses_on_log_steps(tmp_path):
    logging_hook = LoggingHook(work_dir=tmp_path, interval=2, tensorboard=False)
    asked = []

    class Watch(Hook):
        def after_step(self, trainer):
            asked.append(trainer.forward_kwargs.get("dataset_losses"))

    toy_trainer([Watch(), logging_hook], max_iters=3).train()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[0] == {"event": "start", "iter": 0, "time": pytest.approx(time.time(), abs=60)}
    records = records[1:]
    assert [r["iter"] for r in records] == [2, 3] and asked == [False, True, True]
    # steps 1 and 2 at lr 0.1 from w = 0 towards 1: losses 1 and 0.64, averaged
    assert records[0]["loss_toy"] == pytest.approx((1 + 0.64) / 2) and "loss/toy" in records[0]


# ---- hook types from a config ----------------------------------------------------------------------


@register_hook_type
class TaggedTestHook(Hook):
    """Registered for the tests: keeps its tag."""

    def __init__(self, tag: str, times: int = 1):
        self.tag, self.times = tag, times


def test_the_registry_builds_config_hooks_and_names_what_is_valid():
    hooks = build_hooks([{"type": "TaggedTestHook", "tag": "a"}, {"type": "TimeLimitHook", "seconds": 60}])
    assert isinstance(hooks[0], TaggedTestHook) and hooks[0].tag == "a" and isinstance(hooks[1], TimeLimitHook)
    assert build_hooks(None) == []
    with pytest.raises(ValueError, match=r"train.hooks\[0\].type: unknown hook type 'TaggedTestHok'; did you mean "
                                         r"'TaggedTestHook'\?; registered hook types: .*TimeLimitHook"):
        build_hooks([{"type": "TaggedTestHok"}])
    with pytest.raises(ValueError, match=r"TaggedTestHook does not take these arguments .*; it takes: tag, times"):
        build_hook({"type": "TaggedTestHook", "tga": "a"})
    with pytest.raises(ValueError, match="must be a mapping with a `type` key"):
        build_hook({"tag": "a"})
    with pytest.raises(ValueError, match="'TaggedTestHook' is already registered"):
        register_hook_type(type("TaggedTestHook", (Hook,), {}))
    assert HOOK_TYPES["TaggedTestHook"] is TaggedTestHook


def test_load_config_refuses_a_bad_hook_before_anything_is_built(monkeypatch, capsys, tmp_path):
    from pathlib import Path

    import unifiedseg.engine.launch
    from unifiedseg.cli import train as train_cli

    def refuse(cfg, extra_hooks=()):
        raise AssertionError("training started with a bad train.hooks entry")

    monkeypatch.setattr(unifiedseg.engine.launch, "run_training", refuse)
    config = Path(__file__).resolve().parent.parent / "config" / "train" / "demo" / "unified.yaml"
    base = [f"--config={config}", f"work_dir={tmp_path}"]
    assert train_cli.main(base + ["train.hooks=[{type: TimeLimtHook, seconds: 5}]"]) == 2
    assert "train.hooks[0].type: unknown hook type 'TimeLimtHook'; did you mean 'TimeLimitHook'?" in capsys.readouterr().err
    assert train_cli.main(base + ["train.hooks=[{type: TimeLimitHook, secs: 5}]"]) == 2
    assert "train.hooks[0]: TimeLimitHook does not take these arguments" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_the_time_limit_hook_asks_the_trainer_to_stop():
    trainer = toy_trainer([TimeLimitHook(seconds=1e-9)], max_iters=5)
    trainer.train()
    assert trainer.iter == 1 and trainer.stop_requested


# ---- losses averaged over ranks --------------------------------------------------------------------


def test_one_process_logs_its_own_values():
    assert average_across_ranks({"loss": 0.5, "loss/a": 1.0}) == {"loss": 0.5, "loss/a": 1.0}


def _average_on_rank(rank, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        values = {"loss": 1.0 + 2 * rank, f"loss/dataset{rank}": 10.0 * (rank + 1), "loss/shared": float(rank)}
        results[rank] = average_across_ranks(values)
    finally:
        dist.destroy_process_group()


def on_two_gloo_ranks(function) -> dict:
    """{rank: what function(rank, port, results) stored} after running it in two gloo processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(function, args=(port, results), nprocs=2, join=True)
        return dict(results)


def test_two_gloo_processes_log_the_mean_over_the_ranks_that_have_each_value():
    results = on_two_gloo_ranks(_average_on_rank)
    expected = {"loss": 2.0, "loss/dataset0": 10.0, "loss/shared": 0.5, "loss/dataset1": 20.0}
    assert results[0] == results[1] == expected


def _training_miou_on_rank(rank, port, results):
    from unifiedseg.engine.hooks import TrainingMIoUHook

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        hook = TrainingMIoUHook(num_classes=2, ignore_index=255)

        class Result:  # rank 0 saw dataset a only; rank 1 saw a and b
            outputs = ([(["a"], {"predictions": torch.tensor([[0, 0]]), "labels": torch.tensor([[0, 1]])})]
                       if rank == 0 else
                       [(["a", "b"], {"predictions": torch.tensor([[1, 1], [1, 255]]),
                                      "labels": torch.tensor([[1, 1], [1, 255]])})])

        class FakeTrainer:
            result = Result()

        hook.after_step(FakeTrainer())
        results[rank] = hook.log_record(FakeTrainer())
    finally:
        dist.destroy_process_group()


def test_training_miou_counts_the_predictions_of_every_rank():
    results = on_two_gloo_ranks(_training_miou_on_rank)
    # a, summed: label 0 -> 0 once; label 1 -> 0 once, -> 1 twice: IoU 0 = 1/2, IoU 1 = 2/3
    expected = {"train_miou": {"a": pytest.approx((1 / 2 + 2 / 3) / 2), "b": 1.0}}
    assert results[0] == results[1] == expected


def test_validation_and_training_miou_hooks_keep_their_state():
    import torch

    from unifiedseg.engine.hooks import TrainingMIoUHook, ValidationHook

    validation = ValidationHook(evaluate=lambda: {}, interval=0)
    validation.last_metrics = {"iter": 4, "miou": 0.5, "datasets": {}}
    restored = ValidationHook(evaluate=lambda: {}, interval=0)
    restored.load_state_dict(validation.state_dict())
    assert restored.last_metrics == validation.last_metrics
    counting = TrainingMIoUHook(num_classes=3, ignore_index=255)

    class Result:
        outputs = [(["a"], {"predictions": torch.tensor([[[0, 1], [2, 2]]]), "labels": torch.tensor([[[0, 1], [1, 255]]])})]

    class FakeTrainer:
        result = Result()

    counting.after_step(FakeTrainer())
    again = TrainingMIoUHook(num_classes=3, ignore_index=255)
    again.load_state_dict(counting.state_dict())
    assert torch.equal(again.matrices["a"].matrix, counting.matrices["a"].matrix)
    assert again.log_record(FakeTrainer()) == counting.log_record(FakeTrainer())


def test_a_stops_checkpoint_counts_among_the_kept_ones(tmp_path):
    class StopAt3(Hook):
        def after_step(self, trainer):
            trainer.stop_requested = trainer.stop_requested or trainer.iter == 3

    checkpoints = CheckpointHook(work_dir=tmp_path, interval=2, keep=1, state=lambda trainer: {}, is_main=True)
    toy_trainer([StopAt3(), checkpoints], max_iters=10).train()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_00000003.pth"]
