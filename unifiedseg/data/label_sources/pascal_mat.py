"""`pascal_mat`: PASCAL-Context labels read from the publisher's `.mat` files.

List entries are pascal-context-460's `JPEGImages/X.jpg Segmentation_GT_460cls/X.png`; the PNG is what
MSeg's preparation wrote (mseg-api `mseg_dump_pascalcontext_pngs.py`), from `trainval/X.mat` of the
dataset folder (trainval.tar.gz), so this source reads that file (`label_file`): its `LabelMap` as
uint16, ids unchanged (the 460 ids of the release, 0 unlabeled). MSeg checks that the PNG it wrote reads
back equal to the LabelMap, so a value that uint16 cannot hold is an error here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from unifiedseg.data.decode import BadSampleError, read_bytes
from unifiedseg.data.label_sources.base import LabelSource, RawLabel, register_label_source
from unifiedseg.data.listfile import ListEntry

KEY = "LabelMap"


def read_label_map(path) -> np.ndarray:
    """`LabelMap` of a PASCAL-Context `.mat` file, uint16."""
    import scipy.io  # imported when used: only this source needs scipy

    content = read_bytes(path)  # missing, unreadable or empty: BadSampleError
    try:
        data = scipy.io.loadmat(io.BytesIO(content.tobytes()), variable_names=[KEY])
    except Exception as err:  # noqa: BLE001  MatReadError, or whatever a damaged file makes scipy's parser raise
        kind = "MATLAB v7.3 (HDF5) files are not supported" if isinstance(err, NotImplementedError) else err
        raise BadSampleError(path, f"not a readable .mat file: {kind}") from None
    if KEY not in data:
        raise BadSampleError(path, f"has no variable {KEY!r} (a PASCAL-Context label .mat file has one)")
    label = np.asarray(data[KEY])
    if label.ndim != 2 or label.size == 0 or not (np.issubdtype(label.dtype, np.integer)
                                                  or np.issubdtype(label.dtype, np.floating)):
        raise BadSampleError(path, f"{KEY} must be a non-empty 2-D numeric array, got {label.dtype} {label.shape}")
    with np.errstate(invalid="ignore"):
        ids = label.astype(np.uint16)
    if not np.array_equal(ids, label):
        bad = label[ids != label]
        raise BadSampleError(path, f"{KEY} holds {bad.size} value(s) that are not ids in 0-65535, e.g. {bad.flat[0].item()!r}")
    return ids


@register_label_source("pascal_mat")
class PascalMat(LabelSource):
    def label_file(self, entry: ListEntry) -> Path:
        folder = self.context.folder if self.context.folder is not None else entry.label.parent.parent
        return Path(folder) / "trainval" / f"{entry.label.stem}.mat"

    def read(self, entry: ListEntry) -> RawLabel:
        return RawLabel(read_label_map(self.label_file(entry)))
