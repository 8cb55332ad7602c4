"""Colour label maps, overlays of them on images with a legend of the classes present, and writing pictures.

Images are RGB uint8 (H, W, 3) numpy arrays throughout (the writers convert to OpenCV's BGR); label
maps are (H, W) integer arrays of class ids and an ignore label for "no class", drawn black in colour
maps and left untouched in overlays. The ignore label follows the palette's length (unifiedseg.constants):
IGNORE_INDEX (255) for at most 255 colours, WIDE_IGNORE_INDEX (65535) above that (e.g. MSeg's
350-class naive merge), where 255 is an ordinary class. Predictions, which the tools draw, never hold
the ignore label; a ground-truth map of a space that only its one-to-many class sets push past 255
values (uint16, ignore 65535, fewer than 256 classes) needs its 65535 pixels set to 255 before drawing
with its palette. Text is drawn with OpenCV's Hershey fonts, which have ASCII glyphs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from unifiedseg.constants import IGNORE_INDEX, MAX_CLASSES, WIDE_IGNORE_INDEX, ignore_index_for, label_dtype
from unifiedseg.drawing.palettes import IGNORE_COLOR, check_palette
from unifiedseg.utils.fileio import atomic_write

try:  # Pillow writes paletted PNGs (it comes with torchvision); without it label PNGs are plain RGB
    from PIL import Image
except ImportError:  # pragma: no cover - exercised by monkeypatching Image to None
    Image = None

FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_BACKGROUND = (255, 255, 255)
TEXT_COLOR = (0, 0, 0)


# ---- label maps --------------------------------------------------------------------------------
def check_labels(labels, num_colors: int) -> np.ndarray:
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


def color_lut(palette: np.ndarray) -> np.ndarray:
    """(ignore + 1, 3) colours indexed by label value: 256 rows for narrow palettes, 65536 for wide."""
    ignore = ignore_index_for(len(palette))
    lut = np.zeros((ignore + 1, 3), dtype=np.uint8)
    lut[:len(palette)] = palette
    lut[ignore] = IGNORE_COLOR
    return lut


def colorize(labels, palette) -> np.ndarray:
    """(H, W, 3) RGB uint8: each pixel the colour of its class, ignored pixels (255, or 65535 for
    palettes of more than 255 colours) black."""
    palette = check_palette(palette)
    return color_lut(palette)[check_labels(labels, len(palette))]


def save_label_png(path, labels, palette) -> None:
    """Write a colour label map, atomically: for palettes of <= 255 colours an indexed PNG (pixel values
    are the class ids, the palette colours them) with Pillow, else an RGB PNG. A PNG palette holds at
    most 256 entries, so for wider palettes it is always an RGB PNG of the colours (`colorize`): the
    class ids are not recoverable from it, and ignored pixels are black."""
    palette = check_palette(palette)
    labels = check_labels(labels, len(palette))
    if Image is not None and len(palette) <= MAX_CLASSES:
        indexed = Image.fromarray(np.ascontiguousarray(labels))
        indexed.putpalette(color_lut(palette).reshape(-1).tolist())  # an "L" image with a palette becomes "P"
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
    palette = check_palette(palette)
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
    palette = check_palette(palette)
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
