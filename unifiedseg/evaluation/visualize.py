"""Pictures of predictions and metrics: class palettes, colour label maps, overlays with a legend of the
classes present, and a row-normalised confusion-matrix heatmap.

Images are RGB uint8 (H, W, 3) numpy arrays throughout (the writers convert to OpenCV's BGR); label
maps are (H, W) integer arrays of class ids and an ignore label for "no class", drawn black in colour
maps and left untouched in overlays. A palette has one colour per class of its label space, so its
length decides the ignore label (unifiedseg.constants): IGNORE_INDEX (255) for spaces of at most 255
classes, WIDE_IGNORE_INDEX (65535) above that (e.g. MSeg's 350-class naive merge), where 255 is an
ordinary class. Predictions, which the tools draw, never hold the ignore label; a ground-truth map of a
space that only its one-to-many class sets push past 255 values (uint16, ignore 65535, fewer than 256
classes) needs its 65535 pixels set to 255 before drawing with its palette.

Palettes: `palette_for("cityscapes-19")` reads taxonomy/dataset_lists/NAME/NAME_colors.txt (one
"R G B" line per class id) where MSeg ships one; for other datasets and for a list of class names (the
universal taxonomy has no palette) it generates one (`generated_palette`: deterministic, distinct,
never black). Text is drawn with OpenCV's Hershey fonts, which have ASCII glyphs only.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from unifiedseg.constants import (IGNORE_INDEX, MAX_CLASSES, MAX_WIDE_CLASSES, WIDE_IGNORE_INDEX, ignore_index_for,
                                  label_dtype)
from unifiedseg.paths import taxonomy_dir
from unifiedseg.taxonomy.table import TaxonomyError, load_names, names_file, read_palette
from unifiedseg.utils.fileio import atomic_write
from unifiedseg.utils.names import suggest

try:  # Pillow writes paletted PNGs (it comes with torchvision); without it label PNGs are plain RGB
    from PIL import Image
except ImportError:  # pragma: no cover - exercised by monkeypatching Image to None
    Image = None

logger = logging.getLogger("unifiedseg")

IGNORE_COLOR = (0, 0, 0)
# Golden-ratio hue steps spread any number of hues evenly around the colour wheel; saturation and
# value alternate so that neighbouring ids also differ in brightness.
GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
SATURATIONS = (0.85, 0.55)
VALUES = (0.95, 0.70, 0.85)
FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_BACKGROUND = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)
MISSING_ROW_COLOR = (200, 200, 200)  # confusion rows of classes with no labelled pixels
MAX_CONFUSION_GRID = 4096  # pixels a confusion grid spans at most once its cells are down to 8 px
MIN_NAMED_CELL = 8  # below this cell size names would be under 6 px tall, so they are left off


# ---- palettes ----------------------------------------------------------------------------------
def generated_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8: distinct, deterministic, never black (black marks ignored pixels).

    Up to MAX_WIDE_CLASSES colours; a shorter palette is the start of a longer one. Class i gets the
    i-th golden-ratio hue; the first ~2000 of these stay distinct after rounding to 8 bits, a later one
    that meets an earlier colour moves to the nearest free colour on its grey diagonal (`_free_color`).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or not 0 <= num_classes <= MAX_WIDE_CLASSES:
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


def _check_palette(palette) -> np.ndarray:
    """The palette as a (N, 3) uint8 array, N <= MAX_WIDE_CLASSES (its ignore label is ignore_index_for(N))."""
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.dtype != np.uint8:
        raise ValueError(f"palette must be a (N, 3) uint8 array, got {palette.dtype} of shape {palette.shape}")
    if len(palette) > MAX_WIDE_CLASSES:
        raise ValueError(f"palette has {len(palette)} colours; ids 0-{MAX_WIDE_CLASSES - 1} are classes, "
                         f"{WIDE_IGNORE_INDEX} is ignored")
    return palette


# ---- label maps --------------------------------------------------------------------------------
def _check_labels(labels, num_colors: int) -> np.ndarray:
    """Labels as (H, W) of the space's dtype: uint8 for palettes of <= 255 colours, else uint16. Ids that
    are neither < num_colors nor the space's ignore label (255, or 65535) are named in the error."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} of shape {labels.shape}")
    dtype, ignore = label_dtype(num_colors), ignore_index_for(num_colors)
    if labels.size and labels.dtype != dtype:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > ignore:
            raise ValueError(f"label id {low if low < 0 else high} is outside 0-{num_colors - 1} "
                             f"(and {ignore} for ignored pixels)")
    labels = labels.astype(dtype, copy=False)
    counts = np.bincount(labels.ravel(), minlength=ignore + 1)
    bad = [i for i in np.flatnonzero(counts[num_colors:ignore]) + num_colors]
    if bad:
        raise ValueError(f"label ids {', '.join(str(i) for i in bad[:10])} have no colour: the palette has "
                         f"{num_colors} (ids 0-{num_colors - 1}, and {ignore} for ignored pixels)")
    return labels


