"""Read a dataset's label files and map their ids to the training label space in one table lookup.

A dataset is read in one of two modes (`data.label_source`): `prepared` reads the files MSeg's
preparation wrote (the entry's lists and `label_source`); `raw` reads the publisher's files (the lists
of the entry's `raw.from`, with `raw.source`) and applies MSeg's relabel records on the fly. Either
way the mappings compose into one table: the release on disk to the dataset's taxonomy (a chain of
`taxonomy/remap/` tables, e.g. Cityscapes `labelIds` -> train ids -> relabeled ids), then the dataset's
taxonomy to the label space being trained (unified, naive, or none for an oracle run). A relabel
record then overwrites its segment's pixels with its new class (MSeg's order: later records win). Disk and dataset ids are uint8 (or
uint16 for releases with more than 256 ids); training ids have the label space's dtype and ignore
label (uint8 and 255, or uint16 and 65535 for spaces of more than 255 classes, `unifiedseg.constants`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from unifiedseg.constants import ignore_index_of
from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.label_sources import LabelSource, build_label_source
from unifiedseg.data.label_sources.base import SourceContext
from unifiedseg.data.listfile import ListEntry, ListFileError
from unifiedseg.data.registry import DatasetInfo, RegistryError
from unifiedseg.data.relabel import RelabelError, RelabelIndex, load_index
from unifiedseg.data.splits import available_splits, read_split, user_list_path
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.converter import unknown_label_ids
from unifiedseg.taxonomy.remap import chain_release_lut, identity_lut
from unifiedseg.taxonomy.table import UNLABELED, dataset_names, load_names, names_file, read_palette


LABEL_MODES = ("prepared", "raw")
# The record groups whose segments MSeg's preparation asserts hold the original class (mseg-api: strict).
VERIFIED_GROUPS = ("cocop", "bdd", "mapillary", "sunrgbd")


@dataclass(frozen=True)
class ReadPlan:
    """What a dataset reads in a mode: whose lists, with which label source, yielding which release's
    ids, with which relabel records (unifiedseg.data.relabel group) and segment numbering."""

    list_info: DatasetInfo
    source: str
    release: str
    relabel: str | None = None
    segments_in: str | None = None


def read_plan(info: DatasetInfo, mode: str = "prepared") -> ReadPlan:
    """`prepared`: the entry as registered. `raw`: its `raw` section (an entry without one is already
    the publisher's release, and reads the same in both modes)."""
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label source mode {mode!r}; valid: {', '.join(LABEL_MODES)}")
    if mode == "raw" and info.raw is not None:
        lists_of = info.raw.lists_of
        if lists_of is None:
            raise RegistryError(f"{info.source}: dataset {info.name!r}: raw.from {info.raw.from_entry!r} is not linked "
                                f"(load the registry with DatasetRegistry.load)")
        return ReadPlan(lists_of, info.raw.source or lists_of.label_source, info.raw.release or lists_of.label_ids,
                        info.raw.relabel, info.raw.segments_in)
    return ReadPlan(info, info.label_source, info.label_ids)


def read_entries(info: DatasetInfo, split: str, data_root, mode: str = "prepared", require_labels: bool = True):
    """The list entries a dataset split reads in a mode.

    Raw mode reads the lists of `raw.from` (the publisher's label files). When that entry has no such
    split (COCO's `val_small`), or the user keeps a list of their own for this dataset, the dataset's
    own list is read and each image takes its raw label from the `raw.from` lists (the same split
    name first); an image they do not list is an error naming the list line."""
    list_info = read_plan(info, mode).list_info
    if list_info is info:
        return read_split(info, split, data_root, require_labels=require_labels)
    own_list = split in info.lists or (info.mseg_lists and user_list_path(info, split, data_root).is_file())
    raw_splits = available_splits(list_info)
    if split in raw_splits and not own_list:
        return read_split(list_info, split, data_root, require_labels=require_labels)
    wanted = read_split(info, split, data_root, require_labels=require_labels)
    raw_label: dict = {}
    # the split of the same name, then those it extends (val for val_small), then the rest
    for other in sorted(raw_splits, key=lambda s: (s != split, not split.startswith(s), s)):
        if all(entry.image in raw_label for entry in wanted):
            break
        for entry in read_split(list_info, other, data_root, require_labels=False):
            raw_label.setdefault(entry.image, entry.label)
    missing = [entry for entry in wanted if entry.image not in raw_label]
    if missing:
        raise ListFileError(f"dataset {info.name} split {split}: list line {missing[0].line} names {missing[0].image}, "
                            f"which no list of {list_info.name} (raw mode reads its label files) has "
                            f"({len(missing)} such line(s))")
    return [ListEntry(entry.image, raw_label[entry.image], entry.line) for entry in wanted]


@dataclass(frozen=True)
class Label:
    """A label as read: disk ids of the release, and the relabel edits to apply after mapping them
    ((mask, training id) in MSeg's order; empty for most images)."""

    disk: np.ndarray
    edits: tuple = ()


@dataclass(frozen=True)
class Relabeling:
    """MSeg's records for one dataset: the index group, class names to training ids (new classes) and
    to own ids (original classes), and the table disk id -> own id.

    `verify`: the dataset is one MSeg's preparation checks (COCO, BDD, Mapillary, SUN RGB-D: it asserts
    that every pixel of a record's segment holds the record's original class); a segment that does not
    is an error naming the file and the record, never a silently wrong label. `strict`: restrict each
    edit to the pixels of its original class (MSeg overwrites the whole segment). The original class is
    compared after the dataset's remap to its `-relabeled` list; for the Cityscapes and IDD rider records,
    whose original class `rider_other` MSeg's tables never produce (they send rider to bicyclist and
    motorcyclist), strict mode therefore leaves those records without effect."""

    group: str
    index: RelabelIndex
    new_ids: dict[str, int]
    own_ids: dict[str, int]
    disk_to_own: np.ndarray
    verify: bool = False
    strict: bool = False


@dataclass(frozen=True)
class LabelMapper:
    """Reads a dataset's label files with its label source, checks the disk ids, maps them to
    training ids with one lookup table and applies relabel edits."""

    dataset: str
    lut: np.ndarray  # disk id -> training id (uint8 or uint16), length 256, or 65536 for uint16 releases
    num_disk_classes: int
    source: LabelSource
    relabeling: Relabeling | None = None

    @property
    def ignore_index(self) -> int:
        """The training label space's ignore label: that of the table's dtype (255 or 65535)."""
        return ignore_index_of(self.lut.dtype)

    def read(self, entry: ListEntry) -> Label:
        """The label of one list entry: disk ids (checked) and its relabel edits."""
        raw = self.source.read(entry)
        path = self.source.label_file(entry)
        disk = self._checked(raw.ids, path)
        if self.relabeling is None:
            return Label(disk)
        plan = self.relabeling
        edits = []
        own = None
        for edit in plan.index.edits(plan.group, entry.image):
            record = f"relabel record {plan.index.source}:{edit.line} (segment {edit.segment}: {edit.orig_class} -> {edit.new_class})"
            try:
                mask = self.source.segment_mask(entry, raw, edit.segment)
            except BadSampleError as err:
                raise BadSampleError(err.path, f"{err.problem} ({record})") from None
            if mask.shape != disk.shape:
                raise BadSampleError(path, f"segment mask is {mask.shape} but the label is {disk.shape} ({record})")
            if plan.verify or plan.strict:
                own = plan.disk_to_own[disk] if own is None else own  # once per image
                of_orig = own == plan.own_ids[edit.orig_class]
                if plan.verify:
                    wrong = int(np.count_nonzero(mask & ~of_orig))
                    if wrong:
                        raise BadSampleError(path, f"{wrong} of the segment's {int(np.count_nonzero(mask))} pixels do not "
                                                   f"hold {edit.orig_class} ({record}; MSeg's preparation checks this)")
                if plan.strict:
                    mask = mask & of_orig
            edits.append((mask, plan.new_ids[edit.new_class]))
        return Label(disk, tuple(edits))

    def read_mapped(self, entry: ListEntry) -> np.ndarray:
        """Training ids of one entry at full size, edits applied."""
        return self.map(self.read(entry))

    def map(self, label: Label) -> np.ndarray:
        out = self(label.disk)
        if label.edits:
            out = out.copy() if not out.flags.writeable else out
            for mask, value in label.edits:
                out[mask] = value
        return out

    def _checked(self, label: np.ndarray, path) -> np.ndarray:
        self.check(label, path)
        return label

    def check(self, label: np.ndarray, path="") -> None:
        """Raise BadSampleError naming ids that the disk release does not have (255 is unlabeled in uint8 maps)."""
        n = self.num_disk_classes
        if label.dtype == np.uint8:
            bad = unknown_label_ids(label.reshape(label.shape[0], -1), n)
        elif label.size == 0 or int(label.max()) < n:
            bad = {}
        else:
            values, counts = np.unique(label[label >= n], return_counts=True)
            bad = dict(zip(values.tolist(), counts.tolist()))
        if not bad:
            return
        listed = ", ".join(f"{i} ({count} px)" for i, count in list(bad.items())[:10])
        raise BadSampleError(path, f"label ids {listed} are outside {self.dataset}'s {n} classes "
                                   f"(valid: 0-{n - 1}{', and 255 for unlabeled' if label.dtype == np.uint8 else ''})")

    def __call__(self, label: np.ndarray) -> np.ndarray:
        """Training ids (the table's dtype), same shape."""
        if label.dtype == np.uint8:
            return cv2.LUT(label.reshape(label.shape[0], -1), self.lut[:256]).reshape(label.shape)
        return self.lut[label]


def build_label_mapper(info: DatasetInfo, converter=None, partial: bool = False, *, mode: str = "prepared",
                       data_root=None, strict_relabel: bool = False) -> LabelMapper:
    """The mapper for one registry dataset; `converter=None` keeps the dataset's own ids (oracle runs,
    test datasets in their own label space). `partial=True` encodes one-to-many classes for the
    partial-label loss (TaxonomyConverter.label_lut). `mode` is `prepared` or `raw` (read_plan);
    `strict_relabel` restricts each relabel edit to pixels of the record's original class."""
    names_dir = taxonomy_dir() / "dataset_lists"
    if converter is not None and info.name in converter.train_datasets:
        # the list the converter's mapping was built on (a custom TSV may bring its own)
        own_names, names_source = converter.dataset_class_names(info.name), f"the class list of {converter.source}"
    else:
        names_path = names_file(info.name, names_dir)
        own_names, names_source = load_names(names_path), str(names_path)
    if len(own_names) != info.num_classes:
        raise RegistryError(f"{info.source}: dataset {info.name!r} declares num_classes {info.num_classes}, but "
                            f"{names_source} has {len(own_names)} names")
    plan = read_plan(info, mode)
    disk_names = own_names if plan.release == info.name else dataset_names(plan.release, names_dir)
    # the remap tables name classes; their ids are those of the lists the labels are mapped with
    disk_lut = chain_release_lut(plan.release, info.name, disk_names, own_names, names_dir)
    own_lut = identity_lut(len(own_names))
    if converter is not None:
        space_lut = converter.label_lut(info.name, partial=partial)  # its ignore entry: the space's ignore label
        lut, own_lut = space_lut[disk_lut], space_lut[own_lut]
    else:
        lut = disk_lut
    lut = _full_table(lut)
    lut.flags.writeable = False
    colors_file = names_dir / plan.release / f"{plan.release}_colors.txt"
    colors = read_palette(colors_file) if plan.source == "color" else None
    if colors is not None and len(colors) != len(disk_names):
        raise RegistryError(f"{info.source}: dataset {info.name!r} reads colour labels, but {colors_file} has "
                            f"{len(colors)} colours for {len(disk_names)} classes")
    segment_lut = None
    if plan.segments_in and plan.segments_in != plan.release:
        segment_names = dataset_names(plan.segments_in, names_dir)
        segment_lut = _full_table(chain_release_lut(plan.release, plan.segments_in, disk_names, segment_names, names_dir))
    source = build_label_source(plan.source, SourceContext(
        dataset=info.name, folder=plan.list_info.folder(data_root) if data_root is not None else None,
        data_root=data_root, release=plan.release, release_names=disk_names, colors=colors, segment_lut=segment_lut))
    relabeling = None
    if plan.relabel:
        own_ids = {name: i for i, name in reversed(list(enumerate(own_names)))}
        own_ids.setdefault(UNLABELED, ignore_index_of(own_lut.dtype))
        new_ids = {name: int(own_lut[i]) for name, i in own_ids.items() if i < len(own_lut)}
        new_ids[UNLABELED] = ignore_index_of(lut.dtype)
        index = load_index()
        unknown = index.class_names(plan.relabel) - set(own_ids)
        if unknown:  # checked once here, not mid-training
            raise RelabelError(f"{index.source}: records of group {plan.relabel!r} name classes not in {info.name}'s "
                               f"class list: {', '.join(sorted(unknown))}")
        relabeling = Relabeling(group=plan.relabel, index=index, new_ids=new_ids, own_ids=own_ids,
                                disk_to_own=_full_table(disk_lut), verify=plan.relabel in VERIFIED_GROUPS,
                                strict=strict_relabel)
    return LabelMapper(dataset=info.name, lut=lut, num_disk_classes=len(disk_names), source=source,
                       relabeling=relabeling)


def _full_table(lut: np.ndarray) -> np.ndarray:
    """A table any stored id indexes safely: 256 entries, or 65536 for uint16 releases."""
    if len(lut) <= 256:
        return lut
    full = np.full(65536, ignore_index_of(lut.dtype), dtype=lut.dtype)
    full[: len(lut)] = lut
    return full
