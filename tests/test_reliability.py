"""Faults a hostile tester tries (issue 14), on the tiny demo run: a second run on a work dir, a lock left by
a killed run, exit codes, numbers as people write them, an error in a loader worker, broken checkpoints
(tools and auto-resume), a full disk, temporary files of interrupted writes, file modes, odd TSV input.
benchmarks/README.md tabulates the faults and their outcome. Distributed faults: tests/test_dist_faults.py."""

import errno
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from checkpoint_fixtures import DEMO_CONFIG, one_thread  # noqa: F401 (autouse fixture)
from test_train import log_records, tiny_overrides
from unifiedseg.cli import exit_codes
from unifiedseg.cli.train import main as train_main
from unifiedseg.config import load_config
from unifiedseg.data.decode import BadSampleError
from unifiedseg.engine import checkpoint as ckpt
from unifiedseg.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from unifiedseg.engine.hooks import register_hook_type
from unifiedseg.engine.launch import run_training
from unifiedseg.engine.trainer import Hook
from unifiedseg.taxonomy import TaxonomyConverter, TaxonomyError, TaxonomyTable
from unifiedseg.utils import fileio
from unifiedseg.utils.fileio import DiskSpaceError, atomic_write_text
from unifiedseg.utils.lock import LOCK_NAME, WorkDirLock, WorkDirLockedError

HOLD_LOCK = ("import sys\nfrom unifiedseg.utils.lock import WorkDirLock\nwith WorkDirLock(sys.argv[1]):\n"
             "    print('locked', flush=True)\n    sys.stdin.read()\n")


@pytest.fixture(autouse=True)
def fresh_logger():
    """A training run points the unifiedseg logger at this test's captured stderr: detach it afterwards."""
    yield
    logger = logging.getLogger("unifiedseg")
    logger.handlers.clear()
    logger.propagate = True


def train_cli(demo_root, work_dir, **extra) -> int:
    return train_main(["--config", str(DEMO_CONFIG), *tiny_overrides(demo_root, work_dir, **extra)])


def error_lines(capsys) -> list[str]:
    """The error lines a command wrote to stderr (besides its log); there must be no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error")]


def hold_lock(folder) -> subprocess.Popen:
    """Another process that holds `folder`'s lock until its stdin closes."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@register_hook_type
