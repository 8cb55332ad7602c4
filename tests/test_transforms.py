"""Tests of the fused training augmentation against MSeg's step-by-step reference and the specified
distributions (unifiedseg.data.transforms)."""

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unifiedseg.constants import IGNORE_INDEX, IMAGENET_MEAN
from unifiedseg.data.transforms import (
    REDUCED_DECODE_FLAGS,
    AugParams,
    TrainTransform,
    ValTransform,
    decode_reduction,
    fit_within_size,
    make_params,
    short_side_size,
    warp_crop,
)

# MSeg's step-by-step augmentation, the reference of the fused warp, is benchmark code outside the package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from sequential_reference import sequential_reference  # noqa: E402

H, W = 97, 131
CROP = (64, 64)
MEAN_U8 = np.array([124, 116, 104], np.uint8)  # IMAGENET_MEAN rounded: the uint8 padding colour


def smooth_image(h=H, w=W, period=1.0):
    """Low-frequency RGB pattern: interpolation schemes agree on it to within a level or two."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) / period
    channels = [127 + 100 * np.sin(xx / 9 + yy / 13), 127 + 90 * np.cos(yy / 11 - xx / 17),
                127 + 80 * np.sin((xx + yy) / 15)]
    return np.stack(channels, -1).round().astype(np.uint8)


def blob_label(h=H, w=W):
    """Large constant regions: a disc, a rectangle, a corner block and background."""
    yy, xx = np.mgrid[0:h, 0:w]
    label = np.zeros((h, w), np.uint8)
    label[(yy - 0.41 * h) ** 2 + (xx - 0.38 * w) ** 2 < (0.26 * h) ** 2] = 1
    label[int(0.1 * h):int(0.6 * h), int(0.6 * w):int(0.9 * w)] = 2
    label[int(0.72 * h):, :int(0.45 * w)] = 3
    return label


IMAGE, LABEL = smooth_image(), blob_label()
# Pixel noise: any geometric slip or missing blur shows at once where no interpolation is involved.
NOISE = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def boundary_band(label, radius):
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(label, k) != cv2.erode(label, k)


def canvas_interior(params, margin):
    """Crop pixels at least `margin` px inside the transformed canvas (and away from the crop edge)."""
    inside = (sequential_reference(IMAGE, np.zeros_like(LABEL), params)[1] == 0).astype(np.uint8)
    k = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.erode(inside, k, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def assert_matches_reference(params, image_tol):
    fused_img, fused_lab = warp_crop(IMAGE, LABEL, params)
    ref_img, ref_lab = sequential_reference(IMAGE, LABEL, params)
    assert fused_img.dtype == np.uint8 and fused_img.shape == (*params.crop_hw, 3)
    assert fused_lab.dtype == np.uint8 and fused_lab.shape == params.crop_hw
    # Images: one bilinear interpolation against two or three, compared 3 px inside the canvas
    # (at the canvas edges the content-to-padding blend has a different width).
    interior = canvas_interior(params, 3)
    assert interior.mean() > 0.3
    diff = np.abs(fused_img.astype(np.float32) - ref_img)
    assert diff[interior].max() <= image_tol
    # Labels: exact equality fails by design. MSeg's cv2.resize(INTER_NEAREST) samples floor(x / s)
    # instead of the pixel centre (a shift of up to half a source pixel, i.e. one output pixel at 2x)
    # and rounds after each of its steps, while the fused warp rounds once. Differences are allowed
    # only within 2 px of a region boundary of either output, and must stay rare.
    differ = fused_lab != ref_lab
    near_boundary = boundary_band(ref_lab, 2) | boundary_band(fused_lab, 2)
    assert not (differ & ~near_boundary).any()
    assert differ.mean() < 0.05
    return differ.sum()


# ---------------------------------------------------------------------------------------------
# Exact cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crop_yx", [(0, 0), (33, 67), (10, 5), None])
def test_crop_only_is_exact(crop_yx):
    params = make_params((H, W), CROP, crop_yx=crop_yx)
    y, x = params.crop_yx
    fused_img, fused_lab = warp_crop(NOISE, LABEL, params)
    ref_img, ref_lab = sequential_reference(NOISE, LABEL, params)
    np.testing.assert_array_equal(fused_img, NOISE[y:y + 64, x:x + 64])
    np.testing.assert_array_equal(fused_lab, LABEL[y:y + 64, x:x + 64])
    np.testing.assert_array_equal(fused_img, ref_img)
    np.testing.assert_array_equal(fused_lab, ref_lab)
    if crop_yx is None:
        assert params.crop_yx == (16, 33)  # MSeg's centre: int((97 - 64) / 2), int((131 - 64) / 2)


@pytest.mark.parametrize("crop_yx", [(0, 0), (33, 67), (7, 20)])
def test_flip_only_is_exact(crop_yx):
    params = make_params((H, W), CROP, flip=True, crop_yx=crop_yx)
    y, x = crop_yx
    fused_img, fused_lab = warp_crop(NOISE, LABEL, params)
    ref_img, ref_lab = sequential_reference(NOISE, LABEL, params)
    np.testing.assert_array_equal(fused_img, NOISE[:, ::-1][y:y + 64, x:x + 64])
    np.testing.assert_array_equal(fused_lab, LABEL[:, ::-1][y:y + 64, x:x + 64])
    np.testing.assert_array_equal(fused_img, ref_img)
    np.testing.assert_array_equal(fused_lab, ref_lab)


@pytest.mark.parametrize("crop_yx", [(0, 0), (33, 67), (20, 30)])
def test_blur_and_flip_match_reference_everywhere(crop_yx):
    # The crop is blurred with a margin and reflected at the canvas edge as the reference's blur of
    # the whole canvas: only uint8-vs-float32 rounding differs, at every pixel including the edges.
    params = make_params((H, W), CROP, blur=True, flip=True, crop_yx=crop_yx)
    fused_img, fused_lab = warp_crop(NOISE, LABEL, params)
    ref_img, ref_lab = sequential_reference(NOISE, LABEL, params)
    assert np.abs(fused_img - ref_img).max() <= 1.0
    np.testing.assert_array_equal(fused_lab, ref_lab)
    y, x = crop_yx
    assert np.abs(fused_img.astype(int) - NOISE[:, ::-1][y:y + 64, x:x + 64]).mean() > 10  # blurred


@pytest.mark.parametrize("angle", [3.3, -7.9, 10.0, -10.0])
@pytest.mark.parametrize("crop_yx", [(0, 0), (33, 67), None])
def test_rotation_only_labels_exact(angle, crop_yx):
    # Same rotation matrix up to an integer translation, one nearest rounding each: equal labels.
    params = make_params((H, W), CROP, angle=angle, crop_yx=crop_yx)
    fused_img, fused_lab = warp_crop(NOISE, LABEL, params)
    ref_img, ref_lab = sequential_reference(NOISE, LABEL, params)
    np.testing.assert_array_equal(fused_lab, ref_lab)
    assert np.abs(fused_img - ref_img).max() <= 1.0


@pytest.mark.parametrize("image_hw, short_side", [((20, 59), 10), ((97, 131), 80), ((131, 97), 80)])
def test_resize_only_matches_reference_on_noise(image_hw, short_side):
    # A single interpolation on both sides with the same mapping: x and y use their own ratios
    # (59 -> int(29.5) = 29 columns is not the 2x of 20 -> 10 rows).
    image = np.random.default_rng(1).integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    resized = short_side_size(image_hw, short_side)
    params = make_params(image_hw, resized, resized_hw=resized)
    fused_img, _ = warp_crop(image, np.zeros(image_hw, np.uint8), params)
    ref_img, _ = sequential_reference(image, np.zeros(image_hw, np.uint8), params)
    assert np.abs(fused_img - ref_img).max() <= 1.0


def test_rotated_canvas_edges_follow_the_rounded_canvas():
    # At scale 0.5 the 48 x 66 canvas covers 96 x 132 source pixels of 97 x 131: the fused warp
    # trims the source to it, so the rotated canvas's padding lands where the reference's does.
    mismatched = 0
    for scale, angle in [(0.5, 5.0), (0.55, -8.0)]:
        params = make_params((H, W), CROP, scale=scale, angle=angle)
        fused_lab = warp_crop(IMAGE, LABEL, params)[1]
        ref_lab = sequential_reference(IMAGE, LABEL, params)[1]
        mismatched += ((fused_lab == IGNORE_INDEX) != (ref_lab == IGNORE_INDEX)).sum()
    assert mismatched <= 15  # 11 here; 30 without the trim


def test_rotation_is_about_the_canvas_centre_w2_h2():
    # cv2.getRotationMatrix2D((w / 2, h / 2), 180) maps pixel (x, y) to (w - x, h - y): a point
    # reflection one pixel off the array reversal, whose row 0 and column 0 fall outside.
    params = make_params((H, W), (H, W), angle=180.0)
    out_img, out_lab = warp_crop(NOISE, LABEL, params)
    np.testing.assert_array_equal(out_img[1:, 1:], NOISE[::-1, ::-1][:-1, :-1])
    np.testing.assert_array_equal(out_lab[1:, 1:], LABEL[::-1, ::-1][:-1, :-1])
    assert (out_lab[0] == IGNORE_INDEX).all() and (out_lab[:, 0] == IGNORE_INDEX).all()
    assert (out_img[0] == MEAN_U8).all() and (out_img[:, 0] == MEAN_U8).all()


# ---------------------------------------------------------------------------------------------
# Against the reference with interpolation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(scale=1.3),
    dict(scale=0.55),
    dict(resized_hw=(80, 108), scale=2.0),
    dict(resized_hw=(80, 108), scale=1.7, angle=-9.0, flip=True, blur=True, crop_yx=(40, 100)),
    dict(scale=0.5, angle=5.0, blur=True),  # smaller than the crop: padded
    dict(scale=0.6, angle=-3.0, flip=True, crop_yx=(0, 14)),
])
def test_fused_matches_sequential_reference(kwargs):
    params = make_params((H, W), CROP, **{"crop_yx": None, **kwargs})
    assert_matches_reference(params, image_tol=2.0)


@pytest.mark.parametrize("kwargs, corner", [
    (dict(scale=1.3), "first"), (dict(scale=1.3), "last"), (dict(scale=0.7, flip=True), "centre"),
    (dict(resized_hw=(80, 108), scale=1.9, blur=True), "last"), (dict(scale=0.6, blur=True), "centre"),
])
def test_unrotated_matches_reference_up_to_the_canvas_edges(kwargs, corner):
    # Unrotated, the warp clamps at the source border as cv2.resize does: no mean-colour blend at
    # the canvas edges, so the images agree everywhere (a smooth image: one vs two interpolations).
    params = make_params((H, W), CROP, **kwargs)
    crop_yx = {"first": (0, 0), "last": params.max_crop_yx, "centre": params.crop_yx}[corner]
    params = make_params((H, W), CROP, **kwargs, crop_yx=crop_yx)
    fused_img, _ = warp_crop(IMAGE, LABEL, params)
    ref_img, _ = sequential_reference(IMAGE, LABEL, params)
    assert np.abs(fused_img - ref_img).max() <= 1.5


def test_random_samples_match_reference():
    transform = TrainTransform(scale_range=(0.5, 2.0), crop_size=CROP)
    rng = np.random.default_rng(7)
    label_differences = 0
    for _ in range(150):
        params = transform.sample_params((H, W), rng)
        # 4 levels: bilinear of a bilinear upscale differs most where the pattern curves fastest.
        label_differences += assert_matches_reference(params, image_tol=4.0)
    assert label_differences > 0  # the comparison is not vacuous: rounding really differs


# ---------------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blur", [False, True])
def test_padding_uses_mean_colour_and_ignore(blur):
    small_img, small_lab = NOISE[:41, :51], LABEL[:41, :51]
    params = make_params((41, 51), CROP, blur=blur)
    # MSeg pads int(pad / 2) above / left and the odd pixel below / right: 23 = 11 + 12, 13 = 6 + 7.
    assert params.padded_hw == (64, 64) and params.pad_top_left == (11, 6) and params.crop_yx == (0, 0)
    out_img, out_lab = warp_crop(small_img, small_lab, params)
    pad = np.ones(CROP, bool)
    pad[11:52, 6:57] = False
    assert (out_img[pad] == MEAN_U8).all()
    assert (out_lab[pad] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(out_lab[11:52, 6:57], small_lab)
    ref_img, ref_lab = sequential_reference(small_img, small_lab, params)
    np.testing.assert_array_equal(out_lab, ref_lab)
    assert np.abs(out_img - ref_img).max() <= 1.0  # the reference pads with 123.675, not 124
    if not blur:
        np.testing.assert_array_equal(out_img[11:52, 6:57], small_img)


def test_rotation_padding_uses_mean_colour_and_ignore():
    params = make_params((H, W), (H, W), angle=10.0)
    out_img, out_lab = warp_crop(IMAGE, LABEL, params)
    # The top-left corner of the canvas rotates out of the image for a counter-clockwise turn.
    assert (out_lab[:3, :3] == IGNORE_INDEX).all()
    assert (out_img[:3, :3] == MEAN_U8).all()
    assert (out_lab[H // 2, W // 2] != IGNORE_INDEX)


def test_uint16_labels_keep_their_dtype_and_pad_with_65535():
    # A label space of more than 255 classes: ids 255 and 300 are classes, 65535 is ignored.
    wide = (LABEL.astype(np.uint16) * 300) // 255  # ids 0..300, 255 among them
    transform = TrainTransform(scale_range=(0.5, 0.5), rotate_p=0, blur_p=0, flip_p=0, crop_size=CROP)
    params = transform.sample_params((H, W), np.random.default_rng(0))
    _, out_lab = transform.apply(IMAGE, wide, params)
    _, narrow = transform.apply(IMAGE, LABEL, params)
    assert out_lab.dtype == np.uint16
    padded = narrow == IGNORE_INDEX  # the same warp: the uint8 crop's padding is where the uint16 one pads
    assert padded.any() and (out_lab[padded] == 65535).all()
    assert np.array_equal(out_lab[~padded], (narrow[~padded].astype(np.uint16) * 300) // 255)
    _, label_t = transform.to_tensors(IMAGE[:CROP[0], :CROP[1]], out_lab)
    assert label_t.dtype == torch.int32 and int(label_t.max()) == 65535 and torch.equal(label_t, torch.from_numpy(out_lab.astype(np.int32)))
    with pytest.raises(ValueError, match="ignore_index 300 does not fit a uint8 label map"):
        TrainTransform(crop_size=CROP, ignore_index=300, scale_range=(0.5, 0.5)).apply(IMAGE, LABEL, params)


def test_custom_mean_and_ignore_index():
    transform = TrainTransform(scale_range=(0.5, 0.5), rotate_p=0, blur_p=0, flip_p=0, crop_size=CROP,
                               mean=(10.0, 20.4, 30.6), ignore_index=0)
    params = transform.sample_params((H, W), np.random.default_rng(0))
    out_img, out_lab = transform.apply(IMAGE, LABEL + 1, params)
    assert (out_img[0, 0] == [10, 20, 31]).all() and out_lab[0, 0] == 0


# ---------------------------------------------------------------------------------------------
# Distributions
# ---------------------------------------------------------------------------------------------


def ks_uniform(samples, lo, hi):
    """Kolmogorov-Smirnov distance between the samples and U[lo, hi]."""
    x = np.sort((np.asarray(samples, np.float64) - lo) / (hi - lo))
    n = len(x)
    i = np.arange(1, n + 1)
    return max((i / n - x).max(), (x - (i - 1) / n).max())


def ks_bound(n):
    return 1.95 / math.sqrt(n)  # the 0.999 quantile of sqrt(n) * D is 1.949


def frequency_ok(flags, p):
    n = len(flags)
    return abs(np.mean(flags) - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_ks_helpers_detect_a_wrong_distribution():
    rng = np.random.default_rng(0)
    assert ks_uniform(rng.uniform(0.5, 2.0, 2000), 0.5, 2.0) < ks_bound(2000)
    assert ks_uniform(np.exp(rng.uniform(np.log(0.5), np.log(2.0), 2000)), 0.5, 2.0) > ks_bound(2000)
    assert not frequency_ok(rng.random(2000) < 0.45, 0.5)


def test_sampled_distributions_match_specification():
    transform = TrainTransform(short_side=80, scale_range=(0.5, 2.0), rotate_p=0.5, blur_p=0.5, flip_p=0.5,
                               crop_size=CROP)
    rng, jitter = np.random.default_rng(2024), np.random.default_rng(99)
    samples = [transform.sample_params((H, W), rng) for _ in range(2000)]
    scales = [p.scale for p in samples]
    assert min(scales) >= 0.5 and max(scales) <= 2.0
    assert ks_uniform(scales, 0.5, 2.0) < ks_bound(2000)
    angles = [p.angle for p in samples if p.angle != 0.0]
    assert frequency_ok([p.angle != 0.0 for p in samples], 0.5)
    assert min(angles) >= -10 and max(angles) <= 10
    assert ks_uniform(angles, -10, 10) < ks_bound(len(angles))
    assert frequency_ok([p.flip for p in samples], 0.5)
    assert frequency_ok([p.blur for p in samples], 0.5)
    assert all(p.resized_hw == (80, 108) for p in samples)
    # Crop offsets: uniform over 0..max; offset + U(0, 1) over (max + 1) is then exactly U(0, 1).
    for axis in (0, 1):
        u = [(p.crop_yx[axis] + jitter.random()) / (p.max_crop_yx[axis] + 1) for p in samples]
        assert ks_uniform(u, 0.0, 1.0) < ks_bound(2000)
        padded = [p for p in samples if p.scaled_hw[axis] < CROP[axis]]
        assert padded and all(p.crop_yx[axis] == 0 for p in padded)
    # The same seed gives the same samples.
    again = [transform.sample_params((H, W), np.random.default_rng(2024)) for _ in range(1)]
    assert again[0] == samples[0]


def test_crop_positions_cover_every_valid_offset_uniformly():
    # A 70 x 72 image at scale 1 under a 64 crop has 7 x 9 positions; each axis is chi-square tested.
    transform = TrainTransform(scale_range=(1.0, 1.0), crop_size=CROP)
    rng = np.random.default_rng(11)
    offsets = np.array([transform.sample_params((70, 72), rng).crop_yx for _ in range(2000)])
    for axis, (positions, chi2_bound) in enumerate([(7, 22.5), (9, 26.1)]):  # 0.999 quantiles, df 6, 8
        counts = np.bincount(offsets[:, axis], minlength=positions)
        assert len(counts) == positions
        expected = 2000 / positions
        assert ((counts - expected) ** 2 / expected).sum() < chi2_bound


def test_probabilities_zero_and_one():
    never = TrainTransform(rotate_p=0.0, blur_p=0.0, flip_p=0.0, crop_size=CROP)
    always = TrainTransform(rotate_p=1.0, blur_p=1.0, flip_p=1.0, crop_size=CROP)
    rng = np.random.default_rng(3)
    for _ in range(100):
        p, q = never.sample_params((H, W), rng), always.sample_params((H, W), rng)
        assert p.angle == 0.0 and not p.blur and not p.flip
        assert q.angle != 0.0 and q.blur and q.flip


def test_scales_mode_chooses_uniformly_and_fits_within():
    transform = TrainTransform(scales=[(2048, 512), (1024, 256), 300], scale_range=None, crop_size=CROP)
    rng = np.random.default_rng(5)
    counts = {}
    for _ in range(1500):
        p = transform.sample_params((500, 1000), rng)
        assert p.scale == 1.0
        counts[p.resized_hw] = counts.get(p.resized_hw, 0) + 1
    # (2048, 512): factor min(2048 / 1000, 512 / 500) = 1.024; (1024, 256): 0.512; 300: 0.6.
    assert set(counts) == {(512, 1024), (256, 512), (300, 600)}
    chi2 = sum((c - 500) ** 2 / 500 for c in counts.values())
    assert chi2 < 13.8  # 0.999 quantile of chi-square with 2 degrees of freedom


def test_ratio_mode_is_uniform_in_ratio():
    transform = TrainTransform(ratio_range=(0.5, 2.0), base_size=1000, scale_range=None, crop_size=CROP)
    rng, jitter = np.random.default_rng(6), np.random.default_rng(60)
    # Image 500 x 1000: target short side int(1000 r), so the resized height is floor(1000 r).
    samples = [transform.sample_params((500, 1000), rng) for _ in range(2000)]
    ratios = [(p.resized_hw[0] + jitter.random()) / 1000 for p in samples]
    assert ks_uniform(ratios, 0.5, 2.0) < ks_bound(2000)
    assert all(p.resized_hw[1] == 2 * p.resized_hw[0] and p.scale == 1.0 for p in samples)


def test_size_helpers_hand_computed():
    assert short_side_size((97, 131), 80) == (80, 108)  # int(131 * 80 / 97) = int(108.04)
    assert short_side_size((131, 97), 80) == (108, 80)
    assert short_side_size((1080, 1920), 720) == (720, 1280)
    assert fit_within_size((500, 1000), (512, 2048)) == (512, 1024)  # order of the pair is free
    assert fit_within_size((1000, 500), (2048, 512)) == (1024, 512)
    assert fit_within_size((500, 1000), (2048, 400)) == (400, 800)
    assert fit_within_size((333, 1000), 100) == (100, 300)  # int(1000 * 100 / 333 + 0.5) = 300
    params = make_params((97, 131), CROP, resized_hw=(80, 108), scale=1.7)
    assert params.scaled_hw == (136, 184)  # round(80 * 1.7), round(108 * 1.7) = round(183.6)
    assert params.min_scale == pytest.approx(min(80 / 97, 108 / 131) * 1.7)
    # cv2.resize(fx=0.5) rounds 2.5 -> 2 and 3.5 -> 4 (half to even); the reference checks it too.
    assert make_params((5, 7), (1, 1), scale=0.5).scaled_hw == (2, 4)


# ---------------------------------------------------------------------------------------------
# Reduced decoding
# ---------------------------------------------------------------------------------------------


def test_decode_reduction_thresholds():
    def with_scale(scale):
        return make_params((1000, 1000), (8, 8), scale=scale)

    assert [decode_reduction(with_scale(s)) for s in (1.5, 0.6, 0.5, 0.3, 0.25, 0.2, 0.125, 0.05)] == \
        [1, 1, 2, 2, 4, 4, 8, 8]
    assert decode_reduction(with_scale(0.05), max_reduction=2) == 2
    with pytest.raises(ValueError, match="max_reduction must be one of"):
        decode_reduction(with_scale(0.5), max_reduction=3)


@pytest.mark.parametrize("angle", [0.0, 6.0])
def test_reduced_jpeg_decode_matches_full_decode(angle):
    big_h, big_w = 390, 526  # a 1/4 decode is ceil(390 / 4) x ceil(526 / 4) = 98 x 132
    ok, jpeg = cv2.imencode(".jpg", smooth_image(big_h, big_w, period=4.0), [cv2.IMWRITE_JPEG_QUALITY, 95])
    full = cv2.imdecode(jpeg, REDUCED_DECODE_FLAGS[1])
    label = blob_label(big_h, big_w)
    params = make_params((big_h, big_w), CROP, resized_hw=short_side_size((big_h, big_w), 97), scale=0.8,
                         angle=angle, flip=True)
    k = decode_reduction(params)
    assert k == 4
    reduced = cv2.imdecode(jpeg, REDUCED_DECODE_FLAGS[k])
    assert reduced.shape == (98, 132, 3)
    full_img, full_lab = warp_crop(full, label, params)
    red_img, red_lab = warp_crop(reduced, label, params, decoded_scale=1 / k)
    np.testing.assert_array_equal(red_lab, full_lab)
    diff = np.abs(full_img.astype(int) - red_img)
    if angle == 0.0:
        assert diff.max() <= 3
    else:  # the rotated canvas edge blends over one decoded pixel instead of one source pixel
        inside = cv2.erode((full_lab != IGNORE_INDEX).astype(np.uint8), np.ones((5, 5), np.uint8))
        assert diff[inside > 0].max() <= 3
    with pytest.raises(ValueError, match="does not match the params' source size"):
        warp_crop(reduced, label, params, decoded_scale=1 / 2)


# ---------------------------------------------------------------------------------------------
# Tensors and normalisation
# ---------------------------------------------------------------------------------------------


def one_pixel_transform(**kwargs):
    return TrainTransform(scale_range=(1.0, 1.0), rotate_p=0.0, blur_p=0.0, flip_p=0.0, crop_size=1, **kwargs)


def test_one_pixel_stays_uint8_for_the_segmentor_to_normalise():
    image = np.array([[[255, 0, 128]]], np.uint8)
    label = np.array([[7]], np.uint8)
    out_img, out_lab = one_pixel_transform()(image, label, np.random.default_rng(0))
    assert out_img.dtype == torch.uint8 and out_img.shape == (3, 1, 1)
    assert out_img.flatten().tolist() == [255, 0, 128]
    assert out_lab.dtype == torch.uint8 and out_lab.tolist() == [[7]]


def test_call_returns_crop_tensors():
    transform = TrainTransform(crop_size=CROP)
    image, label = transform(IMAGE, LABEL, np.random.default_rng(1))
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and image.is_contiguous()
    assert label.shape == (64, 64) and label.dtype == torch.uint8
    assert set(label.unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}


def test_val_transform_resizes_and_centre_crops_with_padding():
    image, label = NOISE[:60, :90], blob_label(60, 90)
    transform = ValTransform(short_side=20, crop_size=(24, 24))
    out_img, out_lab = transform.apply(image, label)
    # Resized by 1/3 to 20 x 30: output pixel i samples source pixel 3 i + 1 exactly (no blending,
    # no nearest-neighbour tie). Padded to 24 x 30 (2 rows above, 2 below), centre crop columns 3..26.
    assert out_img.shape == (24, 24, 3)
    assert (out_lab[:2] == IGNORE_INDEX).all() and (out_lab[22:] == IGNORE_INDEX).all()
    assert (out_img[:2] == MEAN_U8).all() and (out_img[22:] == MEAN_U8).all()
    np.testing.assert_array_equal(out_img[2:22], image[1::3, 1::3][:, 3:27])
    np.testing.assert_array_equal(out_lab[2:22], label[1::3, 1::3][:, 3:27])
    tensor_img, tensor_lab = transform(image, label)
    assert tensor_img.dtype == torch.uint8 and tensor_img.shape == (3, 24, 24)
    assert tensor_lab.dtype == torch.uint8  # both converted on the device
    whole, no_label = ValTransform()(image)
    assert whole.shape == (3, 60, 90) and no_label is None


# ---------------------------------------------------------------------------------------------
# Argument errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(scale_range=(2.0, 0.5)), r"scale_range: min 2.0 is greater than max 0.5"),
    (dict(scale_range=(0.0, 2.0)), r"scale_range: values must be > 0"),
    (dict(scale_range=(1.0,)), r"scale_range: must be a pair of numbers"),
    (dict(short_side=480, crop_size=(713, 713), scale_range=(0.5, 1.0)),
     r"crop_size: \(713, 713\) is larger than the largest resized short side \(short_side \* scale_range max = 480\)"),
    (dict(scales=[512, 1024]), r"scales replaces MSeg's random scale: pass scale_range=None"),
    (dict(ratio_range=(0.5, 2.0), base_size=512), r"ratio_range replaces MSeg's random scale"),
    (dict(short_side=480, scales=[512], scale_range=None), r"choose one resize mode, got short_side and scales"),
    (dict(ratio_range=(0.5, 2.0), scale_range=None), r"ratio_range needs base_size"),
    (dict(base_size=512), r"base_size is only used with ratio_range"),
    (dict(scales=[], scale_range=None), r"scales: must be a non-empty list"),
    (dict(scales=[512, (0, 3)], scale_range=None), r"scales\[1\]: must be a positive int"),
    (dict(scales=[256], scale_range=None, crop_size=512), r"largest short side in scales = 256"),
    (dict(rotate_range=(10, -10)), r"rotate_range: min 10.0 is greater than max -10.0"),
    (dict(rotate_p=1.5), r"rotate_p: must be a probability in \[0, 1\]"),
    (dict(flip_p=-0.1), r"flip_p: must be a probability"),
    (dict(blur_kernel=4), r"blur_kernel: must be a positive odd int"),
    (dict(crop_size=(0, 5)), r"crop_size: must be a positive int or a pair"),
    (dict(crop_size=(5, 5, 5)), r"crop_size: must be a positive int or a pair"),
    (dict(mean=(1, 2)), r"mean: must be 3 numbers"),
    (dict(mean=(1, 2, 300)), r"mean: values must lie in \[0, 255\]"),
    (dict(ignore_index=65536), r"ignore_index: must be None \(the ignore label of the label's dtype\) or an int "
                               r"in \[0, 65535\]"),
    (dict(short_side=0), r"short_side: must be a positive int or None"),
])
def test_train_transform_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainTransform(**kwargs)


def test_val_transform_argument_errors():
    with pytest.raises(ValueError, match="crop_size: must be a positive int"):
        ValTransform(crop_size=-3)
    with pytest.raises(ValueError, match="short_side: must be a positive int or None"):
        ValTransform(short_side=2.5)


def test_keyword_only_constructors():
    with pytest.raises(TypeError):
        TrainTransform(480)
    with pytest.raises(TypeError):
        ValTransform(480)


def test_input_errors():
    transform = TrainTransform(crop_size=CROP)
    params = make_params((H, W), CROP)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        transform.sample_params((H, W), 0)
    with pytest.raises(ValueError, match=r"image must be an RGB uint8 array of shape \(H, W, 3\), got float32"):
        transform.apply(IMAGE.astype(np.float32), LABEL, params)
    with pytest.raises(ValueError, match=r"label must be a uint8 or uint16 array of shape \(H, W\), got int64"):
        transform.apply(IMAGE, LABEL.astype(np.int64), params)
    with pytest.raises(ValueError, match=r"label size \(96, 131\) differs from the size the params were sampled"):
        transform.apply(IMAGE[:96], LABEL[:96], params)
    with pytest.raises(ValueError, match=r"image size 96x131 does not match the params' source size 97x131"):
        transform.apply(IMAGE[:96], LABEL, params)
    with pytest.raises(ValueError, match=r"decoded_scale must be in \(0, 1\]"):
        transform.apply(IMAGE, LABEL, params, decoded_scale=2)
    with pytest.raises(ValueError, match=r"crop_yx y offset must be an integer in \[0, 33\]"):
        make_params((H, W), CROP, crop_yx=(34, 0))
    with pytest.raises(ValueError, match=r"AugParams.scale must be a positive number"):
        AugParams(image_hw=(H, W), resized_hw=(H, W), scale=-1.0, angle=0.0, blur=False, flip=False,
                  crop_yx=(0, 0), crop_hw=CROP)
    with pytest.raises(ValueError, match=r"image of size 1x5000 becomes empty when fitted within \(100, 100\)"):
        fit_within_size((1, 5000), (100, 100))
    assert IMAGENET_MEAN[0] == pytest.approx(123.675)
