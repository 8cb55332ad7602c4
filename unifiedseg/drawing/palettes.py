"""Class palettes: one RGB colour per class of a label space, read from MSeg's colour files or generated.

`palette_for("cityscapes-19")` reads taxonomy/dataset_lists/NAME/NAME_colors.txt (one "R G B" line per
class id) where MSeg ships one; for other datasets and for a list of class names (the universal
taxonomy has no palette) it generates one (`generated_palette`: deterministic, distinct, never black,
since black marks ignored pixels). A palette's length decides its label space's ignore label
(unifiedseg.constants): 255 for at most 255 colours, 65535 above.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from unifiedseg.constants import MAX_WIDE_CLASSES, WIDE_IGNORE_INDEX
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.table import TaxonomyError, load_names, names_file, read_palette
from unifiedseg.utils.checks import is_int
from unifiedseg.utils.names import suggest

logger = logging.getLogger("unifiedseg")

IGNORE_COLOR = (0, 0, 0)
# Golden-ratio hue steps spread any number of hues evenly around the colour wheel; saturation and
# value alternate so that neighbouring ids also differ in brightness.
GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
SATURATIONS = (0.85, 0.55)
VALUES = (0.95, 0.70, 0.85)


def generated_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8: distinct, deterministic, never black (black marks ignored pixels).

    Up to MAX_WIDE_CLASSES colours; a shorter palette is the start of a longer one. Class i gets the
    i-th golden-ratio hue; the first ~2000 of these stay distinct after rounding to 8 bits, a later one
    that meets an earlier colour moves to the nearest free colour on its grey diagonal (`_free_color`).
    """
    if not is_int(num_classes) or not 0 <= num_classes <= MAX_WIDE_CLASSES:
        raise ValueError(f"num_classes must be an integer 0-{MAX_WIDE_CLASSES}, got {num_classes!r}")
    colors, seen = [], {IGNORE_COLOR}
    spare = None  # the whole-cube walk of _free_color, started on first use
    for i in range(num_classes):
        hue = (i * GOLDEN_RATIO_CONJUGATE) % 1.0
        saturation, value = SATURATIONS[i % 2], VALUES[(i // 2) % 3]
        rgb = tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, saturation, value))
        if rgb in seen:
            rgb, spare = _free_color(rgb, seen, spare)
        seen.add(rgb)
        colors.append(rgb)
    return np.array(colors, dtype=np.uint8).reshape(num_classes, 3)


def _free_color(rgb: tuple[int, int, int], seen: set,
                spare: Iterator | None) -> tuple[tuple[int, int, int], Iterator | None]:
    """The colour nearest `rgb` on its grey diagonal that is not in `seen`: darker one step at a time
    (no channel reaching 0), then lighter; if the whole diagonal is taken, the next colour not in
    `seen` on a walk over the RGB cube from white down. Returns (colour, the walk, to resume later).

    A call looks at each colour of one diagonal at most once and the cube walk resumes where it
    stopped, so a palette of n colours costs O(256 n) set lookups at worst and never loops forever.
    """
    r, g, b = rgb
    for step in range(1, min(rgb)):
        darker = (r - step, g - step, b - step)
        if darker not in seen:
            return darker, spare
    for step in range(1, 256 - max(rgb)):
        lighter = (r + step, g + step, b + step)
        if lighter not in seen:
            return lighter, spare
    if spare is None:
        spare = _cube_from_white()
    for color in spare:
        if color not in seen:
            return color, spare
    raise RuntimeError("every RGB colour is taken")  # cannot happen: a palette holds at most 65535


def _cube_from_white() -> Iterator[tuple[int, int, int]]:
    for r in range(255, -1, -1):
        for g in range(255, -1, -1):
            for b in range(255, -1, -1):
                yield (r, g, b)


def dataset_lists_dir() -> Path:
    return taxonomy_dir() / "dataset_lists"


def palette_file(dataset: str) -> Path | None:
    """taxonomy/dataset_lists/NAME/NAME_colors.txt when it exists."""
    path = dataset_lists_dir() / dataset / f"{dataset}_colors.txt"
    return path if path.exists() else None


def palette_for(dataset_or_names: str | Sequence[str], num_classes: int | None = None) -> np.ndarray:
    """(N, 3) uint8 palette of a dataset (by name) or of a list of class names (generated).

    For a dataset, N is `num_classes` when given, else the length of its class-name list; its colours
    file is used when it has exactly N lines, otherwise (no file, or a file of another length, as for
    the relabeled datasets that share their source's file) a generated palette, with a warning when a
    file was passed over.
    """
    if not isinstance(dataset_or_names, str):
        names = list(dataset_or_names)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"num_classes = {num_classes} but {len(names)} class names were given")
        return generated_palette(len(names))
    dataset = dataset_or_names
    if num_classes is None:
        names_path = names_file(dataset)
        if not names_path.exists():
            known = sorted(p.name for p in dataset_lists_dir().iterdir() if p.is_dir()) \
                if dataset_lists_dir().is_dir() else []
            raise TaxonomyError(f"no class-name list {names_path} for dataset {dataset!r}{suggest(dataset, known)}; "
                                f"datasets with lists: {', '.join(known) or 'none'} (or pass num_classes)")
        num_classes = len(load_names(names_path))
    path = palette_file(dataset)
    if path is None:
        return generated_palette(num_classes)
    palette = read_palette(path)
    if len(palette) != num_classes:
        logger.warning("%s has %d colours but %s has %d classes; using a generated palette instead",
                       path, len(palette), dataset, num_classes)
        return generated_palette(num_classes)
    return palette


def check_palette(palette) -> np.ndarray:
    """The palette as a (N, 3) uint8 array, N <= MAX_WIDE_CLASSES (its ignore label is ignore_index_for(N))."""
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.dtype != np.uint8:
        raise ValueError(f"palette must be a (N, 3) uint8 array, got {palette.dtype} of shape {palette.shape}")
    if len(palette) > MAX_WIDE_CLASSES:
        raise ValueError(f"palette has {len(palette)} colours; ids 0-{MAX_WIDE_CLASSES - 1} are classes, "
                         f"{WIDE_IGNORE_INDEX} is ignored")
    return palette
