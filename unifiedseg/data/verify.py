"""Check every sample of a list up front: files exist, decode completely, sizes agree, label ids are
within the dataset's taxonomy (image-only test lists: the images). Reports every bad line, not just the
first."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from unifiedseg.data.decode import BadSampleError, read_image
from unifiedseg.data.labels import LabelMapper
from unifiedseg.data.listfile import ListEntry


@dataclass(frozen=True)
class SampleProblem:
    entry: ListEntry
    problem: str  # "path: what is wrong"

    def __str__(self) -> str:
        return f"line {self.entry.line}: {self.problem}"


def check_sample(entry: ListEntry, mapper: LabelMapper) -> str | None:
    """None when the sample is good, else the problem (naming the file)."""
    try:
        image = read_image(entry.image)
        if entry.label is None:  # an image-only (test) list
            return None
        label = mapper.read_mapped(entry)  # relabel segments too: a record naming a missing one is bad
    except BadSampleError as err:
        return str(err)
    if image.shape[:2] != label.shape:
        return f"{entry.image}: image is {image.shape[0]}x{image.shape[1]} but its label {entry.label} is {label.shape[0]}x{label.shape[1]}"
    return None


def _check(args):
    return check_sample(*args)


def verify_samples(entries: list[ListEntry], mapper: LabelMapper, workers: int = 0,
                   progress: bool = True) -> list[SampleProblem]:
    """Every problem among `entries`, in list order. `workers` > 0 decodes in that many processes."""
    jobs = [(entry, mapper) for entry in entries]
    bar = dict(total=len(jobs), desc=f"verify {mapper.dataset}", unit="sample", disable=not progress)
    if workers > 0:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_check, jobs, chunksize=16), **bar))
    else:
        results = [check_sample(*job) for job in tqdm(jobs, **bar)]
    return [SampleProblem(entry, problem) for entry, problem in zip(entries, results) if problem]
