"""Every training config key, with its default and what it means, in one place.

Sections with their own builder (`model`, `loss`, `optimizer`, `schedule`, `swa`, `clip_grad`) are
mappings checked key by key by that builder's `check_*` function when the config loads; their keys are
listed in the builder's module docstring (unifiedseg/models/build.py, unifiedseg/losses/build.py,
unifiedseg/optim/*.py). Everything else is declared here: an unknown key is an error that names it and
suggests the closest valid one, a value of the wrong type an error naming the key, and the rules the
types do not say (ranges, choices, sampling, augmentation, ...) are run by unifiedseg/config/checks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from unifiedseg.constants import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class TaxonomyConfig:
    tsv: str = "mseg"  # shipped taxonomy name (mseg, demo) or path to a TSV
    kind: str = "unified"  # unified | naive (names merged where identical) | mseg-naive (MSeg's own naive-merge space, for its released model) | oracle (one dataset in its own taxonomy)


@dataclass
class SamplingConfig:
    mode: str = "mixed"  # mixed: every batch from all datasets | per_rank: MSeg's one dataset per rank
    weighting: Optional[str] = None  # mixed: equal (default) | size | temperature | explicit (with weights)
    temperature: Optional[float] = None  # weighting=temperature: p_d proportional to size_d ** (1 / T) (default 2)
    weights: Optional[dict[str, float]] = None  # explicit per-dataset weights
    dataset_gpu_mapping: Optional[dict[str, list[int]]] = None  # per_rank: {dataset: [ranks]}


@dataclass
class AugmentationConfig:
    short_side: Optional[int] = 1080  # MSeg: resize the short side to 480 / 720 / 1080 first
    scale_range: Optional[list[float]] = field(default_factory=lambda: [0.5, 2.0])  # random scale after that
    ratio_range: Optional[list[float]] = None  # MMSeg alternative: random ratio of base_size (scale_range: null)
    base_size: Optional[Any] = None  # int short side or [long, short] for ratio_range
    scales: Optional[list[Any]] = None  # MMSeg alternative: one of these sizes at random (scale_range: null)
    rotate_range: list[float] = field(default_factory=lambda: [-10.0, 10.0])  # degrees
    rotate_p: float = 0.5
    blur_p: float = 0.5  # 5x5 Gaussian blur
    blur_kernel: int = 5
    flip_p: float = 0.5  # horizontal flip
    crop_size: list[int] = field(default_factory=lambda: [713, 713])  # MSeg: 473 / 593 / 713
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # RGB, 0-255
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))


@dataclass
class ValidationConfig:
    datasets: Optional[list[str]] = None  # validated in the training label space; null = the training datasets
    split: str = "val"
    interval: int = 0  # every this many iterations (0: only at the end)
    short_side: Optional[int] = None  # resize the short side for validation (null: keep the size)
    max_images: Optional[int] = None  # per dataset, to keep periodic validation quick (null: all)


@dataclass
class DataConfig:
    root: Optional[str] = None  # data root; null: $UNIFIEDSEG_DATA_ROOT
    label_source: str = "prepared"  # prepared: files MSeg's preparation wrote | raw: the publishers' files, MSeg's relabeling on the fly
    relabel_strict: bool = False  # raw: each relabel record changes only pixels of its original class (MSeg: all of the segment)
    generate_demo: bool = False  # write the demo datasets into root first when they are absent
    registry_files: list[str] = field(default_factory=list)  # extra dataset registry YAML files
    train_datasets: list[str] = field(default_factory=list)  # registry names, trained on together
    train_split: str = "train"
    batch_size: int = 2  # crops per process and step
    num_workers: int = 2  # loader processes per training process
    on_bad_sample: str = "error"  # error: stop naming the file | skip: log it, count it, use the next sample
    reduced_decoding: bool = True  # decode JPEGs at 1/2, 1/4, 1/8 when the sampled scale allows
    normalize_on_device: bool = False  # no-op, kept for old configs: loaders always send uint8 crops and the Segmentor normalises on the device
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    val: ValidationConfig = field(default_factory=ValidationConfig)


@dataclass
class InferenceConfig:
    """How tools/test.py, tools/demo.py and Predictor predict an image (unifiedseg/config/inference.py; what
    each setting does and costs: unifiedseg/inference/tiling.py). Flags and arguments override it. MSeg's
    test settings: config/mseg_zoo/."""

    mode: str = "whole"  # whole: one pass per image | slide: tiles of crop_size every stride pixels
    short_side: Optional[int] = None  # resize the short side first (MSeg: 360 / 720 / 1080); null keeps the size
    crop_size: Optional[Any] = None  # slide tile, int or [h, w] (MSeg: 713); null: data.augmentation.crop_size
    stride: Optional[Any] = None  # slide step, int or [h, w]; null: 2/3 of the crop (MSeg)
    scales: list[float] = field(default_factory=lambda: [1.0])  # averaged (MSeg multi-scale: 0.5 ... 1.75)
    flip: bool = False  # also average the mirrored image (2x the passes; MSeg: true)
    tile_batch: int = 4  # tiles per forward call
    window: str = "hann"  # tile blending: hann | uniform (MSeg's plain average)
    pad_mode: str = "mean"  # an image smaller than the crop: mean (colour) | reflect
    class_chunk: int = 32  # classes upsampled at a time (bounds memory on large images)


@dataclass
class TrainConfig:
    max_iters: Optional[int] = None  # optimizer steps; or set num_examples
    num_examples: Optional[int] = None  # crops per dataset (MSeg: 1M or 3M); sets max_iters
    accumulate_grad: int = 1  # micro-batches per optimizer step (effective batch = batch_size * world * this)
    amp: str = "off"  # off | fp16 (GradScaler) | bf16
    opt_level: Optional[str] = None  # MSeg/apex O0..O3, mapped onto amp (see unifiedseg/utils/precision.py)
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    sync_bn: bool = True  # SyncBatchNorm when the world size is above one (CUDA only)
    norm_eval: bool = False  # keep BatchNorm layers in eval mode (frozen statistics), e.g. for tiny batches
    log_interval: int = 10  # iterations between log lines
    checkpoint_interval: int = 1000  # iterations between checkpoints (0: only the final one)
    keep_checkpoints: int = 3  # periodic checkpoints kept besides the final one
    resume: Optional[str] = "auto"  # auto: latest checkpoint in work_dir | a checkpoint path | null
    load_from: Optional[str] = None  # start from these weights (same classes and model; e.g. an imported MSeg model) with a fresh optimizer, schedule and iteration; ignored when there is a checkpoint to resume
    max_nonfinite_steps: int = 5  # stop after this many non-finite losses in a row
    hooks: list[dict[str, Any]] = field(default_factory=list)  # [{type: TimeLimitHook, seconds: 3600}]: registered hook types (unifiedseg/engine/hooks.py)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    seed: int = 0


@dataclass
class Config:
    work_dir: str = "work_dirs/run"  # checkpoints, logs, resolved config, final_metrics.json
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"type": "hrnet", "backbone": "hrnet_w48"})
    loss: dict[str, Any] = field(default_factory=lambda: {"loss_decode": {"type": "CrossEntropyLoss"}})
    optimizer: dict[str, Any] = field(default_factory=lambda: {"type": "SGD", "lr": 0.01, "momentum": 0.9,
                                                                "weight_decay": 1e-4})
    schedule: dict[str, Any] = field(default_factory=lambda: {"policy": "poly", "power": 0.9, "min_lr": 0.0})
    swa: Optional[dict[str, Any]] = None  # {start_iter, swa_lr, ...}: stochastic weight averaging
    clip_grad: Optional[dict[str, Any]] = None  # {max_norm, norm_type}
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