def _lut(palette: np.ndarray) -> np.ndarray:
    """(ignore + 1, 3) colours indexed by label value: 256 rows for narrow palettes, 65536 for wide."""
    ignore = ignore_index_for(len(palette))
    lut = np.zeros((ignore + 1, 3), dtype=np.uint8)
    lut[:len(palette)] = palette
    lut[ignore] = IGNORE_COLOR
    return lut


def colorize(labels, palette) -> np.ndarray:
    """(H, W, 3) RGB uint8: each pixel the colour of its class, ignored pixels (255, or 65535 for
    palettes of more than 255 colours) black."""
    palette = _check_palette(palette)
    return _lut(palette)[_check_labels(labels, len(palette))]


def save_label_png(path, labels, palette) -> None:
    """Write a colour label map, atomically: for palettes of <= 255 colours an indexed PNG (pixel values
    are the class ids, the palette colours them) with Pillow, else an RGB PNG. A PNG palette holds at
    most 256 entries, so for wider palettes it is always an RGB PNG of the colours (`colorize`): the
    class ids are not recoverable from it, and ignored pixels are black."""
    palette = _check_palette(palette)
    labels = _check_labels(labels, len(palette))
    if Image is not None and len(palette) <= MAX_CLASSES:
        indexed = Image.fromarray(np.ascontiguousarray(labels))
        indexed.putpalette(_lut(palette).reshape(-1).tolist())  # an "L" image with a palette becomes "P"
        atomic_write(path, lambda handle: indexed.save(handle, format="PNG"))
        return
    write_image(path, colorize(labels, palette))


