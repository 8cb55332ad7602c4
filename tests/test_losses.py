"""Losses, OHEM and build_losses on tiny inputs whose values are worked out by hand (or by a few lines
of independent math here)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from unifiedseg.constants import IGNORE_INDEX as IGN
from unifiedseg.losses import (
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LossConfigError,
    LovaszLoss,
    OHEMPixelSampler,
    PartialLabelLoss,
    build_losses,
    cross_entropy_loss,
    dice_loss,
    focal_loss,
    lovasz_grad,
    lovasz_softmax,
    partial_label_loss,
)


def logits_of(pixel_probs, height, width):
    """(1, C, H, W) logits whose softmax at each pixel (raster order) is the given probability vector."""
    probs = torch.tensor(pixel_probs, dtype=torch.float64).reshape(height, width, -1)
    return probs.log().permute(2, 0, 1).unsqueeze(0).float()


def labels_of(values, height, width):
    return torch.tensor(values, dtype=torch.int64).reshape(1, height, width)


# Shared 2-class, 2x2 example: A p=(1/4, 3/4) y=0 -> ce ln 4; B p=(1/4, 3/4) y=1 -> ce ln 4/3;
# C p=(1/2, 1/2) y=1 -> ce ln 2; D ignored.
PROBS = [[0.25, 0.75], [0.25, 0.75], [0.5, 0.5], [0.9, 0.1]]
LABELS = [0, 1, 1, IGN]
CE_A, CE_B, CE_C = math.log(4), math.log(4 / 3), math.log(2)


@pytest.fixture
def example():
    return logits_of(PROBS, 2, 2), labels_of(LABELS, 2, 2)


# ---- cross-entropy ---------------------------------------------------------------------------
def test_ce_mean_over_all_pixels_by_default(example):
    logits, labels = example
    assert cross_entropy_loss(logits, labels).item() == pytest.approx((CE_A + CE_B + CE_C) / 4, rel=1e-6)


def test_ce_avg_non_ignore(example):
    logits, labels = example
    loss = cross_entropy_loss(logits, labels, avg_non_ignore=True)
    assert loss.item() == pytest.approx((CE_A + CE_B + CE_C) / 3, rel=1e-6)


def test_ce_class_weights_both_reductions(example):
    logits, labels = example
    weight = torch.tensor([3.0, 1.0])
    weighted_sum = 3 * CE_A + CE_B + CE_C
    # all pixels: plain mean of w_y * ce over the 4 pixels (MMSeg)
    assert cross_entropy_loss(logits, labels, class_weight=weight).item() == pytest.approx(weighted_sum / 4, rel=1e-6)
    # non-ignored: sum(w_y ce) / sum(w_y) = / (3 + 1 + 1), torch's weighted mean
    loss = cross_entropy_loss(logits, labels, class_weight=weight, avg_non_ignore=True)
    assert loss.item() == pytest.approx(weighted_sum / 5, rel=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels, weight=weight, ignore_index=IGN).item(), rel=1e-6)


@pytest.mark.parametrize("avg_non_ignore", [False, True])
@pytest.mark.parametrize("weight", [None, torch.tensor([3.0, 1.0])])
def test_ce_all_ignored_is_zero_with_working_backward(avg_non_ignore, weight):
    logits = torch.randn(2, 2, 3, 3, requires_grad=True)
    labels = torch.full((2, 3, 3), IGN)
    loss = cross_entropy_loss(logits, labels, class_weight=weight, avg_non_ignore=avg_non_ignore)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_ce_module_matches_function(example):
    logits, labels = example
    module = CrossEntropyLoss(class_weight=[3, 1], avg_non_ignore=True)
    assert module(logits, labels).item() == pytest.approx((3 * CE_A + CE_B + CE_C) / 5, rel=1e-6)


def test_losses_do_not_resize_and_check_labels():
    with pytest.raises(ValueError, match=r"logits are 2x2 but labels are 4x4.*upsample"):
        cross_entropy_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"label values \[3, 7\] are neither a class id \(0-2\)"):
        dice_loss(torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 3], [7, IGN]]]))
    with pytest.raises(TypeError, match="integer"):
        focal_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        cross_entropy_loss(torch.zeros(3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


# ---- Dice ------------------------------------------------------------------------------------
# Valid pixels A, B, C. Class 0: sum p*t = 1/4, sum p^2 = 1/16 + 1/16 + 1/4, sum t = 1.
# Class 1: sum p*t = 3/4 + 1/2, sum p^2 = 9/16 + 9/16 + 1/4, sum t = 2.
DICE_0 = (2 * 0.25 + 1) / (0.375 + 1 + 1)
DICE_1 = (2 * 1.25 + 1) / (1.375 + 2 + 1)


def test_dice_hand_computed(example):
    logits, labels = example
    assert dice_loss(logits, labels).item() == pytest.approx(((1 - DICE_0) + (1 - DICE_1)) / 2, rel=1e-6)
    weighted = dice_loss(logits, labels, class_weight=torch.tensor([2.0, 0.0]))
    assert weighted.item() == pytest.approx(2 * (1 - DICE_0) / 2, rel=1e-6)
    # exponent 1: sum p instead of sum p^2
    d0 = (2 * 0.25 + 1) / ((0.25 + 0.25 + 0.5) + 1 + 1)
    d1 = (2 * 1.25 + 1) / ((0.75 + 0.75 + 0.5) + 2 + 1)
    assert dice_loss(logits, labels, exponent=1).item() == pytest.approx(((1 - d0) + (1 - d1)) / 2, rel=1e-6)


def test_dice_averages_images_with_pixels_and_perfect_is_zero(example):
    logits, labels = example
    batch_logits = torch.cat([logits, torch.randn_like(logits)])
    batch_labels = torch.cat([labels, torch.full_like(labels, IGN)])
    assert dice_loss(batch_logits, batch_labels).item() == pytest.approx(dice_loss(logits, labels).item(), rel=1e-6)
    perfect = F.one_hot(torch.tensor([[[0, 1], [1, 0]]]), 2).permute(0, 3, 1, 2).float() * 100
    assert dice_loss(perfect, torch.tensor([[[0, 1], [1, 0]]])).item() == pytest.approx(0.0, abs=1e-6)
    assert DiceLoss()(batch_logits, torch.full_like(batch_labels, IGN)).item() == 0.0


def test_dice_rejects_zero_smooth():
    with pytest.raises(ValueError, match="smooth must be > 0"):
        DiceLoss(smooth=0)


# ---- Lovasz-Softmax --------------------------------------------------------------------------
def jaccard_loss_of_set(mispredicted: set, foreground: set) -> float:
    return len(mispredicted) / len(foreground | mispredicted) if mispredicted else 0.0


def lovasz_by_integral(errors: list[float], foreground: set) -> float:
    """Independent form of the Lovász extension: integral over t in [0, 1] of Δ({i: m_i >= t}),
    exact because the integrand is constant between consecutive error values."""
    levels = sorted(set(errors) | {0.0})
    total = 0.0
    for low, high in zip(levels, levels[1:]):
        total += (high - low) * jaccard_loss_of_set({i for i, m in enumerate(errors) if m >= high}, foreground)
    return total


def lovasz_reference(probs, labels, classes):
    """Mean over `classes` of the integral form, probs (P, C) nested lists, labels list."""
    per_class = []
    for c in classes:
        foreground = {i for i, y in enumerate(labels) if y == c}
        errors = [abs((1.0 if y == c else 0.0) - p[c]) for p, y in zip(probs, labels)]
        per_class.append(lovasz_by_integral(errors, foreground))
    return sum(per_class) / len(per_class)


def test_lovasz_grad_hand_worked():
    # foreground, background, foreground in decreasing-error order, |F| = 2:
    # Δ(S_1) = 1/2, Δ(S_2) = 2/3, Δ(S_3) = 3/3
    grad = lovasz_grad(torch.tensor([1.0, 0.0, 1.0]))
    assert grad.tolist() == pytest.approx([1 / 2, 1 / 6, 1 / 3])


def test_lovasz_one_dimensional_hand_worked():
    # 3 pixels, labels (0, 0, 1). Class 0: errors (0.1, 0.6, 0.3) -> 0.6*1/2 + 0.3*1/6 + 0.1*1/3 = 23/60.
    # Class 1: errors (0.1, 0.6, 0.3), foreground is the 0.3 one -> 0.6*1/2 + 0.3*1/2 + 0.1*0 = 27/60.
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]).T.reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 0, 1]]])
    assert lovasz_softmax(probs, labels).item() == pytest.approx(25 / 60, rel=1e-6)
    assert lovasz_softmax(probs, labels, classes=[0]).item() == pytest.approx(23 / 60, rel=1e-6)
    assert lovasz_reference([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], [0, 0, 1], [0, 1]) == pytest.approx(25 / 60)


def test_lovasz_present_all_and_list_match_integral_form():
    torch.manual_seed(0)
    probs = torch.randn(1, 3, 2, 3).softmax(dim=1)
    labels = torch.tensor([[[0, 1, 1], [0, IGN, 1]]])  # class 2 absent
    flat_probs = probs[0].permute(1, 2, 0).reshape(-1, 3).tolist()
    flat_labels = labels.reshape(-1).tolist()
    kept = [i for i, y in enumerate(flat_labels) if y != IGN]
    ref_probs, ref_labels = [flat_probs[i] for i in kept], [flat_labels[i] for i in kept]
    present = lovasz_softmax(probs, labels, classes="present").item()
    every = lovasz_softmax(probs, labels, classes="all").item()
    assert present == pytest.approx(lovasz_reference(ref_probs, ref_labels, [0, 1]), rel=1e-5)
    assert every == pytest.approx(lovasz_reference(ref_probs, ref_labels, [0, 1, 2]), rel=1e-5)
    # an absent class costs its largest probability (every set it could mispredict has Δ = 1)
    largest = max(p[2] for p in ref_probs)
    assert lovasz_softmax(probs, labels, classes=[2]).item() == pytest.approx(largest, rel=1e-5)
    assert every == pytest.approx((2 * present + largest) / 3, rel=1e-5)


def test_lovasz_perfect_per_image_and_all_ignored():
    labels = torch.tensor([[[0, 1], [2, 1]], [[IGN, IGN], [IGN, IGN]]])
    perfect = F.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    assert lovasz_softmax(perfect, labels, classes="all").item() == 0.0
    torch.manual_seed(1)
    probs = torch.randn(2, 3, 2, 2).softmax(dim=1)
    labels = torch.tensor([[[0, 1], [2, 1]], [[0, 0], [IGN, 2]]])
    first = lovasz_softmax(probs[:1], labels[:1]).item()
    second = lovasz_softmax(probs[1:], labels[1:]).item()
    assert lovasz_softmax(probs, labels, per_image=True).item() == pytest.approx((first + second) / 2, rel=1e-6)
    labels[1] = IGN  # an image with nothing to count is left out of the per-image mean
    assert lovasz_softmax(probs, labels, per_image=True).item() == pytest.approx(first, rel=1e-6)
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = LovaszLoss()(logits, torch.full((1, 2, 2), IGN))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_lovasz_loss_applies_softmax_and_checks_classes():
    logits = torch.randn(1, 3, 2, 2)
    labels = torch.tensor([[[0, 1], [2, 1]]])
    assert LovaszLoss(classes="all")(logits, labels).item() == pytest.approx(
        lovasz_softmax(logits.softmax(dim=1), labels, classes="all").item())
    with pytest.raises(ValueError, match="'all', 'present' or a list"):
        LovaszLoss(classes="some")
    with pytest.raises(ValueError, match="class id 5 in classes is outside the 3 classes"):
        lovasz_softmax(logits.softmax(dim=1), labels, classes=[5])


# ---- focal -----------------------------------------------------------------------------------
def test_focal_gamma_zero_is_cross_entropy(example):
    logits, labels = example
    assert focal_loss(logits, labels, gamma=0).item() == pytest.approx(
        cross_entropy_loss(logits, labels, avg_non_ignore=True).item(), rel=1e-6)


def test_focal_hand_computed(example):
    logits, labels = example
    # p_t: A 1/4, B 3/4, C 1/2
    a, b, c = (3 / 4) ** 2 * CE_A, (1 / 4) ** 2 * CE_B, (1 / 2) ** 2 * CE_C
    assert focal_loss(logits, labels).item() == pytest.approx((a + b + c) / 3, rel=1e-5)
    assert FocalLoss(alpha=[3, 1])(logits, labels).item() == pytest.approx((3 * a + b + c) / 3, rel=1e-5)
    assert FocalLoss(alpha=0.25)(logits, labels).item() == pytest.approx(0.25 * (a + b + c) / 3, rel=1e-5)
    assert FocalLoss(gamma=1)(logits, labels).item() == pytest.approx(
        (3 / 4 * CE_A + 1 / 4 * CE_B + 1 / 2 * CE_C) / 3, rel=1e-5)


def test_focal_small_gamma_on_confident_pixels_has_finite_gradient():
    logits = torch.tensor([[[[60.0]], [[-60.0]]]], requires_grad=True)
    loss = focal_loss(logits, torch.zeros(1, 1, 1, dtype=torch.long), gamma=0.5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# ---- OHEM ------------------------------------------------------------------------------------
def ohem_example(p_true, batch=1):
    """One row of pixels labelled 1 whose true-class probability is p (None: ignored pixel)."""
    logits = torch.zeros(batch, 2, 1, len(p_true))
    labels = torch.ones(batch, 1, len(p_true), dtype=torch.long)
    for i, p in enumerate(p_true):
        if p is None:
            labels[:, 0, i] = IGN
        else:
            logits[:, 1, 0, i] = math.log(p / (1 - p))
    return logits, labels


P_TRUE = [0.1, 0.3, 0.5, 0.9, None, 0.2]  # valid, sorted: 0.1 0.2 0.3 0.5 0.9


def kept_list(mask):
    return mask.reshape(-1).tolist()


def test_ohem_thresh_dominates():
    logits, labels = ohem_example(P_TRUE)
    sampler = OHEMPixelSampler(thresh=0.7, min_kept=2)
    # p_k = sorted[2] = 0.3 < 0.7, so keep p < 0.7
    assert kept_list(sampler.sample(logits, labels)) == [True, True, True, False, False, True]
    assert sampler.last_kept_fraction.item() == pytest.approx(4 / 6)


def test_ohem_min_kept_dominates_strictly_below():
    logits, labels = ohem_example(P_TRUE)
    # p_k = sorted[3] = 0.5 > 0.15; the pixel at exactly 0.5 is not kept
    mask = OHEMPixelSampler(thresh=0.15, min_kept=3).sample(logits, labels)
    assert kept_list(mask) == [True, True, False, False, False, True]


def test_ohem_k_beyond_valid_pixels_and_ignored_never_kept():
    logits, labels = ohem_example(P_TRUE)
    # index min(10, 5 - 1) = 4: p_k = 0.9, and strictly below it excludes the 0.9 pixel itself
    assert kept_list(OHEMPixelSampler(thresh=0.05, min_kept=10).sample(logits, labels)) == [
        True, True, True, False, False, True]
    assert kept_list(OHEMPixelSampler(min_kept=10).sample(logits, labels)) == [True, True, True, True, False, True]
    everything_easy = OHEMPixelSampler(thresh=1.0, min_kept=1).sample(*ohem_example([0.99, None, 0.98]))
    assert kept_list(everything_easy) == [True, False, True]


def test_ohem_min_kept_counts_per_image():
    logits, labels = ohem_example(P_TRUE, batch=2)
    sampler = OHEMPixelSampler(thresh=0.05, min_kept=1)
    # k = 1 x 2 images: sorted valid 0.1 0.1 0.2 0.2 ..., p_k = 0.2: only the two 0.1 pixels are below
    mask = sampler.sample(logits, labels)
    assert kept_list(mask) == [True, False, False, False, False, False] * 2
    assert sampler.last_kept_fraction.item() == pytest.approx(2 / 12)


def test_ohem_without_thresh_keeps_largest_cross_entropy():
    logits, labels = ohem_example(P_TRUE)
    sampler = OHEMPixelSampler(min_kept=2)
    assert kept_list(sampler.sample(logits, labels)) == [True, False, False, False, False, True]
    assert sampler.last_kept_fraction.item() == pytest.approx(2 / 6)


def test_ohem_ties_go_to_the_first_pixel_in_raster_order():
    logits, labels = ohem_example([None, 0.4, 0.4, 0.4], batch=2)
    mask = OHEMPixelSampler(min_kept=1).sample(logits, labels)  # k = 2 over equal losses
    assert kept_list(mask) == [False, True, True, False, False, False, False, False]


def test_ohem_no_gradient_and_all_ignored():
    logits, labels = ohem_example(P_TRUE)
    logits.requires_grad_(True)
    sampler = OHEMPixelSampler(thresh=0.7, min_kept=1)
    mask = sampler.sample(logits, labels)
    assert not mask.requires_grad and not sampler.last_kept_fraction.requires_grad
    mask = sampler.sample(logits, torch.full_like(labels, IGN))
    assert not mask.any() and sampler.last_kept_fraction.item() == 0.0


def test_ohem_rejects_bad_settings():
    with pytest.raises(ValueError, match="thresh must be a probability"):
        OHEMPixelSampler(thresh=1.5)
    with pytest.raises(ValueError, match="min_kept must be an integer >= 1"):
        OHEMPixelSampler(min_kept=0)


# ---- partial-label loss ----------------------------------------------------------------------
def test_partial_label_loss_values():
    # pixel probabilities (1/6, 2/6, 3/6) everywhere; 2 partial pixels, 2 not partial
    logits = logits_of([[1 / 6, 2 / 6, 3 / 6]] * 4, 2, 2)
    sets = torch.tensor([[False, True, True], [False, False, True], [True, True, True]])
    partial = labels_of([0, IGN, 1, IGN], 2, 2)
    expected = (-math.log(5 / 6) - math.log(3 / 6)) / 2
    assert partial_label_loss(logits, partial, sets).item() == pytest.approx(expected, rel=1e-6)
    # a one-class set is cross-entropy on that class; the all-class set costs nothing
    one = labels_of([1, 1, IGN, IGN], 2, 2)
    ce = cross_entropy_loss(logits, labels_of([2, 2, IGN, IGN], 2, 2), avg_non_ignore=True)
    assert partial_label_loss(logits, one, sets).item() == pytest.approx(ce.item(), rel=1e-6)
    assert PartialLabelLoss()(torch.randn(1, 3, 2, 2), labels_of([2, 2, 2, 2], 2, 2), sets).item() == pytest.approx(
        0.0, abs=1e-6)


def test_partial_label_loss_no_partial_pixels_and_errors():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = partial_label_loss(logits, torch.full((1, 2, 2), IGN), torch.zeros(0, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    sets = torch.tensor([[True, True, False], [False, False, False]])
    with pytest.raises(ValueError, match=r"label values \[4\] are neither a row of target_sets \(0-1\)"):
        partial_label_loss(logits, labels_of([0, 4, IGN, IGN], 2, 2), sets)
    with pytest.raises(ValueError, match=r"rows \[1\] of target_sets, which allow no class"):
        partial_label_loss(logits, labels_of([0, 1, IGN, IGN], 2, 2), sets)
    with pytest.raises(ValueError, match="target_sets have 2 columns but the logits have 3 classes"):
        partial_label_loss(logits, labels_of([0, IGN, IGN, IGN], 2, 2), sets[:, :2])


# ---- gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [
    CrossEntropyLoss(), CrossEntropyLoss(class_weight=[1, 2, 3], avg_non_ignore=True), DiceLoss(), LovaszLoss(),
    LovaszLoss(per_image=True, classes="all"), FocalLoss(), FocalLoss(gamma=0.5, alpha=[1, 2, 3]),
], ids=lambda loss: repr(loss))
def test_gradients_finite_and_flowing(loss):
    torch.manual_seed(2)
    logits = (3 * torch.randn(2, 3, 4, 4)).requires_grad_(True)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[0, 0] = IGN
    loss(logits, labels).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    assert torch.equal(logits.grad[0, :, 0], torch.zeros(3, 4))  # ignored pixels get no gradient


def test_partial_label_loss_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    sets = torch.tensor([[True, True, False]])
    partial_label_loss(logits, labels_of([0, 0, IGN, 0], 2, 2), sets).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, :, 0, 0].abs().sum() > 0
    assert torch.equal(logits.grad[0, :, 1, 0], torch.zeros(3))


# ---- build_losses ----------------------------------------------------------------------------
def test_build_list_config_names_and_weights(example):
    logits, labels = example
    losses = build_losses([
        {"type": "CrossEntropyLoss", "avg_non_ignore": True},
        {"type": "DiceLoss", "loss_weight": 3.0},
        {"type": "LovaszLoss", "loss_name": "loss_iou", "loss_weight": 0.5},
        {"type": "FocalLoss", "gamma": 0},
    ], num_classes=2)
    out = losses(logits, labels)
    assert list(out) == ["loss_ce", "loss_dice", "loss_iou", "loss_focal"]
    assert out["loss_ce"].item() == pytest.approx((CE_A + CE_B + CE_C) / 3, rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(3 * ((1 - DICE_0) + (1 - DICE_1)) / 2, rel=1e-6)
    assert out["loss_iou"].item() == pytest.approx(
        0.5 * lovasz_softmax(logits.softmax(dim=1), labels).item(), rel=1e-6)
    assert out["loss_focal"].item() == pytest.approx(out["loss_ce"].item(), rel=1e-6)
    assert not losses.needs_partial_labels


def test_build_single_mapping_and_omegaconf(example):
    logits, labels = example
    cfg = OmegaConf.create({"loss_decode": {"type": "CrossEntropyLoss", "class_weight": [3, 1]}})
    out = build_losses(cfg.loss_decode, num_classes=2)(logits, labels)
    assert out["loss_ce"].item() == pytest.approx((3 * CE_A + CE_B + CE_C) / 4, rel=1e-6)


def test_build_errors_name_the_key():
    with pytest.raises(LossConfigError, match=r"loss.loss_decode\[1\].loss_name: 'loss_ce' is already the name of "
                                              r"loss.loss_decode\[0\]"):
        build_losses([{"type": "CrossEntropyLoss"}, {"type": "CrossEntropyLoss", "loss_weight": 2}], 2)
    with pytest.raises(LossConfigError, match=r"loss_decode\[0\].type: unknown loss type 'CrossEntropyLos'; valid: "
                                              r"CrossEntropyLoss, DiceLoss.*did you mean 'CrossEntropyLoss'"):
        build_losses([{"type": "CrossEntropyLos"}], 2)
    with pytest.raises(LossConfigError, match=r"loss.loss_decode.avg_non_ingore: unknown key; did you mean 'avg_non_ignore'\? "
                                              r"\(valid keys for CrossEntropyLoss: type, loss_weight, loss_name, class_weight"):
        build_losses({"type": "CrossEntropyLoss", "avg_non_ingore": True}, 2)
    with pytest.raises(LossConfigError, match=r"loss_decode.class_weight: has 3 values but the model has 4 classes"):
        build_losses({"type": "CrossEntropyLoss", "class_weight": [1, 2, 3]}, 4)
    with pytest.raises(LossConfigError, match=r"loss_decode\[0\].alpha: has 2 values but the model has 3 classes"):
        build_losses([{"type": "FocalLoss", "alpha": [1, 2]}], 3)
    with pytest.raises(LossConfigError, match="loss_name: must be a string starting with 'loss'"):
        build_losses({"type": "DiceLoss", "loss_name": "dice"}, 2)
    with pytest.raises(LossConfigError, match=r"^loss.loss_decode.smooth: must be > 0, got 0 \(DiceLoss\)$"):
        build_losses({"type": "DiceLoss", "smooth": 0}, 2)
    with pytest.raises(LossConfigError, match="no `type` key"):
        build_losses([{"loss_weight": 1.0}], 2)
    with pytest.raises(LossConfigError, match=r"class ids \[7\] are outside the model's 3 classes"):
        build_losses({"type": "LovaszLoss", "classes": [0, 7]}, 3)


def test_build_class_weight_from_stats_json(tmp_path, example):
    logits, labels = example
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"class_weight": {"inverse": [1.0, 1.0], "median": [3.0, 1.0]}}))
    losses = build_losses({"type": "CrossEntropyLoss", "class_weight": f"{stats}:median"}, 2)
    assert losses(logits, labels)["loss_ce"].item() == pytest.approx((3 * CE_A + CE_B + CE_C) / 4, rel=1e-6)
    with pytest.raises(LossConfigError, match=r"write PATH.json:METHOD with METHOD one of inverse, median"):
        build_losses({"type": "CrossEntropyLoss", "class_weight": str(stats)}, 2)
    with pytest.raises(LossConfigError, match="class_weight: has 2 values but the model has 3 classes"):
        build_losses({"type": "CrossEntropyLoss", "class_weight": f"{stats}:inverse"}, 3)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n "class_weight": [1,\n}')
    with pytest.raises(LossConfigError, match=r"broken.json line 3, column 1: invalid JSON"):
        build_losses({"type": "DiceLoss", "class_weight": f"{broken}:median"}, 2)
    with pytest.raises(LossConfigError, match="cannot read class-weight file"):
        build_losses({"type": "DiceLoss", "class_weight": f"{tmp_path / 'missing.json'}:median"}, 2)


def test_loss_set_with_ohem_masks_each_label_loss(example):
    logits, labels = example
    losses = build_losses([{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}], 2,
                          sampler={"type": "OHEMPixelSampler", "min_kept": 1})
    out = losses(logits, labels)
    # k = 1: the hardest valid pixel is A (ce ln 4); B and C become ignored for both losses
    hard_labels = labels_of([0, IGN, IGN, IGN], 2, 2)
    assert out["loss_ce"].item() == pytest.approx(CE_A / 4, rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(dice_loss(logits, hard_labels).item(), rel=1e-6)
    assert out["ohem_kept"].item() == pytest.approx(1 / 4)
    assert [k for k in out if k.startswith("loss")] == ["loss_ce", "loss_dice"]


def test_loss_set_sampler_errors():
    with pytest.raises(LossConfigError, match=r"model.sampler.min_keep: unknown key; did you mean 'min_kept'\? "
                                              r"\(valid keys for OHEMPixelSampler"):
        build_losses({"type": "CrossEntropyLoss"}, 2, sampler={"type": "OHEMPixelSampler", "min_keep": 5},
                     where="model.loss_decode")
    with pytest.raises(LossConfigError, match=r"sampler.type: unknown sampler type 'OHEM'; valid: OHEMPixelSampler"):
        build_losses({"type": "CrossEntropyLoss"}, 2, sampler={"type": "OHEM"})
    with pytest.raises(LossConfigError, match="loss_decode.ignore_index is 0, but this label space's ignore label is 255"):
        build_losses({"type": "CrossEntropyLoss", "ignore_index": 0}, 2, sampler={"type": "OHEMPixelSampler"})
    with pytest.raises(LossConfigError, match="sampler.ignore_index is 255, but this label space's ignore label is 65535"):
        build_losses({"type": "CrossEntropyLoss"}, 300, sampler={"type": "OHEMPixelSampler", "ignore_index": 255},
                     ignore_index=65535)


def test_loss_set_in_a_wide_label_space_ignores_65535_and_learns_class_255():
    # 300 classes (uint16 label maps): 255 is a class, 65535 the ignore label, for every loss and OHEM.
    losses = build_losses([{"type": "CrossEntropyLoss"}, {"type": "DiceLoss", "loss_weight": 0.5},
                           {"type": "PartialLabelLoss"}], 300,
                          sampler={"type": "OHEMPixelSampler", "min_kept": 1}, ignore_index=65535)
    assert [loss.ignore_index for loss in losses.losses] == [65535, 65535, 65535]
    assert losses.sampler.ignore_index == 65535
    logits = torch.zeros(1, 300, 1, 2)
    labels = torch.tensor([[[255, 65535]]])
    # uniform logits: -log(1/300) on the one counted pixel, averaged over it alone with avg_non_ignore,
    # else over both pixels (MMSeg's default)
    ce = build_losses({"type": "CrossEntropyLoss", "avg_non_ignore": True}, 300, ignore_index=65535)
    assert ce(logits, labels)["loss_ce"].item() == pytest.approx(math.log(300))
    ce = build_losses({"type": "CrossEntropyLoss"}, 300, ignore_index=65535)
    assert ce(logits, labels)["loss_ce"].item() == pytest.approx(math.log(300) / 2)


def test_loss_set_partial_label_loss():
    losses = build_losses([{"type": "CrossEntropyLoss"}, {"type": "PartialLabelLoss", "loss_weight": 2}], 3)
    assert losses.needs_partial_labels
    logits = logits_of([[1 / 6, 2 / 6, 3 / 6]] * 4, 2, 2)
    labels = labels_of([2, IGN, IGN, IGN], 2, 2)
    with pytest.raises(ValueError, match="loss_partial \\(PartialLabelLoss\\) needs partial_labels and target_sets"):
        losses(logits, labels)
    out = losses(logits, labels, partial_labels=labels_of([IGN, 0, IGN, IGN], 2, 2),
                 target_sets=torch.tensor([[False, True, True]]))
    assert out["loss_ce"].item() == pytest.approx(math.log(2) / 4, rel=1e-6)
    assert out["loss_partial"].item() == pytest.approx(-2 * math.log(5 / 6), rel=1e-6)


def test_every_loss_type_builds_with_defaults():
    from unifiedseg.losses import LOSS_TYPES

    for name in LOSS_TYPES:
        assert build_losses({"type": name}, 3).names == [LOSS_TYPES[name].default_name]
