"""The hooks a config can name: the `Hook` interface of the trainer (unifiedseg/engine/trainer.py), the
registry of hook types that `train.hooks` entries name, and the built-in TimeLimitHook.

They live at the config layer so that `load_config` checks every `train.hooks` entry (a registered type,
arguments its constructor takes) before anything is built. A hook type of your own is registered with
`@register_hook_type` in a module imported before the config is loaded. The trainer's other hooks
(schedule, SWA, validation, checkpoints, logging) and their order are in unifiedseg/engine/hooks.py.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterable, Mapping

from unifiedseg.utils.checks import check_number
from unifiedseg.utils.names import suggest

logger = logging.getLogger(__name__)


class Hook:
    """Override any of the four points; each receives the trainer (unifiedseg/engine/trainer.py, a layer
    above: not imported here). `after_train` runs in a `finally`."""

    def before_train(self, trainer) -> None: ...

    def after_train(self, trainer) -> None: ...

    def before_step(self, trainer) -> None: ...

    def after_step(self, trainer) -> None: ...


HOOK_TYPES: dict[str, type[Hook]] = {}


def register_hook_type(hook_class: type[Hook] | None = None, *, name: str | None = None):
    """Class decorator (`@register_hook_type` or `@register_hook_type(name="...")`): configs may then name
    the class in `train.hooks`. A name that is taken is refused."""

    def register(cls: type[Hook]) -> type[Hook]:
        key = name or cls.__name__
        if key in HOOK_TYPES:
            raise ValueError(f"a hook type named {key!r} is already registered ({HOOK_TYPES[key].__module__}."
                             f"{HOOK_TYPES[key].__qualname__}); choose another name")
        HOOK_TYPES[key] = cls
        return cls

    return register(hook_class) if hook_class is not None else register


def check_hook_cfg(cfg: Mapping, where: str = "train.hooks[0]") -> type[Hook]:
    """The registered class of a `{type: Name, **kwargs}` mapping, after checking that the type is registered
    and that its constructor takes the arguments; nothing is built. Errors name `where` and the valid choices."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ValueError(f"{where}: must be a mapping with a `type` key (one of {', '.join(HOOK_TYPES) or 'none'}), "
                         f"got {cfg!r}")
    kwargs = {key: value for key, value in cfg.items() if key != "type"}
    hook_type = cfg["type"]
    if hook_type not in HOOK_TYPES:
        hint = suggest(hook_type, list(HOOK_TYPES)) if isinstance(hook_type, str) else ""
        raise ValueError(f"{where}.type: unknown hook type {hook_type!r}{hint}; registered hook types: "
                         f"{', '.join(HOOK_TYPES) or 'none'} (register one with @register_hook_type)")
    hook_class = HOOK_TYPES[hook_type]
    try:
        inspect.signature(hook_class).bind(**kwargs)
    except TypeError as err:
        accepted = [p for p in inspect.signature(hook_class).parameters]
        raise ValueError(f"{where}: {hook_type} does not take these arguments ({err}); it takes: "
                         f"{', '.join(accepted) or 'none'}") from None
    return hook_class


def build_hook(cfg: Mapping, where: str = "train.hooks[0]") -> Hook:
    """The hook a `{type: Name, **kwargs}` mapping describes (checked by `check_hook_cfg`)."""
    hook_class = check_hook_cfg(cfg, where)
    return hook_class(**{key: value for key, value in cfg.items() if key != "type"})


def check_hook_cfgs(cfgs: Iterable[Mapping] | None, where: str = "train.hooks") -> None:
    """Check every entry of a `train.hooks` list without building any (tools/train.py does so right after
    loading the config: the registry is the engine's, below which the config loader sits)."""
    for i, cfg in enumerate(cfgs or []):
        check_hook_cfg(cfg, f"{where}[{i}]")


def build_hooks(cfgs: Iterable[Mapping] | None, where: str = "train.hooks") -> list[Hook]:
    """The hooks of a `train.hooks` list (None or empty: none)."""
    return [build_hook(cfg, f"{where}[{i}]") for i, cfg in enumerate(cfgs or [])]


@register_hook_type
class TimeLimitHook(Hook):
    """Stops training cleanly once `seconds` have passed since training started (e.g. under a job
    scheduler's time limit): the checkpoint hook saves, and the same command resumes."""

    def __init__(self, seconds: float):
        self.seconds = check_number(seconds, "seconds", strictly_above=True)
        self.started = None

    def before_train(self, trainer) -> None:
        self.started = time.monotonic()

    def after_step(self, trainer) -> None:
        if not trainer.stop_requested and time.monotonic() - self.started >= self.seconds:
            logger.warning("time limit of %gs reached: stopping after iteration %d", self.seconds, trainer.iter)
            trainer.stop_requested = True


__all__ = ["HOOK_TYPES", "Hook", "TimeLimitHook", "build_hook", "build_hooks", "check_hook_cfg", "check_hook_cfgs",
           "register_hook_type"]
