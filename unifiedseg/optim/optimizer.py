"""Build a torch optimizer from an MMCV-style config, with per-parameter lr and weight-decay rules; clip gradients.

Config (`optimizer:` section)::

    type: SGD            # SGD | Adam | AdamW
    lr: 0.01             # base learning rate (required)
    momentum: 0.9        # SGD: momentum, dampening, nesterov;  Adam/AdamW: betas, eps, amsgrad
    weight_decay: 1e-4   # base weight decay; when absent the optimizer's own default applies (AdamW: 0.01)
    paramwise_cfg:       # optional, MMCV DefaultOptimizerConstructor semantics (below)
      custom_keys: {backbone: {lr_mult: 0.1, decay_mult: 1.0}, head: {lr_mult: 10}}
      bias_lr_mult: 2.0
      bias_decay_mult: 0.0
      norm_decay_mult: 0.0
      dwconv_decay_mult: 0.0
      dcn_offset_lr_mult: 0.1
      bypass_duplicate: false

Per-parameter rules, checked against MMCV 1.x `DefaultOptimizerConstructor.add_params`. The model is walked
module by module (a module's own parameters, then its children in order, like MMCV's recursion). For each
parameter `name` of module `m` whose full name is `prefix.name`, with lr = base_lr * lr_mult and
weight_decay = base_wd * decay_mult (both multipliers 1 unless a rule sets them):

1. requires_grad=False: kept in the optimizer with multipliers 1 and no rule (as MMCV; it gets no grad so
   it never moves, and keeping it means unfreezing later needs no new param group).
2. custom_keys: the keys are sorted alphabetically, then stably by length, longest first, so the longest
   key that is a substring of the parameter's name wins and among equal lengths the alphabetically first.
   The string matched is MMCV's ``f"{prefix}.{name}"``: a nested parameter's full name
   ("backbone.conv1.weight"), a top-level parameter's name with a leading dot (".gamma"). When a key
   matches, only its `lr_mult` and `decay_mult` (default 1 each) apply and every rule below is skipped.
3. Otherwise (each rule only when its option is given; an option's default of 1 changes nothing):
   - bias_lr_mult: lr of every parameter named "bias" except in norm layers and in direct children of a
     deformable conv (their offset convs).
   - dcn_offset_lr_mult: lr of weight and bias of an nn.Conv2d whose module name contains "conv_offset"
     and whose parent is a deformable conv; it replaces bias_lr_mult there.
   - weight decay, first that applies: norm_decay_mult for every parameter of a norm layer (_BatchNorm,
     SyncBatchNorm, _InstanceNorm, GroupNorm, LayerNorm); dwconv_decay_mult for every parameter of a
     depthwise conv, which MMCV defines as an nn.Conv2d with in_channels == groups (so a 1-input-channel
     conv counts too); bias_decay_mult for every other "bias" except in direct children of a deformable
     conv.
   Deformable convs are recognised without importing mmcv: a module whose class or a base class is named
   DeformConv2d or ModulatedDeformConv2d (mmcv.ops and torchvision.ops).
4. Parameters shared by several modules: with bypass_duplicate the later occurrences are skipped with a
   warning naming them; without it, an error names both names (MMCV leaves that to torch's error). With no
   paramwise_cfg at all, a shared parameter is optimised once, as MMCV's ``model.parameters()`` path does.
5. A model wrapped in DataParallel, DistributedDataParallel or torch.compile is unwrapped, so names carry no
   "module." or "_orig_mod." prefix.

Departures from MMCV, on purpose: parameters with the same (rule, lr_mult, decay_mult) share one param group
instead of one group per parameter (same lr and weight decay per parameter, far fewer groups for torch's
foreach kernels to walk); each group carries ``param_names`` (torch's own key, saved in the optimizer's
state dict), ``lr_mult``, ``decay_mult`` and ``rule`` (e.g. "custom_keys['head']", "bias_lr_mult+
bias_decay_mult", "default") for the schedules and `format_param_groups`. A custom key that ends up applied
to no parameter is warned about by name (a misspelt key otherwise changes nothing silently). Unknown keys
anywhere in the config are errors that list the valid ones; a decay multiplier without `weight_decay` is an
error, as in MMCV.

`check_clip_cfg(cfg)` checks a `clip_grad: {max_norm: 35, norm_type: 2}` section (MMCV's OptimizerHook) once
and returns a `GradClip`; `clip_gradients(params, clip)` clips by total norm with it at every step, without
checking anything again, and returns the norm before clipping for logging; None disables clipping.

`check_optimizer_cfg` and `check_clip_cfg` are the rules of their config sections; the config loader
(unifiedseg.config.loader) runs them when a config loads, so a bad value stops a run before anything is built.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unifiedseg.utils.checks import check_bool, check_choice, check_keys, check_number
from unifiedseg.utils.modules import unwrap
from unifiedseg.utils.plain import to_plain

OPTIMIZER_TYPES: dict[str, type[torch.optim.Optimizer]] = {
    "SGD": torch.optim.SGD,
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
}
# Constructor arguments accepted per optimizer type (besides `type` and `paramwise_cfg`).
OPTIMIZER_ARGS: dict[str, tuple[str, ...]] = {
    "SGD": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    "Adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "AdamW": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
}
# Every key an `optimizer` section may hold, whatever its type (for suggestions across sections).
OPTIMIZER_KEYS = ("type", *dict.fromkeys(key for args in OPTIMIZER_ARGS.values() for key in args), "paramwise_cfg")
# Arguments that must lie in [0, 1).
UNIT_INTERVAL_ARGS = ("momentum", "dampening")
PARAMWISE_KEYS = (
    "custom_keys",
    "bias_lr_mult",
    "bias_decay_mult",
    "norm_decay_mult",
    "dwconv_decay_mult",
    "dcn_offset_lr_mult",
    "bypass_duplicate",
)
CUSTOM_KEY_FIELDS = ("lr_mult", "decay_mult")
CLIP_GRAD_KEYS = ("max_norm", "norm_type")
NORM_LAYER_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)
DEFORM_CONV_CLASS_NAMES = ("DeformConv2d", "ModulatedDeformConv2d")
DEFAULT_RULE = "default"
FROZEN_RULE = "frozen (requires_grad=False)"


# ---------------------------------------------------------------------------------------------------------
# Optimizer config.


@dataclass(frozen=True)
class ParamwiseRules:
    """The checked `paramwise_cfg`; a multiplier left None was not given (its rule does not apply)."""

    custom_keys: dict[str, dict[str, float]]
    bias_lr_mult: float | None = None
    bias_decay_mult: float | None = None
    norm_decay_mult: float | None = None
    dwconv_decay_mult: float | None = None
    dcn_offset_lr_mult: float | None = None
    bypass_duplicate: bool = False
    given: bool = False  # False when the config had no (or an empty) paramwise_cfg


def check_optimizer_cfg(cfg: Mapping) -> tuple[str, dict[str, Any], ParamwiseRules]:
    """Check an optimizer config; return (type, constructor kwargs, paramwise rules). Errors name the key."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, dict):
        raise ValueError(f"optimizer: must be a mapping with type and lr, got {cfg!r}")
    types = list(OPTIMIZER_TYPES)
    if "type" not in cfg:
        raise ValueError(f"optimizer: missing key 'type' (valid types: {', '.join(types)})")
    opt_type = check_choice(cfg["type"], "optimizer.type", types)
    valid = ("type", *OPTIMIZER_ARGS[opt_type], "paramwise_cfg")
    check_keys(cfg, valid, "optimizer", note=f" for type {opt_type}")
    if "lr" not in cfg:
        raise ValueError("optimizer: missing key 'lr' (the base learning rate)")
    kwargs: dict[str, Any] = {}
    for key in OPTIMIZER_ARGS[opt_type]:
        if key not in cfg:
            continue
        value, where = cfg[key], f"optimizer.{key}"
        if key in ("nesterov", "amsgrad"):
            kwargs[key] = check_bool(value, where)
        elif key == "betas":
            if not isinstance(value, list) or len(value) != 2:
                raise ValueError(f"{where}: must be a list of two numbers in [0, 1), got {value!r}")
            kwargs[key] = tuple(check_number(beta, f"{where}[{i}]", below=1.0) for i, beta in enumerate(value))
        else:
            kwargs[key] = check_number(value, where, strictly_above=(key == "eps"),
                                       below=1.0 if key in UNIT_INTERVAL_ARGS else None)
    rules = _check_paramwise_cfg(cfg.get("paramwise_cfg"), has_weight_decay="weight_decay" in cfg)
    return opt_type, kwargs, rules


