"""End-to-end training on the demo data (CPU): a few iterations, outputs, resume equivalence (hook states
carried in the checkpoint; a checkpoint of the older layout too), SIGTERM, a user hook from the config,
non-finite losses, load_from, taxonomy mismatch, and DDP (2 gloo processes) against one process."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unifiedseg.config import ConfigError, load_config
from unifiedseg.engine.checkpoint import CheckpointError, load_checkpoint
from unifiedseg.engine.launch import run_training
from unifiedseg.engine.hooks import register_hook_type
from checkpoint_fixtures import StepCount
from unifiedseg.engine.trainer import Hook, TrainingError
from unifiedseg.models import Segmentor

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "train" / "demo" / "unified.yaml"


def tiny_overrides(demo_root, work_dir, **extra):
    """The demo config shrunk to seconds: 64 px crops, batch 2, no loader workers, 2 val images."""
    values = {
        "work_dir": str(work_dir), "data.root": str(demo_root), "data.generate_demo": "false",
        "data.batch_size": 2, "data.num_workers": 0, "data.augmentation.short_side": 64,
        "data.augmentation.crop_size": "[64, 64]", "data.val.max_images": 2, "data.val.interval": 0,
        "train.max_iters": 4, "train.log_interval": 1, "train.checkpoint_interval": 2,
        "schedule.warmup_iters": 2,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def train(demo_root, work_dir, hooks=(), **extra):
    cfg = load_config(DEMO_CONFIG, tiny_overrides(demo_root, work_dir, **extra))
    return run_training(cfg, extra_hooks=hooks)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (a fixed one collides with other test runs on the machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_records(work_dir):
    lines = (Path(work_dir) / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def loss_by_iter(work_dir):
    return {r["iter"]: r["loss"] for r in log_records(work_dir) if "loss" in r}


def test_a_short_run_writes_checkpoints_metrics_logs_and_the_resolved_config(demo_root, tmp_path):
    metrics = train(demo_root, tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["final.pth", "iter_00000002.pth"]
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["iteration"] == 4 and set(final["datasets"]) == {"demo-city", "demo-ade"}
    assert 0 <= final["miou"] <= 1 and final["miou"] == metrics["miou"]
    records = log_records(run)
    assert records[0]["event"] == "start" and records[0]["iter"] == 0
    assert [r["iter"] for r in records if "loss" in r] == [1, 2, 3, 4]
    first = records[1]
    assert {"loss_ce", "loss/demo-city", "loss/demo-ade", "lr", "data_time", "step_time", "train_miou",
            "nonfinite_skipped", "fp16_overflow_skipped", "bad_samples_skipped"} <= set(first)
    assert load_config(run / "config.yaml").train.max_iters == 4  # the resolved config reloads
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    state = load_checkpoint(run / "checkpoints" / "final.pth")
    assert state["iteration"] == 4 and state["taxonomy"]["class_names"][:2] == ["road", "sidewalk"]


class CurrentStep(Hook):
    """Keeps the number the running step will have."""

    step = None

    def before_step(self, trainer):
        CurrentStep.step = trainer.iter + 1


def test_per_dataset_losses_are_computed_on_logged_steps_only(demo_root, tmp_path, monkeypatch):
    # They evaluate the loss set again per dataset (for logging): not on the steps nobody logs.
    steps = []
    original = Segmentor.dataset_losses

    def counted(self, *args):
        steps.append(CurrentStep.step)
        return original(self, *args)

    monkeypatch.setattr(Segmentor, "dataset_losses", counted)
    train(demo_root, tmp_path / "run", hooks=[CurrentStep()],
          **{"train.log_interval": 3, "train.checkpoint_interval": 0})
    assert steps == [3, 4]  # every third step, and the last
    records = [r for r in log_records(tmp_path / "run") if "loss" in r]
    assert [r["iter"] for r in records] == [3, 4] and all(any(k.startswith("loss/") for k in r) for r in records)


class SignalAt(Hook):
    """Sends this process a signal after the given iteration, as a scheduler or Ctrl-C would."""

    def __init__(self, iteration, signum=signal.SIGTERM):
        self.iteration, self.signum = iteration, signum

    def after_step(self, trainer):
        if trainer.iter == self.iteration:
            os.kill(os.getpid(), self.signum)


def test_sigterm_saves_a_checkpoint_and_resuming_reproduces_the_uninterrupted_run(demo_root, tmp_path):
    train(demo_root, tmp_path / "straight", **{"train.max_iters": 6})
    assert train(demo_root, tmp_path / "resumed", hooks=[SignalAt(3), StepCount()], **{"train.max_iters": 6}) == {}
    saved = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert saved == ["iter_00000002.pth", "iter_00000003.pth"]  # the signal's checkpoint at iteration 3
    assert not (tmp_path / "resumed" / "final_metrics.json").exists()
    interrupted = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "iter_00000003.pth")
    assert interrupted["hooks"]["StepCount"] == {"steps": 3} and interrupted["hooks"]["LRScheduleHook"]["last_epoch"] == 3
    assert "scheduler" not in interrupted  # the schedule is the LRScheduleHook's state now
    counter = StepCount()
    train(demo_root, tmp_path / "resumed", hooks=[counter], **{"train.max_iters": 6})  # resume: auto
    assert counter.steps == 6  # 3 restored from the checkpoint, 3 more
    straight, resumed = loss_by_iter(tmp_path / "straight"), loss_by_iter(tmp_path / "resumed")
    assert [resumed[i] for i in range(1, 7)] == [straight[i] for i in range(1, 7)]  # exactly equal
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "final.pth")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    events = [r for r in log_records(tmp_path / "resumed") if "event" in r]
    assert [(e["event"], e["iter"]) for e in events] == [("start", 0), ("resume", 3)]
    assert [r["iter"] for r in log_records(tmp_path / "resumed") if "loss" in r] == [1, 2, 3, 4, 5, 6]  # once each

    # a checkpoint written before hooks had state (schedule and SWA at the top level) resumes the same way
    legacy = dict(interrupted)
    legacy["scheduler"], legacy["swa"] = legacy.pop("hooks")["LRScheduleHook"], None
    torch.save(legacy, tmp_path / "legacy.pth")
    train(demo_root, tmp_path / "from_legacy", **{"train.max_iters": 6, "train.resume": str(tmp_path / "legacy.pth")})
    from_legacy = loss_by_iter(tmp_path / "from_legacy")
    assert [from_legacy[i] for i in range(4, 7)] == [straight[i] for i in range(4, 7)]

    # killed (kill -9) after logging iterations 5 and 6 and validating, before its final checkpoint: the
    # rerun resumes from iteration 4 and replaces the records of 5, 6 and the validation, logging each once
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "straight", killed)
    (killed / "checkpoints" / "final.pth").unlink()
    (killed / "final_metrics.json").unlink()
    train(demo_root, killed, **{"train.max_iters": 6})
    records = log_records(killed)
    assert [r for r in records if r.get("event") == "resume"][0]["replayed_records_removed"] == 3
    assert [r["iter"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["iter"] for r in records if "val_miou" in r] == [6]
    assert loss_by_iter(killed) == straight


class SignalAfterTraining(Hook):
    """Sends SIGTERM while the run finishes (after the final validation, before the final checkpoint)."""

    def after_train(self, trainer):
        if trainer.finished:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_while_the_run_finishes_does_not_kill_it(demo_root, tmp_path):
    # The signal handlers are restored last: a SIGTERM during the final steps is a stop request, which a
    # finished run has no use for, not the default action (a kill with no final checkpoint).
    metrics = train(demo_root, tmp_path / "run", hooks=[SignalAfterTraining()], **{"train.max_iters": 2})
    assert (tmp_path / "run" / "checkpoints" / "final.pth").exists() and "miou" in metrics


def test_a_stop_logs_the_interval_in_progress_and_the_resumed_run_logs_the_rest(demo_root, tmp_path):
    options = {"train.log_interval": 4, "train.checkpoint_interval": 0}
    train(demo_root, tmp_path / "straight", **options)
    train(demo_root, tmp_path / "stopped", hooks=[SignalAt(3)], **options)
    train(demo_root, tmp_path / "stopped", **options)
    (whole,) = [r for r in log_records(tmp_path / "straight") if "loss" in r]
    first, rest = [r for r in log_records(tmp_path / "stopped") if "loss" in r]
    assert (whole["iter"], first["iter"], rest["iter"]) == (4, 3, 4)  # steps 1-4; 1-3 at the stop; then 4
    assert (3 * first["loss"] + rest["loss"]) / 4 == pytest.approx(whole["loss"], rel=1e-6)


@register_hook_type
class RecordEveryHook(Hook):
    """A user hook that a config names (train.hooks): records every `every`-th iteration."""

    seen: list = []

    def __init__(self, every: int):
        self.every = every

    def after_step(self, trainer):
        if trainer.iter % self.every == 0:
            RecordEveryHook.seen.append(trainer.iter)


def test_a_user_hook_from_the_config_runs_and_a_bad_one_is_refused_before_any_data_is_read(demo_root, tmp_path):
    RecordEveryHook.seen = []
    train(demo_root, tmp_path / "run", **{"train.hooks": "[{type: RecordEveryHook, every: 2}]"})
    assert RecordEveryHook.seen == [2, 4]
    assert load_config(tmp_path / "run" / "config.yaml").train.hooks == [{"type": "RecordEveryHook", "every": 2}]
    with pytest.raises(ValueError, match=r"train.hooks\[0\].type: unknown hook type 'RecordEvery'.*RecordEveryHook"):
        train(tmp_path / "no_data", tmp_path / "bad", **{"train.hooks": "[{type: RecordEvery}]"})


class PoisonWeights(Hook):
    """Makes the loss non-finite from an iteration on by putting NaN into a classifier weight."""

    def __init__(self, from_iter):
        self.from_iter = from_iter

    def before_step(self, trainer):
        if trainer.iter >= self.from_iter:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))


def test_non_finite_losses_are_skipped_counted_then_stop_the_run(demo_root, tmp_path):
    with pytest.raises(TrainingError, match=r"non-finite for 2 steps in a row .* lower optimizer.lr"):
        train(demo_root, tmp_path / "nan", hooks=[PoisonWeights(1)], **{"train.max_nonfinite_steps": 2,
                                                                          "train.max_iters": 6})
    records = log_records(tmp_path / "nan")
    assert records[-1]["nonfinite_skipped"] >= 1


def test_load_from_starts_fresh_and_another_taxonomy_is_refused(demo_root, tmp_path):
    train(demo_root, tmp_path / "first", **{"train.max_iters": 2})
    weights = tmp_path / "first" / "checkpoints" / "final.pth"
    train(demo_root, tmp_path / "second", **{"train.max_iters": 2, "train.load_from": str(weights)})
    assert "loaded weights from" in (tmp_path / "second" / "train.log").read_text()
    with pytest.raises(CheckpointError, match=r"was trained on taxonomy unified .*demo.tsv .* but this run uses naive"):
        train(demo_root, tmp_path / "third", **{"train.max_iters": 2, "train.load_from": str(weights),
                                                 "taxonomy.kind": "naive"})


def test_batch_of_one_with_batchnorm_is_refused(demo_root, tmp_path):
    with pytest.raises(ValueError, match="data.batch_size=1 per process with BatchNorm"):
        train(demo_root, tmp_path / "one", **{"data.batch_size": 1})


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"unified.yaml: data.batchsize: unknown key; did you mean 'batch_size'\?"):
        load_config(DEMO_CONFIG, ["data.batchsize=4"])
    with pytest.raises(ConfigError, match="unified.yaml: train.max_iters: must be an integer, got 'many'"):
        load_config(DEMO_CONFIG, ["train.max_iters=many"])


def test_ddp_with_two_processes_matches_one_process_with_the_global_batch(demo_root, tmp_path):
    # BatchNorm frozen (norm_eval): per-process batch statistics would differ from the global batch's
    # (SyncBatchNorm needs CUDA). A small lr keeps the untrained network's float rounding differences
    # (summation order of 2 vs 4 images) from being amplified by large early steps.
    common = tiny_overrides(demo_root, tmp_path / "x", **{"train.max_iters": 3, "train.norm_eval": "true",
                                                          "train.checkpoint_interval": 0, "optimizer.lr": 0.002})
    common = [o for o in common if not o.startswith(("work_dir=", "data.batch_size="))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), "--config", str(DEMO_CONFIG), *common,
                    f"work_dir={tmp_path / 'single'}", "data.batch_size=4"], check=True, env=env, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                    str(REPO / "tools" / "train.py"), "--config", str(DEMO_CONFIG), *common,
                    f"work_dir={tmp_path / 'ddp'}", "data.batch_size=2"], check=True, env=env, capture_output=True)
    single = load_checkpoint(tmp_path / "single" / "checkpoints" / "final.pth")["model"]
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "final.pth")["model"]
    assert single.keys() == ddp.keys()
    compared = 0
    for key in single:
        if single[key].is_floating_point():
            torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=lambda m: f"{key}: {m}")
            compared += 1
    assert compared > 10
    assert sorted(loss_by_iter(tmp_path / "ddp")) == [1, 2, 3]


def test_skipped_bad_samples_are_counted_in_the_training_log(demo_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    for image in sorted((root / "demo-ade" / "images" / "training").glob("*.jpg"))[:3]:
        image.write_bytes(image.read_bytes()[:200])  # truncated JPEGs
    train(root, tmp_path / "run", **{"data.on_bad_sample": "skip", "train.max_iters": 4})
    last = [r for r in log_records(tmp_path / "run") if "loss" in r][-1]
    assert last["bad_samples_skipped"] >= 1
    assert json.loads((tmp_path / "run" / "final_metrics.json").read_text())["bad_samples_skipped"] >= 1
    assert "skipping bad sample of demo-ade" in (tmp_path / "run" / "train.log").read_text()


def test_data_normalize_on_device_is_accepted_and_changes_nothing(demo_root, tmp_path):
    # loaders always send uint8 crops and the Segmentor normalises: the old flag is a no-op
    train(demo_root, tmp_path / "default", **{"train.max_iters": 2})
    train(demo_root, tmp_path / "device_norm", **{"train.max_iters": 2, "data.normalize_on_device": "true"})
    assert loss_by_iter(tmp_path / "device_norm") == loss_by_iter(tmp_path / "default")


def test_swa_with_uint8_batches_recomputes_batch_norm_and_saves_the_average(demo_root, tmp_path):
    metrics = train(demo_root, tmp_path / "swa", **{"train.max_iters": 3, "data.normalize_on_device": "true",
                                                    "swa": "{start_iter: 1, swa_lr: 0.001}"})
    assert 0 <= metrics["miou"] <= 1
    assert "SWA: averaged 2 iterations" in (tmp_path / "swa" / "train.log").read_text()


def test_resuming_with_another_accumulation_is_refused_and_run_length_is_checked(demo_root, tmp_path):
    train(demo_root, tmp_path / "acc", **{"train.max_iters": 2, "train.checkpoint_interval": 1})
    (tmp_path / "acc" / "checkpoints" / "final.pth").unlink()  # as if it had crashed after iteration 1
    with pytest.raises(CheckpointError, match=r"train.accumulate_grad=1, this run sets 2"):
        train(demo_root, tmp_path / "acc", **{"train.max_iters": 2, "train.accumulate_grad": 2})
    with pytest.raises(ValueError, match="set exactly one of train.max_iters"):
        train(demo_root, tmp_path / "none", **{"train.max_iters": "null"})
