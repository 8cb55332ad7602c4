"""Datasets that decode a sample, augment it and map its label into the training label space.

`SegmentationDataset` is one dataset's split. `MultiDataset` holds several by name and is indexed by
`SampleKey`s that `KeyedBatchSampler` makes from a `MultiDatasetSampler`: the key carries the
iteration and the slot in the global batch (rank * batch_size + position), so each draw's
augmentation is seeded by (seed, iteration, slot, index). A run is then reproducible and resumable
whatever the number of loader workers, and N processes draw exactly the crops one process with
N times the batch draws.

Errors in loader workers: torch re-raises an exception of a DataLoader worker in the main process as
a RuntimeError holding the worker's traceback text. So a worker catches the project's own errors (a
BadSampleError naming the file and list line) and sends them as the batch (`WORKER_ERROR`);
`raise_worker_errors` around the loader raises them in the main process as they were, and the user
reads the same one-line message as without workers.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from unifiedseg.data.decode import BadSampleError, read_image
from unifiedseg.data.labels import LabelMapper, build_label_mapper, read_entries
from unifiedseg.data.listfile import ListEntry
from unifiedseg.data.registry import DatasetInfo
from unifiedseg.data.transforms import TrainTransform, ValTransform, decode_reduction

logger = logging.getLogger(__name__)

ON_BAD_SAMPLE = ("error", "skip")
# How many following samples a `skip` policy tries before giving up on a run of bad files.
MAX_CONSECUTIVE_BAD = 16
# The key of a sample (and of a batch) that carries an error from a loader worker to the main process.
WORKER_ERROR = "worker_error"


class SampleKey(NamedTuple):
    """Which sample to load, and which draw it is (for the augmentation's random seed)."""

    dataset: str
    index: int
    iteration: int = 0
    slot: int = 0  # position in the global batch


@dataclass
class SegmentationDataset(torch.utils.data.Dataset):
    """One dataset split: entries of its list file, a label mapper, a transform.

    Items are dicts: image (float32 CHW, or uint8 CHW when the transform does not normalise); label
    (training ids, int64 HW, or uint8 / int32 when the transform does not normalise; ignored pixels
    hold the label space's ignore label, `label_mapper.ignore_index`); dataset (name); path (image
    file); bad_samples (problems of files skipped to produce this item, under on_bad_sample='skip').
    """

    name: str
    entries: list[ListEntry]
    label_mapper: LabelMapper
    transform: TrainTransform | ValTransform | None = None
    on_bad_sample: str = "error"
    seed: int = 0
    reduced_decoding: bool = True  # decode JPEGs at 1/2, 1/4, 1/8 when the warp shrinks them that much

    def __post_init__(self) -> None:
        if self.on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f"data.on_bad_sample must be one of {', '.join(ON_BAD_SAMPLE)}, got {self.on_bad_sample!r}")

    @classmethod
    def from_registry(cls, info: DatasetInfo, split: str, data_root, *, converter=None, partial: bool = False,
                      label_source: str = "prepared", strict_relabel: bool = False, **kwargs) -> "SegmentationDataset":
        """`converter=None` keeps the dataset's own label ids (oracle runs, evaluation in its own space);
        `partial=True` keeps one-to-many classes for the partial-label loss; `label_source` reads the
        files MSeg's preparation wrote (`prepared`) or the publisher's, relabeled on the fly (`raw`)."""
        entries = read_entries(info, split, data_root, label_source)
        mapper = build_label_mapper(info, converter, partial, mode=label_source, data_root=data_root,
                                    strict_relabel=strict_relabel)
        return cls(name=info.name, entries=entries, label_mapper=mapper, **kwargs)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key) -> dict:
        key = key if isinstance(key, SampleKey) else SampleKey(self.name, int(key))
        problems = []
        index = key.index
        for _ in range(MAX_CONSECUTIVE_BAD):
            try:
                item = self.load(index, key)
                item["bad_samples"] = problems
                return item
            except BadSampleError as err:
                if self.on_bad_sample == "error":
                    raise BadSampleError(err.path, f"{err.problem} (dataset {self.name}, list line "
                                                   f"{self.entries[index].line}; set data.on_bad_sample=skip to skip bad samples)") from None
                logger.warning("skipping bad sample of %s: %s", self.name, err)
                problems.append(str(err))
                index = (index + 1) % len(self.entries)
        raise BadSampleError(self.entries[key.index].image, f"{MAX_CONSECUTIVE_BAD} consecutive bad samples from list line "
                                                            f"{self.entries[key.index].line} of {self.name}: " + "; ".join(problems))

    def load(self, index: int, key: SampleKey) -> dict:
        entry = self.entries[index]
        read = self.label_mapper.read(entry)
        # uint8 ids are mapped after the warp, on the crop (a quarter of a 1080p frame): the warp only
        # moves ids and pads with 255, which every mapping sends to the space's ignore label (255 or
        # 65535). uint16 releases are mapped first.
        # Images with relabel edits are mapped first too (their segment masks are full size).
        map_after_warp = read.disk.dtype == np.uint8 and not read.edits and isinstance(self.transform, TrainTransform)
        label = read.disk if map_after_warp else self.label_mapper.map(read)
        if isinstance(self.transform, TrainTransform):
            rng = np.random.default_rng([self.seed, key.iteration, key.slot, index])
            params = self.transform.sample_params(label.shape, rng)
            reduction = decode_reduction(params) if self.reduced_decoding else 1
            image = read_image(entry.image, reduce=reduction)
            _check_size(entry, image, label, reduction)
            image, label = self.transform.apply(image, label, params, decoded_scale=1.0 / reduction)
            image_t, label_t = self.transform.to_tensors(image, self.label_mapper(label) if map_after_warp else label)
        else:
            image = read_image(entry.image)
            _check_size(entry, image, label, 1)
            if self.transform is not None:
                image_t, label_t = self.transform(image, label)
            else:
                image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
                label_t = torch.from_numpy(label.astype(np.int64))
        return {"image": image_t, "label": label_t, "dataset": self.name, "path": str(entry.image)}


