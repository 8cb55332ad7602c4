"""MSeg's segmentation HRNet (mseg-semantic, model/seg_hrnet.py) re-implemented plainly for the tests, and
its checkpoints written as MSeg's train.py writes them.

Built from the facts in shared/reference/mseg/MODEL.md, independently of the code it checks (it imports
nothing of unifiedseg): timm's classification HRNet supplies the backbone modules, whose names are MSeg's
(conv1, bn1, conv2, bn2, layer1, transition1..3, stage2..4); its classification head is dropped and
MSeg's `last_layer` added (1x1 conv with bias, BatchNorm momentum 0.01, ReLU, 1x1 conv with bias). The
forward is MSeg's, written out here: in each module's fusion a lower-resolution branch goes through its
conv and BatchNorm and is resized bilinearly (align_corners=False) to the target branch's size; the four
branches are resized so to the first one's size and concatenated; the logits are resized to the input
size with align_corners=True. No padding. Every BatchNorm has momentum 0.01.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

BACKBONE_MODULES = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
                    "transition3", "stage4")
# The official ImageNet files' classification head (timm's names are the same).
IMAGENET_HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


class MSegHRNet(nn.Module):
    """MSeg's HRNet: `forward(normalised images) -> logits at the input size`."""

    def __init__(self, arch: str = "hrnet_w48", num_classes: int = 194):
        super().__init__()
        classification = timm.create_model(arch, pretrained=False)
        for name in BACKBONE_MODULES:
            setattr(self, name, getattr(classification, name))
        channels = sum(self.stage4[-1].num_in_chs)  # 720 for W48
        self.last_layer = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=True),
            nn.BatchNorm2d(channels, momentum=0.01),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, kernel_size=1, bias=True),
        )
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.01

    @staticmethod
    def _stage(stage: nn.Sequential, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        for module in stage:
            xs = [branch(x) for branch, x in zip(module.branches, xs)]
            if module.num_branches == 1:
                continue
            fused = []
            for i in range(len(module.fuse_layers)):
                y = xs[0] if i == 0 else module.fuse_layers[i][0](xs[0])
                for j in range(1, module.num_branches):
                    if j == i:
                        y = y + xs[j]
                    elif j > i:
                        conv, bn = module.fuse_layers[i][j][0], module.fuse_layers[i][j][1]
                        y = y + F.interpolate(bn(conv(xs[j])), size=xs[i].shape[-2:], mode="bilinear",
                                              align_corners=False)
                    else:
                        y = y + module.fuse_layers[i][j](xs[j])
                fused.append(F.relu(y))
            xs = fused
        return xs

    @staticmethod
    def _transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [xs[i] if isinstance(t, nn.Identity) else t(xs[-1]) for i, t in enumerate(transition)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = self._stage(self.stage2, [t(x) for t in self.transition1])
        xs = self._stage(self.stage3, self._transition(self.transition2, xs))
        xs = self._stage(self.stage4, self._transition(self.transition3, xs))
        size = xs[0].shape[-2:]
        x = torch.cat([xs[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in xs[1:]], 1)
        return F.interpolate(self.last_layer(x), size=(height, width), mode="bilinear", align_corners=True)


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine weights, and a nonzero bias everywhere a conv has one, so that
    eval-mode logits depend on every tensor of the checkpoint."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.num_batches_tracked.fill_(1000)
            elif isinstance(module, nn.Conv2d) and module.bias is not None:
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def save_mseg_checkpoint(model: nn.Module, path, *, bare: bool = False) -> None:
    """Write `model`'s weights as MSeg's train.py does ({'epoch', 'state_dict' with DDP's 'module.' prefix,
    'optimizer', 'current_iter', 'max_iter'}), or as a bare state dict."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if not bare:
        state = {"epoch": 10, "state_dict": {"module." + k: v for k, v in state.items()},
                 "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0]}]},
                 "current_iter": 1000, "max_iter": 1000}
    torch.save(state, path)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """MSeg's input: RGB 0-255 minus the ImageNet mean, over its std (MODEL.md)."""
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    return (images.float() - mean) / std
