"""Label spaces of more than 255 classes, end to end: uint16 label maps with ignore label 65535 from the
label tables through augmentation, the losses (hard and partial), validation, tools/test.py and tools/demo.py.

Two generated datasets of 200 classes each (`wide-a`, `wide-b`). In their naive merge (400 classes)
b_j is class 200 + j, so b055 is class 255, the ignore label of a uint8 map. In the unified TSV (300
universal classes) a_i is class i and b_j (j < 198) class 100 + j, so b155 is class 255; b198 is
one-to-many (`~b198` in the rows of classes 298 and 299: partial label 300, the first set after the
classes); b199 sits in the unlabeled row. Label 255 on disk is unlabeled.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unifiedseg.cli import demo as demo_cli
from unifiedseg.cli import test as test_cli
from unifiedseg.config import load_config
from unifiedseg.data.dataset import SegmentationDataset
from unifiedseg.data.listfile import ListEntry
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.transforms import TrainTransform, ValTransform
from unifiedseg.engine.launch import run_training
from unifiedseg.engine.trainer import Hook
from unifiedseg.taxonomy import build_converter
from unifiedseg.taxonomy.converter import split_partial_labels

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "train" / "demo" / "unified.yaml"
NAMES = {"wide-a": [f"a{i:03d}" for i in range(200)], "wide-b": [f"b{j:03d}" for j in range(200)]}
# Vertical bands of each label map (dataset ids; 255 = unlabeled on disk).
BANDS = {"wide-a": [0, 199, 100, 255], "wide-b": [55, 155, 198, 199, 255]}
HEIGHT, WIDTH = 40, 50
IGNORE = 65535


def band_map(ids: list[int], dtype=np.uint8) -> np.ndarray:
    label = np.zeros((HEIGHT, WIDTH), dtype=dtype)
    for k, column in enumerate(np.array_split(np.arange(WIDTH), len(ids))):
        label[:, column] = ids[k]
    return label


def tsv_text() -> str:
    rows = []
    for u in range(300):
        a = f"a{u:03d}" if u < 200 else ""
        b = f"b{u - 100:03d}" if 100 <= u < 298 else ("~b198" if u >= 298 else "")
        rows.append(f"wide\t{a}\t{b}\tu{u:03d}")
    rows.append("\t\tb199\tunlabeled")
    return "Parent Category\twide-a\twide-b\tuniversal\n" + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def wide_root(tmp_path_factory) -> Path:
    """A data root with both datasets (4 train, 2 val images each), the TSV and a registry file."""
    root = tmp_path_factory.mktemp("wide")
    for dataset, names in NAMES.items():
        lists = root / "dataset_lists" / dataset
        lists.mkdir(parents=True)
        (lists / f"{dataset}_names.txt").write_text("\n".join(names) + "\n")
        folder = root / dataset
        folder.mkdir()
        label = band_map(BANDS[dataset])
        rng = np.random.default_rng(len(dataset))
        for split, count in (("train", 4), ("val", 2)):
            lines = []
            for n in range(count):
                image = (label[..., None] * np.array([1, 3, 7]) % 256).astype(np.uint8)
                image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{split}{n}.png"), image)
                cv2.imwrite(str(folder / f"{split}{n}_label.png"), label)
                lines.append(f"{split}{n}.png {split}{n}_label.png")
            (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "wide.tsv").write_text(tsv_text())
    (root / "datasets.yaml").write_text("".join(
        f"{d}: {{root: {d}, lists: {{train: train.txt, val: val.txt}}, num_classes: 200}}\n" for d in NAMES))
    return root


def dataset(root: Path, name: str, kind: str, transform, partial: bool = False) -> SegmentationDataset:
    converter = build_converter(kind, root / "wide.tsv", train_datasets=list(NAMES), test_datasets=[])
    info = DatasetRegistry.load(extra_files=[root / "datasets.yaml"], include_shipped=False).get(name)
    return SegmentationDataset.from_registry(info, "val", root, converter=converter, partial=partial,
                                             transform=transform)


def test_the_converters_choose_uint16_maps(wide_root):
    naive = build_converter("naive", wide_root / "wide.tsv", list(NAMES), [])
    unified = build_converter("unified", wide_root / "wide.tsv", list(NAMES), [])
    assert (naive.num_classes, naive.label_dtype, naive.ignore_index) == (400, np.uint16, IGNORE)
    assert (unified.num_classes, unified.label_dtype, unified.ignore_index) == (300, np.uint16, IGNORE)
    assert unified.partial_sets() == [frozenset({298, 299})]


@pytest.mark.parametrize("kind, partial, expected", [
    ("naive", False, [255, 355, 398, 399, IGNORE]),
    ("unified", False, [155, 255, IGNORE, IGNORE, IGNORE]),
    ("unified", True, [155, 255, 300, IGNORE, IGNORE]),
])
def test_validation_items_carry_wide_ids(wide_root, kind, partial, expected):
    item = dataset(wide_root, "wide-b", kind, ValTransform(), partial)[0]
    assert item["label"].dtype == torch.int32  # uint16 ids: int32 tensors, converted on the device
    assert torch.equal(item["label"], torch.from_numpy(band_map(expected, np.int32)))


def test_training_crops_pad_with_65535_and_stay_int32_for_the_device(wide_root):
    # A crop larger than the image (scale 0.5): the padding is the ignore label, never class 255.
    transform = TrainTransform(scale_range=(0.5, 0.5), rotate_p=0, blur_p=0, flip_p=0, crop_size=(48, 48))
    item = dataset(wide_root, "wide-b", "naive", transform)[0]
    label = item["label"]
    assert label.dtype == torch.int32 and label.shape == (48, 48)
    assert set(label.unique().tolist()) == {255, 355, 398, 399, IGNORE}
    assert (label[-1] == IGNORE).all() and (label[:, -1] == IGNORE).all()  # 20x25 of image in a 48x48 crop


def test_a_uint16_label_png_maps_once_into_the_wide_space(wide_root, tmp_path):
    # uint16 disk labels are mapped before the warp (uint8 ones after it); the crop must not be mapped again.
    transform = TrainTransform(scale_range=(0.5, 0.5), rotate_p=0, blur_p=0, flip_p=0, crop_size=(48, 48))
    uint8_disk = dataset(wide_root, "wide-b", "naive", transform)
    uint16_disk = dataset(wide_root, "wide-b", "naive", transform)
    entry = uint8_disk.entries[0]
    label16 = tmp_path / "label16.png"
    cv2.imwrite(str(label16), band_map([55, 155, 198, 199], np.uint16))  # no 255: uint16 releases have no unlabeled id
    cv2.imwrite(str(tmp_path / "label8.png"), band_map([55, 155, 198, 199]))
    uint8_disk.entries = [ListEntry(entry.image, tmp_path / "label8.png", 1)]
    uint16_disk.entries = [ListEntry(entry.image, label16, 1)]
    expected = uint8_disk[0]["label"]
    assert set(expected.unique().tolist()) == {255, 355, 398, 399, IGNORE}
    assert torch.equal(uint16_disk[0]["label"], expected)


def test_split_partial_labels_with_the_wide_ignore_label():
    labels = torch.tensor([255, 299, 300, IGNORE])
    hard, partial = split_partial_labels(labels, 300, IGNORE)
    assert hard.tolist() == [255, 299, IGNORE, IGNORE] and partial.tolist() == [IGNORE, IGNORE, 0, IGNORE]


class RecordLabels(Hook):
    """Collects the hard labels that reached the loss at each step."""

    def __init__(self):
        self.values: set[int] = set()

    def after_step(self, trainer):
        for _, outputs in trainer.result.outputs:
            self.values |= set(outputs["labels"].unique().tolist())


def wide_overrides(root: Path, work_dir: Path, kind: str, *extra: str) -> list[str]:
    return [f"work_dir={work_dir}", f"data.root={root}", "data.generate_demo=false", f"taxonomy.tsv={root / 'wide.tsv'}",
            f"taxonomy.kind={kind}", "data.train_datasets=[wide-a, wide-b]", f"data.registry_files=[{root / 'datasets.yaml'}]",
            "data.batch_size=2", "data.num_workers=0", "data.augmentation.short_side=40",
            "data.augmentation.crop_size=[32, 32]", "data.augmentation.scale_range=[1.0, 1.0]", "data.val.interval=0",
            "train.max_iters=3", "train.log_interval=1", "train.checkpoint_interval=0", "schedule.warmup_iters=1",
            *extra]


def test_naive_merge_of_400_classes_trains_validates_and_evaluates(wide_root, tmp_path):
    work_dir = tmp_path / "naive"
    recorder = RecordLabels()
    metrics = run_training(load_config(DEMO_CONFIG, wide_overrides(wide_root, work_dir, "naive")),
                           extra_hooks=(recorder,))
    # class 255 (b055) and class 399 reached the loss as classes; 65535 was ignored, never a class id
    assert {255, 399} <= recorder.values and recorder.values <= {0, 100, 199, 255, 355, 398, 399, IGNORE}
    final = json.loads((work_dir / "final_metrics.json").read_text())
    assert final["miou"] == metrics["miou"] and 0 <= final["miou"] <= 1
    assert final["datasets"]["wide-b"]["classes_scored"] == NAMES["wide-b"]  # classes 200-399
    out = tmp_path / "test"
    code = test_cli.main(["--config", str(work_dir / "config.yaml"), "--checkpoint",
                          str(work_dir / "checkpoints" / "final.pth"), "--datasets", "wide-b", "--root",
                          str(wide_root), "--out", str(out), "--device", "cpu"])
    assert code == 0
    result = json.loads((out / "results.json").read_text())["datasets"]["wide-b"]
    assert result["space"] == "naive" and result["images"] == 2 and len(result["class_iou"]) == 400
    assert cv2.imread(str(out / "confusion_wide-b.png")) is not None
    # tools/demo.py draws a 400-class prediction: an RGB label PNG (no 256-entry PNG palette holds it)
    code = demo_cli.main(["--config", str(work_dir / "config.yaml"), "--checkpoint",
                          str(work_dir / "checkpoints" / "final.pth"), "--input", str(wide_root / "wide-b" / "val0.png"),
                          "--output", str(tmp_path / "demo"), "--device", "cpu"])
    assert code == 0
    drawn = cv2.imread(str(tmp_path / "demo" / "val0_labels.png"), cv2.IMREAD_UNCHANGED)
    assert drawn.shape == (HEIGHT, WIDTH, 3) and (tmp_path / "demo" / "val0_overlay.jpg").exists()


def test_unified_space_of_300_classes_trains_with_the_partial_label_loss(wide_root, tmp_path):
    work_dir = tmp_path / "unified"
    overrides = wide_overrides(wide_root, work_dir, "unified",
                               "loss.loss_decode=[{type: CrossEntropyLoss}, {type: PartialLabelLoss}]")
    recorder = RecordLabels()
    run_training(load_config(DEMO_CONFIG, overrides), extra_hooks=(recorder,))
    assert 255 in recorder.values and 300 not in recorder.values  # partial ids are split off the hard labels
    records = [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]
    partial = [r["loss_partial"] for r in records if "loss_partial" in r]
    # wide-b crops hold b198 pixels (a fifth of each image) whenever a wide-b image is drawn
    assert partial and max(partial) > 0
