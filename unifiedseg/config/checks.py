"""Every section's check, run by `load_config` before anything is built.

The rules of the sections with a builder (model, loss, optimizer, schedule, swa, clip_grad, and the data
sampling and augmentation) live beside that builder, which exposes them as a `check_*` function;
`check_sections` calls each of them. The schema (unifiedseg/config/schema.py) gives the types of the
other sections; the rules their types do not say (ranges, choices, keys that go together) are here, or,
where a lower module owns the rule (label sources, bad-sample policies, amp modes, taxonomy kinds,
devices), called from there. Every error names its dotted key: `section.key: what is wrong`.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from unifiedseg.config.hooks import check_hook_cfgs
from unifiedseg.config.inference import inference_settings
from unifiedseg.constants import DEVICES
from unifiedseg.data.dataset import ON_BAD_SAMPLE
from unifiedseg.data.labels import LABEL_MODES
from unifiedseg.data.sampling import check_sampling
from unifiedseg.data.transforms import ValTransform, check_augmentation_cfg
from unifiedseg.losses.build import LOSS_SECTION_KEYS, check_loss_cfg
from unifiedseg.models.build import MODEL_KEYS, check_model_cfg
from unifiedseg.optim.optimizer import CLIP_GRAD_KEYS, OPTIMIZER_KEYS, check_clip_cfg, check_optimizer_cfg
from unifiedseg.optim.schedule import SCHEDULE_KEYS, check_schedule_cfg
from unifiedseg.optim.swa import SWA_KEYS, check_swa_cfg
from unifiedseg.taxonomy.converter import check_taxonomy_kind
from unifiedseg.utils.checks import check_choice, check_int, keyed
from unifiedseg.utils.plain import to_plain
from unifiedseg.utils.precision import resolve_amp

# The builders' sections and every key each may hold (whatever its type), for suggestions across sections.
SECTION_KEYS = {"model": MODEL_KEYS, "loss": LOSS_SECTION_KEYS, "optimizer": OPTIMIZER_KEYS,
                "schedule": SCHEDULE_KEYS, "swa": SWA_KEYS, "clip_grad": CLIP_GRAD_KEYS}


def check_sections(cfg: DictConfig) -> list[Exception]:
    """The error of each section of a merged config (at most one per section; empty when all is well)."""
    problems: list[Exception] = []

    def run(check: Callable[[], object]) -> bool:
        try:
            check()
        except (ValueError, TypeError) as err:
            problems.append(err)
            return False
        return True

    run(lambda: check_taxonomy(cfg))
    run(lambda: check_data(cfg.data))
    train_ok = run(lambda: check_train(cfg.train))
    run(lambda: check_model_cfg(cfg.model))
    run(lambda: check_loss_cfg(cfg.loss))
    optimizer_ok = run(lambda: check_optimizer_cfg(cfg.optimizer))
    # The rules that need the run's length apply when the config sets it (with num_examples it depends on the
    # dataset sizes: build_scheduler and build_swa apply them then).
    max_iters = cfg.train.max_iters if train_ok else None
    base_lr = float(cfg.optimizer.lr) if optimizer_ok else None
    run(lambda: check_schedule_cfg(cfg.schedule, max_iters, base_lr=base_lr))
    run(lambda: check_swa_cfg(cfg.swa, max_iters))
    run(lambda: inference_settings(cfg.inference, training_crop=cfg.data.augmentation.crop_size))
    run(lambda: check_clip_cfg(cfg.clip_grad))
    return problems


def check_taxonomy(cfg: DictConfig) -> None:
    """taxonomy.kind (with the number of training datasets an oracle takes)."""
    try:
        check_taxonomy_kind(cfg.taxonomy.kind, list(cfg.data.train_datasets))
    except ValueError as err:
        raise ValueError(f"taxonomy.kind: {err}") from None


def check_data(data: DictConfig) -> None:
    """The `data` section: label source, bad-sample policy, batch, loaders, sampling, augmentation, validation."""
    check_choice(data.label_source, "data.label_source", LABEL_MODES)
    check_choice(data.on_bad_sample, "data.on_bad_sample", ON_BAD_SAMPLE)
    check_int(data.batch_size, "data.batch_size", minimum=1)
    check_int(data.num_workers, "data.num_workers", minimum=0)
    names = list(data.train_datasets)
    _check_unique(names, "data.train_datasets")
    sampling = {key: value for key, value in to_plain(data.sampling).items() if value is not None}
    check_sampling(dataset_names=names, prefix="data.sampling.", **sampling)
    check_augmentation_cfg(data.augmentation)
    check_val(data.val)


def check_val(val: DictConfig) -> None:
    """The `data.val` section: which datasets, how often, how many images, at which size."""
    if val.datasets is not None:
        _check_unique(list(val.datasets), "data.val.datasets")
    check_int(val.interval, "data.val.interval", minimum=0)
    if val.max_images is not None:
        check_int(val.max_images, "data.val.max_images", minimum=1)
    try:
        ValTransform(short_side=val.short_side)
    except ValueError as err:
        raise keyed(err, "data.val", ["short_side"]) from None


def check_train(train: DictConfig) -> None:
    """The `train` section: run length, accumulation, precision, device, intervals."""
    if (train.max_iters is None) == (train.num_examples is None):
        raise ValueError("train.max_iters: set exactly one of train.max_iters (optimizer steps) and train.num_examples "
                         f"(crops per dataset); got max_iters={train.max_iters}, num_examples={train.num_examples}")
    if train.max_iters is not None:
        check_int(train.max_iters, "train.max_iters", minimum=1)
    else:
        check_int(train.num_examples, "train.num_examples", minimum=1)
    check_int(train.accumulate_grad, "train.accumulate_grad", minimum=1)
    resolve_amp(train.amp, train.opt_level)
    check_choice(train.device, "train.device", DEVICES)
    for key, minimum in (("log_interval", 0), ("checkpoint_interval", 0), ("keep_checkpoints", 0),
                         ("max_nonfinite_steps", 1), ("seed", 0)):
        check_int(train[key], f"train.{key}", minimum=minimum)
    # a registered hook type each, with arguments its constructor takes (types registered by code imported
    # before the config loads count: unifiedseg/config/hooks.py)
    hooks = to_plain(train.get("hooks"))
    if hooks is not None and not isinstance(hooks, list):
        raise ValueError(f"train.hooks: must be a list of {{type: HookName, ...}} mappings, got {hooks!r}")
    check_hook_cfgs(hooks)


def _check_unique(names: list, key: str) -> None:
    repeated = sorted({str(name) for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{key}: names {', '.join(repeated)} more than once")


__all__ = ["SECTION_KEYS", "check_sections"]
