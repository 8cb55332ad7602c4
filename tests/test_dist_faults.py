"""Distributed faults (issue 14) with 2 gloo processes under torchrun, on the tiny demo run: a rank killed
with -9 mid-run leaves a resumable work dir, and with `--max-restarts 1` the job resumes and ends with the
weights of an uninterrupted run; a rank that raises stops every rank at once, its message shown; a held
work dir stops every rank with the holder named. The jobs run side by side (torchrun's own start and stop
take most of their time)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_reliability import hold_lock
from test_train import DEMO_CONFIG, tiny_overrides
from unifiedseg.engine.checkpoint import load_checkpoint

SCRIPT = Path(__file__).resolve().parent / "dist_fault_train.py"
TIMEOUT = 240


def start_torchrun(demo_root, work_dir, *extra, restarts: int = 0) -> subprocess.Popen:
    overrides = tiny_overrides(demo_root, work_dir, **{"train.max_iters": 4, "train.checkpoint_interval": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "--max-restarts", str(restarts), str(SCRIPT),
                             "--config", str(DEMO_CONFIG), *overrides, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def jobs(demo_root, tmp_path_factory):
    """name -> (exit code, output, seconds, work dir) of the jobs, run at once."""
    folder = tmp_path_factory.mktemp("dist_faults")
    marker = folder / "killed_once"
    kill = f"train.hooks=[{{type: KillRankAt, rank: 0, iteration: 3, marker: {marker}}}]"
    fail = "train.hooks=[{type: RaiseOnRank, rank: 1, iteration: 3}]"
    holder = hold_lock(folder / "locked")
    started = time.monotonic()
    running = {"straight": start_torchrun(demo_root, folder / "straight"),
               "killed": start_torchrun(demo_root, folder / "killed", kill, restarts=1),
               "raised": start_torchrun(demo_root, folder / "raised", fail),
               "locked": start_torchrun(demo_root, folder / "locked")}
    done = {}
    try:
        for name, job in running.items():
            output, _ = job.communicate(timeout=TIMEOUT)
            done[name] = (job.returncode, output, time.monotonic() - started, folder / name)
    finally:
        holder.stdin.close()
        holder.wait()
    assert marker.exists()  # rank 0 (the lock holder and checkpoint writer) was killed after iteration 3
    return done


def errors(output: str) -> str:
    """The error lines of a torchrun job's output, for failure messages."""
    return "\n".join(line for line in output.splitlines() if "error" in line.lower() and "elastic" not in line)[-4000:]


def test_a_rank_killed_mid_run_is_resumed_by_torchrun_to_the_weights_of_an_uninterrupted_run(jobs):
    for name in ("straight", "killed"):
        code, output, _, _ = jobs[name]
        assert code == 0, errors(output)
    work_dir = jobs["killed"][3]
    log = (work_dir / "train.log").read_text()
    assert "took over the lock of a training run that is no longer running" in log
    assert "resumed from" in log and "iter_00000002.pth at iteration 2" in log
    a = load_checkpoint(jobs["straight"][3] / "checkpoints" / "final.pth")["model"]
    b = load_checkpoint(work_dir / "checkpoints" / "final.pth")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_rank_that_raises_stops_every_rank_with_its_message(jobs):
    code, output, seconds, work_dir = jobs["raised"]
    assert code != 0 and seconds < TIMEOUT / 2  # no rank waits for a collective's timeout (30 minutes)
    assert "error: rank 1 fails on purpose after iteration 3" in output
    assert "error: another process of this job failed or was killed" in output  # rank 0, in one line
    assert (work_dir / "checkpoints" / "iter_00000002.pth").exists()  # resumable


def test_a_held_work_dir_stops_every_rank_naming_the_holder(jobs):
    code, output, _, work_dir = jobs["locked"]
    assert code != 0
    assert f"error: {work_dir} is in use by another run (pid " in output  # rank 0
    assert f"error: rank 0 failed: WorkDirLockedError: {work_dir} is in use by another run (pid " in output  # rank 1
    assert not (work_dir / "checkpoints").exists()
