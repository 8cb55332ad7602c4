"""Map each dataset's label ids into one label space, and universal predictions back to test datasets.

Three label spaces share one API (`TaxonomyConverter`):
- unified: MSeg's universal classes from a taxonomy TSV (`TaxonomyConverter.from_tsv`);
- naive: MSeg's naive-merge baseline, the union of the datasets' class names merged only where
  names are identical (`NaiveTaxonomyConverter.from_tsv`);
- oracle: one dataset in its own taxonomy, identity mapping (`OracleTaxonomyConverter.for_dataset`).

A dataset class maps to a set of classes of the label space: one class (the usual case), none (it
is ignored), or several (one-to-many, written `~name` in the TSV). `label_lut` gives a hard label
only for the first case; the others become the ignore label there, and `target_sets` keeps the sets
for the partial-label loss.

Label maps of a space are uint8 with ignore label 255 when its classes (and one-to-many class sets)
number at most 255, uint16 with ignore label 65535 otherwise (`unifiedseg.constants.label_dtype`):
`label_dtype` and `ignore_index` say which, and every consumer of its label maps reads them there.
Dataset label ids (a dataset's own taxonomy) are always uint8.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from unifiedseg.constants import IGNORE_INDEX, MAX_WIDE_CLASSES, WIDE_IGNORE_INDEX, ignore_index_of, label_dtype
from unifiedseg.taxonomy.table import UNLABELED, TaxonomyError, TaxonomyTable, parse_cell
from unifiedseg.taxonomy.validate import raise_on_errors, validate
from unifiedseg.utils.names import suggest

# The converter kinds a config may name (taxonomy.kind).
TAXONOMY_KINDS = ("unified", "naive", "mseg-naive", "oracle")


@dataclass(frozen=True)
class DatasetMapping:
    """How one training dataset's label ids map into the label space.

    targets[i] is the set of label-space class ids that dataset class i may be (empty: ignored).
    """

    class_names: tuple[str, ...]
    targets: tuple[frozenset[int], ...]


@dataclass(frozen=True)
class TestMapping:
    """How label-space classes count towards a test dataset's classes.

    test_class_of[u] is the test class id that label-space class u counts towards, or None.
    """

    class_names: tuple[str, ...]
    test_class_of: tuple[int | None, ...]


class TaxonomyConverter:
    """Maps dataset label ids to a shared label space and shared-space predictions to test datasets."""

    kind = "unified"

    def __init__(self, *, class_names: list[str], train: dict[str, DatasetMapping],
                 test: dict[str, TestMapping], source: str = "") -> None:
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.source = source
        self._train = dict(train)
        self._test = dict(test)
        num_values = self.num_classes + len(self.partial_sets())
        if num_values > MAX_WIDE_CLASSES:
            raise TaxonomyError(f"{source or self.kind}: {self.num_classes} classes and {num_values - self.num_classes} "
                                f"one-to-many class sets; label maps hold at most {MAX_WIDE_CLASSES} "
                                f"({WIDE_IGNORE_INDEX} is the ignore label of uint16 maps)")
        self.label_dtype = label_dtype(num_values)  # of all this space's label maps, hard or partial
        self._luts: dict[tuple[str, bool], np.ndarray] = {}
        self._torch_luts: dict[tuple[str, torch.device], torch.Tensor] = {}

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_tsv(cls, tsv="mseg", train_datasets=None, test_datasets=None) -> "TaxonomyConverter":
        """Load a taxonomy TSV (`"mseg"`, `"demo"` or a path). None selects every dataset column of that kind."""
        table = _load_valid_table(tsv)
        train_datasets = _select(table, train_datasets, table.train_datasets, "training")
        test_datasets = _select(table, test_datasets, table.test_datasets, "test")
        rows = table.class_row_indices
        train = {}
        for dataset in train_datasets:
            names = table.dataset_names(dataset)
            targets: dict[str, set[int]] = {name: set() for name in names}
            for universal_id, row in enumerate(rows):
                for entry in parse_cell(table.cell(row, dataset)):
                    targets[entry.name].add(universal_id)
            train[dataset] = DatasetMapping(tuple(names), tuple(frozenset(targets[n]) for n in names))
        test = {}
        for dataset in test_datasets:
            names = table.dataset_names(dataset)
            first_id = {}
            for i, name in enumerate(names):
                first_id.setdefault(name, i)
            test_class_of = []
            for row in rows:
                entries = parse_cell(table.cell(row, dataset))
                test_class_of.append(first_id[entries[0].name] if entries else None)
            test[dataset] = TestMapping(tuple(names), tuple(test_class_of))
        return cls(class_names=table.class_names, train=train, test=test, source=str(table.path))

    # ---- what it holds -------------------------------------------------------------------------
    @property
    def ignore_index(self) -> int:
        """The ignore label of this space's label maps: 255 for uint8, 65535 for uint16."""
        return ignore_index_of(self.label_dtype)

    @property
    def train_datasets(self) -> list[str]:
        return list(self._train)

    @property
    def test_datasets(self) -> list[str]:
        return list(self._test)

    def dataset_class_names(self, dataset: str) -> list[str]:
        """Class names of a training or test dataset, by label id."""
        if dataset in self._train:
            return list(self._train[dataset].class_names)
        return list(self._test_mapping(dataset).class_names)

    def _mapping(self, dataset: str) -> DatasetMapping:
        try:
            return self._train[dataset]
        except KeyError:
            raise TaxonomyError(f"{dataset!r} is not a training dataset of this {self.kind} taxonomy ({self.source}); "
                                f"training datasets: {', '.join(self._train) or 'none'}") from None

    def _test_mapping(self, dataset: str) -> TestMapping:
        try:
            return self._test[dataset]
        except KeyError:
            raise TaxonomyError(f"{dataset!r} is not a test dataset of this {self.kind} taxonomy ({self.source}); "
                                f"test datasets: {', '.join(self._test) or 'none'}") from None

    # ---- label maps ----------------------------------------------------------------------------
    def label_lut(self, dataset: str, partial: bool = False) -> np.ndarray:
        """(256,) table of `label_dtype`: dataset label id -> class id; ignored, one-to-many and unknown
        ids -> `ignore_index` (255, or 65535 in a space of more than 255 values).

        With `partial=True` a one-to-many class maps to num_classes + the index of its set in
        `partial_sets()` instead (for training with the partial-label loss).
        """
        key = (dataset, partial)
        if key not in self._luts:
            lut = np.full(256, self.ignore_index, dtype=self.label_dtype)
            partial_index = {s: i for i, s in enumerate(self.partial_sets())} if partial else {}
            for class_id, targets in enumerate(self._mapping(dataset).targets):
                if len(targets) == 1:
                    lut[class_id] = next(iter(targets))
                elif len(targets) > 1 and partial:
                    lut[class_id] = self.num_classes + partial_index[targets]
            lut.flags.writeable = False
            self._luts[key] = lut
        return self._luts[key]

    def to_universal(self, label, dataset: str, strict: bool = False):
        """Map a label map (numpy or torch, any shape, integer dtype) to class ids by table lookup.

        Returns the same kind, and the same dtype when it holds the space's ids (always in spaces of
        at most 255 values); otherwise the space's `label_dtype` for numpy, int32 for torch (whose
        uint16 tensors support few operations). `strict=True` raises on ids that are neither a class
        of `dataset` nor 255, naming them; otherwise such ids become `ignore_index` like label_lut says.
        """
        lut = self.label_lut(dataset)
        if strict:
            self.check_label_ids(label, dataset)
        if isinstance(label, torch.Tensor):
            return self._to_universal_torch(label, dataset, lut)
        label = np.asarray(label)
        _check_integer(label.dtype, dataset)
        out_dtype = label.dtype if np.iinfo(label.dtype).max >= self.ignore_index else lut.dtype
        if label.dtype == np.uint8:
            return _lookup_uint8(label, lut).astype(out_dtype, copy=False)
        _check_range(label, dataset)
        return lut[label].astype(out_dtype, copy=False)

    def _to_universal_torch(self, label: torch.Tensor, dataset: str, lut: np.ndarray) -> torch.Tensor:
        if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            raise TypeError(f"label map for {dataset!r} must have an integer dtype, got {label.dtype}")
        out_dtype = label.dtype if torch.iinfo(label.dtype).max >= self.ignore_index else torch.int32
        if label.dtype == torch.uint8 and label.device.type == "cpu":
            return torch.from_numpy(_lookup_uint8(label.numpy(), lut)).to(out_dtype)
        if label.dtype != torch.uint8:
            _check_range(label, dataset)
        key = (dataset, label.device)
        if key not in self._torch_luts:
            self._torch_luts[key] = torch.from_numpy(lut.astype(np.int64)).to(label.device)
        return self._torch_luts[key][label.long()].to(out_dtype)

    def check_label_ids(self, label, dataset: str, source: str = "") -> None:
        """Raise ValueError naming every id in `label` that is neither a class of `dataset` nor 255."""
        n = len(self._mapping(dataset).class_names)
        values = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        _check_integer(values.dtype, dataset)
        if values.dtype != np.uint8:
            _check_range(values, dataset, source)
        bad = unknown_label_ids(values.reshape(1, -1).astype(np.uint8, copy=False), n)
        if bad:
            listed = ", ".join(f"{i} ({count} px)" for i, count in list(bad.items())[:10])
            raise ValueError(f"{source + ': ' if source else ''}label ids {listed} are outside {dataset}'s {n} classes "
                             f"(valid: 0-{n - 1}, and {IGNORE_INDEX} for unlabeled)")

    def partial_sets(self) -> list[frozenset[int]]:
        """The distinct class sets of one-to-many classes over all training datasets, in a fixed order.

        Training labels encode a pixel of such a class as num_classes + its set's position here
        (`label_lut(dataset, partial=True)`), so one label map carries hard and partial labels through
        augmentation; the partial-label loss reads them back with `split_partial_labels`.
        """
        seen: dict[frozenset[int], None] = {}
        for mapping in self._train.values():
            for targets in mapping.targets:
                if len(targets) > 1:
                    seen.setdefault(targets, None)
        return list(seen)

    def partial_target_sets(self) -> torch.Tensor:
        """BoolTensor (n_partial_sets, num_classes): row p is the class set of partial label p."""
        sets = self.partial_sets()
        matrix = torch.zeros(len(sets), self.num_classes, dtype=torch.bool)
        for row, allowed in enumerate(sets):
            matrix[row, sorted(allowed)] = True
        return matrix

    def target_sets(self, dataset: str) -> torch.Tensor:
        """BoolTensor (n_dataset_classes, num_classes): the classes each dataset class may be."""
        targets = self._mapping(dataset).targets
        sets = torch.zeros(len(targets), self.num_classes, dtype=torch.bool)
        for class_id, allowed in enumerate(targets):
            sets[class_id, sorted(allowed)] = True
        return sets

    def labelable_classes(self, dataset: str) -> list[int]:
        """Class ids that some hard label of `dataset` maps to: the classes its labels can name."""
        return sorted(set(self.label_lut(dataset).tolist()) - {self.ignore_index})

    def one_to_many_ids(self, dataset: str) -> list[int]:
        """Dataset label ids that may be several classes (label_lut gives them the ignore label)."""
        return [i for i, t in enumerate(self._mapping(dataset).targets) if len(t) > 1]

    # ---- predictions to test datasets ----------------------------------------------------------
    def test_matrix(self, dataset: str) -> torch.Tensor:
        """Float (n_test_classes, num_classes) 0/1 matrix: which classes count towards each test class."""
        mapping = self._test_mapping(dataset)
        matrix = torch.zeros(len(mapping.class_names), self.num_classes)
        for universal_id, test_id in enumerate(mapping.test_class_of):
            if test_id is not None:
                matrix[test_id, universal_id] = 1.0
        return matrix

    def to_test_probs(self, logits: torch.Tensor, dataset: str) -> torch.Tensor:
        """(N, num_classes, H, W) logits -> (N, n_test_classes, H, W) test-class probabilities.

        Softmax over the label space, then each test class sums the probabilities of the classes
        that count towards it (MSeg's zero-shot protocol).
        """
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (N, {self.num_classes}, H, W) for this {self.kind} taxonomy, "
                             f"got {tuple(logits.shape)}")
        probs = logits.float().softmax(dim=1)
        matrix = self.test_matrix(dataset).to(probs.device)
        n, u, h, w = probs.shape
        return torch.matmul(matrix, probs.reshape(n, u, h * w)).reshape(n, -1, h, w)

    # ---- identity ------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A short hash of everything that decides the mapping; stored in checkpoints."""
        content = {
            "kind": self.kind,
            "classes": self.class_names,
            "train": {d: [list(m.class_names), [sorted(t) for t in m.targets]] for d, m in sorted(self._train.items())},
            "test": {d: [list(m.class_names), list(m.test_class_of)] for d, m in sorted(self._test.items())},
        }
        blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_classes} classes, train={self.train_datasets}, "
                f"test={self.test_datasets}, fingerprint={self.fingerprint()})")