def _check_paramwise_cfg(paramwise: Any, *, has_weight_decay: bool) -> ParamwiseRules:
    if paramwise is None or paramwise == {}:
        return ParamwiseRules(custom_keys={})
    if not isinstance(paramwise, dict):
        raise ValueError(f"optimizer.paramwise_cfg: must be a mapping, got {paramwise!r}")
    check_keys(paramwise, PARAMWISE_KEYS, "optimizer.paramwise_cfg")
    custom = paramwise.get("custom_keys", {})
    if not isinstance(custom, dict):
        raise ValueError(f"optimizer.paramwise_cfg.custom_keys: must be a mapping of name substring to "
                         f"{{lr_mult, decay_mult}}, got {custom!r}")
    custom_keys: dict[str, dict[str, float]] = {}
    for key, fields in custom.items():
        where = f"optimizer.paramwise_cfg.custom_keys[{key!r}]"
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: a custom key must be a non-empty string (a substring of parameter names)")
        if not isinstance(fields, dict):
            raise ValueError(f"{where}: must be a mapping with {', '.join(CUSTOM_KEY_FIELDS)}, got {fields!r}")
        check_keys(fields, CUSTOM_KEY_FIELDS, where)
        if "decay_mult" in fields and not has_weight_decay:
            raise ValueError(f"{where}.decay_mult: needs optimizer.weight_decay to be set (MMCV: base_wd should "
                             f"not be None)")
        custom_keys[key] = {name: check_number(fields[name], f"{where}.{name}") for name in fields}
    multipliers = {}
    for name in ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "dcn_offset_lr_mult"):
        if name in paramwise:
            multipliers[name] = check_number(paramwise[name], f"optimizer.paramwise_cfg.{name}")
            if name.endswith("decay_mult") and not has_weight_decay:
                raise ValueError(f"optimizer.paramwise_cfg.{name}: needs optimizer.weight_decay to be set "
                                 f"(MMCV: base_wd should not be None)")
    bypass = check_bool(paramwise.get("bypass_duplicate", False), "optimizer.paramwise_cfg.bypass_duplicate")
    return ParamwiseRules(custom_keys=custom_keys, bypass_duplicate=bypass, given=True, **multipliers)


