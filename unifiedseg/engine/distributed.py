"""Process-group set-up for one process or DDP under torchrun (NCCL on GPUs, gloo on CPU), and the
ways a failure of one rank reaches the others: `on_main_rank` hands the main rank's error to every
rank; `is_peer_failure` recognises the collective that fails when another rank died."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from unifiedseg.constants import DEVICES

T = TypeVar("T")
# What a collective says when another rank's process has gone (gloo, NCCL, the TCP store).
PEER_GONE_WORDS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "remote process exited",
                   "NCCL communicator was aborted")


class PeerFailedError(RuntimeError):
    """Another rank failed; the message is its error, named by rank."""


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference not in DEVICES:
        raise ValueError(f"train.device: must be one of {', '.join(DEVICES)}, got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); start a process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        # torchrun's store outlives a restart of the workers (--max-restarts): a restarted group could read
        # the addresses the group before it left there, and gloo then fails to connect (or hangs). Each
        # attempt gets its own keys.
        store, _, _ = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                store=dist.PrefixStore(f"unifiedseg/attempt_{attempt}/", store))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over processes (the value itself in one process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the processes that have it (keys may differ: e.g. the per-dataset losses
    of ranks that train on different datasets); the values themselves in one process. Every process must
    call it (it gathers every rank's dict)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(values)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(values))
    keys = list(dict.fromkeys(key for rank_values in gathered for key in rank_values))
    return {key: sum(v[key] for v in gathered if key in v) / sum(key in v for v in gathered) for key in keys}


def names_across_ranks(names: list[str]) -> list[str]:
    """The union of every process's `names` (rank 0's first, then the others' new ones); the names
    themselves in one process. Every process must call it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(dict.fromkeys(names))
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(names))
    return list(dict.fromkeys(name for rank_names in gathered for name in rank_names))


def on_main_rank(fn: Callable[[], T], *, is_main: bool) -> T | None:
    """`fn()` on the main rank only (its result there, None elsewhere). Under DDP the ranks then agree:
    when it raised, the main rank re-raises its error and every other rank raises PeerFailedError with
    its message, instead of waiting in the next collective for a rank that has left."""
    result, error = None, None
    if is_main:
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 -- re-raised below, on every rank
            error = err
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and not is_main:
            raise PeerFailedError(f"rank 0 failed: {box[0]}")
    if error is not None:
        raise error
    return result


def is_peer_failure(err: BaseException) -> bool:
    """Whether `err` is this rank learning that another rank failed or was killed (PeerFailedError, or a
    collective whose connection to a rank that died broke)."""
    if isinstance(err, PeerFailedError):
        return True
    backend_error = getattr(dist, "DistError", ())
    return isinstance(err, backend_error) or (isinstance(err, RuntimeError)
                                              and any(words in str(err) for words in PEER_GONE_WORDS))
