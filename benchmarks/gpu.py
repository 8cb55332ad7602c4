"""GPU figures in one command (issue 12): the training step of HRNet-W48 at 713x713 (fp32 vs bf16 +
channels_last, the largest batch that fits, crops/s and peak memory), the loader feeding it (how many
workers keep that step busy), validation memory with 194 classes on a 1080p frame, and 1080p inference
frames per second. Prints a table and writes JSON.

Run on a GPU machine:   python benchmarks/gpu.py --out gpu.json          (about 5 minutes on an H200)
On the CPU, tiny sizes: python benchmarks/gpu.py --tiny --out gpu.json   (the script's own check)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import make_frames  # noqa: E402  (benchmarks/pipeline.py: 1080p street-like frames)

from unifiedseg.data.dataset import SegmentationDataset, collate  # noqa: E402
from unifiedseg.data.labels import build_label_mapper  # noqa: E402
from unifiedseg.data.listfile import read_list  # noqa: E402
from unifiedseg.data.registry import DatasetRegistry  # noqa: E402
from unifiedseg.data.transforms import TrainTransform  # noqa: E402
from unifiedseg.losses import build_losses  # noqa: E402
from unifiedseg.models import build_model  # noqa: E402
from unifiedseg.models.segmentor import Segmentor, total_loss  # noqa: E402
from unifiedseg.taxonomy import TaxonomyConverter  # noqa: E402

NUM_CLASSES = 194  # MSeg's unified taxonomy


@dataclass
class Sizes:
    """What is measured: full sizes on a GPU, tiny ones for the CPU check."""

    backbone: str
    crop: int
    batch_sizes: tuple[int, ...]  # tried largest first; the first that fits is measured
    warmup: int
    steps: int
    frame: tuple[int, int]  # (H, W) for validation memory and inference fps
    inference_runs: int
    loader_crops: int
    loader_workers: tuple[int, ...]
    frames: int


FULL = Sizes("hrnet_w48", 713, (32, 24, 16, 12, 8, 4, 2), 3, 10, (1080, 1920), 20, 64, (1, 2, 4, 8, 12, 16), 8)
TINY = Sizes("hrnet_w18_small", 64, (4, 2), 1, 2, (96, 160), 2, 4, (1,), 2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def build(sizes: Sizes, device: torch.device, *, losses: bool, channels_last: bool = False) -> Segmentor:
    """HRNet in a Segmentor, as training and inference use it: uint8 pixels in, normalised inside, the
    194-class cross-entropy loss set."""
    network = build_model({"type": "hrnet", "backbone": sizes.backbone, "num_classes": NUM_CLASSES})
    loss_set = build_losses({"type": "CrossEntropyLoss"}, NUM_CLASSES) if losses else None
    return Segmentor(network=network, loss_set=loss_set, num_classes=NUM_CLASSES,
                     channels_last=channels_last).to(device)


def train_step_rate(sizes: Sizes, device: torch.device, mode: str) -> dict:
    """Crops/s of Segmentor.forward_train (normalisation, forward, loss, predictions for training mIoU)
    + backward + SGD step on uint8 batches, at the largest batch that fits."""
    bf16 = mode == "bf16 + channels_last"
    for batch_size in sizes.batch_sizes:
        model = build(sizes, device, losses=True, channels_last=bf16)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        batch = {"image": torch.randint(0, 256, (batch_size, 3, sizes.crop, sizes.crop), dtype=torch.uint8, device=device),
                 "label": torch.randint(0, NUM_CLASSES, (batch_size, sizes.crop, sizes.crop), device=device),
                 "dataset": ["synthetic"] * batch_size}
        reset_peak(device)
        try:
            for step in range(sizes.warmup + sizes.steps):
                if step == sizes.warmup:
                    synchronize(device)
                    start = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    outputs = model.forward_train(batch)
                total_loss(outputs).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            synchronize(device)
            seconds = time.perf_counter() - start
        except RuntimeError as err:
            if not out_of_memory(err):
                raise
            del model, optimizer, batch
            reset_peak(device)
            continue
        return {"mode": mode, "batch": batch_size, "crops_per_s": batch_size * sizes.steps / seconds,
                "step_s": seconds / sizes.steps, "peak_gib": peak_gib(device)}
    raise RuntimeError(f"no batch size of {sizes.batch_sizes} fits ({mode})")


def loader_rate(sizes: Sizes, workers: int, folder: Path) -> float:
    """Crops/s that `workers` loader processes deliver from 1080p JPEG frames (MSeg's 1080p augmentation,
    uint8 crops, as training loaders send them)."""
    info = DatasetRegistry.load().get("cityscapes-34")  # labelIds on disk
    converter = TaxonomyConverter.from_tsv("mseg", train_datasets=["cityscapes-34"], test_datasets=[])
    dataset = SegmentationDataset(name=info.name, entries=read_list(folder / "list.txt", folder),
                                  label_mapper=build_label_mapper(info, converter),
                                  transform=TrainTransform(short_side=1080, crop_size=(sizes.crop, sizes.crop)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=collate,
                                         sampler=torch.utils.data.RandomSampler(dataset, replacement=True,
                                                                                num_samples=sizes.loader_crops + workers))
    iterator = iter(loader)
    for _ in range(workers):  # each worker's start-up is not the steady rate
        next(iterator)
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count / (time.perf_counter() - start)


@torch.no_grad()
def validation_memory(sizes: Sizes, device: torch.device, bf16: bool) -> dict:
    """Peak memory of a whole-frame forward with 194 classes (logits at full size) and its argmax."""
    model = build(sizes, device, losses=False).eval()
    image = torch.randint(0, 256, (1, 3, *sizes.frame), dtype=torch.uint8, device=device)
    reset_peak(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        prediction = model.predict_logits(image).argmax(1)
    synchronize(device)
    return {"frame": list(sizes.frame), "precision": "bf16" if bf16 else "fp32", "peak_gib": peak_gib(device),
            "prediction_shape": list(prediction.shape)}


@torch.no_grad()
def inference_fps(sizes: Sizes, device: torch.device) -> dict:
    model = build(sizes, device, losses=False, channels_last=True).eval()
    image = torch.randint(0, 256, (1, 3, *sizes.frame), dtype=torch.uint8, device=device)
    for run in range(sizes.inference_runs + 2):
        if run == 2:
            synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            model.predict_logits(image).argmax(1)
    synchronize(device)
    return {"frame": list(sizes.frame), "precision": "bf16 + channels_last",
            "fps": sizes.inference_runs / (time.perf_counter() - start)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on whatever device there is (the CPU check)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    results = {"device": name, "torch": torch.__version__, "sizes": sizes.__dict__,
               "train": [train_step_rate(sizes, device, mode) for mode in ("fp32", "bf16 + channels_last")]}
    fastest = max(r["crops_per_s"] for r in results["train"])
    with tempfile.TemporaryDirectory() as tmp:
        make_frames(Path(tmp), sizes.frames)
        rates = {}
        for workers in sizes.loader_workers:
            if workers > (os.cpu_count() or 1):
                break
            rates[workers] = loader_rate(sizes, workers, Path(tmp))
            if rates[workers] >= fastest:
                break
    per_worker = rates[min(rates)] / min(rates)
    results["loader"] = {"crops_per_s_by_workers": rates, "needed_for_fastest_step": math.ceil(fastest / per_worker)}
    results["validation"] = [validation_memory(sizes, device, bf16) for bf16 in (False, True)]
    results["inference"] = inference_fps(sizes, device)

    print(f"device: {name}")
    for r in results["train"]:
        peak = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "-"
        print(f"train {sizes.backbone} {sizes.crop}x{sizes.crop} {r['mode']:<22} batch {r['batch']:>3}  "
              f"{r['crops_per_s']:8.1f} crops/s  peak {peak}")
    print(f"loader crops/s by workers: {', '.join(f'{w}: {v:.1f}' for w, v in rates.items())}; "
          f"workers needed for {fastest:.1f} crops/s: {results['loader']['needed_for_fastest_step']}")
    for r in results["validation"]:
        peak = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "-"
        print(f"validation {r['frame'][0]}x{r['frame'][1]} {NUM_CLASSES} classes {r['precision']}: peak {peak}")
    print(f"inference {sizes.frame[0]}x{sizes.frame[1]}: {results['inference']['fps']:.1f} fps")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
