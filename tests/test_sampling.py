"""Tests for unifiedseg.data.sampling: budgets, per-rank and mixed sampling, determinism, resume, errors."""

import json
from collections import Counter
from itertools import islice

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from unifiedseg.data.sampling import (
    MultiDatasetSampler,
    SamplerConfigError,
    cumulative_dataset_counts,
    iterations_for_budget,
)


def _index_counts(batches, name):
    """How often each sample index of dataset `name` appears in `batches`."""
    return Counter(index for batch in batches for dataset, index in batch if dataset == name)


def _assert_balanced(counts: Counter, size: int) -> None:
    """Epoch-wise without replacement: after m draws every index was drawn floor(m/size) or ceil times."""
    drawn = sum(counts.values())
    low, high = drawn // size, -(-drawn // size)
    assert set(counts) <= set(range(size))
    assert all(low <= counts.get(index, 0) <= high for index in range(size)), counts


# ----------------------------------------------------------------------------------------- budgets

def test_iterations_for_budget_matches_mseg_formula():
    # MSeg, 7 datasets on 7 GPUs, batch 4 per GPU: floor(1e6 / (4 * 1)) = 250000.
    assert iterations_for_budget(num_examples=1_000_000, num_datasets=7, batch_size=4, world_size=7) == 250_000
    # 3 datasets on 2 GPUs each, batch 2 per GPU: MSeg floor(3e6 / (2 * 2)) = 750000.
    assert iterations_for_budget(num_examples=3_000_000, num_datasets=3, batch_size=2, world_size=6) == 750_000
    # Rounds down, like MSeg's math.floor: floor(10 * 3 / 4) = 7.
    assert iterations_for_budget(num_examples=10, num_datasets=3, batch_size=4, world_size=1) == 7


def test_iterations_for_budget_too_small():
    with pytest.raises(SamplerConfigError, match=r"num_examples=1 .* 0 iterations"):
        iterations_for_budget(num_examples=1, num_datasets=2, batch_size=4, world_size=1)


def test_num_examples_sets_length_in_both_modes():
    mixed = MultiDatasetSampler(dataset_sizes={"a": 5, "b": 9}, batch_size=3, world_size=2, num_examples=30)
    assert mixed.max_iters == 10 and len(mixed) == 10  # floor(30 * 2 / 6)
    per_rank = MultiDatasetSampler(dataset_sizes={"a": 5, "b": 9}, batch_size=3, world_size=4,
                                   mode="per_rank", dataset_gpu_mapping={"a": [0, 1], "b": [2, 3]},
                                   num_examples=30, start_iter=2)
    assert per_rank.max_iters == 5 and len(per_rank) == 3  # floor(30 / (3 * 2)) = 5, minus start_iter
    assert len(list(per_rank)) == 3


# ---------------------------------------------------------------------------------------- per rank

MAPPING = {"a": [0, 2], "b": [1], "c": [3]}
SIZES = {"a": 40, "b": 7, "c": 1000}


def _per_rank(rank, **kwargs):
    return MultiDatasetSampler(dataset_sizes=SIZES, batch_size=5, world_size=4, rank=rank, mode="per_rank",
                               dataset_gpu_mapping=MAPPING, **kwargs)


def test_per_rank_draws_only_from_its_dataset():
    for rank, expected in [(0, "a"), (1, "b"), (2, "a"), (3, "c")]:
        sampler = _per_rank(rank)
        assert sampler.rank_dataset == expected
        for iteration in range(12):
            batch = sampler.batch_at(iteration)
            assert len(batch) == 5
            assert {name for name, _ in batch} == {expected}


def test_ranks_sharing_a_dataset_are_disjoint_within_an_epoch():
    rank0, rank2 = _per_rank(0), _per_rank(2)
    # Dataset a (40 samples) gets 2 ranks x 5 = 10 samples per iteration: 4 iterations per epoch.
    for epoch in range(3):
        iterations = range(4 * epoch, 4 * epoch + 4)
        first = [index for it in iterations for _, index in rank0.batch_at(it)]
        second = [index for it in iterations for _, index in rank2.batch_at(it)]
        assert not set(first) & set(second)
        assert sorted(first + second) == list(range(40))
    # The two ranks take consecutive chunks of one shuffled stream, so the stream (it, replica) order
    # is a permutation per epoch, and the next epoch is shuffled differently.
    stream = [index for it in range(8) for sampler in (rank0, rank2) for _, index in sampler.batch_at(it)]
    assert sorted(stream[:40]) == sorted(stream[40:]) == list(range(40))
    assert stream[:40] != stream[40:]


