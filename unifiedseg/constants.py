"""Project-wide constants, defined once, and the rule that picks a label map's dtype and ignore label.

Besides the label-map rule below: the ImageNet normalisation every config and transform defaults to,
and the class-weight methods that dataset statistics files hold and loss configs name.

A label map holds class ids 0..N-1 and one ignore label for pixels that no loss or metric counts:
unlabeled pixels, classes mapped nowhere, classes whose universal class is ambiguous, and the padding
of crops. The ignore label is the largest value of the map's dtype. Label spaces of at most 255
values (MSeg's 194 universal classes, every single dataset) use uint8 maps and ignore 255, as MSeg
and MMSegmentation do; larger ones (MSeg's naive merge of its seven datasets has 350 classes) use
uint16 maps and ignore 65535. "Values" counts the classes and the one-to-many class sets of the
taxonomy, which partial labels encode after the classes (TaxonomyConverter.label_lut): a space's maps
have one dtype whether or not a run trains with the partial-label loss.
"""

import numpy as np

from unifiedseg.utils.checks import is_int

IGNORE_INDEX = 255  # the ignore label of uint8 label maps
WIDE_IGNORE_INDEX = 65535  # the ignore label of uint16 label maps
MAX_CLASSES = IGNORE_INDEX  # label values a uint8 map holds (ids 0..254)
MAX_WIDE_CLASSES = WIDE_IGNORE_INDEX  # label values a uint16 map holds (ids 0..65534)

# ImageNet's per-channel RGB mean and std on the 0-255 pixel scale (data.augmentation.mean / std).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# Class-weight methods: tools/dataset_stats.py writes one list per method, `class_weight: PATH.json:METHOD`
# reads one (inverse frequency, median frequency balancing).
WEIGHT_METHODS = ("inverse", "median")

# Where a run trains (train.device): auto takes CUDA when there is a GPU.
DEVICES = ("auto", "cpu", "cuda")


def label_dtype(num_values: int) -> np.dtype:
    """The dtype of label maps holding ids 0..num_values-1 and their ignore label."""
    if not is_int(num_values) or num_values < 0:
        raise ValueError(f"num_values must be a count >= 0, got {num_values!r}")
    if num_values <= MAX_CLASSES:
        return np.dtype(np.uint8)
    if num_values <= MAX_WIDE_CLASSES:
        return np.dtype(np.uint16)
    raise ValueError(f"{num_values} label values do not fit a uint16 label map (at most {MAX_WIDE_CLASSES}, "
                     f"{WIDE_IGNORE_INDEX} being the ignore label)")


def ignore_index_for(num_values: int) -> int:
    """The ignore label of a label space of num_values values: IGNORE_INDEX, or WIDE_IGNORE_INDEX above 255."""
    return ignore_index_of(label_dtype(num_values))


def ignore_index_of(dtype) -> int:
    """The ignore label of label maps of this dtype (255 for uint8, 65535 for uint16)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return IGNORE_INDEX
    if dtype == np.uint16:
        return WIDE_IGNORE_INDEX
    raise ValueError(f"label maps are uint8 or uint16, got {dtype}")