class SignalAtIteration(Hook):
    """Sends this process SIGTERM after `iteration`, as a job scheduler would."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self, trainer):
        if trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGTERM)


# ---- 1. one run per work dir ------------------------------------------------------------------------------
def test_a_second_run_on_a_held_work_dir_is_refused_naming_the_holder(demo_root, tmp_path, capsys):
    work_dir = tmp_path / "run"
    holder = hold_lock(work_dir)
    try:
        assert train_cli(demo_root, work_dir) == exit_codes.ERROR
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {work_dir} is in use by another run (pid {holder.pid} on host "
                              f"{socket.gethostname()}, started ")
        assert "--work-dir DIR" in err and len(err.splitlines()) == 1
        assert not (work_dir / "checkpoints").exists() and not (work_dir / "config.yaml").exists()
        with pytest.raises(WorkDirLockedError, match=f"pid {holder.pid}"):
            WorkDirLock(work_dir).acquire()
    finally:
        holder.stdin.close()
        holder.wait()
    assert not (work_dir / LOCK_NAME).exists()  # the holder deleted it on release
    with WorkDirLock(work_dir):  # in one process a second lock of the same folder conflicts too
        with pytest.raises(WorkDirLockedError, match="already in use by this process"):
            WorkDirLock(work_dir).acquire()


def test_a_killed_runs_lock_and_temp_files_are_cleared_and_files_follow_the_umask(demo_root, tmp_path):
    work_dir = tmp_path / "run"
    holder = hold_lock(work_dir)
    holder.kill()  # kill -9: the lock file stays, naming a process that is gone
    holder.wait()
    assert str(holder.pid) in (work_dir / LOCK_NAME).read_text()
    (work_dir / "checkpoints").mkdir()
    partial = [work_dir / "checkpoints" / ".iter_00000002.pth.k3x_9a2q.tmp", work_dir / ".final_metrics.json.abcdefgh.tmp"]
    for path in partial:
        path.write_bytes(b"\0" * 5000)
    kept = work_dir / "checkpoints" / "notes.tmp"  # not one of ours: left alone
    kept.write_text("mine")
    previous = os.umask(0o022)
    try:
        train(demo_root, work_dir)
    finally:
        os.umask(previous)
    log = (work_dir / "train.log").read_text()
    assert f"took over the lock of a training run that is no longer running (pid {holder.pid} on host" in log
    assert "removed 2 temporary files of writes that were interrupted (10 kB)" in log
    assert not any(path.exists() for path in partial) and kept.exists()
    assert not (work_dir / LOCK_NAME).exists()
    for name in ("checkpoints/final.pth", "checkpoints/iter_00000002.pth", "config.yaml", "final_metrics.json",
                 "log.jsonl", "train.log"):
        assert (work_dir / name).stat().st_mode & 0o777 == 0o644, name


def train(demo_root, work_dir, **extra):
    return run_training(load_config(DEMO_CONFIG, tiny_overrides(demo_root, work_dir, **extra)))


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_atomic_writes_get_the_mode_of_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        save_checkpoint(tmp_path / "b.pth", {"model": {}})
    finally:
        os.umask(previous)
    for name in ("a.json", "b.pth"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


# ---- 2. exit codes ------------------------------------------------------------------------------------------
def test_exit_codes_tell_finished_from_stopped_from_failed(demo_root, tmp_path, capsys):
    assert train_cli(demo_root, tmp_path / "stopped", **{"train.hooks": "[{type: SignalAtIteration, iteration: 3}]"}) \
        == exit_codes.STOPPED
    assert not (tmp_path / "stopped" / "checkpoints" / "final.pth").exists()
    assert train_cli(demo_root, tmp_path / "stopped") == exit_codes.FINISHED  # the same command resumes and ends
    assert (tmp_path / "stopped" / "checkpoints" / "final.pth").exists()
    capsys.readouterr()
    assert train_cli(demo_root, tmp_path / "failed", **{"train.resume": tmp_path / "none.pth"}) == exit_codes.ERROR
    assert error_lines(capsys) == [f"error: checkpoint {tmp_path / 'none.pth'} does not exist"]
    assert train_cli(demo_root, tmp_path / "usage", **{"optimizer.lr": "fast"}) == exit_codes.USAGE
    assert len({exit_codes.FINISHED, exit_codes.STOPPED, exit_codes.ERROR, exit_codes.USAGE}) == 4


# ---- 3. numbers as people write them ---------------------------------------------------------------------
SPELLINGS = {"1e-3": 0.001, "5e-4": 0.0005, "1e6": 1000000, "1E-3": 0.001, ".5e-3": 0.0005, "+1e-3": 0.001,
             "1.0e-3": 0.001}


@pytest.mark.parametrize("where", ["yaml", "override"])
@pytest.mark.parametrize("text", list(SPELLINGS))
def test_numbers_in_every_spelling_in_yaml_and_overrides(tmp_path, where, text):
    negative = "-" + text.lstrip("+")
    values = {"optimizer.lr": text, "optimizer.weight_decay": text, "data.augmentation.rotate_range": f"[{negative}, {text}]"}
    if where == "yaml":
        path = tmp_path / "run.yaml"
        path.write_text(f"_base_: {DEMO_CONFIG}\noptimizer: {{lr: {text}, weight_decay: {text}}}\n"
                        f"data: {{augmentation: {{rotate_range: [{negative}, {text}]}}}}\n")
        cfg = load_config(path)
    else:
        cfg = load_config(DEMO_CONFIG, [f"{key}={value}" for key, value in values.items()])
    number = SPELLINGS[text]
    assert cfg.optimizer.lr == cfg.optimizer.weight_decay == number
    assert list(cfg.data.augmentation.rotate_range) == [-number, number]  # -1e-3 and the like, signed


def test_a_bad_config_value_stops_before_any_model_is_built(tmp_path, capsys, monkeypatch):
    from unifiedseg.engine import launch

    monkeypatch.setattr(launch, "build_model_for", lambda *a, **k: pytest.fail("a model was built"))
    assert train_main(["--config", str(DEMO_CONFIG), f"work_dir={tmp_path}", "optimizer.lr=1e-3",
                       "optimizer.weight_decay=5e-4x"]) == exit_codes.USAGE
    assert "optimizer.weight_decay: must be a number" in capsys.readouterr().err


def test_train_lr_suggests_optimizer_lr(tmp_path, capsys):
    assert train_main(["--config", str(DEMO_CONFIG), f"work_dir={tmp_path}", "train.lr=0.1"]) == exit_codes.USAGE
    assert "train.lr: unknown key; did you mean 'optimizer.lr'?" in capsys.readouterr().err


# ---- 4. an error in a loader worker -----------------------------------------------------------------------
def test_a_bad_sample_in_a_loader_worker_reads_as_without_workers(demo_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    for image in (root / "demo-ade" / "images" / "training").glob("*.jpg"):
        image.write_bytes(image.read_bytes()[:200])  # every demo-ade image truncated
    messages = []
    for workers in (0, 2):
        assert train_cli(root, tmp_path / f"run{workers}", **{"data.num_workers": workers}) == exit_codes.ERROR
        messages.append(error_lines(capsys))
    assert messages[0] == messages[1] and len(messages[1]) == 1 and messages[1][0].startswith("error: ")
    assert ".jpg: " in messages[1][0] and "(dataset demo-ade, list line" in messages[1][0]
    err = BadSampleError("a.jpg", "truncated")
    assert str(pickle.loads(pickle.dumps(err))) == "a.jpg: truncated"  # the worker sends it as it is


# ---- 5. reading checkpoints -------------------------------------------------------------------------------
def _broken_files(folder, good):
    """name -> (writer, words the error must have)."""
    data = good.read_bytes()
    cases = {
        "empty.pth": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        "truncated.pth": (lambda p: p.write_bytes(data[: len(data) // 2]), "is truncated or corrupt"),
        "text.pth": (lambda p: p.write_text("epoch 3 loss 0.1\n"), "is a text file, not a PyTorch checkpoint (it starts with 'epoch 3 loss 0.1')"),
        "folder.pth": (lambda p: p.mkdir(), "is a folder, not a checkpoint file"),
        "array.pth": (lambda p: np.save(open(p, "wb"), np.zeros(3)), "is a NumPy .npy file"),
        "random.pth": (lambda p: p.write_bytes(bytes(range(200, 256)) * 3), "unknown format; it starts with bytes c8 c9"),
        "list.pth": (lambda p: torch.save([1, 2], p), "holds an object of type list, not a unifiedseg checkpoint"),
        "weights.pth": (lambda p: torch.save({"conv.weight": torch.zeros(2)}, p), "holds bare weights (1 tensors)"),
        "mmseg.pth": (lambda p: torch.save({"state_dict": {}, "meta": {}}, p), "no 'model' entry; entries: 'state_dict', 'meta'"),
        "pickle.pth": (lambda p: p.write_bytes(pickle.dumps({"model": {}}, protocol=4)), "weights_only=True reads only"),
        "evil.pth": (lambda p: torch.save({"model": {}, "x": Evil()}, p), "unsupported GLOBAL"),
        "future.pth": (lambda p: torch.save({"model": {}, "format": 99}, p), "checkpoint format 99"),
    }
    for name, (write, _) in cases.items():
        write(folder / name)
    return {name: words for name, (_, words) in cases.items()}


class Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_broken_and_foreign_checkpoints_are_one_line_naming_the_file(tmp_path):
    good = tmp_path / "good.pth"
    save_checkpoint(good, {"model": {"w": torch.zeros(1000)}})
    for name, words in _broken_files(tmp_path, good).items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(f"{tmp_path / name}: ") and words in message and "\n" not in message, message


@pytest.mark.parametrize("tool", ["test", "demo", "export"])
def test_the_tools_report_a_broken_checkpoint_in_one_line(demo_root, tmp_path, capsys, tool):
    from unifiedseg.cli.demo import main as demo_main
    from unifiedseg.cli.export import main as export_main
    from unifiedseg.cli.test import main as test_main

    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello\n")
    args = {"test": (test_main, ["--datasets", "demo-camvid", "--root", demo_root, "--out", tmp_path / "out"]),
            "demo": (demo_main, ["--input", demo_root / "demo-camvid" / "val", "--output", tmp_path / "o",
                                 "--device", "cpu"]),
            "export": (export_main, ["--format", "torchscript", "--output", tmp_path / "m.pt"])}
    main, extra = args[tool]
    for name, words in (("empty.pth", "is empty (0 bytes)"), ("text.pth", "is a text file")):
        assert main(["--config", str(DEMO_CONFIG), "--checkpoint", str(tmp_path / name), *map(str, extra)]) == 2
        err = error_lines(capsys)
        assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / name}: {words}"), err


def test_auto_resume_falls_back_to_the_newest_readable_checkpoint(demo_root, tmp_path):
    work_dir = tmp_path / "run"
    train(demo_root, work_dir)
    final = work_dir / "checkpoints" / "final.pth"
    expected = load_checkpoint(final)["model"]
    final.write_bytes(b"")  # as a copy cut short would leave it
    train(demo_root, work_dir)
    log = (work_dir / "train.log").read_text()
    assert f"cannot resume from {final}: is empty (0 bytes)" in log
    assert "resuming from" in log and "iter_00000002.pth, the newest readable checkpoint (1 newer one skipped)" in log
    resumed = load_checkpoint(final)["model"]
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)  # iterations 3-4 again, the same weights
    for path in (work_dir / "checkpoints").iterdir():
        path.write_text("garbage")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*checkpoints can be read: .*final.pth: is a text "
                                              r"file.*iter_00000002.pth: is a text file.*move them away"):
        train(demo_root, work_dir)


# ---- 6. a full disk ------------------------------------------------------------------------------------------
def fill_after(limit: int):
    """A `write(handle)` wrapper whose handle takes `limit` bytes, then fails as a full disk does."""
    def wrap(write):
        def limited(handle):
            class Full:
                written = 0

                def write(self, data):
                    Full.written += len(data)
                    if Full.written > limit:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    return handle.write(data)

                def flush(self):
                    handle.flush()
            write(Full())
        return limited
    return wrap


def test_a_full_disk_during_a_checkpoint_write_names_the_folder_and_leaves_no_temp_file(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "iter_00000001.pth", {"model": {"w": torch.zeros(5000)}})
    size = (folder / "iter_00000001.pth").stat().st_size
    real = fileio.atomic_write
    monkeypatch.setattr(ckpt, "atomic_write", lambda path, write, **kw: real(path, fill_after(3000)(write), **kw))
    with pytest.raises(DiskSpaceError) as caught:  # torch.save's own error ("unexpected pos") is recognised
        save_checkpoint(folder / "iter_00000002.pth", {"model": {"w": torch.ones(5000)}})
    message = str(caught.value)
    assert message.startswith(f"no space left in {folder} while writing iter_00000002.pth (about "
                              f"{fileio.format_bytes(size)} needed, ") and "partial file was removed" in message
    assert sorted(p.name for p in folder.iterdir()) == ["iter_00000001.pth"]


def test_too_little_free_space_is_found_before_writing(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "iter_00000001.pth", {"model": {"w": torch.zeros(5000)}})
    size = (folder / "iter_00000001.pth").stat().st_size
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 500, 500))
    with pytest.raises(DiskSpaceError, match=rf"not enough free space in {folder} to write iter_00000002.pth \(the "
                                             rf"size of the last checkpoint\): about {fileio.format_bytes(size)} needed, "
                                             rf"500 bytes free"):
        save_checkpoint(folder / "iter_00000002.pth", {"model": {}})
    assert sorted(p.name for p in folder.iterdir()) == ["iter_00000001.pth"]


def test_when_the_final_checkpoint_does_not_fit_the_metrics_are_written_and_the_run_resumes(
        demo_root, tmp_path, capsys, monkeypatch):
    work_dir = tmp_path / "run"
    real = fileio.atomic_write

    def final_does_not_fit(path, write, **kw):
        real(path, fill_after(1000)(write) if path.name == "final.pth" else write, **kw)

    monkeypatch.setattr(ckpt, "atomic_write", final_does_not_fit)
    assert train_cli(demo_root, work_dir) == exit_codes.ERROR
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"error: no space left in {work_dir / 'checkpoints'} while writing "
                                               f"final.pth (about ")
    assert err[0].endswith("free some space or choose another folder; then run the same command to resume")
    assert json.loads((work_dir / "final_metrics.json").read_text())["iteration"] == 4
    assert sorted(p.name for p in (work_dir / "checkpoints").iterdir()) == ["iter_00000002.pth"]
    monkeypatch.undo()
    assert train_cli(demo_root, work_dir) == exit_codes.FINISHED
    assert (work_dir / "checkpoints" / "final.pth").exists()


# ---- 9. TSV input ----------------------------------------------------------------------------------------------
def test_a_tsv_with_a_byte_order_mark_reads_and_keeps_it_and_a_folder_is_refused(tiny_tsv, tmp_path):
    plain = TaxonomyConverter.from_tsv(tiny_tsv)
    marked = tmp_path / "marked.tsv"
    marked.write_bytes("\ufeff".encode("utf-8") + tiny_tsv.read_bytes())
    table = TaxonomyTable.load(marked)
    assert table.header == TaxonomyTable.load(tiny_tsv).header
    assert table.to_text().encode("utf-8") == marked.read_bytes()  # written back as it was
    assert TaxonomyConverter.from_tsv(marked).fingerprint() == plain.fingerprint()
    with pytest.raises(TaxonomyError, match=rf"taxonomy TSV {tmp_path} is a folder, not a .tsv file"):
        TaxonomyTable.load(tmp_path)


def test_dist_train_passes_max_restarts_to_torchrun(tmp_path):
    """tools/dist_train.sh CONFIG N --max-restarts K key=value: K reaches torchrun, the overrides reach train.py
    (a stand-in torchrun on PATH prints its arguments)."""
    from pathlib import Path

    fake = tmp_path / "torchrun"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    script = Path(__file__).resolve().parent.parent / "tools" / "dist_train.sh"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    env.pop("MAX_RESTARTS", None)
    args = subprocess.run(["bash", str(script), "c.yaml", "2", "--max-restarts", "1", "train.max_iters=5"],
                          env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert args[args.index("--max-restarts") + 1] == "1" and args[args.index("--nproc_per_node") + 1] == "2"
    assert args[-3:] == ["--config", "c.yaml", "train.max_iters=5"]
    args = subprocess.run(["bash", str(script), "c.yaml", "2"], env=env, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert args[args.index("--max-restarts") + 1] == "3" and args[-2:] == ["--config", "c.yaml"]
