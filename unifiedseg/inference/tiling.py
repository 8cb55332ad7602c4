"""Turn one image into class probabilities with any `forward(images) -> logits` callable: whole image or
sliding window, over one or several scales, optionally with a horizontal flip.

Everything here is a plain function on tensors, so it runs on a real model as well as on a fake one
(tests use models whose logits encode pixel positions). `forward` takes a normalised (N, 3, h, w)
float batch and returns (N, C, h, w) logits at its size: a Segmentor's
`predict_logits(images, normalized=True)`, which pads and upsamples around the network (nothing here
resizes logits).

The pipeline for an image of size H x W (`predict_probs`):

1. Base size: resize the short side to `short_side` (MSeg tests at 480 / 720 / 1080), or keep H x W.
2. For each scale s in `scales`, the image is resized (bilinear, no antialiasing, like the training
   warp) to round(s x base size); with `flip`, also its mirror image.
3. Each such image is predicted whole, or in `crop_size` tiles every `stride` pixels (the last tile
   in a row or column is shifted back to end at the border, as MSeg does); an image smaller than the
   crop is first padded, centred, with the mean colour (0 after normalisation) or by reflection.
4. Logits become probabilities (softmax) before anything is combined: tiles are blended, scales and
   flips averaged, models of an ensemble averaged -- all on PROBABILITIES, as MSeg does.
5. The probabilities of each pass are resized (bilinear) to H x W and averaged with equal weights.

Tile blending: MSeg averages overlapping tiles uniformly, so a pixel near a tile's border (where the
network saw little context) counts as much as one at another tile's centre, and visible seams
appear. Here each tile's probabilities are weighted by a separable Hann window,
w(i, j) = sin^2(pi (i + 0.5) / h) * sin^2(pi (j + 0.5) / w), which is largest at the tile centre and
small but > 0 at its border; the blend divides by the summed weights, so a pixel covered by one tile
gets exactly that tile's prediction and the result varies smoothly across seams. `window="uniform"`
gives MSeg's plain average.

Cost: `InferenceSettings.forward_passes(image_hw)` counts the network inputs: the number of tiles
(1 in whole mode) summed over scales, times 2 with flip. Compute grows with the pixels, so with the
square of the scale: MSeg's multi-scale setting (6 scales 0.5 ... 1.75 with flip) makes 12 passes
covering 2 x (0.25 + 0.56 + 1 + 1.56 + 2.25 + 3.06) ~ 17 times the pixels of the default single
scale without flip, and takes about that much longer.

Memory: logits are upsampled and images resized into preallocated outputs `class_chunk` classes at a
time, and softmax runs over blocks of rows, so no full-size temporary beyond the output itself is
made. The accumulators are C x H x W float32 (plus one at the scaled size per pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from unifiedseg.config.inference import PAD_MODES, WINDOWS, InferenceSettings, tile_starts

Forward = Callable[[torch.Tensor], torch.Tensor]

# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


def blend_window(crop_hw: Sequence[int], kind: str = "hann", device=None) -> torch.Tensor:
    """(h, w) float32 tile weights: a separable sin^2 (Hann) window, > 0 everywhere, or all ones."""
    if kind not in WINDOWS:
        raise ValueError(f"window {kind!r} is unknown; valid windows: {', '.join(WINDOWS)}")
    h, w = crop_hw
    if kind == "uniform":
        return torch.ones(h, w, device=device)

    def hann(n: int) -> torch.Tensor:
        # Half-sample offset: symmetric, and the first and last weights are small but not zero.
        return torch.sin(math.pi * (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n) ** 2

    return torch.outer(hann(h), hann(w)).float()


def reflect_indices(length: int, before: int, after: int, device=None) -> torch.Tensor:
    """Indices that pad an axis of `length` by reflection (as numpy.pad mode='reflect', any padding size)."""
    index = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = index.remainder(period)
    return torch.where(index >= length, period - index, index)


def pad_to_crop(images: torch.Tensor, crop_hw: Sequence[int], mode: str = "mean") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, h, w) up to at least crop_hw, centred (the odd pixel below / right, as MSeg).

    mode "mean" fills with 0, the mean colour of a normalised image; "reflect" mirrors the image.
    Returns the padded images and the (top, left) offset of the original inside them.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad_mode {mode!r} is unknown; valid pad modes: {', '.join(PAD_MODES)}")
    h, w = images.shape[-2:]
    pad_h, pad_w = max(crop_hw[0] - h, 0), max(crop_hw[1] - w, 0)
    if not pad_h and not pad_w:
        return images, (0, 0)
    top, left = pad_h // 2, pad_w // 2
    if mode == "mean":
        padded = F.pad(images, (left, pad_w - left, top, pad_h - top), value=0.0)
    else:
        rows = reflect_indices(h, top, pad_h - top, device=images.device)
        cols = reflect_indices(w, left, pad_w - left, device=images.device)
        padded = images[..., rows, :][..., cols]
    return padded, (top, left)


def resize_images(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of normalised images (no antialiasing, as the training warp)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False)


def upsample_chunked(x: torch.Tensor, size: Sequence[int], *, class_chunk: int = 32,
                     out: torch.Tensor | None = None, accumulate: bool = False) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) to `size`, `class_chunk` channels at a time, into `out`.

    Channels are independent under bilinear interpolation, so the result equals one F.interpolate
    call; only a chunk-sized temporary is made. With `accumulate` the result is added to `out`.
    """
    n, c = x.shape[:2]
    size = tuple(size)
    if out is None:
        out = torch.zeros(n, c, *size, dtype=torch.float32, device=x.device) if accumulate else \
            torch.empty(n, c, *size, dtype=torch.float32, device=x.device)
    same = tuple(x.shape[-2:]) == size
    for c0 in range(0, c, class_chunk):
        part = x[:, c0:c0 + class_chunk].float()
        if not same:
            part = F.interpolate(part, size=size, mode="bilinear", align_corners=False)
        if accumulate:
            out[:, c0:c0 + class_chunk] += part
        else:
            out[:, c0:c0 + class_chunk] = part
    return out