class NaiveTaxonomyConverter(TaxonomyConverter):
    """MSeg's naive-merge baseline: one class per distinct dataset class name.

    Classes are the training datasets' class names in order of first appearance, merged only where
    the names are identical; a class named `unlabeled` is ignored. For zero-shot evaluation a naive
    class counts towards the test class that the unified TSV gives its dataset classes (the most
    frequent one when they disagree, the first seen on a tie), so the baseline gets the same expert
    test mapping as the unified model and only the training label space differs.
    """

    kind = "naive"

    @classmethod
    def from_tsv(cls, tsv="mseg", train_datasets=None, test_datasets=None) -> "NaiveTaxonomyConverter":
        unified = TaxonomyConverter.from_tsv(tsv, train_datasets, test_datasets)
        class_names: list[str] = []
        index: dict[str, int] = {}
        train = {}
        for dataset in unified.train_datasets:
            names = unified.dataset_class_names(dataset)
            targets = []
            for name in names:
                if name == UNLABELED:
                    targets.append(frozenset())
                    continue
                if name not in index:
                    index[name] = len(class_names)
                    class_names.append(name)
                targets.append(frozenset([index[name]]))
            train[dataset] = DatasetMapping(tuple(names), tuple(targets))
        test = {}
        for dataset in unified.test_datasets:
            unified_test = unified._test_mapping(dataset)
            votes = [Counter() for _ in class_names]
            for train_dataset, mapping in unified._train.items():
                for name, universal_ids in zip(mapping.class_names, mapping.targets):
                    if name == UNLABELED:
                        continue
                    for u in sorted(universal_ids):
                        test_id = unified_test.test_class_of[u]
                        if test_id is not None:
                            votes[index[name]][test_id] += 1
            test_class_of = tuple(v.most_common(1)[0][0] if v else None for v in votes)
            test[dataset] = TestMapping(unified_test.class_names, test_class_of)
        return cls(class_names=class_names, train=train, test=test, source=unified.source)


