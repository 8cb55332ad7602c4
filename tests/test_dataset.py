"""SegmentationDataset and MultiDataset on the generated demo data: decoding, augmentation, label
mapping into the unified space, reproducible draws and the bad-sample policy."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unifiedseg.data.dataset import KeyedBatchSampler, MultiDataset, SampleKey, SegmentationDataset, collate
from unifiedseg.data.decode import BadSampleError
from unifiedseg.data.listfile import ListEntry
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.sampling import MultiDatasetSampler
from unifiedseg.data.transforms import TrainTransform, ValTransform
from unifiedseg.taxonomy import TaxonomyConverter


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def converter():
    return TaxonomyConverter.from_tsv("demo")


def make_dataset(demo_root, name, converter, split="train", **kwargs):
    info = DatasetRegistry.load().get(name)
    transform = kwargs.pop("transform", TrainTransform(short_side=64, crop_size=(48, 48)))
    return SegmentationDataset.from_registry(info, split, demo_root, converter=converter, transform=transform, **kwargs)


def test_train_item_is_an_augmented_crop_in_the_unified_space(demo_root, converter):
    dataset = make_dataset(demo_root, "demo-city", converter)
    assert len(dataset) == 6
    item = dataset[SampleKey("demo-city", 2, iteration=5, slot=1)]
    assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.uint8
    assert item["label"].shape == (48, 48) and item["label"].dtype == torch.uint8
    values = set(item["label"].unique().tolist())
    assert values <= set(range(converter.num_classes)) | {255}
    # demo-city's `vehicle` is one-to-many (car or truck): never a hard label
    assert converter.class_names.index("car") not in values and converter.class_names.index("truck") not in values
    assert item["dataset"] == "demo-city" and item["bad_samples"] == []


def test_a_uint16_label_png_gives_the_same_training_crop_as_its_uint8_version(demo_root, converter, tmp_path):
    # uint16 releases are mapped before the warp, uint8 ones after it: both must map exactly once.
    dataset = make_dataset(demo_root, "demo-city", converter)
    entry = dataset.entries[0]
    label16 = tmp_path / "label16.png"
    cv2.imwrite(str(label16), cv2.imread(str(entry.label), cv2.IMREAD_UNCHANGED).astype(np.uint16))
    wide_disk = make_dataset(demo_root, "demo-city", converter)
    wide_disk.entries = [ListEntry(entry.image, label16, entry.line)]
    key = SampleKey("demo-city", 0, iteration=2, slot=0)
    expected, got = dataset[key]["label"], wide_disk[key]["label"]
    assert torch.equal(got, expected) and len(expected.unique()) > 2


def test_a_taxonomy_with_its_own_class_order_maps_disk_releases_by_name(demo_root, converter, tmp_path):
    # A custom TSV may list demo-city's classes in another order (its companion YAML names the list):
    # the disk release's remap table must then target those ids, so the universal labels are the same.
    shipped = REPO / "taxonomy"
    names = (shipped / "dataset_lists" / "demo-city" / "demo-city_names.txt").read_text().split()
    (tmp_path / "reversed.txt").write_text("\n".join(reversed(names)) + "\n")
    (tmp_path / "mine.tsv").write_bytes((shipped / "demo.tsv").read_bytes())
    (tmp_path / "mine.yaml").write_text("names: {demo-city: reversed.txt}\n")
    mine = TaxonomyConverter.from_tsv(tmp_path / "mine.tsv")
    assert mine.dataset_class_names("demo-city") == names[::-1]
    val = ValTransform()
    expected = make_dataset(demo_root, "demo-city", converter, split="val", transform=val)[0]["label"]
    got = make_dataset(demo_root, "demo-city", mine, split="val", transform=val)[0]["label"]
    assert torch.equal(got, expected) and len(expected.unique()) > 3


def test_same_key_same_crop_and_another_draw_differs(demo_root, converter):
    dataset = make_dataset(demo_root, "demo-ade", converter)
    key = SampleKey("demo-ade", 1, iteration=3, slot=0)
    first, again = dataset[key], dataset[key]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    other = dataset[key._replace(iteration=4)]
    assert not torch.equal(first["image"], other["image"])


def test_val_item_keeps_the_whole_image_in_the_datasets_own_ids(demo_root):
    info = DatasetRegistry.load().get("demo-camvid")
    dataset = SegmentationDataset.from_registry(info, "val", demo_root, transform=ValTransform())
    item = dataset[0]
    assert item["image"].shape == (3, 128, 192)
    own_names = TaxonomyConverter.from_tsv("demo").dataset_class_names("demo-camvid")
    assert set(item["label"].unique().tolist()) <= set(range(len(own_names))) | {255}


def test_bad_sample_is_an_error_naming_the_file_or_skipped_and_reported(demo_root, converter, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(demo_root / "demo-city", root / "demo-city")
    dataset = make_dataset(root, "demo-city", converter)
    broken = dataset.entries[1].image
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.raises(BadSampleError) as err:
        dataset[SampleKey("demo-city", 1)]
    assert str(broken) in str(err.value) and "list line 2" in str(err.value) and "on_bad_sample=skip" in str(err.value)
    skipping = make_dataset(root, "demo-city", converter, on_bad_sample="skip")
    item = skipping[SampleKey("demo-city", 1)]
    assert item["path"] == str(skipping.entries[2].image)
    assert len(item["bad_samples"]) == 1 and str(broken) in item["bad_samples"][0]
    with pytest.raises(ValueError, match="data.on_bad_sample must be one of error, skip"):
        make_dataset(root, "demo-city", converter, on_bad_sample="ignore")


def test_label_outside_the_taxonomy_is_a_bad_sample(demo_root, converter, tmp_path):
    import cv2

    root = tmp_path / "data"
    shutil.copytree(demo_root / "demo-ade", root / "demo-ade")
    dataset = make_dataset(root, "demo-ade", converter)
    label_path = dataset.entries[0].label
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    label[0, :3] = 77
    cv2.imwrite(str(label_path), label)
    with pytest.raises(BadSampleError, match=r"label ids 77 \(3 px\) are outside demo-ade's 8 classes"):
        dataset[SampleKey("demo-ade", 0)]


def test_multidataset_loader_follows_the_sampler(demo_root, converter):
    datasets = [make_dataset(demo_root, name, converter) for name in ("demo-city", "demo-ade")]
    multi = MultiDataset(datasets)
    sampler = MultiDatasetSampler(dataset_sizes=multi.sizes(), batch_size=4, max_iters=3, seed=1)
    loader = torch.utils.data.DataLoader(multi, batch_sampler=KeyedBatchSampler(sampler, start_iter=1),
                                         collate_fn=collate, num_workers=0)
    batches = list(loader)
    assert len(batches) == 2
    expected = [name for name, _ in sampler.batch_at(1)]
    assert batches[0]["dataset"] == expected
    assert batches[0]["image"].shape == (4, 3, 48, 48) and batches[0]["label"].shape == (4, 48, 48)
    resumed = next(iter(torch.utils.data.DataLoader(multi, batch_sampler=KeyedBatchSampler(sampler, start_iter=1),
                                                    collate_fn=collate)))
    assert torch.equal(resumed["image"], batches[0]["image"])


def test_reduced_decoding_gives_the_same_labels(demo_root, converter):
    transform = TrainTransform(short_side=32, scale_range=(0.5, 0.5), crop_size=(16, 16), rotate_p=0, blur_p=0)
    reduced = make_dataset(demo_root, "demo-ade", converter, transform=transform)
    full = make_dataset(demo_root, "demo-ade", converter, transform=transform, reduced_decoding=False)
    key = SampleKey("demo-ade", 0, 0, 0)
    a, b = reduced[key], full[key]
    assert torch.equal(a["label"], b["label"])
    assert np.abs(a["image"].numpy().astype(int) - b["image"].numpy()).mean() < 0.25 * 58  # 1/4 std, 0-255 scale
