"""Multi-dataset batch sampling: which (dataset, sample index) pairs form each rank's batch at each iteration.

`MultiDatasetSampler` knows dataset names and sizes only. It has two modes:

- ``mode="per_rank"`` (MSeg's scheme): `dataset_gpu_mapping` ({dataset: [ranks]}) gives every rank exactly
  one dataset; a rank draws only from its dataset. Ranks that share a dataset split that dataset's shuffled
  stream between them (replica j of R takes the j-th of R consecutive chunks of `batch_size` per
  iteration), so within an epoch they never draw the same sample, like torch's DistributedSampler.
- ``mode="mixed"``: every global batch (batch_size * world_size samples) is drawn from all datasets with
  probabilities p_d: ``weighting="equal"`` (p_d = 1/n, the effect MSeg gets from one GPU per dataset),
  ``"size"`` (p_d ∝ size_d), ``"temperature"`` (p_d ∝ size_d^(1/T), `temperature`=T, default 2.0), or
  explicit ``weights={d: w}`` (p_d ∝ w_d). Rank r takes slots [r*batch_size, (r+1)*batch_size) of the
  global batch, so the union of all ranks' batches is exactly the batch a single process with
  world_size=1 and batch_size*world_size gets: DDP sees the same data as single-process training.

How many samples of each dataset a mixed batch holds is stratified, not a multinomial draw: the global
sample sequence is apportioned with the Sainte-Laguë (Webster) divisor rule, i.e. the k-th sample of
dataset d is due at "time" (k - 1/2) / p_d and samples are taken in order of due time (ties: order of
`dataset_sizes`). Why: after any S samples, every dataset has had S*p_d samples up to a bounded error
(below n_datasets/2 + 2), with no multinomial noise; and the number of samples dataset d has had before
iteration k is a closed-form count, so `batch_at(k)` needs no replay of earlier batches (with per-batch
multinomial draws it would need the sum of all earlier draws). The slots of each global batch are then
shuffled with a generator seeded by (seed, iteration), so which rank gets which dataset varies.

Within a dataset, indices come from an endless stream of epochs: epoch e is a permutation of
range(size) from np.random.PCG64([seed, tag, hash(dataset name), e]), so every sample is seen once before
any repeats, and epochs join without dropping or padding (a batch may straddle two epochs). Position q of
the stream is element q % size of epoch q // size's permutation. The rank is not part of the seed on
purpose: ranks share each dataset's stream and take disjoint positions of it, which is what keeps them
disjoint. Every random draw is keyed by counters (seed, dataset, epoch, iteration), so `batch_at(k)` is
computed directly, and iteration resumes from an iteration count: `state_dict()` -> {"iteration": k,
"stream": ...}; `load_state_dict` makes `__iter__` start at k and yield exactly what the uninterrupted
iterator yields from k on.

Run length: `max_iters`, or a crop budget `num_examples` per dataset (MSeg's 1M or 3M), converted by
`iterations_for_budget`. For a DataLoader over ``ConcatDataset([datasets in dataset_sizes order])``, use
``DataLoader(concat, batch_sampler=sampler.global_index_batch_sampler())``; `flat_index` gives the global
index of (dataset, index) in that order.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from unifiedseg.utils.checks import check_int, check_number, is_int
from unifiedseg.utils.names import suggest

MODES = ("mixed", "per_rank")
WEIGHTINGS = ("equal", "size", "temperature", "explicit")
# Square-root sampling: a common middle ground between size-proportional (T=1) and equal (T -> inf).
DEFAULT_TEMPERATURE = 2.0

# Tags in the seed entropy keep the random streams for different purposes independent for one seed.
_PERMUTATION_STREAM = 1
_SLOT_SHUFFLE_STREAM = 2
# Epoch permutations kept per dataset: a batch spans at most two consecutive epochs when it straddles one.
_CACHED_EPOCHS = 2


class SamplerConfigError(ValueError):
    """An argument of MultiDatasetSampler is invalid; the message names it and lists valid values."""


def iterations_for_budget(*, num_examples: int, num_datasets: int, batch_size: int, world_size: int) -> int:
    """Number of iterations for a crop budget of `num_examples` per dataset (both modes).

    max_iters = floor(num_examples * num_datasets / (batch_size * world_size)), batch_size per rank.

    Per-rank mode: MSeg computes, for the dataset of each GPU, floor(num_examples / (batch_size *
    gpus_per_dataset)) with batch_size per GPU, so each dataset sees num_examples crops. With the same
    number of GPUs per dataset (world_size = num_datasets * gpus_per_dataset) that is the formula above.
    With unequal GPU counts MSeg's ranks would disagree; here the total crop count is kept
    (num_examples * num_datasets) and dataset d sees max_iters * batch_size * gpus_d crops.
    Mixed mode: the same total, num_examples * num_datasets crops; dataset d sees about that times p_d
    (num_examples each with equal weighting).
    """
    for name, value in (("num_examples", num_examples), ("num_datasets", num_datasets),
                        ("batch_size", batch_size), ("world_size", world_size)):
        check_int(value, name, minimum=1, error=SamplerConfigError)
    iterations = (num_examples * num_datasets) // (batch_size * world_size)
    if iterations < 1:
        raise SamplerConfigError(
            f"num_examples={num_examples} for {num_datasets} dataset(s) is less than one global batch "
            f"of batch_size * world_size = {batch_size * world_size} samples: it gives 0 iterations")
    return iterations


def check_sampling(*, dataset_names, mode: str = "mixed", weighting: str | None = None,
                   temperature: float | None = None, weights: dict | None = None,
                   dataset_gpu_mapping: dict | None = None, world_size: int | None = None, prefix: str = "") -> None:
    """The rules of the sampling arguments (MultiDatasetSampler's, the `data.sampling` config section's) over
    the datasets `dataset_names`; errors name the argument as `prefix + name`.

    Without `world_size` (a config checked before its processes start) the ranks of dataset_gpu_mapping
    must be 0..N-1 without gaps, N then being the world size the run needs."""
    dataset_names = list(dataset_names)
    if not isinstance(mode, str) or mode not in MODES:
        raise SamplerConfigError(f"{prefix}mode: must be one of {', '.join(MODES)}, got {mode!r}"
                                 f"{suggest(mode, list(MODES)) if isinstance(mode, str) else ''}")
    if mode == "mixed":
        _check_mixed(dataset_names, weighting, temperature, weights, dataset_gpu_mapping, prefix)
    else:
        _check_per_rank(dataset_names, weighting, temperature, weights, dataset_gpu_mapping, world_size, prefix)


def _check_mixed(names: list[str], weighting, temperature, weights, mapping, prefix: str) -> None:
    if mapping is not None:
        raise SamplerConfigError(f"{prefix}dataset_gpu_mapping: is only used with mode='per_rank', but mode='mixed'")
    resolved = weighting if weighting is not None else "explicit" if weights is not None else "equal"
    if not isinstance(resolved, str) or resolved not in WEIGHTINGS:
        raise SamplerConfigError(f"{prefix}weighting: must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}"
                                 f"{suggest(weighting, list(WEIGHTINGS)) if isinstance(weighting, str) else ''}")
    if (weights is not None) != (resolved == "explicit"):
        raise SamplerConfigError(f"{prefix}weights: are used exactly when weighting='explicit' (or None); got "
                                 f"weighting={resolved!r} with weights={weights!r}")
    if temperature is not None:
        if resolved != "temperature":
            raise SamplerConfigError(f"{prefix}temperature: {temperature!r} is only used with "
                                     f"weighting='temperature', but weighting={resolved!r}")
        _check_positive_number(f"{prefix}temperature", temperature)
    if resolved == "explicit":
        if not isinstance(weights, dict):
            raise SamplerConfigError(f"{prefix}weights: must be a mapping {{dataset: weight}}, got {weights!r}")
        _check_known_datasets(f"{prefix}weights", weights, names)
        for name in names:
            _check_positive_number(f"{prefix}weights[{name!r}]", weights[name])


def _check_per_rank(names: list[str], weighting, temperature, weights, mapping, world_size: int | None,
                    prefix: str) -> None:
    ignored = {"weights": weights, "temperature": temperature}
    if weighting not in (None, "equal"):
        ignored["weighting"] = weighting
    for argument, value in ignored.items():
        if value is not None:
            raise SamplerConfigError(f"{prefix}{argument}: {value!r} is only used with mode='mixed', but "
                                     f"mode='per_rank' (each rank draws from its own dataset)")
    if not isinstance(mapping, dict):
        raise SamplerConfigError(f"{prefix}dataset_gpu_mapping: mode='per_rank' needs a mapping {{dataset: [ranks]}}, "
                                 f"got {mapping!r}")
    _check_known_datasets(f"{prefix}dataset_gpu_mapping", mapping, names)
    owner: dict[int, str] = {}
    for name in names:
        where = f"{prefix}dataset_gpu_mapping[{name!r}]"
        ranks = mapping[name]
        if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
            raise SamplerConfigError(f"{where}: must be a list of ranks, got {ranks!r}")
        ranks = list(ranks)
        if not ranks:
            raise SamplerConfigError(f"{where}: is empty; every dataset needs at least one rank")
        for rank in ranks:
            if not is_int(rank) or rank < 0 or (world_size is not None and rank >= world_size):
                valid = f"world_size={world_size}: valid ranks are 0..{world_size - 1}" if world_size is not None \
                    else "ranks are integers >= 0"
                raise SamplerConfigError(f"{where}: has rank {rank!r}, but {valid}")
            if int(rank) in owner:
                other = owner[int(rank)]
                twice = "twice" if other == name else f"to both {other!r} and {name!r}"
                raise SamplerConfigError(f"{prefix}dataset_gpu_mapping: rank {rank} is assigned {twice}; "
                                         f"each rank trains on exactly one dataset")
            owner[int(rank)] = name
    if not owner:
        return
    size = world_size if world_size is not None else max(owner) + 1
    unassigned = [rank for rank in range(size) if rank not in owner]
    if unassigned:
        raise SamplerConfigError(
            f"{prefix}dataset_gpu_mapping: rank(s) {unassigned} have no dataset; each of ranks "
            f"0..{size - 1} needs exactly one (datasets: {names})")


def _check_known_datasets(argument: str, given, names: list[str]) -> None:
    unknown = [name for name in given if name not in names]
    if unknown:
        hint = suggest(str(unknown[0]), names)
        raise SamplerConfigError(f"{argument}: names unknown dataset(s) {unknown}{hint}; valid datasets: {names}")
    missing = [name for name in names if name not in given]
    if missing:
        raise SamplerConfigError(f"{argument}: leaves out dataset(s) {missing}; it must cover every "
                                 f"training dataset: {names}")


def _check_positive_number(name: str, value) -> float:
    return check_number(value, name, strictly_above=True, error=SamplerConfigError)


def _sample_due_time(k: int, probability: float) -> float:
    """When the k-th (1-based) sample of a dataset with this probability is due (Sainte-Laguë)."""
    return (k - 0.5) / probability


def _samples_due_by(time: float, probability: float) -> int:
    """How many samples of a dataset are due at or before `time`, counted with `_sample_due_time` itself.

    The closed-form guess can be off by one through float rounding; correcting it against the due
    times keeps the count consistent with the sample order for every time.
    """
    k = max(0, math.floor(time * probability + 0.5))
    while k >= 1 and _sample_due_time(k, probability) > time:
        k -= 1
    while _sample_due_time(k + 1, probability) <= time:
        k += 1
    return k


def cumulative_dataset_counts(probabilities: tuple[float, ...], num_samples: int) -> list[int]:
    """How many of the first `num_samples` samples of the mixed sequence come from each dataset.

    Samples are ordered by due time (see `_sample_due_time`), ties by dataset position. The counts sum
    to num_samples, never decrease as num_samples grows, and differ from num_samples * p_d by less
    than len(probabilities)/2 + 2.
    """
    if num_samples == 0:
        return [0] * len(probabilities)

    def due_by(time: float) -> list[int]:
        return [_samples_due_by(time, p) for p in probabilities]

    # Since sum(p) = 1, about t samples are due by time t (within n/2): the num_samples-th sample is
    # due near time num_samples, so only the samples due in a window around it need sorting.
    margin = len(probabilities) + 1
    low = num_samples - margin
    while sum(due_by(low)) > num_samples:
        low -= margin
    high = num_samples + margin
    while sum(due_by(high)) < num_samples:
        high += margin
    counts = due_by(low)
    high_counts = due_by(high)
    window = sorted((_sample_due_time(k, p), d)
                    for d, p in enumerate(probabilities)
                    for k in range(counts[d] + 1, high_counts[d] + 1))
    for _, d in window[: num_samples - sum(counts)]:
        counts[d] += 1
    return counts


def _dataset_name_key(name: str) -> int:
    """A stable integer for a dataset name (Python's hash() differs between processes)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


# eq=False: samplers compare by identity (they hold numpy caches, and two samplers are rarely "equal").
@dataclass(kw_only=True, eq=False)
class MultiDatasetSampler:
    """Batches of (dataset name, sample index) per rank and iteration; see the module docstring.

    dataset_sizes: {name: number of samples}; its order defines `flat_index`.
    batch_size: samples per rank per iteration.
    weighting: mixed mode only; None means "equal", or "explicit" when `weights` is given.
    max_iters / num_examples: the run length, at most one of them; neither gives an endless iterator.
    start_iter: the first iteration `__iter__` yields (set by `load_state_dict`).
    """

    dataset_sizes: dict[str, int]
    batch_size: int
    world_size: int = 1
    rank: int = 0
    mode: str = "mixed"
    weighting: str | None = None
    temperature: float | None = None
    weights: dict[str, float] | None = None
    dataset_gpu_mapping: dict[str, list[int]] | None = None
    seed: int = 0
    max_iters: int | None = None
    num_examples: int | None = None
    start_iter: int = 0

    # Resolved in __post_init__.
    dataset_names: tuple[str, ...] = field(init=False)
    probabilities: dict[str, float] | None = field(init=False)
    rank_dataset: str | None = field(init=False)
    iteration: int = field(init=False)
    _offsets: dict[str, int] = field(init=False, repr=False)
    _permutations: dict[str, dict[int, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate_datasets()
        check_int(self.batch_size, "batch_size", minimum=1, error=SamplerConfigError)
        check_int(self.world_size, "world_size", minimum=1, error=SamplerConfigError)
        check_int(self.rank, "rank", minimum=0, error=SamplerConfigError)
        if self.rank >= self.world_size:
            raise SamplerConfigError(f"rank={self.rank} is not below world_size={self.world_size}: "
                                     f"valid ranks are 0..{self.world_size - 1}")
        check_int(self.seed, "seed", minimum=0, error=SamplerConfigError)
        check_sampling(dataset_names=self.dataset_names, mode=self.mode, weighting=self.weighting,
                       temperature=self.temperature, weights=self.weights,
                       dataset_gpu_mapping=self.dataset_gpu_mapping, world_size=self.world_size)
        self.probabilities = None
        self.rank_dataset = None
        if self.mode == "mixed":
            self._resolve_mixed()
        else:
            self._resolve_per_rank()
        self._resolve_run_length()
        self.iteration = self.start_iter
        self._permutations = {name: {} for name in self.dataset_names}

    # ----------------------------------------------------------------------------------- validation

    def _validate_datasets(self) -> None:
        if not isinstance(self.dataset_sizes, dict) or not self.dataset_sizes:
            raise SamplerConfigError(f"dataset_sizes must be a non-empty dict {{name: size}}, "
                                     f"got {self.dataset_sizes!r}")
        for name, size in self.dataset_sizes.items():
            if not isinstance(name, str) or not name:
                raise SamplerConfigError(f"dataset names must be non-empty strings, got {name!r} in "
                                         f"dataset_sizes (datasets: {list(self.dataset_sizes)})")
            if not is_int(size):
                raise SamplerConfigError(f"dataset_sizes[{name!r}] must be an integer, got {size!r}")
            if size < 1:
                raise SamplerConfigError(f"dataset {name!r} is empty (dataset_sizes[{name!r}] = {size}); "
                                         f"every dataset needs at least one sample")
        # A private copy: changing the caller's dict later must not change the sample stream.
        self.dataset_sizes = {name: int(size) for name, size in self.dataset_sizes.items()}
        self.dataset_names = tuple(self.dataset_sizes)
        self._offsets = {}
        offset = 0
        for name in self.dataset_names:
            self._offsets[name] = offset
            offset += self.dataset_sizes[name]

    def _resolve_mixed(self) -> None:
        if self.weighting is None:
            self.weighting = "explicit" if self.weights is not None else "equal"
        sizes = np.array([self.dataset_sizes[name] for name in self.dataset_names], dtype=np.float64)
        if self.weighting == "equal":
            raw = np.ones_like(sizes)
        elif self.weighting == "size":
            raw = sizes
        elif self.weighting == "temperature":
            if self.temperature is None:
                self.temperature = DEFAULT_TEMPERATURE
            # In log space: large sizes to the power 1/T stay finite.
            log_raw = np.log(sizes) / float(self.temperature)
            raw = np.exp(log_raw - log_raw.max())
        else:
            raw = np.array([float(self.weights[name]) for name in self.dataset_names])
        self.probabilities = {name: float(p) for name, p in zip(self.dataset_names, raw / raw.sum())}

    def _resolve_per_rank(self) -> None:
        mapping = self.dataset_gpu_mapping
        self.dataset_gpu_mapping = {name: [int(rank) for rank in mapping[name]] for name in self.dataset_names}
        self.weighting = None
        self.rank_dataset = next(name for name, ranks in self.dataset_gpu_mapping.items() if self.rank in ranks)

    def _resolve_run_length(self) -> None:
        if self.max_iters is not None and self.num_examples is not None:
            raise SamplerConfigError(f"give max_iters or num_examples, not both (got max_iters="
                                     f"{self.max_iters}, num_examples={self.num_examples})")
        if self.num_examples is not None:
            self.max_iters = iterations_for_budget(num_examples=self.num_examples,
                                                   num_datasets=len(self.dataset_names),
                                                   batch_size=self.batch_size, world_size=self.world_size)
        elif self.max_iters is not None:
            check_int(self.max_iters, "max_iters", minimum=1, error=SamplerConfigError)
        check_int(self.start_iter, "start_iter", minimum=0, error=SamplerConfigError)
        if self.max_iters is not None and self.start_iter > self.max_iters:
            raise SamplerConfigError(f"start_iter={self.start_iter} is past max_iters={self.max_iters}")

    # ------------------------------------------------------------------------------------- sampling

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _epoch_permutation(self, name: str, epoch: int) -> np.ndarray:
        cache = self._permutations[name]
        if epoch not in cache:
            if len(cache) >= _CACHED_EPOCHS:
                del cache[max(cache, key=lambda cached: abs(cached - epoch))]
            generator = np.random.Generator(
                np.random.PCG64([self.seed, _PERMUTATION_STREAM, _dataset_name_key(name), epoch]))
            cache[epoch] = generator.permutation(self.dataset_sizes[name])
        return cache[epoch]

    def _stream_indices(self, name: str, start: int, stop: int) -> list[int]:
        """Sample indices at positions [start, stop) of dataset `name`'s endless stream of epochs."""
        size = self.dataset_sizes[name]
        indices: list[int] = []
        position = start
        while position < stop:
            epoch, offset = divmod(position, size)
            take = min(stop - position, size - offset)
            indices.extend(self._epoch_permutation(name, epoch)[offset:offset + take].tolist())
            position += take
        return indices

    def global_batch_at(self, iteration: int) -> list[tuple[str, int]]:
        """All ranks' samples at `iteration`, rank 0's batch first (mode='mixed' only)."""
        if self.mode != "mixed":
            raise SamplerConfigError("global_batch_at is for mode='mixed'; in mode='per_rank' each rank "
                                     "has its own dataset: use batch_at")
        check_int(iteration, "iteration", minimum=0, error=SamplerConfigError)
        probabilities = tuple(self.probabilities.values())
        size = self.global_batch_size
        before = cumulative_dataset_counts(probabilities, iteration * size)
        after = cumulative_dataset_counts(probabilities, (iteration + 1) * size)
        grouped = [(name, index)
                   for name, start, stop in zip(self.dataset_names, before, after)
                   for index in self._stream_indices(name, start, stop)]
        order = np.random.Generator(
            np.random.PCG64([self.seed, _SLOT_SHUFFLE_STREAM, iteration])).permutation(size)
        return [grouped[slot] for slot in order.tolist()]

    def batch_at(self, iteration: int) -> list[tuple[str, int]]:
        """This rank's batch at `iteration`: `batch_size` pairs (dataset name, sample index)."""
        check_int(iteration, "iteration", minimum=0, error=SamplerConfigError)
        if self.mode == "mixed":
            start = self.rank * self.batch_size
            return self.global_batch_at(iteration)[start:start + self.batch_size]
        name = self.rank_dataset
        ranks = self.dataset_gpu_mapping[name]
        # The dataset's ranks take consecutive chunks of its stream: replica j of R gets chunk j.
        start = (iteration * len(ranks) + ranks.index(self.rank)) * self.batch_size
        return [(name, index) for index in self._stream_indices(name, start, start + self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[str, int]]]:
        """Batches from start_iter up to max_iters (endless without one); `iteration` counts them."""
        iteration = self.start_iter
        while self.max_iters is None or iteration < self.max_iters:
            batch = self.batch_at(iteration)
            iteration += 1
            self.iteration = iteration
            yield batch

    def __len__(self) -> int:
        if self.max_iters is None:
            raise TypeError("this MultiDatasetSampler is endless and has no length: give max_iters or "
                            "num_examples")
        return self.max_iters - self.start_iter

    # --------------------------------------------------------------------------------- flat indices

    def flat_index(self, name: str, index: int) -> int:
        """Index of sample `index` of dataset `name` in ConcatDataset([datasets in dataset_sizes order])."""
        if name not in self._offsets:
            raise SamplerConfigError(f"unknown dataset {name!r}; valid datasets: {list(self.dataset_names)}")
        size = self.dataset_sizes[name]
        if not is_int(index) or not 0 <= index < size:
            raise SamplerConfigError(f"index {index!r} is out of range for dataset {name!r}: valid indices "
                                     f"are 0..{size - 1}")
        return self._offsets[name] + int(index)

    def split_flat_index(self, flat: int) -> tuple[str, int]:
        """Inverse of `flat_index`."""
        total = sum(self.dataset_sizes.values())
        if not is_int(flat) or not 0 <= flat < total:
            raise SamplerConfigError(f"flat index {flat!r} is out of range: valid flat indices are "
                                     f"0..{total - 1}")
        # The last dataset whose offset is <= flat (offsets start at 0 and increase).
        position = bisect.bisect_right(list(self._offsets.values()), flat) - 1
        name = self.dataset_names[position]
        return name, int(flat) - self._offsets[name]

    def global_index_batch_sampler(self) -> GlobalIndexBatchSampler:
        """This sampler's batches as lists of flat indices, for DataLoader(concat, batch_sampler=...)."""
        return GlobalIndexBatchSampler(sampler=self)

    # --------------------------------------------------------------------------------------- resume

    def _stream_fingerprint(self) -> dict:
        """Everything that decides the sample stream; rank and, in mixed mode, world_size alone do not."""
        fingerprint = {"mode": self.mode, "seed": self.seed, "dataset_sizes": dict(self.dataset_sizes)}
        if self.mode == "mixed":
            fingerprint["global_batch_size"] = self.global_batch_size
            fingerprint["probabilities"] = dict(self.probabilities)
        else:
            fingerprint["batch_size"] = self.batch_size
            fingerprint["dataset_gpu_mapping"] = {name: list(ranks)
                                                  for name, ranks in self.dataset_gpu_mapping.items()}
        return fingerprint

    def state_dict(self, iteration: int | None = None) -> dict:
        """{"iteration": k, "stream": ...}: resume with `load_state_dict` to continue at iteration k.

        By default k is the number of batches `__iter__` has yielded (plus start_iter). A DataLoader
        takes batches from its batch_sampler ahead of training (prefetch), so a training loop should
        pass its own count of finished iterations.
        """
        if iteration is None:
            iteration = self.iteration
        check_int(iteration, "iteration", minimum=0, error=SamplerConfigError)
        return {"iteration": int(iteration), "stream": self._stream_fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Continue at state["iteration"]; refuses a state saved from a sampler with another stream."""
        if not isinstance(state, dict) or "iteration" not in state:
            raise SamplerConfigError(f"sampler state must be a dict with key 'iteration' (and 'stream'), "
                                     f"got {state!r}")
        iteration = state["iteration"]
        check_int(iteration, "state['iteration']", minimum=0, error=SamplerConfigError)
        if "stream" in state:
            current = self._stream_fingerprint()
            saved = state["stream"]
            keys = sorted(set(current) | set(saved))
            differing = {key: (saved.get(key), current.get(key)) for key in keys
                         if saved.get(key) != current.get(key)}
            if differing:
                details = "; ".join(f"{key}: saved {old!r}, now {new!r}" for key, (old, new) in differing.items())
                raise SamplerConfigError(f"sampler state is for a different sample stream ({details}); "
                                         f"resuming would not continue the same sequence")
        if self.max_iters is not None and iteration > self.max_iters:
            raise SamplerConfigError(f"state['iteration']={iteration} is past max_iters={self.max_iters}")
        self.start_iter = int(iteration)
        self.iteration = int(iteration)


@dataclass
class GlobalIndexBatchSampler:
    """A MultiDatasetSampler's batches as lists of flat indices (see MultiDatasetSampler.flat_index)."""

    sampler: MultiDatasetSampler

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            yield [self.sampler.flat_index(name, index) for name, index in batch]

    def __len__(self) -> int:
        return len(self.sampler)