# ---------------------------------------------------------------------------------------------------------
# Parameter groups.


@dataclass(frozen=True)
class ParamSetting:
    """What the rules decided for one parameter."""

    lr_mult: float
    decay_mult: float
    rule: str


def _is_deform_conv(module: nn.Module) -> bool:
    return any(cls.__name__ in DEFORM_CONV_CLASS_NAMES for cls in type(module).__mro__)


def _setting_for(
    rules: ParamwiseRules,
    sorted_keys: list[str],
    module: nn.Module,
    prefix: str,
    name: str,
    parent_is_dcn: bool,
) -> tuple[ParamSetting, str | None]:
    """The (lr_mult, decay_mult, rule) of parameter `name` of `module`, and the custom key that matched."""
    match_name = f"{prefix}.{name}"  # MMCV's string: a top-level parameter gets a leading dot
    for key in sorted_keys:
        if key in match_name:
            fields = rules.custom_keys[key]
            setting = ParamSetting(fields.get("lr_mult", 1.0), fields.get("decay_mult", 1.0), f"custom_keys[{key!r}]")
            return setting, key
    is_norm = isinstance(module, NORM_LAYER_TYPES)
    is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
    lr_mult, decay_mult, applied = 1.0, 1.0, []
    if rules.bias_lr_mult is not None and name == "bias" and not (is_norm or parent_is_dcn):
        lr_mult = rules.bias_lr_mult
        applied.append("bias_lr_mult")
    if (rules.dcn_offset_lr_mult is not None and "conv_offset" in prefix and parent_is_dcn
            and isinstance(module, nn.Conv2d)):
        lr_mult = rules.dcn_offset_lr_mult  # replaces bias_lr_mult (which excludes these anyway)
        applied.append("dcn_offset_lr_mult")
    # The weight-decay rules are exclusive, in MMCV's order: norm, then depthwise conv, then bias.
    if is_norm:
        if rules.norm_decay_mult is not None:
            decay_mult = rules.norm_decay_mult
            applied.append("norm_decay_mult")
    elif is_dwconv:
        if rules.dwconv_decay_mult is not None:
            decay_mult = rules.dwconv_decay_mult
            applied.append("dwconv_decay_mult")
    elif name == "bias" and not parent_is_dcn:
        if rules.bias_decay_mult is not None:
            decay_mult = rules.bias_decay_mult
            applied.append("bias_decay_mult")
    return ParamSetting(lr_mult, decay_mult, "+".join(applied) or DEFAULT_RULE), None