def write_image(path, rgb: np.ndarray, jpeg_quality: int = 90) -> None:
    """Encode an RGB uint8 image by the path's suffix (.png, .jpg, ...) and write it atomically."""
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if Path(path).suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(Path(path).suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode an image with suffix {Path(path).suffix!r}")
    atomic_write(path, lambda handle: handle.write(encoded.tobytes()))


def overlay(image, labels, palette, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours into an RGB image: round((1 - alpha) * image + alpha * colour) on labelled
    pixels; ignored pixels (the palette's ignore label, 255 or 65535) keep the image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} of shape {image.shape}")
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels of shape {labels.shape} do not match the image's {image.shape[:2]}")
    palette = _check_palette(palette)
    colors = colorize(labels, palette)
    blended = cv2.addWeighted(image, 1.0 - alpha, colors, alpha, 0.0)
    return np.where((labels == ignore_index_for(len(palette)))[..., None], image, blended)


# ---- legend ------------------------------------------------------------------------------------
def present_classes(labels, ignore_index: int = IGNORE_INDEX) -> list[int]:
    """Class ids present in a label map, the largest area first (ties by id); `ignore_index` excluded.

    Pass the label space's ignore label: IGNORE_INDEX (255) for spaces of <= 255 classes, else
    WIDE_IGNORE_INDEX (65535), where 255 is a class like any other (`ignore_index_for(num_classes)`).
    """
    if ignore_index not in (IGNORE_INDEX, WIDE_IGNORE_INDEX):
        raise ValueError(f"ignore_index must be {IGNORE_INDEX} (uint8 label maps) or {WIDE_IGNORE_INDEX} "
                         f"(uint16 label maps), got {ignore_index!r}")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got {labels.dtype}")
    flat = labels.ravel()
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) > ignore_index):
        raise ValueError(f"label ids must be in 0-{ignore_index}")
    counts = np.bincount(flat.astype(np.int64, copy=False), minlength=ignore_index + 1)[:ignore_index]
    ids = np.flatnonzero(counts)
    return [int(i) for i in sorted(ids, key=lambda i: (-counts[i], i))]


@dataclass(frozen=True)
class LegendStyle:
    """Sizes of a legend strip, scaled with the image width so that big images get readable text."""

    scale: float

    @classmethod
    def for_width(cls, width: int) -> "LegendStyle":
        return cls(scale=max(1.0, width / 1280))

    @property
    def font_scale(self) -> float:
        return 0.45 * self.scale

    @property
    def thickness(self) -> int:
        return max(1, round(self.scale))

    @property
    def swatch(self) -> int:
        return round(12 * self.scale)

    @property
    def row_height(self) -> int:
        return round(20 * self.scale)

    @property
    def pad(self) -> int:
        return round(6 * self.scale)

    @property
    def gap(self) -> int:
        return round(14 * self.scale)

    def height(self, rows: int) -> int:
        return 2 * self.pad + rows * self.row_height

    def text_width(self, text: str) -> int:
        (width, _), _ = cv2.getTextSize(text, FONT, self.font_scale, self.thickness)
        return width

    def entry_width(self, text: str) -> int:
        return self.swatch + self.pad + self.text_width(text)


def legend_layout(names: Sequence[str], width: int, rows: int | None = None,
                  style: LegendStyle | None = None) -> tuple[list[tuple[int, int, int]], int]:
    """Place entries left to right, wrapping at `width`: ([(entry index, row, x)], entries left out).

    With `rows` set, entries that do not fit in that many rows are left out, and the last row keeps
    room for a "+N more" note.
    """
    style = style or LegendStyle.for_width(width)
    placed: list[tuple[int, int, int]] = []
    row, x = 0, style.pad
    for index, name in enumerate(names):
        entry = style.entry_width(name)
        if x > style.pad and x + entry > width - style.pad:
            row, x = row + 1, style.pad
        if rows is not None and row >= rows:
            break
        placed.append((index, row, x))
        x += entry + style.gap
    if rows is None or len(placed) == len(names):
        return placed, 0
    # make room on the last row for the note, dropping entries from its end
    while placed:
        left_out = len(names) - len(placed)
        index, row, x = placed[-1]
        end = x + style.entry_width(names[index]) + style.gap
        if row < rows - 1 or end + style.text_width(f"+{left_out} more") <= width - style.pad:
            break
        placed.pop()
    return placed, len(names) - len(placed)


def legend(class_names: Sequence[str], palette, present_ids: Sequence[int], width: int,
           rows: int | None = None) -> np.ndarray:
    """A white RGB strip `width` pixels wide listing `present_ids` (in that order) as colour swatch + name.

    Its height fits all entries (`rows=None`), or exactly `rows` rows (for video frames, which must all
    be the same size), ending with "+N more" when some entries did not fit.
    """
    palette = _check_palette(palette)
    for class_id in present_ids:
        if not 0 <= class_id < min(len(class_names), len(palette)):
            raise ValueError(f"class id {class_id} is outside the {len(class_names)} class names / "
                             f"{len(palette)} colours")
    style = LegendStyle.for_width(width)
    names = [class_names[i] for i in present_ids]
    placed, left_out = legend_layout(names, width, rows, style)
    used_rows = rows if rows is not None else (placed[-1][1] + 1 if placed else 1)
    strip = np.full((style.height(used_rows), width, 3), LEGEND_BACKGROUND, dtype=np.uint8)
    baseline_offset = (style.row_height + cv2.getTextSize("Ag", FONT, style.font_scale, style.thickness)[0][1]) // 2
    end_x, last_row = style.pad, 0
    for index, row, x in placed:
        top = style.pad + row * style.row_height
        swatch_top = top + (style.row_height - style.swatch) // 2
        color = tuple(int(c) for c in palette[present_ids[index]])
        cv2.rectangle(strip, (x, swatch_top), (x + style.swatch - 1, swatch_top + style.swatch - 1), color, cv2.FILLED)
        # a thin outline keeps white and pale swatches visible on the white strip
        cv2.rectangle(strip, (x, swatch_top), (x + style.swatch - 1, swatch_top + style.swatch - 1), (96, 96, 96), 1)
        cv2.putText(strip, names[index], (x + style.swatch + style.pad, top + baseline_offset), FONT,
                    style.font_scale, TEXT_COLOR, style.thickness, cv2.LINE_AA)
        end_x, last_row = x + style.entry_width(names[index]) + style.gap, row
    if not names:
        cv2.putText(strip, "(no classes)", (style.pad, style.pad + baseline_offset), FONT, style.font_scale,
                    TEXT_COLOR, style.thickness, cv2.LINE_AA)
    elif left_out:
        x, row = (end_x, last_row) if placed else (style.pad, 0)
        cv2.putText(strip, f"+{left_out} more", (x, style.pad + row * style.row_height + baseline_offset), FONT,
                    style.font_scale, TEXT_COLOR, style.thickness, cv2.LINE_AA)
    return strip


def overlay_with_legend(image, labels, palette, class_names: Sequence[str], alpha: float = 0.5,
                        legend_rows: int | None = None) -> np.ndarray:
    """The overlay with a legend strip of the classes present (largest area first) below it."""
    blended = overlay(image, labels, palette, alpha)
    present = present_classes(labels, ignore_index=ignore_index_for(len(palette)))
    strip = legend(class_names, palette, present, blended.shape[1], rows=legend_rows)
    return np.vstack([blended, strip])


# ---- confusion matrix --------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfusionLayout:
    """Where the parts of a confusion-matrix picture go: cell (i, j) spans
    [top + i * cell, top + (i + 1) * cell) x [left + j * cell, left + (j + 1) * cell)."""

    num_classes: int
    cell: int
    left: int
    top: int
    pad: int
    font_scale: float
    title_height: int

    @property
    def show_names(self) -> bool:
        """Class names on the axes; off when cells are too small to label."""
        return self.cell >= MIN_NAMED_CELL

    @property
    def width(self) -> int:
        return self.left + self.num_classes * self.cell + self.pad

    @property
    def height(self) -> int:
        return self.top + self.num_classes * self.cell + self.pad

    def cell_origin(self, row: int, col: int) -> tuple[int, int]:
        """(y, x) of the top-left pixel of cell (row, col)."""
        return self.top + row * self.cell, self.left + col * self.cell


CONFUSION_TITLE = "rows: label, columns: prediction; each row sums to 100%"


def confusion_layout(class_names: Sequence[str]) -> ConfusionLayout:
    """Cell size shrinks with the class count (40 px down to 8 px); margins fit the longest name.

    Past MAX_CONFUSION_GRID / 8 = 512 classes the cells shrink further (down to 1 px) to keep the grid
    within MAX_CONFUSION_GRID pixels, and the names, which would be unreadable, are left off.
    """
    n = len(class_names)
    cell = max(MIN_NAMED_CELL, min(40, 1200 // max(n, 1)))
    if n * cell > MAX_CONFUSION_GRID:
        cell = max(1, MAX_CONFUSION_GRID // n)
    # Hershey simplex letters are ~22 px tall at scale 1; keep names within a cell's height
    font_scale = min(0.5, 0.8 * cell / 22)
    pad = 8
    longest = max((cv2.getTextSize(name, FONT, font_scale, 1)[0][0] for name in class_names), default=0) \
        if cell >= MIN_NAMED_CELL else 0
    (_, title_h), _ = cv2.getTextSize(CONFUSION_TITLE, FONT, 0.5, 1)
    title_height = title_h + 2 * pad
    return ConfusionLayout(num_classes=n, cell=cell, left=pad + longest + pad, top=title_height + longest + pad,
                           pad=pad, font_scale=font_scale, title_height=title_height)


def row_normalised(matrix) -> np.ndarray:
    """float64 (C, C): each row divided by its sum; rows with no pixels are NaN."""
    counts = np.asarray(matrix.cpu().numpy() if hasattr(matrix, "cpu") else matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {counts.shape}")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError("confusion matrix must hold non-negative finite counts")
    sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, counts / np.where(sums > 0, sums, 1), np.nan)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """RGB uint8 of values in [0, 1] on the viridis colour map (dark blue 0 -> yellow 1)."""
    levels = np.clip(np.round(values * 255), 0, 255).astype(np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)[:, 0, ::-1].reshape(*values.shape, 3)


def confusion_image(matrix, class_names: Sequence[str]) -> np.ndarray:
    """RGB picture of a row-normalised confusion matrix: a heat map with class names on both axes
    (up to 512 classes), percentages in cells that are big enough (up to 50 classes), grey rows for
    classes with no labelled pixels."""
    fractions = row_normalised(matrix)
    n = fractions.shape[0]
    if len(class_names) != n:
        raise ValueError(f"{len(class_names)} class names for a {n} x {n} confusion matrix")
    layout = confusion_layout(class_names)
    picture = np.full((layout.height, layout.width, 3), 255, dtype=np.uint8)
    colors = heat_colors(np.nan_to_num(fractions))
    colors[np.isnan(fractions)] = MISSING_ROW_COLOR
    grid = np.repeat(np.repeat(colors, layout.cell, axis=0), layout.cell, axis=1)
    size = n * layout.cell
    picture[layout.top:layout.top + size, layout.left:layout.left + size] = grid
    cv2.putText(picture, CONFUSION_TITLE, (layout.pad, layout.title_height - layout.pad), FONT, 0.5, TEXT_COLOR, 1,
                cv2.LINE_AA)
    if layout.show_names:
        _draw_axis_names(picture, class_names, layout)
    if layout.cell >= 24:
        for (i, j), value in np.ndenumerate(fractions):
            if np.isnan(value):
                continue
            text = f"{value * 100:.0f}"
            (tw, th), _ = cv2.getTextSize(text, FONT, 0.4, 1)
            y, x = layout.cell_origin(i, j)
            color = (255, 255, 255) if value < 0.6 else TEXT_COLOR  # white on viridis' dark end
            cv2.putText(picture, text, (x + (layout.cell - tw) // 2, y + (layout.cell + th) // 2), FONT, 0.4, color, 1,
                        cv2.LINE_AA)
    return picture


def _draw_axis_names(picture: np.ndarray, class_names: Sequence[str], layout: ConfusionLayout) -> None:
    """Row names right-aligned left of the grid, column names above it reading bottom-up."""
    size = layout.num_classes * layout.cell
    (_, text_h), _ = cv2.getTextSize("Ag", FONT, layout.font_scale, 1)
    # column names are written horizontally into a strip, then rotated to read bottom-up
    column_strip = np.full((size, layout.top - layout.title_height, 3), 255, dtype=np.uint8)
    for i, name in enumerate(class_names):
        baseline = layout.top + i * layout.cell + (layout.cell + text_h) // 2
        name_w = cv2.getTextSize(name, FONT, layout.font_scale, 1)[0][0]
        cv2.putText(picture, name, (layout.left - layout.pad - name_w, baseline), FONT, layout.font_scale,
                    TEXT_COLOR, 1, cv2.LINE_AA)
        cv2.putText(column_strip, name, (layout.pad, baseline - layout.top), FONT, layout.font_scale, TEXT_COLOR, 1,
                    cv2.LINE_AA)
    # a quarter turn anticlockwise makes strip row i grid column i, and the strip's left edge (where
    # each name starts) the bottom, next to the grid
    picture[layout.title_height:layout.top, layout.left:layout.left + size] = cv2.rotate(
        column_strip, cv2.ROTATE_90_COUNTERCLOCKWISE)


def confusion_png(path, matrix, class_names: Sequence[str]) -> None:
    """Write `confusion_image` as a PNG (atomically)."""
    write_image(path, confusion_image(matrix, class_names))


__all__ = ["ConfusionLayout", "LegendStyle", "colorize", "confusion_image", "confusion_layout", "confusion_png",
           "generated_palette", "legend", "legend_layout", "overlay", "overlay_with_legend", "palette_for",
           "palette_file", "present_classes", "read_palette", "row_normalised", "save_label_png", "write_image"]
