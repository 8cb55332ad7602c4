"""The inference settings (`InferenceSettings`): how one image is predicted -- whole or sliding window,
scales, flip, tile blending -- and the rules of the config's `inference` section, which holds the same
fields (checked when a config loads, before anything is built).

They live at the config layer so that `load_config` can check them; unifiedseg/inference/tiling.py does
the predicting (its module docstring describes what each setting does and costs), and
`unifiedseg.inference.Predictor` takes the config's section as its defaults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Mapping
from dataclasses import dataclass

from unifiedseg.data.transforms import short_side_size
from unifiedseg.utils.checks import check_bool, check_size_pair, is_finite_number, is_int, is_number, keyed
from unifiedseg.utils.plain import to_plain

MODES = ("whole", "slide")
WINDOWS = ("hann", "uniform")
PAD_MODES = ("mean", "reflect")
# MSeg's sliding-window stride: two thirds of the crop.
DEFAULT_STRIDE_RATE = 2 / 3


def _size_pair(name: str, value) -> tuple[int, int] | None:
    """None, an int (square) or an (h, w) pair of positive ints, as an (h, w) tuple."""
    return None if value is None else check_size_pair(value, name)


@dataclass(frozen=True)
class InferenceSettings:
    """How to predict one image; every field is checked on construction.

    mode: "whole" (one forward pass per image) or "slide" (tiles of crop_size every stride pixels).
    short_side: resize the short side to this first (MSeg: 480, 720, 1080); None keeps the size.
    crop_size: slide mode tile size, int or (h, w) (MSeg: 473, 593, 713); must be None in whole mode.
    stride: slide mode tile step, int or (h, w), at most the crop; None = ceil(2/3 of the crop) (MSeg).
    scales: multipliers of the base size, averaged (MSeg multi-scale: 0.5, 0.75, 1.0, 1.25, 1.5, 1.75).
    flip: also predict the mirrored image and average (doubles the passes).
    tile_batch: tiles per forward call in slide mode.
    window: tile blending weight, "hann" (default) or "uniform" (MSeg); see the module docstring.
    pad_mode: filling of an image smaller than the crop: "mean" (the mean colour) or "reflect".
    class_chunk: classes upsampled at a time (bounds temporary memory on large images).
    """

    mode: str = "whole"
    short_side: int | None = None
    crop_size: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    tile_batch: int = 4
    window: str = "hann"
    pad_mode: str = "mean"
    class_chunk: int = 32

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is unknown; valid modes: {', '.join(MODES)}")
        if self.short_side is not None and not (is_int(self.short_side) and self.short_side > 0):
            raise ValueError(f"short_side: must be a positive int or None (keep the size), got {self.short_side!r}")
        crop = _size_pair("crop_size", self.crop_size)
        stride = _size_pair("stride", self.stride)
        if self.mode == "whole" and (crop is not None or stride is not None):
            raise ValueError("crop_size: crop_size and stride apply to mode='slide' only; in mode='whole' leave them None")
        if self.mode == "slide":
            if crop is None:
                raise ValueError("crop_size: mode='slide' needs crop_size (e.g. 713 after short_side=1080, as in MSeg)")
            if stride is None:
                stride = tuple(math.ceil(c * DEFAULT_STRIDE_RATE) for c in crop)
            if stride[0] > crop[0] or stride[1] > crop[1]:
                raise ValueError(f"stride: {stride} is larger than crop_size {crop}: pixels between tiles would "
                                 f"get no prediction")
        set_(self, "crop_size", crop)
        set_(self, "stride", stride)
        scales = (self.scales,) if is_number(self.scales) else self.scales
        if (isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__") or not scales
                or not all(is_finite_number(s) and s > 0 for s in scales)):
            raise ValueError(f"scales: must be a non-empty list of positive numbers (e.g. [1.0] or "
                             f"[0.5, 0.75, 1.0, 1.25, 1.5, 1.75]), got {self.scales!r}")
        set_(self, "scales", tuple(float(s) for s in scales))
        check_bool(self.flip, "flip")
        for name in ("tile_batch", "class_chunk"):
            value = getattr(self, name)
            if not (is_int(value) and value > 0):
                raise ValueError(f"{name}: must be a positive int, got {value!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window: {self.window!r} is unknown; valid windows: {', '.join(WINDOWS)}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode: {self.pad_mode!r} is unknown; valid pad modes: {', '.join(PAD_MODES)}")

    def base_size(self, image_hw: Sequence[int]) -> tuple[int, int]:
        """The size scale 1.0 predicts at: the short side resized, or the image's own size."""
        h, w = image_hw
        return short_side_size((h, w), self.short_side) if self.short_side is not None else (int(h), int(w))

    def scaled_sizes(self, image_hw: Sequence[int]) -> list[tuple[int, int]]:
        """The size predicted at for each scale (at least 1 x 1)."""
        bh, bw = self.base_size(image_hw)
        return [(max(1, round(bh * s)), max(1, round(bw * s))) for s in self.scales]

    def forward_passes(self, image_hw: Sequence[int]) -> int:
        """Network inputs (tiles) an image of this size costs: sum over scales of tiles, x2 with flip."""
        total = 0
        for h, w in self.scaled_sizes(image_hw):
            if self.mode == "whole":
                total += 1
            else:
                (ch, cw), (sh, sw) = self.crop_size, self.stride
                total += len(tile_starts(max(h, ch), ch, sh)) * len(tile_starts(max(w, cw), cw, sw))
        return total * (2 if self.flip else 1)


def tile_starts(length: int, crop: int, stride: int) -> list[int]:
    """Offsets of the tiles along one axis of `length` >= crop pixels: every `stride`, the last one
    moved back to end at the border (MSeg's grid: ceil((length - crop) / stride) + 1 tiles)."""
    if length < crop:
        raise ValueError(f"an axis of {length} pixels is shorter than the crop {crop}; pad it first")
    count = math.ceil((length - crop) / stride) + 1
    return sorted({min(i * stride, length - crop) for i in range(count)})


def inference_settings(section: Mapping, *, training_crop=None, **overrides) -> InferenceSettings:
    """The InferenceSettings of a config's `inference` section with `overrides` (keyword arguments whose
    value is not None replace the section's; `mode="whole"` also drops the section's crop_size and stride);
    a slide mode without crop_size takes `training_crop` (data.augmentation.crop_size). Errors name the
    dotted key: `inference.window: ...`."""
    section = dict(to_plain(section) or {})
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if overrides.get("mode") == "whole":
        section.pop("crop_size", None)
        section.pop("stride", None)
    kwargs = {**section, **overrides}
    kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in kwargs.items()}
    if kwargs.get("mode") == "slide" and kwargs.get("crop_size") is None and training_crop is not None:
        kwargs["crop_size"] = tuple(training_crop)
    try:
        return InferenceSettings(**kwargs)
    except ValueError as err:
        raise keyed(err, "inference", list(kwargs)) from None
