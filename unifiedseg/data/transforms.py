"""Training and validation augmentation as one affine warp per sample (MSeg's distribution, fused).

MSeg trains with, in this order: resize the short side to `short_side`; scale by a random factor
s ~ U[scale_min, scale_max]; with probability `rotate_p` rotate by an angle ~ U[rotate_range] about
the centre of the scaled image (padding: mean colour / ignore label; the canvas keeps its size);
with probability `blur_p` a 5x5 Gaussian blur of the image; with probability `flip_p` a horizontal
flip; pad to the crop size when smaller (mean colour / ignore label, centred) and take a crop at a
uniformly random valid position. MMSegmentation's alternatives to the first two steps are offered
too: `ratio_range` with `base_size` (a random ratio times a base size) and `scales` (one of a list
of sizes, chosen uniformly); they resize the image to fit within the target keeping its aspect ratio.

`TrainTransform` first samples every random choice into a frozen `AugParams`, then composes
resize * scale * rotation * flip * crop-translation into ONE 2x3 matrix and calls `cv2.warpAffine`
straight into the crop (bilinear for the image, nearest for the label). The image stays uint8 until
the final normalisation and no intermediate (e.g. a 2x-scaled 1080p frame) is ever built.
The step-by-step float32 implementation in MSeg's order that the fused warp is checked against (in tests
and benchmarks) is benchmarks/sequential_reference.py; it takes the same `AugParams`, so the outputs can
be compared sample by sample.

Geometry conventions (why the fused output matches the reference):
- Pixel centres are at integer coordinates; a resize from size n to m maps output x to input
  (x + 0.5) * n / m - 0.5, as `cv2.resize` does for bilinear sampling. MSeg's scale step passes
  fx = fy = s to `cv2.resize`, which makes the output size round(n * s) but samples with exactly s;
  `AugParams.scaled_hw` and the matrix follow that.
- Rotation uses `cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1)` on the scaled canvas, as MSeg.
- Blur is applied to the crop, not the whole canvas: the crop is warped with a margin of
  blur_kernel // 2 pixels, so that the blur of crop pixels sees their true neighbours, and only the
  part inside the transformed canvas is blurred, reflecting at the canvas edge as the reference's
  blur of the whole canvas does. Blur commutes with the flip (symmetric kernel).
- Without rotation the warp replicates the source border (as `cv2.resize` clamps); with rotation
  it pads with the mean colour (as the reference's rotation does). Either way the part of the crop
  outside the transformed canvas (MSeg's crop padding) is filled with the mean colour / ignore label.

Known, deliberate differences from the reference, all sub-pixel or within rounding:
- One bilinear interpolation instead of two or three: slightly sharper, not bit-identical.
- Labels: the same matrix as the image, rounded to the nearest pixel once. MSeg's `cv2.resize(...,
  INTER_NEAREST)` samples floor(x / s), which shifts labels up to half a source pixel against the
  image and rounds at every step, so labels differ from the reference only next to region
  boundaries.
- The uint8 padding colour is the mean rounded to integers (e.g. 124 for 123.675), so after
  normalisation it is ~0.005 instead of exactly 0.

Reduced JPEG decoding: `AugParams.min_scale` is the overall linear scale from the source image to
the crop. When it is <= 1/k (k in 2, 4, 8; `decode_reduction`), the image may be decoded at 1/k
size with `cv2.imread(path, REDUCED_DECODE_FLAGS[k])` and passed to `apply(...,
decoded_scale=1 / k)`: the warp maps the crop into the smaller image instead. Sample the params from
the label's (full) size, which is also the image's; the label is always passed at full size.
The output then differs from a full decode only by libjpeg's DCT-domain downscaling, which filters
better than bilinear sampling.

Each transform knows nothing about datasets or taxonomies. Images are RGB HxWx3 uint8 (the default
mean/std are ImageNet's, in RGB order); labels are HxW uint8, or uint16 in label spaces of more than
255 classes, and crops are padded with the ignore label of their dtype (255 or 65535,
`unifiedseg.constants.ignore_index_of`) unless `ignore_index` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

from unifiedseg.constants import IMAGENET_MEAN, WIDE_IGNORE_INDEX, ignore_index_of
from unifiedseg.data.decode import REDUCED_DECODE_FLAGS
from unifiedseg.utils.checks import check_size_pair, is_finite_number, is_int, keyed
from unifiedseg.utils.plain import to_plain



# ------------------------------------------------------------------------------------------------
# Sampled parameters
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugParams:
    """Every choice of one training sample; the transform is a pure function of these.

    image_hw: the source image's full size (the label's size).
    resized_hw: size after the deterministic resize (short side, base size times ratio, or one of
        `scales`); equal to image_hw when there is none.
    scale: MSeg's random scale applied after it (1.0 in the MMSegmentation modes).
    angle: rotation in degrees, counter-clockwise as `cv2.getRotationMatrix2D`; 0.0 = not rotated.
    blur, flip: whether the Gaussian blur / horizontal flip happen.
    crop_yx: top-left corner of the crop in the padded transformed canvas.
    crop_hw: the crop (output) size.
    """

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    scale: float
    angle: float
    blur: bool
    flip: bool
    crop_yx: tuple[int, int]
    crop_hw: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("image_hw", "resized_hw", "crop_hw"):
            object.__setattr__(self, name, _hw(f"AugParams.{name}", getattr(self, name)))
        if not (is_finite_number(self.scale) and self.scale > 0):
            raise ValueError(f"AugParams.scale must be a positive number, got {self.scale!r}")
        if not is_finite_number(self.angle):
            raise ValueError(f"AugParams.angle must be a finite number of degrees, got {self.angle!r}")
        sh, sw = self.scaled_hw
        if sh < 1 or sw < 1:
            raise ValueError(f"AugParams: resized size {self.resized_hw} times scale {self.scale} "
                             f"leaves an empty image ({sh}x{sw})")
        if not (isinstance(self.crop_yx, (tuple, list)) and len(self.crop_yx) == 2):
            raise ValueError(f"AugParams.crop_yx must be a (y, x) pair, got {self.crop_yx!r}")
        for axis, offset, limit in zip(("y", "x"), self.crop_yx, self.max_crop_yx):
            if not (is_int(offset) and 0 <= offset <= limit):
                raise ValueError(f"AugParams.crop_yx {axis} offset must be an integer in [0, {limit}] "
                                 f"for a {self.crop_hw} crop of the padded {self.padded_hw} canvas, "
                                 f"got {offset!r}")
        object.__setattr__(self, "crop_yx", (int(self.crop_yx[0]), int(self.crop_yx[1])))

    @property
    def scaled_hw(self) -> tuple[int, int]:
        """Canvas size after the random scale: `cv2.resize(fx=fy=scale)` rounds to nearest."""
        return _scaled_size(self.resized_hw, self.scale)

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Canvas size after padding it up to the crop size where it is smaller."""
        (sh, sw), (ch, cw) = self.scaled_hw, self.crop_hw
        return max(sh, ch), max(sw, cw)

    @property
    def pad_top_left(self) -> tuple[int, int]:
        """Padding added above and left of the canvas (MSeg puts the odd pixel below / right)."""
        (ph, pw), (sh, sw) = self.padded_hw, self.scaled_hw
        return (ph - sh) // 2, (pw - sw) // 2

    @property
    def max_crop_yx(self) -> tuple[int, int]:
        (ph, pw), (ch, cw) = self.padded_hw, self.crop_hw
        return ph - ch, pw - cw

    @property
    def min_scale(self) -> float:
        """Smallest linear scale factor (over x and y) from the source image to the crop."""
        (h, w), (rh, rw) = self.image_hw, self.resized_hw
        return min(rh / h, rw / w) * self.scale