def param_settings(model: nn.Module, cfg: Mapping) -> list[tuple[str, nn.Parameter, ParamSetting]]:
    """(full name, parameter, setting) for every parameter the optimizer will hold, in MMCV's walk order.

    Warns about custom keys applied to no parameter; raises on shared parameters unless bypass_duplicate.
    """
    _, _, rules = check_optimizer_cfg(cfg)
    model = unwrap(model)
    sorted_keys = sorted(sorted(rules.custom_keys), key=len, reverse=True)
    used_keys: set[str] = set()
    seen: dict[int, str] = {}
    out: list[tuple[str, nn.Parameter, ParamSetting]] = []

    def walk(module: nn.Module, prefix: str, parent_is_dcn: bool) -> None:
        for name, param in module.named_parameters(recurse=False):
            full_name = f"{prefix}.{name}" if prefix else name
            if id(param) in seen:
                if not rules.given:
                    continue  # like model.parameters(): a shared parameter is optimised once
                if rules.bypass_duplicate:
                    warnings.warn(f"optimizer: parameter {full_name!r} is the same tensor as {seen[id(param)]!r}; "
                                  f"skipped since paramwise_cfg.bypass_duplicate=True", stacklevel=3)
                    continue
                raise ValueError(f"optimizer: parameter {full_name!r} is the same tensor as "
                                 f"{seen[id(param)]!r} (a shared module or tied weight); set "
                                 f"optimizer.paramwise_cfg.bypass_duplicate: true to optimise it once")
            seen[id(param)] = full_name
            if not param.requires_grad:
                out.append((full_name, param, ParamSetting(1.0, 1.0, FROZEN_RULE)))
                continue
            setting, key = _setting_for(rules, sorted_keys, module, prefix, name, parent_is_dcn)
            if key is not None:
                used_keys.add(key)
            out.append((full_name, param, setting))
        is_dcn = _is_deform_conv(module)
        for child_name, child in module.named_children():
            walk(child, f"{prefix}.{child_name}" if prefix else child_name, is_dcn)

    walk(model, "", False)
    for key in sorted_keys:
        if key not in used_keys:
            warnings.warn(_unused_key_message(key, out, sorted_keys), stacklevel=2)
    return out


def _unused_key_message(key: str, settings: list[tuple[str, nn.Parameter, ParamSetting]], sorted_keys) -> str:
    # MMCV's match string: the full name, with a leading dot for a top-level parameter.
    matching = [name for name, _, _ in settings if key in (name if "." in name else f".{name}")]
    if not matching:
        return (f"optimizer.paramwise_cfg.custom_keys[{key!r}] matches no parameter name; it has no effect "
                f"(parameter names look like {settings[0][0]!r})" if settings else
                f"optimizer.paramwise_cfg.custom_keys[{key!r}] matches no parameter (the model has none)")
    frozen = [name for name, _, s in settings if s.rule == FROZEN_RULE]
    if set(matching) <= set(frozen):
        return (f"optimizer.paramwise_cfg.custom_keys[{key!r}] matches only parameters with requires_grad=False "
                f"({', '.join(matching[:3])}); it has no effect")
    return (f"optimizer.paramwise_cfg.custom_keys[{key!r}] is never applied: every parameter it matches "
            f"({', '.join(matching[:3])}{', ...' if len(matching) > 3 else ''}) is claimed by a longer or "
            f"alphabetically earlier key of {sorted_keys}")


