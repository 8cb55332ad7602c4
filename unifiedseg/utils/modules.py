"""The bare network inside the wrappers that training puts around it."""

from __future__ import annotations

from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DataParallel, DistributedDataParallel and torch.compile wrappers, in any nesting.

    The wrappers prefix parameter and state_dict names (`module.`, `_orig_mod.`); the bare module's
    names are the ones checkpoints store and paramwise optimizer rules match.
    """
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