class MSegNaiveTaxonomyConverter(TaxonomyConverter):
    """MSeg's own naive-merge label space (mseg-api's NaiveTaxonomyConverter), the output space of MSeg's
    released naive-merge model, so that it can be imported and evaluated as published.

    Classes are the lower-cased class names of the training datasets in their given order (MSeg's order:
    ade20k-150, bdd, cityscapes-19, coco-panoptic-133, idd-39, mapillary-public65, sunrgbd-37), merged where
    the lower-cased names are equal; every dataset class is one of them. Output id 255 is skipped (MSeg
    reserved it for its ignore label), so the space has one class more than names: a placeholder that no
    dataset maps to (316 outputs over MSeg's seven datasets). A test class counts the naive class of the
    same lower-cased name, if any (test classes no training dataset names get no prediction, as in MSeg).
    Our own `naive` kind differs on purpose (names merged only where identical, the unified TSV's test
    mapping); use this kind for MSeg's released model.
    """

    kind = "mseg-naive"
    SKIPPED_ID = 255
    PLACEHOLDER = "(id 255: unused, MSeg's ignore label)"

    @classmethod
    def from_tsv(cls, tsv="mseg", train_datasets=None, test_datasets=None) -> "MSegNaiveTaxonomyConverter":
        table = _load_valid_table(tsv)
        train_datasets = _select(table, train_datasets, table.train_datasets, "training")
        test_datasets = _select(table, test_datasets, table.test_datasets, "test")
        class_names: list[str] = []
        index: dict[str, int] = {}
        train = {}
        for dataset in train_datasets:
            names = table.dataset_names(dataset)
            for name in names:
                if name.lower() not in index:
                    if len(class_names) == cls.SKIPPED_ID:
                        class_names.append(cls.PLACEHOLDER)
                    index[name.lower()] = len(class_names)
                    class_names.append(name.lower())
            train[dataset] = DatasetMapping(tuple(names), tuple(frozenset([index[n.lower()]]) for n in names))
        test = {}
        for dataset in test_datasets:
            names = table.dataset_names(dataset)
            test_id = {}
            for i, name in enumerate(names):
                test_id.setdefault(name.lower(), i)
            test[dataset] = TestMapping(tuple(names), tuple(test_id.get(name) for name in class_names))
        return cls(class_names=class_names, train=train, test=test, source=f"{table.path} (MSeg's naive merge)")