def build_optimizer(model: nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    """A torch optimizer over `model`'s parameters with the paramwise rules of `cfg` (module docstring)."""
    opt_type, kwargs, _ = check_optimizer_cfg(cfg)
    base_lr = kwargs["lr"]
    base_wd = kwargs.get("weight_decay")
    groups: dict[tuple[str, float, float], dict[str, Any]] = {}
    for name, param, setting in param_settings(model, cfg):
        group_key = (setting.rule, setting.lr_mult, setting.decay_mult)
        if group_key not in groups:
            group: dict[str, Any] = {"params": [], "lr": base_lr * setting.lr_mult, "lr_mult": setting.lr_mult,
                                     "decay_mult": setting.decay_mult, "rule": setting.rule}
            if base_wd is not None:
                group["weight_decay"] = base_wd * setting.decay_mult
            groups[group_key] = group
        groups[group_key]["params"].append((name, param))  # torch keeps the names as group["param_names"]
    if not groups:
        raise ValueError("optimizer: the model has no parameters to optimise")
    return OPTIMIZER_TYPES[opt_type](list(groups.values()), **kwargs)


def format_param_groups(optimizer: torch.optim.Optimizer, model: nn.Module | None = None) -> str:
    """A text table of the optimizer's param groups: rule, parameter and element counts, lr, weight decay."""
    # Groups built by build_optimizer carry their names; other optimizers are named through the model.
    names_by_id = {id(p): n for n, p in unwrap(model).named_parameters()} if model is not None else {}
    header = ("group", "rule", "params", "elements", "lr", "weight_decay", "lr_mult", "decay_mult", "names")
    rows = [header]
    for index, group in enumerate(optimizer.param_groups):
        names = group.get("param_names") or [names_by_id.get(id(p), "?") for p in group["params"]]
        shown = ", ".join(names[:3]) + (f", ... (+{len(names) - 3})" if len(names) > 3 else "")
        rows.append((
            str(index),
            str(group.get("rule", "-")),
            str(len(group["params"])),
            str(sum(p.numel() for p in group["params"])),
            f"{float(group['lr']):.6g}",
            f"{float(group.get('weight_decay', 0.0)):.6g}",
            f"{group['lr_mult']:g}" if "lr_mult" in group else "-",
            f"{group['decay_mult']:g}" if "decay_mult" in group else "-",
            shown,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------------------------
# Gradient clipping.


@dataclass(frozen=True)
class GradClip:
    """A checked `clip_grad` section: clip the total gradient norm to `max_norm` (a `norm_type`-norm)."""

    max_norm: float
    norm_type: float = 2.0


def check_clip_cfg(cfg: Mapping | None) -> GradClip | None:
    """The `GradClip` of a `clip_grad` config, or None when clipping is off; errors name the key."""
    if cfg is None:
        return None
    cfg = to_plain(cfg)
    if not isinstance(cfg, dict):
        raise ValueError(f"clip_grad: must be a mapping with {', '.join(CLIP_GRAD_KEYS)} or null, got {cfg!r}")
    check_keys(cfg, CLIP_GRAD_KEYS, "clip_grad")
    if "max_norm" not in cfg:
        raise ValueError("clip_grad: missing key 'max_norm' (use clip_grad: null to disable clipping)")
    max_norm = check_number(cfg["max_norm"], "clip_grad.max_norm", strictly_above=True)
    norm_type = cfg.get("norm_type", 2.0)
    if norm_type in ("inf", "Inf", float("inf")):
        norm_type = float("inf")
    else:
        norm_type = check_number(norm_type, "clip_grad.norm_type", strictly_above=True)
    return GradClip(max_norm=max_norm, norm_type=norm_type)


def clip_gradients(params: Iterable[torch.Tensor], clip: GradClip | None) -> float | None:
    """Clip the gradients of `params` to total norm `clip.max_norm`; the total norm before clipping (for logging).

    `clip` is what `check_clip_cfg` made of the config (checked once, when the config loaded); nothing is
    checked here, at every step. Parameters without a gradient are left out, like MMCV's OptimizerHook.
    Returns None when `clip` is None (clipping disabled) or when no parameter has a gradient.
    """
    if clip is None:
        return None
    if not isinstance(clip, GradClip):
        raise TypeError(f"clip_gradients takes the GradClip that check_clip_cfg(cfg.clip_grad) returns, "
                        f"got {type(clip).__name__}")
    with_grad = [p for p in params if p.requires_grad and p.grad is not None]
    if not with_grad:
        return None
    return float(torch.nn.utils.clip_grad_norm_(with_grad, max_norm=clip.max_norm, norm_type=clip.norm_type))
