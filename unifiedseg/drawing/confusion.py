"""Pictures of a confusion matrix: a row-normalised heat map with class names on both axes.

Row i is the label class, column j the predicted one; each row is divided by its sum, so a cell is the
share of that class's labelled pixels predicted as the column's class. Rows of classes with no
labelled pixels are grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from unifiedseg.drawing.overlays import FONT, TEXT_COLOR, write_image

MISSING_ROW_COLOR = (200, 200, 200)  # confusion rows of classes with no labelled pixels
MAX_CONFUSION_GRID = 4096  # pixels a confusion grid spans at most once its cells are down to 8 px
MIN_NAMED_CELL = 8  # below this cell size names would be under 6 px tall, so they are left off


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
