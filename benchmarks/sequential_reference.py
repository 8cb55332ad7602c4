"""MSeg's training augmentation step by step, in its order, on a float32 image: the reference that the
fused warp of unifiedseg/data/transforms.py (`TrainTransform`, `warp_crop`) is checked against in
tests/test_transforms.py and timed against in benchmarks/pipeline_bench.py. It is not part of the
package: training never runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from unifiedseg.constants import IMAGENET_MEAN, ignore_index_of
from unifiedseg.data.transforms import AugParams


def sequential_reference(image: np.ndarray, label: np.ndarray, params: AugParams, *,
                         mean: Sequence[float] = IMAGENET_MEAN, ignore_index: int | None = None,
                         blur_kernel: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """MSeg's pipeline step by step on a float32 image: (float32 (H, W, 3) crop, (H, W) label crop).

    Resize, scale, rotate, blur, flip, pad, crop, each with the OpenCV call MSeg makes.
    """
    ignore_index = ignore_index_of(label.dtype) if ignore_index is None else ignore_index
    img = image.astype(np.float32)
    lab = label
    if params.resized_hw != params.image_hw:
        dsize = (params.resized_hw[1], params.resized_hw[0])
        img = cv2.resize(img, dsize, interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, dsize, interpolation=cv2.INTER_NEAREST)
    img = cv2.resize(img, None, fx=params.scale, fy=params.scale, interpolation=cv2.INTER_LINEAR)
    lab = cv2.resize(lab, None, fx=params.scale, fy=params.scale, interpolation=cv2.INTER_NEAREST)
    if lab.shape != params.scaled_hw:
        raise RuntimeError(f"cv2.resize made {lab.shape}, AugParams.scaled_hw predicts {params.scaled_hw}")
    h, w = lab.shape
    if params.angle != 0.0:
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), params.angle, 1)
        img = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=tuple(float(v) for v in mean))
        lab = cv2.warpAffine(lab, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=ignore_index)
    if params.blur:
        img = cv2.GaussianBlur(img, (blur_kernel, blur_kernel), 0)
    if params.flip:
        img, lab = cv2.flip(img, 1), cv2.flip(lab, 1)
    (ph, pw), (top, left) = params.padded_hw, params.pad_top_left
    if (ph, pw) != (h, w):
        borders = (top, ph - h - top, left, pw - w - left)
        img = cv2.copyMakeBorder(img, *borders, cv2.BORDER_CONSTANT, value=tuple(float(v) for v in mean))
        lab = cv2.copyMakeBorder(lab, *borders, cv2.BORDER_CONSTANT, value=ignore_index)
    (y0, x0), (ch, cw) = params.crop_yx, params.crop_hw
    return img[y0:y0 + ch, x0:x0 + cw], lab[y0:y0 + ch, x0:x0 + cw]