def test_per_rank_epoch_wise_without_replacement_across_epoch_boundaries():
    sampler = _per_rank(1)  # dataset b: 7 samples, batch 5, so batches straddle epochs
    stream = [index for it in range(14) for _, index in sampler.batch_at(it)]  # 70 draws = 10 epochs
    epochs = [stream[start:start + 7] for start in range(0, 70, 7)]
    assert all(sorted(epoch) == list(range(7)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) > 1


# ------------------------------------------------------------------------------------------- mixed

def _mixed_counts(sizes, iterations, batch_size, **kwargs):
    sampler = MultiDatasetSampler(dataset_sizes=sizes, batch_size=batch_size, **kwargs)
    return Counter(name for it in range(iterations) for name, _ in sampler.global_batch_at(it)), sampler


def test_mixed_equal_weighting_exact_per_batch():
    sampler = MultiDatasetSampler(dataset_sizes={"a": 1000, "b": 100, "c": 10}, batch_size=6)
    assert sampler.weighting == "equal"
    for iteration in range(50):
        # 6 slots over 3 equal datasets: stratified sampling gives exactly 2 each, every batch.
        assert Counter(name for name, _ in sampler.batch_at(iteration)) == {"a": 2, "b": 2, "c": 2}


@pytest.mark.parametrize("kwargs, sizes, expected", [
    # 2 ranks x 4 slots x 125 iterations = 1000 samples; bound n/2 + 2 = 3.5 around the hand-computed counts.
    ({"weighting": "equal"}, {"a": 900, "b": 100, "c": 16, "d": 1}, {"a": 250, "b": 250, "c": 250, "d": 250}),
    ({"weighting": "size"}, {"a": 600, "b": 300, "c": 100}, {"a": 600, "b": 300, "c": 100}),
    # p ∝ sqrt(size) = 30 : 10 : 4 of 44 -> 1000 * 30/44 = 681.8, 227.3, 90.9
    ({"weighting": "temperature", "temperature": 2.0}, {"a": 900, "b": 100, "c": 16},
     {"a": 681.8, "b": 227.3, "c": 90.9}),
    # p ∝ size^(1/4) = 3 : 1 of 4 (81 ** 0.25 = 3)
    ({"weighting": "temperature", "temperature": 4.0}, {"a": 81, "b": 1}, {"a": 750, "b": 250}),
    ({"weights": {"a": 3, "b": 1}}, {"a": 10, "b": 1000}, {"a": 750, "b": 250}),
])
def test_mixed_frequencies_follow_weights(kwargs, sizes, expected):
    counts, _ = _mixed_counts(sizes, iterations=125, batch_size=4, world_size=2, **kwargs)
    bound = len(sizes) / 2 + 2
    for name, value in expected.items():
        assert abs(counts[name] - value) < bound, (name, counts)


def test_default_temperature_is_square_root_and_temperature_one_is_size():
    _, square_root = _mixed_counts({"a": 900, "b": 100}, 0, 1, weighting="temperature")
    assert square_root.temperature == 2.0
    assert square_root.probabilities == pytest.approx({"a": 0.75, "b": 0.25})
    _, t1 = _mixed_counts({"a": 900, "b": 100}, 0, 1, weighting="temperature", temperature=1.0)
    assert t1.probabilities == pytest.approx({"a": 0.9, "b": 0.1})


def test_cumulative_counts_sum_monotone_and_bounded():
    probabilities = (0.5, 0.3, 0.15, 0.05)
    previous = [0, 0, 0, 0]
    for total in range(0, 500, 3):
        counts = cumulative_dataset_counts(probabilities, total)
        assert sum(counts) == total
        assert all(now >= before for now, before in zip(counts, previous))
        assert all(abs(count - total * p) < 4 for count, p in zip(counts, probabilities))
        previous = counts
    # Far into a run it is still a closed-form count, not a replay.
    assert sum(cumulative_dataset_counts(probabilities, 10**12)) == 10**12
    assert cumulative_dataset_counts((0.5, 0.5), 7) == [4, 3]  # ties go to the first dataset


def test_mixed_epoch_wise_without_replacement():
    sizes = {"big": 500, "small": 7, "tiny": 1}
    sampler = MultiDatasetSampler(dataset_sizes=sizes, batch_size=5, world_size=2, seed=3)
    batches = [sampler.global_batch_at(it) for it in range(40)]
    for end in range(1, 41):
        for name, size in sizes.items():
            _assert_balanced(_index_counts(batches[:end], name), size)
    # 400 samples, 1/3 each: "big" (500) never repeats yet, so all its samples so far are distinct.
    big = [index for batch in batches for name, index in batch if name == "big"]
    assert len(big) == len(set(big)) > 100


def test_union_of_ranks_equals_single_process_batch():
    sizes = {"a": 50, "b": 13, "c": 200}
    single = MultiDatasetSampler(dataset_sizes=sizes, batch_size=12, world_size=1, weighting="size", seed=5)
    ranks = [MultiDatasetSampler(dataset_sizes=sizes, batch_size=4, world_size=3, rank=rank,
                                 weighting="size", seed=5) for rank in range(3)]
    for iteration in range(30):
        union = [pair for sampler in ranks for pair in sampler.batch_at(iteration)]
        assert union == single.batch_at(iteration)


# ------------------------------------------------------------------------------------- determinism

def test_same_seed_same_batches_other_seed_or_rank_differs():
    def make(**kwargs):
        return MultiDatasetSampler(dataset_sizes={"a": 300, "b": 200}, batch_size=4, world_size=2,
                                   max_iters=20, **kwargs)

    first = list(make(seed=1))
    assert first == list(make(seed=1))
    assert first != list(make(seed=2))
    other_rank = list(make(seed=1, rank=1))
    assert all(mine != theirs for mine, theirs in zip(first, other_rank))
    assert _per_rank(0, max_iters=5, seed=1).batch_at(3) != _per_rank(0, max_iters=5, seed=2).batch_at(3)


def test_random_access_equals_sequential_iteration():
    sampler = MultiDatasetSampler(dataset_sizes={"a": 11, "b": 3}, batch_size=4, max_iters=25)
    sequential = list(sampler)
    fresh = MultiDatasetSampler(dataset_sizes={"a": 11, "b": 3}, batch_size=4, max_iters=25)
    assert [fresh.batch_at(it) for it in reversed(range(25))] == sequential[::-1]


# ------------------------------------------------------------------------------------------ resume

@pytest.mark.parametrize("mode_kwargs", [
    {"weighting": "temperature", "temperature": 3.0},
    {"mode": "per_rank", "dataset_gpu_mapping": {"a": [0], "b": [1]}},
])
def test_resume_from_iteration_equals_uninterrupted_tail(mode_kwargs):
    def make(**kwargs):
        return MultiDatasetSampler(dataset_sizes={"a": 9, "b": 30}, batch_size=4, world_size=2, rank=1,
                                   seed=7, max_iters=30, **mode_kwargs, **kwargs)

    full = list(make())
    assert len(full) == 30
    assert list(make(start_iter=12)) == full[12:]

    interrupted = make()
    assert list(islice(interrupted, 12)) == full[:12]
    state = json.loads(json.dumps(interrupted.state_dict()))  # must survive a JSON checkpoint
    assert state["iteration"] == 12
    resumed = make()
    resumed.load_state_dict(state)
    assert len(resumed) == 18
    assert list(resumed) == full[12:]
    assert resumed.state_dict()["iteration"] == 30
    assert make().state_dict(iteration=5)["iteration"] == 5


def test_mixed_state_loads_with_other_world_size_of_same_global_batch():
    def make(batch_size, world_size):
        return MultiDatasetSampler(dataset_sizes={"a": 9, "b": 30}, batch_size=batch_size,
                                   world_size=world_size, max_iters=10)

    state = make(4, 2).state_dict(iteration=3)
    resumed = make(2, 4)
    resumed.load_state_dict(state)
    assert resumed.start_iter == 3
    with pytest.raises(SamplerConfigError, match=r"global_batch_size: saved 8, now 6"):
        make(2, 3).load_state_dict(state)


def test_load_state_refuses_other_stream():
    state = MultiDatasetSampler(dataset_sizes={"a": 9}, batch_size=2, seed=1).state_dict(iteration=4)
    with pytest.raises(SamplerConfigError, match=r"seed: saved 1, now 2"):
        MultiDatasetSampler(dataset_sizes={"a": 9}, batch_size=2, seed=2).load_state_dict(state)
    with pytest.raises(SamplerConfigError, match=r"dataset_sizes: saved \{'a': 9\}, now \{'a': 10\}"):
        MultiDatasetSampler(dataset_sizes={"a": 10}, batch_size=2, seed=1).load_state_dict(state)
    with pytest.raises(SamplerConfigError, match=r"state\['iteration'\]=4 is past max_iters=3"):
        MultiDatasetSampler(dataset_sizes={"a": 9}, batch_size=2, seed=1, max_iters=3).load_state_dict(state)
    with pytest.raises(SamplerConfigError, match=r"key 'iteration'"):
        MultiDatasetSampler(dataset_sizes={"a": 9}, batch_size=2).load_state_dict({"iter": 3})


# ------------------------------------------------------------------------------------ flat indices

def test_flat_index_follows_dataset_sizes_order():
    sampler = MultiDatasetSampler(dataset_sizes={"a": 3, "b": 5, "c": 2}, batch_size=1)
    assert [sampler.flat_index("a", 0), sampler.flat_index("b", 0), sampler.flat_index("b", 4),
            sampler.flat_index("c", 1)] == [0, 3, 7, 9]
    assert [sampler.split_flat_index(flat) for flat in (0, 2, 3, 7, 8, 9)] == [
        ("a", 0), ("a", 2), ("b", 0), ("b", 4), ("c", 0), ("c", 1)]
    with pytest.raises(SamplerConfigError, match=r"index 5 is out of range for dataset 'b': valid indices are 0..4"):
        sampler.flat_index("b", 5)
    with pytest.raises(SamplerConfigError, match=r"unknown dataset 'z'; valid datasets: \['a', 'b', 'c'\]"):
        sampler.flat_index("z", 0)
    with pytest.raises(SamplerConfigError, match=r"flat index 10 is out of range: valid flat indices are 0..9"):
        sampler.split_flat_index(10)


def test_dataloader_batch_sampler_over_concat_dataset():
    sizes = {"a": 6, "b": 4, "c": 3}
    sampler = MultiDatasetSampler(dataset_sizes=sizes, batch_size=5, max_iters=7, weighting="size")
    # Each sample is its (dataset position, index), so the loader's output shows what was loaded.
    parts = [TensorDataset(torch.tensor([[position, index] for index in range(size)]))
             for position, size in enumerate(sizes.values())]
    loader = DataLoader(ConcatDataset(parts), batch_sampler=sampler.global_index_batch_sampler())
    assert len(loader) == 7
    loaded = [[(sampler.dataset_names[p], i) for p, i in batch.tolist()] for (batch,) in loader]
    assert loaded == [sampler.batch_at(it) for it in range(7)]


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs, message", [
    ({"dataset_sizes": {"a": 3, "b": 0}}, r"dataset 'b' is empty \(dataset_sizes\['b'\] = 0\)"),
    ({"dataset_sizes": {}}, r"dataset_sizes must be a non-empty dict"),
    ({"dataset_sizes": {"a": 2.5}}, r"dataset_sizes\['a'\] must be an integer, got 2.5"),
    ({"batch_size": 0}, r"batch_size: must be an integer >= 1, got 0"),
    ({"rank": 2, "world_size": 2}, r"rank=2 is not below world_size=2: valid ranks are 0..1"),
    ({"seed": -1}, r"seed: must be an integer >= 0, got -1"),
    ({"mode": "global"}, r"mode: must be one of mixed, per_rank, got 'global'"),
    ({"weighting": "sqrt"}, r"weighting: must be one of equal, size, temperature, explicit, got 'sqrt'"),
    ({"weights": {"a": 1, "b": 1, "x": 2}}, r"weights: names unknown dataset\(s\) \['x'\]; valid datasets: \['a', 'b'\]"),
    ({"weights": {"a": 1}}, r"weights: leaves out dataset\(s\) \['b'\]; .* \['a', 'b'\]"),
    ({"weights": {"a": 1, "b": 0}}, r"weights\['b'\]: must be a number > 0, got 0"),
    ({"weights": {"a": -2.0, "b": 1}}, r"weights\['a'\]: must be a number > 0, got -2.0"),
    ({"weights": {"a": float("nan"), "b": 1}}, r"weights\['a'\]: must be a number > 0, got nan"),
    ({"weighting": "size", "weights": {"a": 1, "b": 1}}, r"weights: are used exactly when weighting='explicit'"),
    ({"weighting": "explicit"}, r"weights: are used exactly when weighting='explicit'"),
    ({"temperature": 2.0}, r"temperature: 2.0 is only used with weighting='temperature', but weighting='equal'"),
    ({"weighting": "temperature", "temperature": 0}, r"temperature: must be a number > 0, got 0"),
    ({"dataset_gpu_mapping": {"a": [0], "b": [0]}}, r"dataset_gpu_mapping: is only used with mode='per_rank'"),
    ({"max_iters": 5, "num_examples": 10}, r"give max_iters or num_examples, not both"),
    ({"max_iters": 5, "start_iter": 6}, r"start_iter=6 is past max_iters=5"),
    ({"max_iters": 0}, r"max_iters: must be an integer >= 1, got 0"),
])
def test_mixed_config_errors(kwargs, message):
    arguments = {"dataset_sizes": {"a": 3, "b": 4}, "batch_size": 2, **kwargs}
    with pytest.raises(SamplerConfigError, match=message):
        MultiDatasetSampler(**arguments)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset_gpu_mapping": None}, r"dataset_gpu_mapping: mode='per_rank' needs a mapping"),
    ({"dataset_gpu_mapping": {"a": [0], "b": [1], "c": [2]}},
     r"dataset_gpu_mapping: names unknown dataset\(s\) \['c'\]; valid datasets: \['a', 'b'\]"),
    ({"dataset_gpu_mapping": {"a": [0, 1, 2]}},
     r"dataset_gpu_mapping: leaves out dataset\(s\) \['b'\]"),
    ({"dataset_gpu_mapping": {"a": [0, 1, 2], "b": []}}, r"dataset_gpu_mapping\['b'\]: is empty"),
    ({"dataset_gpu_mapping": {"a": [0, 1], "b": [2]}, "world_size": 4},
     r"dataset_gpu_mapping: rank\(s\) \[3\] have no dataset; each of ranks 0..3 needs exactly one"),
    ({"dataset_gpu_mapping": {"a": [0, 1], "b": [1, 2]}}, r"rank 1 is assigned to both 'a' and 'b'"),
    ({"dataset_gpu_mapping": {"a": [0, 0], "b": [1, 2]}}, r"rank 0 is assigned twice"),
    ({"dataset_gpu_mapping": {"a": [0, 1], "b": [2, 3]}},
     r"dataset_gpu_mapping\['b'\]: has rank 3, but world_size=3: valid ranks are 0..2"),
    ({"dataset_gpu_mapping": {"a": 0, "b": [1, 2]}}, r"dataset_gpu_mapping\['a'\]: must be a list of ranks"),
    ({"weights": {"a": 1, "b": 1}}, r"weights: .* is only used with mode='mixed'"),
    ({"weighting": "size"}, r"weighting: 'size' is only used with mode='mixed'"),
])
def test_per_rank_config_errors(kwargs, message):
    arguments = {"dataset_sizes": {"a": 3, "b": 4}, "batch_size": 2, "world_size": 3, "mode": "per_rank",
                 "dataset_gpu_mapping": {"a": [0, 1], "b": [2]}, **kwargs}
    with pytest.raises(SamplerConfigError, match=message):
        MultiDatasetSampler(**arguments)


def test_endless_sampler_has_no_length_but_iterates():
    sampler = MultiDatasetSampler(dataset_sizes={"a": 3}, batch_size=2)
    with pytest.raises(TypeError, match=r"endless .* give max_iters or num_examples"):
        len(sampler)
    assert len(list(islice(sampler, 50))) == 50
    with pytest.raises(SamplerConfigError, match=r"iteration: must be an integer >= 0, got -1"):
        sampler.batch_at(-1)