class OracleTaxonomyConverter(TaxonomyConverter):
    """One dataset in its own taxonomy (MSeg's oracle runs): identity mapping, train and test."""

    kind = "oracle"

    @classmethod
    def for_dataset(cls, dataset: str, tsv="mseg") -> "OracleTaxonomyConverter":
        """`dataset` may be any dataset column of the TSV, training or test; its class list defines the space."""
        table = TaxonomyTable.load(tsv)
        columns = table.train_datasets + table.test_datasets
        if dataset not in columns:
            raise TaxonomyError(f"{dataset!r} is no dataset column of {table.path}; columns: {', '.join(columns)}")
        names = table.dataset_names(dataset)
        train = {dataset: DatasetMapping(tuple(names), tuple(frozenset([i]) for i in range(len(names))))}
        test = {dataset: TestMapping(tuple(names), tuple(range(len(names))))}
        return cls(class_names=names, train=train, test=test, source=f"{table.path}:{dataset}")


def check_taxonomy_kind(kind: str, train_datasets=None) -> None:
    """A converter kind a config may name ('unified', 'naive', 'mseg-naive' or 'oracle'), with the training datasets it
    takes (an oracle: exactly one)."""
    if kind not in TAXONOMY_KINDS:
        hint = suggest(kind, list(TAXONOMY_KINDS)) if isinstance(kind, str) else ""
        raise TaxonomyError(f"unknown taxonomy kind {kind!r}; valid kinds: {', '.join(TAXONOMY_KINDS)}{hint}")
    datasets = list(train_datasets or [])
    if kind == "oracle" and len(datasets) != 1:
        raise TaxonomyError(f"an oracle taxonomy takes exactly one dataset, got {datasets}")


