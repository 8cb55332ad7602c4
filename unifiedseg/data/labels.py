"""Map label ids as stored on disk to the training label space in one table lookup.

Up to three mappings compose into one table: the disk release to the dataset's taxonomy (e.g.
Cityscapes `labelIds` -> train ids, `taxonomy/remap/`), then the dataset's taxonomy to the label
space being trained (unified, naive, or none for an oracle run). Disk and dataset ids are uint8 (or
uint16 for releases with more than 256 ids); training ids have the label space's dtype and ignore
label (uint8 and 255, or uint16 and 65535 for spaces of more than 255 classes, `unifiedseg.constants`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from unifiedseg.constants import ignore_index_of, label_dtype
from unifiedseg.data.decode import BadSampleError, read_color_label, read_label, read_palette_label
from unifiedseg.data.registry import DatasetInfo, RegistryError
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.converter import unknown_label_ids
from unifiedseg.taxonomy.remap import load_release_lut
from unifiedseg.taxonomy.table import load_names, read_palette


@dataclass(frozen=True)
class LabelMapper:
    """Reads a dataset's label files in their stored format, checks the disk ids and maps them to
    training ids with one lookup table."""

    dataset: str
    lut: np.ndarray  # disk id -> training id (uint8 or uint16), length 256, or 65536 for uint16 releases
    num_disk_classes: int
    label_format: str = "id"  # how label files store ids: id | palette | color (unifiedseg.data.registry)
    colors: np.ndarray | None = None  # label_format color: (num_disk_classes, 3) RGB of each disk id

    def read(self, path) -> np.ndarray:
        """The disk ids of one label file (uint8, or uint16 for wide releases), checked."""
        if self.label_format == "palette":
            label = read_palette_label(path)
        elif self.label_format == "color":
            label = read_color_label(path, self.colors)
        else:
            label = read_label(path)
        self.check(label, path)
        return label

    @property
    def ignore_index(self) -> int:
        """The training label space's ignore label: that of the table's dtype (255 or 65535)."""
        return ignore_index_of(self.lut.dtype)

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


def build_label_mapper(info: DatasetInfo, converter=None, partial: bool = False) -> LabelMapper:
    """The mapper for one registry dataset; `converter=None` keeps the dataset's own ids (oracle runs,
    test datasets in their own label space). `partial=True` encodes one-to-many classes for the
    partial-label loss (TaxonomyConverter.label_lut)."""
    names_dir = taxonomy_dir() / "dataset_lists"
    if converter is not None and info.name in converter.train_datasets:
        # the list the converter's mapping was built on (a custom TSV may bring its own)
        own_names, names_source = converter.dataset_class_names(info.name), f"the class list of {converter.source}"
    else:
        names_file = names_dir / info.name / f"{info.name}_names.txt"
        own_names, names_source = load_names(names_file), str(names_file)
    if len(own_names) != info.num_classes:
        raise RegistryError(f"{info.source}: dataset {info.name!r} declares num_classes {info.num_classes}, but "
                            f"{names_source} has {len(own_names)} names")
    if info.disk_taxonomy:
        disk_names = load_names(names_dir / info.disk_taxonomy / f"{info.disk_taxonomy}_names.txt")
        # the remap table names classes; their ids are those of the list the labels are mapped with
        disk_lut = load_release_lut(info.disk_taxonomy, info.name, disk_names, own_names)
    else:
        disk_names = own_names
        # the ids themselves; a release of more than 255 classes keeps them in uint16 (ignore 65535)
        dtype = label_dtype(len(own_names))
        disk_lut = np.full(max(256, len(own_names)), ignore_index_of(dtype), dtype=dtype)
        disk_lut[: len(own_names)] = np.arange(len(own_names))
    if converter is None:
        lut = disk_lut
    else:
        space_lut = converter.label_lut(info.name, partial=partial)  # its ignore entry: the space's ignore label
        lut = space_lut[disk_lut]
    if len(lut) > 256:  # uint16 release: a full table so any stored id indexes safely
        full = np.full(65536, ignore_index_of(lut.dtype), dtype=lut.dtype)
        full[: len(lut)] = lut
        lut = full
    lut.flags.writeable = False
    colors = None
    if info.label_format == "color":
        disk = info.disk_taxonomy or info.name
        colors = read_palette(names_dir / disk / f"{disk}_colors.txt")
        if len(colors) != len(disk_names):
            raise RegistryError(f"{info.source}: dataset {info.name!r} reads colour labels, but {disk}_colors.txt has "
                                f"{len(colors)} colours for {len(disk_names)} classes")
    return LabelMapper(dataset=info.name, lut=lut, num_disk_classes=len(disk_names), label_format=info.label_format,
                       colors=colors)