def _check_size(entry: ListEntry, image: np.ndarray, label: np.ndarray, reduction: int) -> None:
    # A reduced decode is ceil(side / k) for JPEGs and round(side / k) for other formats.
    expected = [(-(-side // reduction), round(side / reduction)) for side in label.shape]
    if not all(got in allowed for got, allowed in zip(image.shape[:2], expected)):
        full = f"{image.shape[0]}x{image.shape[1]}" if reduction == 1 else f"about {image.shape[0] * reduction}x{image.shape[1] * reduction}"
        raise BadSampleError(entry.image, f"image is {full} but its label {entry.label} is {label.shape[0]}x{label.shape[1]}")


class MultiDataset(torch.utils.data.Dataset):
    """Several SegmentationDatasets indexed by SampleKey(dataset, index, iteration, slot)."""

    def __init__(self, datasets: list[SegmentationDataset]):
        self.datasets = {d.name: d for d in datasets}
        if len(self.datasets) != len(datasets):
            raise ValueError(f"a dataset is listed twice: {[d.name for d in datasets]}")

    def sizes(self) -> dict[str, int]:
        return {name: len(d) for name, d in self.datasets.items()}

    def __len__(self) -> int:
        return sum(self.sizes().values())

    def __getitem__(self, key: SampleKey) -> dict:
        try:
            return self.datasets[key.dataset][key]
        except Exception as err:  # noqa: BLE001 -- re-raised here, or by raise_worker_errors in the main process
            if torch.utils.data.get_worker_info() is None or not _sendable(err):
                raise
            return {WORKER_ERROR: err}


def _sendable(err: Exception) -> bool:
    """Whether a worker sends `err` to the main process as it is: one of the project's errors (worded for
    the user; other errors keep torch's traceback, which a bug needs) that survives pickling."""
    if not type(err).__module__.startswith("unifiedseg."):
        return False
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 -- not sendable, whatever the reason
        return False
    return True


def raise_worker_errors(batches: Iterator[dict]) -> Iterator[dict]:
    """The batches of a DataLoader over a MultiDataset; an error a worker sent instead of a batch is raised."""
    for batch in batches:
        if WORKER_ERROR in batch:
            raise batch[WORKER_ERROR]
        yield batch


class KeyedBatchSampler:
    """Turns a MultiDatasetSampler's batches into lists of SampleKeys, from `start_iter` (default: the
    sampler's own start, which `load_state_dict` sets on resume) up to its max_iters."""

    def __init__(self, sampler, start_iter: int | None = None):
        self.sampler = sampler
        self.start_iter = start_iter

    def _range(self) -> range:
        start = self.sampler.start_iter if self.start_iter is None else self.start_iter
        return range(start, self.sampler.max_iters)

    def __iter__(self):
        offset = self.sampler.rank * self.sampler.batch_size
        for iteration in self._range():
            batch = self.sampler.batch_at(iteration)
            yield [SampleKey(name, index, iteration, offset + slot) for slot, (name, index) in enumerate(batch)]

    def __len__(self) -> int:
        return len(self._range())


def collate(items: list[dict]) -> dict:
    """Stack images and labels; keep dataset names and paths as lists; gather skipped-sample problems. A
    batch with a sample that failed in a loader worker is that sample's error (`WORKER_ERROR`)."""
    failed = [item[WORKER_ERROR] for item in items if WORKER_ERROR in item]
    if failed:
        return {WORKER_ERROR: failed[0]}
    return {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.stack([item["label"] for item in items]),
        "dataset": [item["dataset"] for item in items],
        "path": [item["path"] for item in items],
        "bad_samples": [problem for item in items for problem in item.get("bad_samples", [])],
    }