def build_converter(kind: str, tsv="mseg", train_datasets=None, test_datasets=None):
    """Construct the converter a config names: kind is 'unified', 'naive', 'mseg-naive' or 'oracle'."""
    check_taxonomy_kind(kind, train_datasets)
    if kind == "unified":
        return TaxonomyConverter.from_tsv(tsv, train_datasets, test_datasets)
    if kind == "naive":
        return NaiveTaxonomyConverter.from_tsv(tsv, train_datasets, test_datasets)
    if kind == "mseg-naive":
        return MSegNaiveTaxonomyConverter.from_tsv(tsv, train_datasets, test_datasets)
    return OracleTaxonomyConverter.for_dataset(list(train_datasets)[0], tsv)


# ---- helpers -----------------------------------------------------------------------------------
def _load_valid_table(tsv) -> TaxonomyTable:
    table = TaxonomyTable.load(tsv)
    raise_on_errors(validate(table), table.path)
    return table


def _select(table: TaxonomyTable, requested, available: list[str], kind: str) -> list[str]:
    if requested is None:
        return list(available)
    requested = list(requested)
    for dataset in requested:
        if dataset not in available:
            reason = table.meta.skip_columns.get(dataset)
            note = f" (skipped: {reason})" if reason else ""
            raise TaxonomyError(f"{dataset!r} is not a {kind} dataset of {table.path}{note}; {kind} datasets: {', '.join(available)}")
    return requested


def _check_integer(dtype, dataset: str) -> None:
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"label map for {dataset!r} must have an integer dtype, got {dtype}")


def _check_range(label, dataset: str, source: str = "") -> None:
    if label.numel() if isinstance(label, torch.Tensor) else label.size:
        low, high = int(label.min()), int(label.max())
        if low < 0 or high > 255:
            bad = low if low < 0 else high
            raise ValueError(f"{source + ': ' if source else ''}label id {bad} for {dataset!r} is outside 0-255")


def unknown_label_ids(label: np.ndarray, num_classes: int) -> dict[int, int]:
    """{id: pixels} of the ids in a 2-D uint8 label map that are neither below num_classes nor 255
    (unlabeled); empty for a valid map. An OpenCV range test counts ids num_classes..254 with SIMD
    (several times cheaper than a lookup); only a failing map pays for the histogram that names them."""
    if num_classes >= IGNORE_INDEX or label.size == 0:
        return {}
    if cv2.countNonZero(cv2.inRange(label, num_classes, IGNORE_INDEX - 1)) == 0:
        return {}
    counts = np.bincount(label.reshape(-1), minlength=256)
    return {int(i): int(counts[i]) for i in np.flatnonzero(counts[num_classes:IGNORE_INDEX]) + num_classes}


def _lookup_uint8(label: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Look uint8 ids up in a (256,) table (of any dtype) with OpenCV's vectorised LUT (GB/s on one core)."""
    if label.size == 0:
        return label.copy()
    flat = np.ascontiguousarray(label).reshape(1, -1) if label.ndim < 2 else np.ascontiguousarray(label).reshape(-1, label.shape[-1])
    return cv2.LUT(flat, lut).reshape(label.shape)


def split_partial_labels(labels: torch.Tensor, num_classes: int,
                         ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Split training labels made with `label_lut(..., partial=True)` into (hard labels, partial labels).

    Hard labels keep ids below num_classes and `ignore_index` (the space's, `TaxonomyConverter.ignore_index`)
    elsewhere; partial labels hold the set index (label - num_classes) on one-to-many pixels and
    `ignore_index` elsewhere.
    """
    is_partial = (labels >= num_classes) & (labels != ignore_index)
    ignore = torch.full_like(labels, ignore_index)
    return torch.where(is_partial, ignore, labels), torch.where(is_partial, labels - num_classes, ignore)
