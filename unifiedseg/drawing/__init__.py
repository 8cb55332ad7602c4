"""Pictures of predictions and metrics: class palettes (`palettes`), colour label maps and overlays with a
legend of the classes present (`overlays`), and row-normalised confusion-matrix heat maps (`confusion`).

    from unifiedseg.drawing import overlay_with_legend, palette_for, write_image
    palette = palette_for("cityscapes-19")
    write_image("overlay.jpg", overlay_with_legend(rgb_image, labels, palette, class_names))

Images are RGB uint8 (H, W, 3) numpy arrays; label maps are (H, W) integer arrays of class ids and the
ignore label of the palette's label space, drawn black in colour maps and left untouched in overlays.
"""

from unifiedseg.drawing.confusion import (ConfusionLayout, confusion_image, confusion_layout, confusion_png,
                                          heat_colors, row_normalised)
from unifiedseg.drawing.overlays import (LegendStyle, colorize, legend, legend_layout, overlay, overlay_with_legend,
                                         present_classes, save_label_png, write_image)
from unifiedseg.drawing.palettes import generated_palette, palette_file, palette_for, read_palette

__all__ = ["ConfusionLayout", "LegendStyle", "colorize", "confusion_image", "confusion_layout", "confusion_png",
           "generated_palette", "heat_colors", "legend", "legend_layout", "overlay", "overlay_with_legend",
           "palette_for", "palette_file", "present_classes", "read_palette", "row_normalised", "save_label_png",
           "write_image"]
