"""Optimizer paramwise rules, lr schedules, SWA and gradient clipping, against hand-computed values."""

import io
import math
import warnings

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from unifiedseg.optim import (
    GradClip,
    SWAState,
    build_optimizer,
    build_scheduler,
    build_swa,
    check_clip_cfg,
    check_schedule_cfg,
    check_swa_cfg,
    clip_gradients,
    format_param_groups,
    load_scheduler_state,
    lr_at,
    recompute_bn_statistics,
)

BASE_LR = 0.01
BASE_WD = 0.01


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, groups=4)  # depthwise: in_channels == groups
        self.gn = nn.GroupNorm(2, 4)


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 1)
        self.cls = nn.Conv2d(8, 2, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1))  # top-level parameter: MMCV matches it as ".gamma"
        self.backbone = Backbone()
        self.head = Head()
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


class DeformConv2d(nn.Module):
    """Stands in for mmcv.ops' deformable conv: recognised by class name, holds an offset conv child."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 2, 3, 3))
        self.conv_offset = nn.Conv2d(2, 18, 3)


class DcnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.dcn = DeformConv2d()
        self.conv_offset = nn.Conv2d(2, 2, 1)  # named like an offset conv, but not under a deformable conv


def sgd(paramwise_cfg=None, **extra):
    cfg = {"type": "SGD", "lr": BASE_LR, "momentum": 0.9, "weight_decay": BASE_WD, **extra}
    if paramwise_cfg is not None:
        cfg["paramwise_cfg"] = paramwise_cfg
    return cfg


def effective(optimizer):
    """{parameter name: (lr, weight_decay)} over all param groups."""
    out = {}
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            assert name not in out, f"{name} is in two param groups"
            out[name] = (group["lr"], group["weight_decay"])
    return out


def assert_settings(optimizer, expected):
    got = effective(optimizer)
    assert sorted(got) == sorted(expected)
    for name, (lr, wd) in expected.items():
        assert got[name] == pytest.approx((lr, wd), rel=1e-12, abs=0), name


# ---------------------------------------------------------------------------------------------------------
# Parameter groups.

ALL_NAMES = [
    "gamma",
    "backbone.conv1.weight", "backbone.conv1.bias",
    "backbone.bn1.weight", "backbone.bn1.bias",
    "backbone.dw.weight", "backbone.dw.bias",
    "backbone.gn.weight", "backbone.gn.bias",
    "head.conv.weight", "head.conv.bias",
    "head.cls.weight", "head.cls.bias",
    "frozen.weight", "frozen.bias",
]


def test_no_paramwise_cfg_gives_every_parameter_the_base_settings():
    model = Net()
    optimizer = build_optimizer(model, sgd())
    assert_settings(optimizer, {name: (0.01, 0.01) for name in ALL_NAMES})
    assert len(optimizer.param_groups) == 2  # default + frozen
    assert optimizer.defaults["momentum"] == 0.9


def test_bias_norm_dwconv_rules():
    model = Net()
    optimizer = build_optimizer(model, sgd({
        "bias_lr_mult": 2.0, "bias_decay_mult": 0.5, "norm_decay_mult": 0.0, "dwconv_decay_mult": 0.25,
    }))
    assert_settings(optimizer, {
        "gamma": (0.01, 0.01),
        "backbone.conv1.weight": (0.01, 0.01),
        "backbone.conv1.bias": (0.02, 0.005),        # bias_lr_mult, bias_decay_mult
        "backbone.bn1.weight": (0.01, 0.0),          # norm_decay_mult
        "backbone.bn1.bias": (0.01, 0.0),            # a norm bias: no bias_lr_mult, norm decay first
        "backbone.dw.weight": (0.01, 0.0025),        # dwconv_decay_mult
        "backbone.dw.bias": (0.02, 0.0025),          # bias lr, but dwconv decay beats bias decay
        "backbone.gn.weight": (0.01, 0.0),
        "backbone.gn.bias": (0.01, 0.0),
        "head.conv.weight": (0.01, 0.01),
        "head.conv.bias": (0.02, 0.005),
        "head.cls.weight": (0.01, 0.01),
        "head.cls.bias": (0.02, 0.005),
        "frozen.weight": (0.01, 0.01),               # requires_grad=False: kept, no rule
        "frozen.bias": (0.01, 0.01),
    })
    rules = {group["rule"] for group in optimizer.param_groups}
    assert rules == {"default", "bias_lr_mult+bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
                     "bias_lr_mult+dwconv_decay_mult", "frozen (requires_grad=False)"}
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(BASE_LR * group["lr_mult"])


def test_custom_keys_longest_match_and_alphabetical_tie():
    model = Net()
    optimizer = build_optimizer(model, sgd({"custom_keys": {
        "backbone": {"lr_mult": 0.1},
        "backbone.dw": {"lr_mult": 0.5, "decay_mult": 0.0},  # longer than "backbone": wins for dw
        "head": {"lr_mult": 10.0},
        "conv": {"lr_mult": 3.0, "decay_mult": 2.0},  # same length as "head": alphabetically first wins
    }}))
    got = effective(optimizer)
    assert got["backbone.conv1.weight"] == pytest.approx((0.001, 0.01))  # "backbone" (8) beats "conv" (4)
    assert got["backbone.bn1.weight"] == pytest.approx((0.001, 0.01))
    assert got["backbone.dw.weight"] == pytest.approx((0.005, 0.0))
    assert got["backbone.dw.bias"] == pytest.approx((0.005, 0.0))
    assert got["head.conv.weight"] == pytest.approx((0.03, 0.02))  # "conv" < "head"
    assert got["head.conv.bias"] == pytest.approx((0.03, 0.02))
    assert got["head.cls.weight"] == pytest.approx((0.1, 0.01))
    assert got["gamma"] == pytest.approx((0.01, 0.01))
    rule_of = {name: group["rule"] for group in optimizer.param_groups for name in group["param_names"]}
    assert rule_of["head.conv.weight"] == "custom_keys['conv']"
    assert rule_of["backbone.dw.bias"] == "custom_keys['backbone.dw']"


def test_custom_key_overrides_bias_and_norm_rules():
    model = Net()
    optimizer = build_optimizer(model, sgd({
        "custom_keys": {"backbone": {"lr_mult": 0.1}},
        "bias_lr_mult": 2.0, "bias_decay_mult": 0.0, "norm_decay_mult": 0.0, "dwconv_decay_mult": 0.0,
    }))
    got = effective(optimizer)
    # Matched by "backbone": only its multipliers apply (decay_mult defaults to 1).
    for name in ("backbone.conv1.bias", "backbone.bn1.weight", "backbone.bn1.bias", "backbone.dw.weight",
                 "backbone.dw.bias", "backbone.gn.bias"):
        assert got[name] == pytest.approx((0.001, 0.01)), name
    # Not matched: the bias rules apply.
    assert got["head.cls.bias"] == pytest.approx((0.02, 0.0))
    assert got["head.cls.weight"] == pytest.approx((0.01, 0.01))


def test_top_level_parameter_is_matched_with_a_leading_dot_like_mmcv():
    model = Net()
    optimizer = build_optimizer(model, sgd({"custom_keys": {".gamma": {"lr_mult": 0.0}}}))
    assert effective(optimizer)["gamma"] == (0.0, 0.01)


def test_deformable_conv_offset_rules():
    model = DcnNet()
    optimizer = build_optimizer(model, sgd({"dcn_offset_lr_mult": 0.1, "bias_lr_mult": 2.0, "bias_decay_mult": 0.5}))
    assert_settings(optimizer, {
        "dcn.weight": (0.01, 0.01),
        "dcn.conv_offset.weight": (0.001, 0.01),
        "dcn.conv_offset.bias": (0.001, 0.01),  # offset bias: no bias_lr_mult, no bias_decay_mult
        "conv_offset.weight": (0.01, 0.01),      # not under a deformable conv: ordinary conv
        "conv_offset.bias": (0.02, 0.005),
    })
    # Without dcn_offset_lr_mult the offset conv keeps the base settings: the bias rules skip it.
    optimizer = build_optimizer(model, sgd({"bias_lr_mult": 2.0, "bias_decay_mult": 0.5}))
    assert effective(optimizer)["dcn.conv_offset.bias"] == pytest.approx((0.01, 0.01))


def test_frozen_parameters_stay_in_the_optimizer_without_rules():
    model = Net()
    with pytest.warns(UserWarning, match=r"custom_keys\['frozen'\] matches only parameters with requires_grad"):
        optimizer = build_optimizer(model, sgd({"custom_keys": {"frozen": {"lr_mult": 5.0}}}))
    frozen_group = [g for g in optimizer.param_groups if "frozen.weight" in g["param_names"]][0]
    assert frozen_group["rule"] == "frozen (requires_grad=False)"
    assert (frozen_group["lr"], frozen_group["lr_mult"]) == (0.01, 1.0)


def test_adamw_without_weight_decay_keeps_torch_default_and_unwraps_dataparallel():
    model = nn.DataParallel(Net())
    optimizer = build_optimizer(model, {"type": "AdamW", "lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-6,
                                        "paramwise_cfg": {"custom_keys": {"head": {"lr_mult": 10.0}}}})
    assert isinstance(optimizer, torch.optim.AdamW)
    got = effective(optimizer)
    assert "head.cls.weight" in got  # no "module." prefix
    assert got["head.cls.weight"] == pytest.approx((0.01, 0.01))  # AdamW's own default decay 0.01
    assert got["backbone.conv1.weight"] == pytest.approx((0.001, 0.01))
    assert optimizer.defaults["betas"] == (0.9, 0.99)


def test_omegaconf_sections_are_accepted():
    cfg = OmegaConf.create(sgd({"custom_keys": {"head": {"lr_mult": 10.0}}}, nesterov=True))
    optimizer = build_optimizer(Net(), cfg)
    assert effective(optimizer)["head.cls.weight"] == pytest.approx((0.1, 0.01))
    schedule = OmegaConf.create({"policy": "step", "milestones": [30, 60]})
    assert lr_at(schedule, BASE_LR, 30, 100) == pytest.approx(0.001)


def test_custom_key_applied_to_no_parameter_is_warned_by_name():
    with pytest.warns(UserWarning, match=r"custom_keys\['bakbone'\] matches no parameter name"):
        build_optimizer(Net(), sgd({"custom_keys": {"bakbone": {"lr_mult": 0.1}}}))
    # A key that matches only parameters a longer key claims is never applied either.
    with pytest.warns(UserWarning, match=r"custom_keys\['dw'\] is never applied"):
        build_optimizer(Net(), sgd({"custom_keys": {"dw": {"lr_mult": 0.1}, "backbone": {"lr_mult": 0.2}}}))
    with pytest.warns(UserWarning, match=r"custom_keys\['frozen'\] matches only parameters with requires_grad"):
        build_optimizer(Net(), sgd({"custom_keys": {"frozen": {"lr_mult": 0.1}}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_optimizer(Net(), sgd({"custom_keys": {"head": {"lr_mult": 10.0}}}))


def test_shared_parameters():
    model = Net()
    model.extra = nn.Sequential(model.head.conv)  # one module under two names
    with pytest.raises(ValueError, match=r"'extra.0.weight' is the same tensor as 'head.conv.weight'.*bypass"):
        build_optimizer(model, sgd({"bias_lr_mult": 2.0}))
    with pytest.warns(UserWarning, match=r"extra\.0\.(weight|bias)"):
        optimizer = build_optimizer(model, sgd({"bias_lr_mult": 2.0, "bypass_duplicate": True}))
    assert "extra.0.weight" not in effective(optimizer) and "head.conv.weight" in effective(optimizer)
    # Without paramwise_cfg it is optimised once, like model.parameters().
    optimizer = build_optimizer(model, sgd())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("cfg, message", [
    ({"type": "Adamw", "lr": 0.1}, r"optimizer.type: must be one of SGD, Adam, AdamW, got 'Adamw'; did you mean 'AdamW'\?"),
    ({"type": "SGD"}, r"missing key 'lr'"),
    ({"lr": 0.1}, r"missing key 'type'"),
    ({"type": "SGD", "lr": 0.1, "momentun": 0.9}, r"optimizer.momentun: unknown key; did you mean 'momentum'\?"),
    ({"type": "Adam", "lr": 0.1, "momentum": 0.9}, r"optimizer.momentum: unknown key \(valid keys for type Adam: .*betas"),
    ({"type": "SGD", "lr": -0.1}, r"optimizer.lr: must be a number >= 0, got -0.1"),
    ({"type": "AdamW", "lr": 0.1, "betas": [0.9]}, r"optimizer.betas: must be a list of two"),
    ({"type": "SGD", "lr": 0.1, "weight_decay": 1e-4, "paramwise_cfg": {"bias_lr_mul": 2}},
     r"optimizer.paramwise_cfg.bias_lr_mul: unknown key; did you mean 'bias_lr_mult'\?"),
    ({"type": "SGD", "lr": 0.1, "weight_decay": 1e-4, "paramwise_cfg": {"custom_keys": {"head": {"lr": 2}}}},
     r"custom_keys\['head'\].lr: unknown key.*lr_mult, decay_mult"),
    ({"type": "SGD", "lr": 0.1, "paramwise_cfg": {"norm_decay_mult": 0.0}},
     r"norm_decay_mult: needs optimizer.weight_decay"),
    ({"type": "SGD", "lr": 0.1, "paramwise_cfg": {"custom_keys": {"head": {"decay_mult": 0.0}}}},
     r"custom_keys\['head'\].decay_mult: needs optimizer.weight_decay"),
    ({"type": "SGD", "lr": 0.1, "weight_decay": 1e-4, "paramwise_cfg": {"bypass_duplicate": "yes"}},
     r"bypass_duplicate: must be true or false"),
])
def test_bad_optimizer_config_is_an_error_naming_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(Net(), cfg)


def test_format_param_groups_table():
    model = Net()
    optimizer = build_optimizer(model, sgd({"custom_keys": {"head": {"lr_mult": 10.0}}, "norm_decay_mult": 0.0}))
    table = format_param_groups(optimizer, model)
    lines = table.splitlines()
    assert lines[0].split() == ["group", "rule", "params", "elements", "lr", "weight_decay", "lr_mult",
                                "decay_mult", "names"]
    head_line = [line for line in lines if "custom_keys['head']" in line][0]
    # head: conv 8*4 + 8, cls 2*8 + 2 -> 4 parameters, 58 elements, lr 0.1
    assert head_line.split()[2:8] == ["4", "58", "0.1", "0.01", "10", "1"]
    norm_line = [line for line in lines if "norm_decay_mult" in line][0]
    assert norm_line.split()[2:6] == ["4", "16", "0.01", "0"]
    # An optimizer built elsewhere is named through the model.
    plain = torch.optim.SGD(model.head.parameters(), lr=0.5)
    assert "head.conv.weight" in format_param_groups(plain, model)


# ---------------------------------------------------------------------------------------------------------
# Learning-rate schedules (base 0.01, max_iters 100).


@pytest.mark.parametrize("cfg, expected", [
    ({"policy": "poly", "power": 1.0, "min_lr": 0.001}, {0: 0.01, 50: 0.0055, 75: 0.00325, 100: 0.001}),
    # (0.01 - 1e-4) * 0.5 ** 0.9 + 1e-4, with 0.5 ** 0.9 = 0.5358867313
    ({"policy": "poly", "power": 0.9, "min_lr": 1e-4}, {0: 0.01, 50: 0.0054052786, 100: 1e-4}),
    ({"policy": "step", "milestones": [30, 60]}, {0: 0.01, 29: 0.01, 30: 0.001, 59: 0.001, 60: 0.0001, 99: 0.0001}),
    ({"policy": "step", "milestones": [30, 60], "gamma": 0.5, "min_lr": 0.003}, {29: 0.01, 30: 0.005, 60: 0.003}),
    # min_lr + (base - min_lr) * (1 + cos(pi * it / 100)) / 2; cos(pi / 4) = 0.7071067812
    ({"policy": "cosine", "min_lr": 0.001}, {0: 0.01, 25: 0.0086819805, 50: 0.0055, 100: 0.001}),
    ({"policy": "constant"}, {0: 0.01, 37: 0.01, 100: 0.01}),
    # warmup over 10 iterations, ratio 0.1, on a constant policy: it 5 -> 1 - 0.5 * 0.9 = 0.55
    ({"policy": "constant", "warmup": "linear", "warmup_iters": 10, "warmup_ratio": 0.1},
     {0: 0.001, 5: 0.0055, 9: 0.0091, 10: 0.01, 50: 0.01}),
    ({"policy": "constant", "warmup": "constant", "warmup_iters": 10, "warmup_ratio": 0.1},
     {0: 0.001, 9: 0.001, 10: 0.01}),
    # exp: 0.1 ** (1 - 5 / 10) = 0.3162277660
    ({"policy": "constant", "warmup": "exp", "warmup_iters": 10, "warmup_ratio": 0.1},
     {0: 0.001, 5: 0.00316227766, 10: 0.01}),
    # warmup multiplies the regular lr of the same iteration: poly gives 0.0095 at it 5, times 0.55
    ({"policy": "poly", "power": 1.0, "warmup": "linear", "warmup_iters": 10}, {5: 0.005225, 10: 0.009}),
])
def test_lr_curve(cfg, expected):
    for iteration, lr in expected.items():
        assert lr_at(cfg, BASE_LR, iteration, 100) == pytest.approx(lr, rel=1e-8), iteration


def _head_model_and_optimizer():
    model = Net()
    return model, build_optimizer(model, sgd({"custom_keys": {"head": {"lr_mult": 10.0}}}))


def _lrs(optimizer):
    return {group["rule"]: group["lr"] for group in optimizer.param_groups}


@pytest.mark.parametrize("cfg", [
    {"policy": "poly", "power": 0.9, "min_lr": 1e-4, "warmup": "linear", "warmup_iters": 10},
    {"policy": "step", "milestones": [30, 60], "warmup": "exp", "warmup_iters": 10, "warmup_ratio": 0.01},
    {"policy": "cosine", "min_lr": 0.002, "warmup": "constant", "warmup_iters": 5},
])
def test_scheduler_follows_lr_at_and_keeps_multipliers(cfg):
    _, optimizer = _head_model_and_optimizer()
    scheduler = build_scheduler(optimizer, cfg, max_iters=100)
    for iteration in range(101):
        expected = lr_at(cfg, BASE_LR, iteration, 100)
        lrs = _lrs(optimizer)
        assert lrs["default"] == pytest.approx(expected, rel=1e-12), iteration
        assert lrs["custom_keys['head']"] == pytest.approx(10 * expected, rel=1e-12), iteration
        if iteration < 100:
            optimizer.step()  # no gradients: nothing moves, but torch sees the step order it expects
            scheduler.step()


def test_scheduler_state_dict_round_trip_continues_identically():
    cfg = {"policy": "poly", "power": 0.9, "min_lr": 1e-4, "warmup": "linear", "warmup_iters": 10}
    _, optimizer = _head_model_and_optimizer()
    scheduler = build_scheduler(optimizer, cfg, max_iters=100)
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    _, resumed_optimizer = _head_model_and_optimizer()
    resumed = build_scheduler(resumed_optimizer, cfg, max_iters=100)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    load_scheduler_state(resumed, saved["scheduler"])
    assert resumed.last_epoch == 40
    for _ in range(60):
        optimizer.step()
        scheduler.step()
        resumed_optimizer.step()
        resumed.step()
        assert _lrs(resumed_optimizer) == _lrs(optimizer)
    assert _lrs(optimizer)["default"] == pytest.approx(1e-4)

    _, other_optimizer = _head_model_and_optimizer()
    other = build_scheduler(other_optimizer, {**cfg, "power": 1.0}, max_iters=200)
    with pytest.raises(ValueError, match=r"cfg.power: saved 0.9, config 1.0; max_iters: saved 100, config 200"):
        load_scheduler_state(other, saved["scheduler"])


@pytest.mark.parametrize("cfg, message", [
    ({"policy": "polynomial"}, r"schedule.policy: must be one of poly, step, cosine, constant, got 'polynomial'"),
    ({"policy": "poly", "powr": 0.9}, r"schedule.powr: unknown key; did you mean 'power'\?"),
    ({"policy": "poly", "milestones": [10]}, r"schedule.milestones: unknown key \(valid keys for policy poly: "),
    ({"policy": "step"}, r"needs 'milestones'"),
    ({"policy": "step", "milestones": [60, 30]}, r"must increase strictly"),
    ({"policy": "step", "milestones": [200]}, r"milestones\[0\]: 200 is beyond max_iters = 100"),
    ({"policy": "poly", "by_epoch": True}, r"by_epoch: only false"),
    ({"policy": "poly", "warmup_iters": 10}, r"warmup_iters: is set but schedule.warmup is null"),
    ({"policy": "poly", "warmup": "cosine", "warmup_iters": 10}, r"schedule.warmup: must be one of linear, constant, exp, got 'cosine'"),
    ({"policy": "poly", "warmup": "linear"}, r"needs 'warmup_iters'"),
    ({"policy": "poly", "warmup": "linear", "warmup_iters": 10, "warmup_ratio": 0}, r"warmup_ratio: must be a number in \(0, 1\], got 0"),
    ({"policy": "poly", "warmup": "linear", "warmup_iters": 10, "warmup_ratio": 1.5}, r"warmup_ratio: must be a number in \(0, 1\], got 1.5"),
])
def test_bad_schedule_config_is_an_error_naming_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        lr_at(cfg, BASE_LR, 0, 100)


def test_schedule_and_swa_checks_without_the_run_length():
    # A config that sets num_examples has no max_iters until the datasets are read: the other rules apply
    # when it loads, those against max_iters when the scheduler and SWA are built.
    step = {"policy": "step", "milestones": [500, 900], "warmup": "linear", "warmup_iters": 2000}
    assert check_schedule_cfg(step)["milestones"] == [500, 900]
    with pytest.raises(ValueError, match=r"schedule.warmup_iters: 2000 is beyond max_iters = 1000"):
        check_schedule_cfg(step, 1000)
    with pytest.raises(ValueError, match=r"schedule.min_lr: 0.1 is above the optimizer's base lr = 0.01"):
        check_schedule_cfg({"policy": "poly", "min_lr": 0.1}, base_lr=0.01)
    assert check_swa_cfg({"start_iter": 5000, "swa_lr": 0.01})["start_iter"] == 5000
    with pytest.raises(ValueError, match=r"swa.start_iter: 5000 must be below max_iters = 100"):
        check_swa_cfg({"start_iter": 5000, "swa_lr": 0.01}, 100)


def test_schedule_refuses_iterations_beyond_max_iters_and_min_lr_above_base():
    with pytest.raises(ValueError, match="iteration 101 is beyond max_iters = 100"):
        lr_at({"policy": "poly"}, BASE_LR, 101, 100)
    _, optimizer = _head_model_and_optimizer()
    with pytest.raises(ValueError, match=r"schedule.min_lr: 0.1 is above the optimizer's base lr = 0.01"):
        build_scheduler(optimizer, {"policy": "poly", "min_lr": 0.1}, 100)


# ---------------------------------------------------------------------------------------------------------
# SWA.


def _swa_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 1))


def _train(model, optimizer, scheduler, swa, iterations, record=None):
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.0], [-2.0, 1.0]])
    for iteration in iterations:
        optimizer.zero_grad()
        (model(x) ** 2).mean().backward()
        used_lrs = [group["lr"] for group in optimizer.param_groups]
        optimizer.step()
        if record is not None:
            record.append((iteration, used_lrs, [p.detach().clone() for p in model.parameters()]))
        swa.after_optimizer_step(iteration, scheduler)


def _swa_setup(swa_cfg, max_iters=5):
    model = _swa_net()
    # group 0: the BatchNorm ("0.weight", "0.bias"); group 1: the Linear ("1.weight", "1.bias"), lr_mult 10
    paramwise_cfg = {"custom_keys": {"1.": {"lr_mult": 10.0}}}
    optimizer = build_optimizer(model, {"type": "SGD", "lr": 0.1, "paramwise_cfg": paramwise_cfg})
    scheduler = build_scheduler(optimizer, {"policy": "constant"}, max_iters)
    swa = build_swa(model, optimizer, swa_cfg, max_iters)
    return model, optimizer, scheduler, swa


def test_swa_average_of_three_steps_is_their_mean_and_lr_switches():
    model, optimizer, scheduler, swa = _swa_setup({"start_iter": 2, "swa_lr": 0.05})
    record = []
    _train(model, optimizer, scheduler, swa, range(5), record)
    assert swa.num_averaged == 3
    for index, averaged in enumerate(swa.averaged_module.parameters()):
        mean = torch.stack([params[index] for it, _, params in record if it >= 2]).mean(dim=0)
        torch.testing.assert_close(averaged, mean, rtol=1e-6, atol=1e-7)
    # lrs used per iteration: [group 0 (BatchNorm, default), group 1 (Linear, lr_mult 10)]
    used = [lrs for _, lrs, _ in record]
    assert used[:2] == [[0.1, 1.0], [0.1, 1.0]]
    for lrs in used[2:]:
        assert lrs == pytest.approx([0.05, 0.5])  # anneal_iters 0: swa_lr at once, times lr_mult


def test_swa_linear_anneal():
    model, optimizer, scheduler, swa = _swa_setup(
        {"start_iter": 2, "swa_lr": 0.05, "anneal_iters": 2, "anneal_strategy": "linear"}, max_iters=6)
    record = []
    _train(model, optimizer, scheduler, swa, range(6), record)
    # from the lr in effect (0.1) to 0.05 over 2 iterations, then constant
    assert [lrs[0] for _, lrs, _ in record] == pytest.approx([0.1, 0.1, 0.1, 0.075, 0.05, 0.05])


def test_recompute_bn_statistics_over_dict_batches():
    model = _swa_net().eval()
    batches = [{"image": torch.tensor([[1.0, 0.0], [3.0, 4.0]]), "label": torch.zeros(2)},
               {"image": torch.tensor([[5.0, 2.0], [7.0, 2.0]]), "label": torch.zeros(2)},
               {"image": torch.tensor([[0.0, -1.0], [2.0, 1.0]]), "label": torch.zeros(2)}]
    bn = model[0]
    bn.running_mean.fill_(100.0)
    assert recompute_bn_statistics(model, batches) == 3
    # cumulative average of batch means and unbiased batch variances
    # means: (2, 2), (6, 2), (1, 0) -> (3, 4/3); variances: (2, 8), (2, 0), (2, 2) -> (2, 10/3)
    torch.testing.assert_close(bn.running_mean, torch.tensor([3.0, 4.0 / 3.0]))
    torch.testing.assert_close(bn.running_var, torch.tensor([2.0, 10.0 / 3.0]))
    assert bn.momentum == 0.1 and not model.training
    assert recompute_bn_statistics(model, iter(batches), max_batches=1) == 1
    torch.testing.assert_close(bn.running_mean, torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="no length; pass max_batches"):
        recompute_bn_statistics(model, iter(batches))
    with pytest.raises(ValueError, match="yielded no batch"):
        recompute_bn_statistics(model, [])
    torch.testing.assert_close(bn.running_mean, torch.tensor([2.0, 2.0]))  # left as it was
    assert bn.momentum == 0.1


def test_swa_finalize_recomputes_the_averaged_models_bn():
    model, optimizer, scheduler, swa = _swa_setup({"start_iter": 2, "swa_lr": 0.05})
    _train(model, optimizer, scheduler, swa, range(5))
    batches = [{"image": torch.tensor([[1.0, 0.0], [3.0, 4.0]])}]
    assert swa.finalize(batches) == 1
    torch.testing.assert_close(swa.averaged_module[0].running_mean, torch.tensor([2.0, 2.0]))


def test_swa_state_dict_round_trip_continues_identically():
    swa_cfg = {"start_iter": 2, "swa_lr": 0.05, "anneal_iters": 3, "anneal_strategy": "cos"}
    model, optimizer, scheduler, swa = _swa_setup(swa_cfg, max_iters=8)
    _train(model, optimizer, scheduler, swa, range(4))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "swa": swa.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    model2, optimizer2, scheduler2, swa2 = _swa_setup(swa_cfg, max_iters=8)
    model2.load_state_dict(saved["model"])
    optimizer2.load_state_dict(saved["optimizer"])
    load_scheduler_state(scheduler2, saved["scheduler"])
    swa2.load_state_dict(saved["swa"])
    record, record2 = [], []
    _train(model, optimizer, scheduler, swa, range(4, 8), record)
    _train(model2, optimizer2, scheduler2, swa2, range(4, 8), record2)
    assert [lrs for _, lrs, _ in record2] == [lrs for _, lrs, _ in record]
    assert swa2.num_averaged == swa.num_averaged == 6
    for p, p2 in zip(swa.averaged_module.parameters(), swa2.averaged_module.parameters()):
        torch.testing.assert_close(p2, p, rtol=0, atol=0)

    _, _, _, other = _swa_setup({**swa_cfg, "swa_lr": 0.01}, max_iters=8)
    with pytest.raises(ValueError, match="swa_lr: saved 0.05, config 0.01"):
        other.load_state_dict(saved["swa"])


@pytest.mark.parametrize("cfg, message", [
    ({"start_iter": 2}, r"swa: missing key 'swa_lr'"),
    ({"start_iter": 5, "swa_lr": 0.1}, r"swa.start_iter: 5 must be below max_iters = 5"),
    ({"start_iter": 0, "swa_lr": 0.1}, r"swa.start_iter: must be an integer >= 1"),
    ({"start_iter": 2, "swa_lr": 0.1, "anneal_epochs": 3}, r"swa.anneal_epochs: unknown key.*anneal_iters"),
    ({"start_iter": 2, "swa_lr": 0.1, "anneal_strategy": "cosine"}, r"swa.anneal_strategy: must be one of cos, linear, got 'cosine'; did you mean 'cos'\?"),
])
def test_bad_swa_config_is_an_error_naming_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        _swa_setup(cfg)


def test_swa_off_and_finalize_before_start():
    model = _swa_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert build_swa(model, optimizer, None, 10) is None
    swa = SWAState(model=model, optimizer=optimizer, start_iter=5, swa_lr=0.01)
    with pytest.raises(ValueError, match="before swa.start_iter = 5"):
        swa.finalize([torch.zeros(2, 2)])


# ---------------------------------------------------------------------------------------------------------
# Gradient clipping.


def test_clip_gradients_by_total_norm():
    a = nn.Parameter(torch.zeros(1))
    b = nn.Parameter(torch.zeros(1))
    unused = nn.Parameter(torch.zeros(1))  # no grad: left out
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])
    assert check_clip_cfg({"max_norm": 1.0, "norm_type": 2}) == GradClip(max_norm=1.0, norm_type=2.0)
    assert clip_gradients([a, b, unused], check_clip_cfg({"max_norm": 1.0, "norm_type": 2})) == pytest.approx(5.0)
    torch.testing.assert_close(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.8]), rtol=1e-5, atol=1e-6)
    # below the limit: the norm is reported, the gradients are untouched
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([-4.0])
    assert clip_gradients([a, b], check_clip_cfg({"max_norm": 35})) == pytest.approx(5.0)
    assert b.grad.item() == -4.0
    assert clip_gradients([a, b], check_clip_cfg({"max_norm": 2.0, "norm_type": "inf"})) == pytest.approx(4.0)
    torch.testing.assert_close(b.grad, torch.tensor([-2.0]), rtol=1e-5, atol=1e-6)
    assert check_clip_cfg(None) is None and clip_gradients([a, b], None) is None
    assert clip_gradients([unused], GradClip(max_norm=1.0)) is None


def test_clip_gradients_takes_only_a_checked_config():
    # The config is checked once (when it loads); clip_gradients runs at every step and checks nothing.
    p = nn.Parameter(torch.zeros(1))
    p.grad = torch.ones(1)
    with pytest.raises(TypeError, match="takes the GradClip that check_clip_cfg"):
        clip_gradients([p], {"max_norm": 1.0})


@pytest.mark.parametrize("cfg, message", [
    ({"max_norm": 35, "norm": 2}, r"clip_grad.norm: unknown key.*valid keys: max_norm, norm_type"),
    ({"norm_type": 2}, r"missing key 'max_norm'"),
    ({"max_norm": 0}, r"clip_grad.max_norm: must be a number > 0, got 0"),
    ({"max_norm": 1, "norm_type": "two"}, r"clip_grad.norm_type: must be a number > 0, got 'two'"),
    ([35], r"clip_grad: must be a mapping"),
])
def test_bad_clip_config_is_an_error_naming_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        check_clip_cfg(cfg)


def test_math_constants_used_above():
    # The hand-computed literals of test_lr_curve, from their closed forms.
    assert (0.01 - 1e-4) * 0.5 ** 0.9 + 1e-4 == pytest.approx(0.0054052786, rel=1e-8)
    assert 0.001 + 0.5 * 0.009 * (1 + math.cos(math.pi / 4)) == pytest.approx(0.0086819805, rel=1e-8)
    assert 0.01 * 0.1 ** 0.5 == pytest.approx(0.00316227766, rel=1e-8)
