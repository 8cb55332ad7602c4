"""MSeg's branch fusion inside timm's HRNet: lower-resolution branches upsampled bilinearly to the size
of the branch they are added to, instead of timm's nearest x2^k.

In each HRNet module (timm's `HighResolutionModule`), branch i receives the sum over every branch j of
`fuse_layers[i][j](x[j])`; for j > i that is a 1x1 conv, a BatchNorm and an upsampling. timm (like the
official ImageNet HRNet) upsamples with `nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")`, which
only lands on branch i's size when the input side divides by 32; MSeg's segmentation HRNet
(mseg-semantic, model/seg_hrnet.py) instead resizes the conv-BN output bilinearly (align_corners=False)
to branch i's height and width, so any input size works (MSeg feeds 713 x 713 crops unpadded).

`use_bilinear_fuse(backbone)` turns every `HighResolutionModule` of a timm HRNet into a
`BilinearFuseModule` in place: the same modules and weights (state_dict keys unchanged: the
parameterless `nn.Upsample` becomes `nn.Identity`), with a forward that resizes to the target branch.
The swap is a change of class (`module.__class__`), so copies, pickles and traced exports keep it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.hrnet import HighResolutionModule
from torch import nn

FUSE_UPSAMPLING = ("nearest", "bilinear")


class BilinearFuseModule(HighResolutionModule):
    """A timm HighResolutionModule whose fusion resizes lower-resolution branches bilinearly to the target
    branch's size (built by `use_bilinear_fuse`, never directly). The sum runs over j in order, as in timm
    and MSeg, so the floating-point result is MSeg's."""

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        for i, branch in enumerate(self.branches):
            x[i] = branch(x[i])
        fused = []
        for i, fuse_outer in enumerate(self.fuse_layers):
            size = x[i].shape[-2:]
            total = None
            for j, fuse in enumerate(fuse_outer):
                y = fuse(x[j])
                if j > i:
                    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                total = y if total is None else total + y
            fused.append(self.fuse_act(total))
        return fused


def use_bilinear_fuse(backbone: nn.Module) -> int:
    """Give every HighResolutionModule of `backbone` MSeg's bilinear fusion, in place; returns how many were
    changed. A backbone without any (not a timm HRNet) is refused."""
    changed = 0
    for module in backbone.modules():
        if not isinstance(module, HighResolutionModule):
            continue
        if not isinstance(module.fuse_layers, nn.Identity):  # one branch: nothing is fused
            for i, fuse_outer in enumerate(module.fuse_layers):
                for j, fuse in enumerate(fuse_outer):
                    if j > i:
                        if not isinstance(fuse[-1], (nn.Upsample, nn.Identity)):
                            raise ValueError(f"fuse layer [{i}][{j}] of a timm HRNet module ends with "
                                             f"{type(fuse[-1]).__name__}, expected nn.Upsample")
                        fuse[-1] = nn.Identity()
        module.__class__ = BilinearFuseModule
        changed += 1
    if not changed:
        raise ValueError(f"fuse_upsampling 'bilinear' needs a timm HRNet backbone (HighResolutionModule stages); "
                         f"{type(backbone).__name__} has none")
    return changed