def softmax_rows_(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Softmax over dim 1 of (N, C, H, W) in place, `rows` rows at a time (no full-size temporary)."""
    for r0 in range(0, x.shape[-2], rows):
        block = x[..., r0:r0 + rows, :]
        block.copy_(block.softmax(dim=1))
    return x


def logits_to_probs(logits: torch.Tensor, hw: Sequence[int], *, class_chunk: int = 32) -> torch.Tensor:
    """(N, C, h, w) logits of an (h, w) input -> (N, C, h, w) float32 probabilities (softmax)."""
    h, w = hw
    if logits.dim() != 4:
        raise ValueError(f"forward must return (N, C, H, W) logits, got shape {tuple(logits.shape)}")
    if tuple(logits.shape[-2:]) != (h, w):
        raise ValueError(f"logits of a {h}x{w} input are {tuple(logits.shape[-2:])}: forward must return logits at "
                         f"the input size (a Segmentor's predict_logits)")
    n, c = logits.shape[:2]
    probs = torch.empty(n, c, h, w, dtype=torch.float32, device=logits.device)
    probs.copy_(logits)
    # Blocks of rows holding about as many values as one upsampling chunk.
    return softmax_rows_(probs, rows=max(1, math.ceil(h * class_chunk / c)))


def confidence(probs: torch.Tensor) -> torch.Tensor:
    """Per-pixel confidence: the largest class probability, (C, H, W) -> (H, W)."""
    return probs.max(dim=0).values


# ------------------------------------------------------------------------------------------------
# One image at one size, then all scales and flips
# ------------------------------------------------------------------------------------------------


def whole_probs(forward: Forward, image: torch.Tensor, *, class_chunk: int = 32) -> torch.Tensor:
    """(3, h, w) normalised image -> (C, h, w) probabilities from one forward pass."""
    logits = forward(image.unsqueeze(0))
    return logits_to_probs(logits, image.shape[-2:], class_chunk=class_chunk)[0]


def slide_probs(forward: Forward, image: torch.Tensor, *, crop_hw: Sequence[int], stride_hw: Sequence[int],
                tile_batch: int = 4, window: str = "hann", pad_mode: str = "mean",
                class_chunk: int = 32) -> torch.Tensor:
    """(3, h, w) normalised image -> (C, h, w) probabilities blended from crop-sized tiles.

    The image is padded to the crop where smaller; tiles go through `forward` `tile_batch` at a time;
    each tile's probabilities are weighted by `blend_window` and the sum is divided by the summed weights.
    """
    h, w = image.shape[-2:]
    padded, (top, left) = pad_to_crop(image.unsqueeze(0), crop_hw, pad_mode)
    ph, pw = padded.shape[-2:]
    ch, cw = crop_hw
    positions = [(y, x) for y in tile_starts(ph, ch, stride_hw[0]) for x in tile_starts(pw, cw, stride_hw[1])]
    weight = blend_window((ch, cw), window, device=image.device)
    weight_sum = torch.zeros(ph, pw, device=image.device)
    total = None
    for b0 in range(0, len(positions), tile_batch):
        batch = positions[b0:b0 + tile_batch]
        tiles = torch.cat([padded[..., y:y + ch, x:x + cw] for y, x in batch])
        probs = logits_to_probs(forward(tiles), (ch, cw), class_chunk=class_chunk)
        if total is None:
            total = torch.zeros(probs.shape[1], ph, pw, device=image.device)
        for (y, x), tile in zip(batch, probs):
            total[:, y:y + ch, x:x + cw].addcmul_(tile, weight)
            weight_sum[y:y + ch, x:x + cw] += weight
    total /= weight_sum
    return total[:, top:top + h, left:left + w]


def predict_probs(forward: Forward, image: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """(3, H, W) normalised image -> (C, H, W) float32 probabilities, averaged over scales and flips.

    Each scale (and its mirror with `settings.flip`) is predicted whole or by tiles, its
    probabilities resized to H x W and added; the sum is divided by the number of passes.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a normalised (3, H, W) tensor, got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if settings.mode == "whole":
        def one_pass(x):
            return whole_probs(forward, x, class_chunk=settings.class_chunk)
    else:
        def one_pass(x):
            return slide_probs(forward, x, crop_hw=settings.crop_size, stride_hw=settings.stride,
                               tile_batch=settings.tile_batch, window=settings.window, pad_mode=settings.pad_mode,
                               class_chunk=settings.class_chunk)
    total = None
    passes = 0
    for size in settings.scaled_sizes((height, width)):
        scaled = resize_images(image.unsqueeze(0), size)[0]
        for flipped in ((False, True) if settings.flip else (False,)):
            probs = one_pass(scaled.flip(-1)) if flipped else one_pass(scaled)
            if flipped:
                probs = probs.flip(-1)
            if total is None and tuple(probs.shape[-2:]) == (height, width):
                total = probs  # a fresh tensor (or a view of one): accumulate into it, saving a copy
            else:
                if total is None:
                    total = torch.zeros(probs.shape[0], height, width, device=image.device)
                upsample_chunked(probs.unsqueeze(0), (height, width), class_chunk=settings.class_chunk,
                                 out=total.unsqueeze(0), accumulate=True)
            passes += 1
    return total.div_(passes)