def make_params(image_hw: Sequence[int], crop_hw: Sequence[int], *, resized_hw: Sequence[int] | None = None,
                scale: float = 1.0, angle: float = 0.0, blur: bool = False, flip: bool = False,
                crop_yx: Sequence[int] | None = None) -> AugParams:
    """Fixed parameters (for tests, validation and benchmarks); crop_yx None = centre crop as MSeg."""
    image_hw, crop_hw = _hw("image_hw", image_hw), _hw("crop_hw", crop_hw)
    resized_hw = _hw("resized_hw", resized_hw) if resized_hw is not None else image_hw
    if crop_yx is None:
        # MSeg's centre crop: int((h - crop_h) / 2) of the padded canvas.
        crop_yx = tuple(max(n - c, 0) // 2 for n, c in zip(_scaled_size(resized_hw, scale), crop_hw))
    return AugParams(image_hw=image_hw, resized_hw=resized_hw, scale=float(scale), angle=float(angle),
                     blur=bool(blur), flip=bool(flip), crop_yx=tuple(crop_yx), crop_hw=crop_hw)


def decode_reduction(params: AugParams, *, max_reduction: int = 8) -> int:
    """The largest k in (1, 2, 4, 8), at most max_reduction, with params.min_scale <= 1 / k.

    Decode the image with `REDUCED_DECODE_FLAGS[k]` and pass `decoded_scale=1 / k` to `apply`.
    """
    if max_reduction not in REDUCED_DECODE_FLAGS:
        raise ValueError(f"max_reduction must be one of {sorted(REDUCED_DECODE_FLAGS)}, got {max_reduction!r}")
    for k in (8, 4, 2):
        if k <= max_reduction and params.min_scale <= 1.0 / k:
            return k
    return 1


# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------


def _scaled_size(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    # cv2.resize(dsize=None, fx=s) makes saturate_cast<int>(n * s): round half to even, like round().
    return int(round(hw[0] * scale)), int(round(hw[1] * scale))


def short_side_size(image_hw: Sequence[int], short_side: int) -> tuple[int, int]:
    """MSeg's ResizeShort: the short side becomes short_side, the long one int(long * ratio)."""
    h, w = image_hw
    if h <= w:
        new_hw = (short_side, int(w * (short_side / float(h))))
    else:
        new_hw = (int(h * (short_side / float(w))), short_side)
    return new_hw


def fit_within_size(image_hw: Sequence[int], target: int | tuple[int, int]) -> tuple[int, int]:
    """MMSegmentation's keep-ratio resize: the largest size fitting a (long, short) target.

    An int target is a short side. A pair means long edge <= max(pair), short edge <= min(pair),
    whatever its order; sizes round as mmcv's `int(x * factor + 0.5)`.
    """
    h, w = image_hw
    if isinstance(target, (int, np.integer)):
        factor = target / min(h, w)
    else:
        factor = min(max(target) / max(h, w), min(target) / min(h, w))
    new_hw = (int(h * factor + 0.5), int(w * factor + 0.5))
    if min(new_hw) < 1:
        raise ValueError(f"image of size {h}x{w} becomes empty when fitted within {target}")
    return new_hw


def _target_short_side(target: int | tuple[int, int]) -> int:
    return target if isinstance(target, int) else min(target)


# ------------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------------


def _hw(name: str, value) -> tuple[int, int]:
    """A (height, width) pair of positive ints (a tuple, list or array shape)."""
    return check_size_pair(value, name, square=False)


def _number_range(name: str, value, *, positive: bool = False) -> tuple[float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_finite_number(v) for v in value)):
        raise ValueError(f"{name}: must be a pair of numbers (min, max), got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ValueError(f"{name}: min {lo} is greater than max {hi}")
    if positive and lo <= 0:
        raise ValueError(f"{name}: values must be > 0, got {value!r}")
    return lo, hi


def _probability(name: str, value) -> float:
    if not (is_finite_number(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}: must be a probability in [0, 1], got {value!r}")
    return float(value)


def _size_target(name: str, value) -> int | tuple[int, int]:
    """An int short side, or a (long, short) pair in either order."""
    if is_int(value) and value > 0:
        return int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name}: must be a positive int (short side) or a pair of positive ints "
                     f"(long edge, short edge), got {value!r}")


def _colour(name: str, value, *, positive: bool = False) -> tuple[float, float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 3 and all(is_finite_number(v) for v in value)):
        raise ValueError(f"{name}: must be 3 numbers (one per RGB channel), got {value!r}")
    if positive and min(value) <= 0:
        raise ValueError(f"{name}: values must be > 0, got {value!r}")
    if not positive and not all(0 <= v <= 255 for v in value):
        raise ValueError(f"{name}: values must lie in [0, 255] (uint8 pixel scale), got {value!r}")
    return float(value[0]), float(value[1]), float(value[2])


def _ignore_index(value) -> int | None:
    if value is None:
        return None
    if not (is_int(value) and 0 <= value <= WIDE_IGNORE_INDEX):
        raise ValueError(f"ignore_index: must be None (the ignore label of the label's dtype) or an int in "
                         f"[0, {WIDE_IGNORE_INDEX}], got {value!r}")
    return int(value)


def _label_fill(label: np.ndarray, ignore_index: int | None) -> int:
    """The padding value of a label crop: ignore_index, or by default the ignore label of the label's dtype."""
    fill = ignore_index_of(label.dtype) if ignore_index is None else ignore_index
    if fill > np.iinfo(label.dtype).max:
        raise ValueError(f"ignore_index {fill} does not fit a {label.dtype} label map")
    return fill


def _check_crop_fits(crop_hw: tuple[int, int], largest_short_side: float, how: str) -> None:
    # A crop whose short side exceeds every resized image's short side is padded in every sample:
    # almost surely a configuration mistake (e.g. a 1080p crop with a 480p short side).
    if min(crop_hw) > largest_short_side:
        raise ValueError(f"crop_size: {crop_hw} is larger than the largest resized short side "
                         f"({how} = {largest_short_side:g}); every crop would be mostly padding. "
                         f"Lower crop_size or raise the resize sizes.")


def _check_inputs(image: np.ndarray, label: np.ndarray | None, params: AugParams, decoded_scale: float) -> None:
    if not isinstance(params, AugParams):
        raise TypeError(f"params must be an AugParams, got {type(params).__name__}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an RGB uint8 array of shape (H, W, 3), got {desc}")
    if label is not None:
        if not isinstance(label, np.ndarray) or label.dtype not in (np.uint8, np.uint16) or label.ndim != 2:
            desc = f"{label.dtype} array of shape {label.shape}" if isinstance(label, np.ndarray) else type(label).__name__
            raise ValueError(f"label must be a uint8 or uint16 array of shape (H, W), got {desc}")
        if label.shape != params.image_hw:
            raise ValueError(f"label size {label.shape} differs from the size the params were sampled for "
                             f"{params.image_hw}")
    if not (is_finite_number(decoded_scale) and 0 < decoded_scale <= 1):
        raise ValueError(f"decoded_scale must be in (0, 1] (1/k for an image decoded at 1/k size), "
                         f"got {decoded_scale!r}")
    h, w = params.image_hw
    ih, iw = image.shape[:2]
    # A reduced JPEG decode gives ceil(n / k) pixels; anything within one pixel of n / k is accepted.
    if decoded_scale == 1.0:
        ok = (ih, iw) == (h, w)
    else:
        ok = abs(ih - h * decoded_scale) < 1 and abs(iw - w * decoded_scale) < 1
    if not ok:
        raise ValueError(f"image size {ih}x{iw} does not match the params' source size {h}x{w} "
                         f"at decoded_scale={decoded_scale:g} (expected about {h * decoded_scale:g}x"
                         f"{w * decoded_scale:g})")


# ------------------------------------------------------------------------------------------------
# The fused warp
# ------------------------------------------------------------------------------------------------


def _output_to_source(params: AugParams, *, margin: int, decoded_scale: float) -> np.ndarray:
    """2x3 matrix taking output pixel (x, y) to the (decoded) source pixel it samples."""
    (h, w), (rh, rw), (sh, sw) = params.image_hw, params.resized_hw, params.scaled_hw
    pad_top, pad_left = params.pad_top_left
    y0, x0 = params.crop_yx
    # Output -> transformed canvas (crop offset, padding, blur margin).
    m = np.array([[1.0, 0.0, x0 - pad_left - margin], [0.0, 1.0, y0 - pad_top - margin], [0.0, 0.0, 1.0]])
    if params.flip:
        m = np.array([[-1.0, 0.0, sw - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    if params.angle != 0.0:
        forward = cv2.getRotationMatrix2D((sw / 2, sh / 2), params.angle, 1.0)
        m = np.vstack([cv2.invertAffineTransform(forward), [0.0, 0.0, 1.0]]) @ m
    # Scaled canvas -> resized image: cv2.resize with fx = s samples at exactly 1 / s.
    s = params.scale
    m = np.array([[1 / s, 0.0, 0.5 / s - 0.5], [0.0, 1 / s, 0.5 / s - 0.5], [0.0, 0.0, 1.0]]) @ m
    # Resized -> source (x and y ratios differ slightly: the resized size is rounded).
    resize = np.diag([1.0, 1.0, 1.0])
    resize[0, 0], resize[0, 2] = w / rw, 0.5 * w / rw - 0.5
    resize[1, 1], resize[1, 2] = h / rh, 0.5 * h / rh - 0.5
    m = resize @ m
    if decoded_scale != 1.0:
        # Pixel i of a 1/k decode covers source pixels k*i .. k*i + k - 1.
        d = decoded_scale
        m = np.array([[d, 0.0, 0.5 * d - 0.5], [0.0, d, 0.5 * d - 0.5], [0.0, 0.0, 1.0]]) @ m
    return m[:2]


def _canvas_source_extent(params: AugParams) -> tuple[int, int]:
    """Source rows and columns that the scaled canvas covers (its far edge, rounded to pixels)."""
    (h, w), (rh, rw), (sh, sw), s = params.image_hw, params.resized_hw, params.scaled_hw, params.scale
    return min(h, max(1, round(sh / s * h / rh))), min(w, max(1, round(sw / s * w / rw)))


def _canvas_window(params: AugParams, margin: int, out_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 of the output that lie inside the transformed canvas."""
    (sh, sw), (pad_top, pad_left), (y0, x0) = params.scaled_hw, params.pad_top_left, params.crop_yx
    r0, c0 = pad_top - y0 + margin, pad_left - x0 + margin
    return max(r0, 0), min(r0 + sh, out_hw[0]), max(c0, 0), min(c0 + sw, out_hw[1])


def _fill_outside(array: np.ndarray, window: tuple[int, int, int, int], value) -> None:
    r0, r1, c0, c1 = window
    array[:r0] = value
    array[r1:] = value
    array[:, :c0] = value
    array[:, c1:] = value


def warp_crop(image: np.ndarray, label: np.ndarray | None, params: AugParams, *,
              mean: Sequence[float] = IMAGENET_MEAN, ignore_index: int | None = None, blur_kernel: int = 5,
              decoded_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop of (image, label) that params describe, in one warp each: uint8 (H, W, 3), (H, W).

    decoded_scale: 1/k when the image was decoded at 1/k size (see the module docstring); the label
    is always full size. label may be None (no label to transform). The label crop keeps the label's
    dtype; it is padded with ignore_index (None: the dtype's ignore label).
    """
    _check_inputs(image, label, params, decoded_scale)
    if params.angle != 0.0:
        # The reference rotates the scaled canvas, whose rounded size may cover a little less of
        # the source than the source itself; rotation then pads right after the canvas edge.
        # Trimming the source to the part the canvas covers keeps the rotated edges in place.
        rows, cols = _canvas_source_extent(params)
        image = image[:max(1, round(rows * decoded_scale)), :max(1, round(cols * decoded_scale))]
        label = label[:rows, :cols] if label is not None else None
    ch, cw = params.crop_hw
    fill = tuple(float(round(v)) for v in mean)
    margin = blur_kernel // 2 if params.blur else 0
    out_hw = (ch + 2 * margin, cw + 2 * margin)
    # Unrotated, replicating the source border matches cv2.resize's clamping at the canvas edges;
    # rotated, the reference pads with the mean colour right after them.
    border = cv2.BORDER_CONSTANT if params.angle != 0.0 else cv2.BORDER_REPLICATE
    matrix = _output_to_source(params, margin=margin, decoded_scale=decoded_scale)
    out = cv2.warpAffine(image, matrix, (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=border, borderValue=fill)
    window = _canvas_window(params, margin, out_hw)
    _fill_outside(out, window, fill)
    if params.blur:
        r0, r1, c0, c1 = window
        out[r0:r1, c0:c1] = cv2.GaussianBlur(out[r0:r1, c0:c1], (blur_kernel, blur_kernel), 0,
                                             borderType=cv2.BORDER_REFLECT_101)
        out = np.ascontiguousarray(out[margin:margin + ch, margin:margin + cw])
    if label is None:
        return out, None
    label_fill = _label_fill(label, ignore_index)
    matrix = _output_to_source(params, margin=0, decoded_scale=1.0)
    out_label = cv2.warpAffine(label, matrix, (cw, ch), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                               borderMode=border, borderValue=label_fill)
    _fill_outside(out_label, _canvas_window(params, 0, (ch, cw)), label_fill)
    return out, out_label


def to_tensors(image: np.ndarray, label: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 HWC image -> uint8 CHW tensor, and uint8 label -> uint8 HW tensor (uint16 labels become
    int32, as torch's uint16 tensors support few operations). Nothing is normalised here: the Segmentor
    normalises on the device, so loaders collate and copy a quarter of the bytes of float crops."""
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if label is not None and label.dtype != np.uint8:
        label = label.astype(np.int32)
    return chw, (torch.from_numpy(np.ascontiguousarray(label)) if label is not None else None)


# ------------------------------------------------------------------------------------------------
# Transforms
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainTransform:
    """MSeg's training augmentation (or MMSegmentation's multi-scale variants), fused into one warp.

    Resize (choose one): `short_side` (MSeg; None = keep the size) with the random `scale_range`;
    or `ratio_range` with `base_size`; or `scales` (a list; one is chosen uniformly). The two
    MMSegmentation modes replace MSeg's random scale: pass `scale_range=None` with them. Sizes in
    `base_size` / `scales` are an int short side or a (long edge, short edge) pair to fit within.
    Then rotation (`rotate_range` degrees, probability `rotate_p`), blur (`blur_kernel`, `blur_p`),
    horizontal flip (`flip_p`) and a random `crop_size` (h, w) crop, padded with `mean` / `ignore_index`.
    The crops stay uint8 (CHW image): the Segmentor normalises them on the device.
    """

    short_side: int | None = None
    scale_range: tuple[float, float] | None = (0.5, 2.0)
    ratio_range: tuple[float, float] | None = None
    base_size: int | tuple[int, int] | None = None
    scales: Sequence[int | tuple[int, int]] | None = None
    rotate_range: tuple[float, float] = (-10.0, 10.0)
    rotate_p: float = 0.5
    blur_p: float = 0.5
    blur_kernel: int = 5
    flip_p: float = 0.5
    crop_size: int | tuple[int, int] = (713, 713)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    ignore_index: int | None = None  # label padding; None: the ignore label of the label's dtype

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once here
        crop = check_size_pair(self.crop_size, "crop_size")
        set_(self, "crop_size", crop)
        if self.short_side is not None and not (is_int(self.short_side) and self.short_side > 0):
            raise ValueError(f"short_side: must be a positive int or None, got {self.short_side!r}")
        modes = [name for name, value in (("short_side", self.short_side), ("ratio_range", self.ratio_range),
                                          ("scales", self.scales)) if value is not None]
        if len(modes) > 1:
            raise ValueError(f"choose one resize mode, got {' and '.join(modes)}: short_side (MSeg, with "
                             f"scale_range), ratio_range with base_size, or scales (MMSegmentation)")
        if self.scale_range is not None:
            set_(self, "scale_range", _number_range("scale_range", self.scale_range, positive=True))
        if self.ratio_range is not None or self.scales is not None:
            mode = "ratio_range" if self.ratio_range is not None else "scales"
            if self.scale_range is not None:
                raise ValueError(f"{mode} replaces MSeg's random scale: pass scale_range=None with it "
                                 f"(got scale_range={self.scale_range})")
        if self.ratio_range is not None:
            set_(self, "ratio_range", _number_range("ratio_range", self.ratio_range, positive=True))
            if self.base_size is None:
                raise ValueError("ratio_range needs base_size: an int short side or a (long, short) pair")
            set_(self, "base_size", _size_target("base_size", self.base_size))
            _check_crop_fits(crop, _target_short_side(self.base_size) * self.ratio_range[1],
                             "short side of base_size * ratio_range max")
        elif self.base_size is not None:
            raise ValueError("base_size is only used with ratio_range; set ratio_range or drop base_size")
        if self.scales is not None:
            if isinstance(self.scales, (str, bytes)) or not isinstance(self.scales, Sequence) or not self.scales:
                raise ValueError(f"scales: must be a non-empty list of sizes, got {self.scales!r}")
            scales = tuple(_size_target(f"scales[{i}]", v) for i, v in enumerate(self.scales))
            set_(self, "scales", scales)
            _check_crop_fits(crop, max(_target_short_side(t) for t in scales), "largest short side in scales")
        if self.short_side is not None and self.scale_range is not None:
            _check_crop_fits(crop, self.short_side * self.scale_range[1], "short_side * scale_range max")
        elif self.short_side is not None:
            _check_crop_fits(crop, self.short_side, "short_side")
        set_(self, "rotate_range", _number_range("rotate_range", self.rotate_range))
        for name in ("rotate_p", "blur_p", "flip_p"):
            set_(self, name, _probability(name, getattr(self, name)))
        if not (is_int(self.blur_kernel) and self.blur_kernel > 0 and self.blur_kernel % 2 == 1):
            raise ValueError(f"blur_kernel: must be a positive odd int, got {self.blur_kernel!r}")
        set_(self, "mean", _colour("mean", self.mean))
        set_(self, "ignore_index", _ignore_index(self.ignore_index))

    def sample_params(self, image_hw: Sequence[int], rng: np.random.Generator) -> AugParams:
        """Draw every random choice for one image of size image_hw (the full, undecoded size)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                            f"got {type(rng).__name__}")
        image_hw = _hw("image_hw", image_hw)
        if self.scales is not None:
            resized = fit_within_size(image_hw, self.scales[int(rng.integers(len(self.scales)))])
        elif self.ratio_range is not None:
            ratio = rng.uniform(*self.ratio_range)
            base = self.base_size
            # MMSegmentation truncates the scaled target to ints before fitting.
            target = int(base * ratio) if isinstance(base, int) else (int(base[0] * ratio), int(base[1] * ratio))
            resized = fit_within_size(image_hw, target)
        elif self.short_side is not None:
            resized = short_side_size(image_hw, self.short_side)
        else:
            resized = image_hw
        scale = float(rng.uniform(*self.scale_range)) if self.scale_range is not None else 1.0
        angle = float(rng.uniform(*self.rotate_range)) if rng.random() < self.rotate_p else 0.0
        blur = bool(rng.random() < self.blur_p)
        flip = bool(rng.random() < self.flip_p)
        # Uniform over every position of the canvas padded up to the crop size, as MSeg's Crop.
        (sh, sw), (ch, cw) = _scaled_size(resized, scale), self.crop_size
        crop_yx = (int(rng.integers(max(sh - ch, 0) + 1)), int(rng.integers(max(sw - cw, 0) + 1)))
        return make_params(image_hw, self.crop_size, resized_hw=resized, scale=scale, angle=angle,
                           blur=blur, flip=flip, crop_yx=crop_yx)

    def apply(self, image: np.ndarray, label: np.ndarray | None, params: AugParams, *,
              decoded_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """The uint8 (crop_h, crop_w, 3) image and (crop_h, crop_w) label crops for params.

        decoded_scale=1/k when the image was decoded at 1/k size (`decode_reduction(params)`).
        """
        return warp_crop(image, label, params, mean=self.mean, ignore_index=self.ignore_index,
                         blur_kernel=self.blur_kernel, decoded_scale=decoded_scale)

    def to_tensors(self, image: np.ndarray, label: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return to_tensors(image, label)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample, warp and convert: image uint8 (3, H, W), label uint8 (H, W) (int32 for uint16 labels)."""
        if not isinstance(label, np.ndarray):
            raise ValueError(f"label must be a uint8 or uint16 array of shape (H, W), got {type(label).__name__}")
        params = self.sample_params(label.shape, rng)
        return self.to_tensors(*self.apply(image, label, params))


def check_augmentation_cfg(cfg: Mapping, *, where: str = "data.augmentation") -> None:
    """The rules of a `data.augmentation` config section: TrainTransform's own (constructing one is cheap: it
    holds only the checked settings) and a valid `std`. Errors name the dotted key (data.augmentation.rotate_p: ...)."""
    section = to_plain(cfg)
    kwargs = augmentation_kwargs(section)
    try:
        if "std" in section:
            _colour("std", section["std"], positive=True)
        TrainTransform(**kwargs)
    except ValueError as err:
        raise keyed(err, where, [*kwargs, "std"]) from None


def augmentation_kwargs(cfg: Mapping) -> dict:
    """TrainTransform's keyword arguments from a `data.augmentation` config section (lists become tuples):
    every key but `std`, which only the Segmentor's normalisation uses (`mean` is also the padding colour)."""
    return {key: tuple(value) if isinstance(value, list) else value
            for key, value in to_plain(cfg).items() if key != "std"}


@dataclass(frozen=True, kw_only=True)
class ValTransform:
    """Validation preprocessing: resize the short side (None = keep), then an optional centre crop
    (padded with mean / ignore_index when the image is smaller), then tensors as TrainTransform."""

    short_side: int | None = None
    crop_size: int | tuple[int, int] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    ignore_index: int | None = None  # label padding; None: the ignore label of the label's dtype

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.short_side is not None and not (is_int(self.short_side) and self.short_side > 0):
            raise ValueError(f"short_side: must be a positive int or None, got {self.short_side!r}")
        if self.crop_size is not None:
            set_(self, "crop_size", check_size_pair(self.crop_size, "crop_size"))
        set_(self, "mean", _colour("mean", self.mean))
        set_(self, "ignore_index", _ignore_index(self.ignore_index))

    def params(self, image_hw: Sequence[int]) -> AugParams:
        """The fixed AugParams for an image of size image_hw."""
        image_hw = _hw("image_hw", image_hw)
        resized = short_side_size(image_hw, self.short_side) if self.short_side is not None else image_hw
        return make_params(image_hw, self.crop_size or resized, resized_hw=resized)

    def apply(self, image: np.ndarray, label: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        if not isinstance(image, np.ndarray) or image.ndim != 3:
            raise ValueError(f"image must be an RGB uint8 array of shape (H, W, 3), got "
                             f"{getattr(image, 'shape', type(image).__name__)}")
        return warp_crop(image, label, self.params(image.shape[:2]), mean=self.mean, ignore_index=self.ignore_index)

    def __call__(self, image: np.ndarray, label: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return to_tensors(*self.apply(image, label))
