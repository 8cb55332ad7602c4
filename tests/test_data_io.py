"""Dataset registry, list files, decoding with bad-input detection, label mapping, verification, statistics."""

import json

import cv2
import numpy as np
import pytest

from unifiedseg.cli import dataset_stats as stats_cli
from unifiedseg.cli import verify_dataset as verify_cli
from unifiedseg.data.decode import BadSampleError, read_image, read_label
from unifiedseg.data.labels import build_label_mapper
from unifiedseg.data.listfile import ListFileError, read_list
from unifiedseg.data.registry import DatasetInfo, DatasetRegistry, RegistryError, resolve_data_root
from unifiedseg.data.splits import resolve_split
from unifiedseg.data.stats import ClassStats, class_weights, unified_stats
from unifiedseg.data.verify import verify_samples
from unifiedseg.taxonomy import TaxonomyConverter


# ---- registry ------------------------------------------------------------------------------------
def write_registry(path, text):
    path.write_text(text)
    return path


def test_shipped_registry_describes_every_mseg_dataset():
    registry = DatasetRegistry.load()
    info = registry.get("cityscapes-19")
    # MSeg's cityscapes-19 list reads gtFine_19cls/, already in train ids: nothing to remap
    assert (info.root, info.num_classes, info.disk_taxonomy, info.mseg_lists) == ("Cityscapes", 19, None, "cityscapes-19")
    assert registry.get("ade20k-150").root == "ADE20K/ADEChallengeData2016"
    for name in ["ade20k-150-relabeled", "mapillary-public65", "kitti-19", "pascal-context-60", "cityscapes-34"]:
        assert name in registry


def test_registry_miss_suggests_and_lists_names():
    with pytest.raises(RegistryError, match=r"unknown dataset 'cityscape-19'; did you mean 'cityscapes-19'\?; registered datasets: .*ade20k-150"):
        DatasetRegistry.load().get("cityscape-19")


def test_registry_refuses_duplicates_unknown_keys_and_missing_keys(tmp_path):
    entry = "mine:\n  root: Mine\n  lists: {train: t.txt}\n  num_classes: 3\n"
    first = write_registry(tmp_path / "a.yaml", entry)
    second = write_registry(tmp_path / "b.yaml", entry)
    with pytest.raises(RegistryError, match=r"dataset 'mine' is defined twice: in .*a.yaml and in .*b.yaml"):
        DatasetRegistry.load(extra_files=[first, second], include_shipped=False)
    typo = write_registry(tmp_path / "c.yaml", entry.replace("num_classes", "num_class"))
    with pytest.raises(RegistryError, match=r"c.yaml: dataset 'mine': unknown key 'num_class'; did you mean 'num_classes'\?"):
        DatasetRegistry.load(extra_files=[typo], include_shipped=False)
    missing = write_registry(tmp_path / "d.yaml", "mine:\n  root: Mine\n")
    with pytest.raises(RegistryError, match=r"d.yaml: dataset 'mine': missing key\(s\) num_classes"):
        DatasetRegistry.load(extra_files=[missing], include_shipped=False)
    no_lists = write_registry(tmp_path / "e.yaml", "mine:\n  root: Mine\n  num_classes: 3\n")
    with pytest.raises(RegistryError, match=r"e.yaml: dataset 'mine': give 'lists' .* or 'mseg_lists'"):
        DatasetRegistry.load(extra_files=[no_lists], include_shipped=False)
    bad_format = write_registry(tmp_path / "f.yaml", entry + "  label_source: colour\n")
    with pytest.raises(RegistryError, match=r"unknown label_source 'colour'; did you mean 'color'\?; valid: .*id, .*palette"):
        DatasetRegistry.load(extra_files=[bad_format], include_shipped=False)


def test_list_path_and_data_root(tmp_path, monkeypatch):
    info = DatasetInfo(name="mine", root="Mine", lists={"train": "list/train.txt"}, num_classes=3, source="x.yaml")
    assert resolve_split(info, "train", tmp_path).path == tmp_path / "Mine" / "list" / "train.txt"
    with pytest.raises(RegistryError, match="has no 'val' list; its splits: train"):
        resolve_split(info, "val", tmp_path)
    monkeypatch.delenv("UNIFIEDSEG_DATA_ROOT", raising=False)
    with pytest.raises(RegistryError, match="set data.root in the config .* or the environment variable UNIFIEDSEG_DATA_ROOT"):
        resolve_data_root(None)
    monkeypatch.setenv("UNIFIEDSEG_DATA_ROOT", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    with pytest.raises(RegistryError, match="is not a folder"):
        resolve_data_root(tmp_path / "nope")


# ---- list files ----------------------------------------------------------------------------------
def test_list_file_reports_every_malformed_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a.jpg a.png\nb.jpg\n\nc.jpg c.png extra\n")
    with pytest.raises(ListFileError) as err:
        read_list(path, tmp_path)
    assert "2 malformed line(s)" in str(err.value)
    assert "train.txt:2: expected 'image_path label_path', got 1 field(s)" in str(err.value)
    assert "train.txt:4:" in str(err.value)
    path.write_text("a.jpg a.png\n")
    assert read_list(path, tmp_path)[0].label == tmp_path / "a.png"
    with pytest.raises(ListFileError, match="does not exist"):
        read_list(tmp_path / "none.txt", tmp_path)


# ---- decoding ------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "img.png"), image[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "img.jpg"), image[:, :, ::-1])
    label = np.zeros((20, 30), np.uint8)
    label[:, 15:] = 2
    cv2.imwrite(str(tmp_path / "label.png"), label)
    return tmp_path


def test_read_image_gives_rgb_and_reduced_sizes(files):
    image = read_image(files / "img.png")
    assert image.shape == (20, 30, 3) and image[0, 0].tolist() == [200, 0, 0]
    assert read_image(files / "img.jpg", reduce=2).shape == (10, 15, 3)
    assert read_image(files / "img.jpg", reduce=8).shape == (3, 4, 3)  # ceil(20/8), ceil(30/8)
    assert read_image(files / "img.png", reduce=4).shape == (5, 8, 3)


def test_missing_corrupt_and_truncated_files_are_named(files):
    with pytest.raises(BadSampleError, match=r"nope.jpg: file does not exist"):
        read_image(files / "nope.jpg")
    (files / "bad.png").write_bytes(b"not an image at all, but ends IEND....")
    with pytest.raises(BadSampleError, match=r"bad.png: corrupt or unsupported image"):
        read_image(files / "bad.png")
    data = (files / "img.jpg").read_bytes()
    (files / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadSampleError, match=r"cut.jpg: truncated JPEG"):
        read_image(files / "cut.jpg")
    data = (files / "label.png").read_bytes()
    (files / "cut.png").write_bytes(data[:-20])
    with pytest.raises(BadSampleError, match=r"cut.png: truncated PNG"):
        read_label(files / "cut.png")
    (files / "empty.png").write_bytes(b"")
    with pytest.raises(BadSampleError, match="file is empty"):
        read_label(files / "empty.png")
    with pytest.raises(BadSampleError, match="label map must have one channel"):
        read_label(files / "img.png")


# ---- label mapping -------------------------------------------------------------------------------
def test_cityscapes_label_ids_map_through_train_ids_to_universal():
    # a user's entry for labels stored as the publisher's labelIds (gtFine/): remapped 34 -> 19 on load
    info = DatasetInfo(name="cityscapes-19", root="Cityscapes", num_classes=19, lists={"train": "gtfine.txt"},
                       disk_taxonomy="cityscapes-34", source="mine.yaml")
    converter = TaxonomyConverter.from_tsv("mseg", train_datasets=["cityscapes-19"], test_datasets=[])
    mapper = build_label_mapper(info, converter)
    # Cityscapes labelIds: 7 road, 8 sidewalk, 26 car, 0 unlabeled, 255
    universal = mapper(np.array([[7, 8], [26, 0]], np.uint8))
    assert [converter.class_names[i] for i in universal.reshape(-1)[:3]] == ["road", "sidewalk_pavement", "car"]
    assert universal[1, 1] == 255
    own = build_label_mapper(info)  # no converter: the dataset's own train ids
    assert own(np.array([7, 8, 26, 255], np.uint8)[None]).tolist() == [[0, 1, 13, 255]]
    with pytest.raises(BadSampleError, match=r"x.png: label ids 34 \(1 px\), 200 \(2 px\) are outside cityscapes-19's 34 classes"):
        mapper.check(np.array([[7, 34, 200, 200, 255]], np.uint8), "x.png")


def test_uint16_release_maps_through_a_full_table():
    info = DatasetInfo(name="pascal-context-60", root="PASCAL_Context", num_classes=60, lists={"val": "gt460.txt"},
                       disk_taxonomy="pascal-context-460", source="mine.yaml")
    mapper = build_label_mapper(info)
    assert len(mapper.lut) == 65536
    label = np.array([[0, 459]], np.uint16)
    mapper.check(label)
    assert mapper(label).dtype == np.uint8
    with pytest.raises(BadSampleError, match=r"label ids 460 \(1 px\) are outside pascal-context-60's 460 classes"):
        mapper.check(np.array([[460]], np.uint16))


def test_num_classes_must_match_the_names_list():
    info = DatasetInfo(name="cityscapes-19", root="C", lists={"train": "t"}, num_classes=20, source="mine.yaml")
    with pytest.raises(RegistryError, match="mine.yaml: dataset 'cityscapes-19' declares num_classes 20, but .*cityscapes-19_names.txt has 19 names"):
        build_label_mapper(info)


# ---- verification and statistics on a small on-disk dataset --------------------------------------
@pytest.fixture
def tiny_city(tmp_path, monkeypatch):
    """A 4-sample Cityscapes-like dataset (labelIds on disk) where samples 2-4 are bad in one way each.

    It is registered as `cityscapes-19` in a taxonomy folder of its own, which shares the shipped
    class lists and remap tables.
    """
    from unifiedseg.paths import taxonomy_dir

    shipped = taxonomy_dir()
    folder = tmp_path / "data" / "City"
    (folder / "list").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(4):
        label = np.full((16, 24), 7, np.uint8)  # road
        label[:8] = 26  # car
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 255, (16, 24, 3), dtype=np.uint8))
        cv2.imwrite(str(folder / f"{i}.png"), label)
        lines.append(f"{i}.jpg {i}.png")
    cv2.imwrite(str(folder / "1.png"), np.full((16, 24), 40, np.uint8))  # id 40: not a Cityscapes id
    cv2.imwrite(str(folder / "2.png"), np.full((10, 24), 7, np.uint8))  # wrong size
    (folder / "3.jpg").unlink()  # missing image
    (folder / "list" / "train.txt").write_text("\n".join(lines) + "\n")
    tax = tmp_path / "taxonomy"
    (tax / "datasets").mkdir(parents=True)
    (tax / "dataset_lists").symlink_to(shipped / "dataset_lists")
    (tax / "remap").symlink_to(shipped / "remap")
    (tax / "mseg.tsv").symlink_to(shipped / "mseg.tsv")
    (tax / "mseg.yaml").symlink_to(shipped / "mseg.yaml")
    (tax / "datasets" / "tiny.yaml").write_text(
        "cityscapes-19:\n  root: City\n  lists: {train: list/train.txt}\n  num_classes: 19\n  disk_taxonomy: cityscapes-34\n")
    monkeypatch.setenv("UNIFIEDSEG_TAXONOMY_DIR", str(tax))
    return tmp_path / "data"


def test_verify_reports_every_bad_sample(tiny_city, capsys):
    code = verify_cli.main(["--dataset", "cityscapes-19", "--root", str(tiny_city)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-1] == "cityscapes-19 train: 4 samples, 1 good, 3 bad"
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in out[:3]] == ["line 2", "line 3", "line 4"]
    assert "label ids 40 (384 px) are outside cityscapes-19's 34 classes" in out[0]
    assert "image is 16x24 but its label" in out[1] and "is 10x24" in out[1]
    assert out[2].endswith("3.jpg: file does not exist")
    assert verify_cli.main(["--dataset", "cityscapes-19", "--split", "val", "--root", str(tiny_city)]) == 2
    assert "has no 'val' list" in capsys.readouterr().err


def test_dataset_stats_writes_frequencies_and_weights(tiny_city, tmp_path, capsys):
    folder = tiny_city / "City"
    (folder / "list" / "train.txt").write_text("0.jpg 0.png\n")
    out = tmp_path / "stats.json"
    assert stats_cli.main(["--datasets", "cityscapes-19", "--root", str(tiny_city), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    own = result["datasets"]["cityscapes-19"]
    assert own["pixels"][0] == 16 * 12 and own["pixels"][13] == 8 * 24  # road, car (train ids 0 and 13)
    unified = result["unified"]
    road, car = unified["classes"].index("road"), unified["classes"].index("car")
    assert unified["frequency"][road] == pytest.approx(0.5) and unified["frequency"][car] == pytest.approx(0.5)
    assert len(result["class_weight"]["median"]) == 194 and result["class_weight"]["median"][road] == 1.0
    assert "wrote" in capsys.readouterr().out


def test_class_weights_by_hand():
    stats = ClassStats(["a", "b", "c", "d"], np.array([60, 30, 10, 0]), np.array([3, 2, 1, 0]))
    # f = .6 .3 .1; inverse 1/f = 1.667 3.333 10, mean 5 -> .333 .667 2; median f = .3 -> .5 1 3
    np.testing.assert_allclose(class_weights(stats, "inverse"), [1 / 3, 2 / 3, 2, 1])
    np.testing.assert_allclose(class_weights(stats, "median"), [0.5, 1, 3, 1])
    with pytest.raises(ValueError, match="valid: inverse, median"):
        class_weights(stats, "sqrt")


def test_unified_stats_sum_hard_targets_and_count_one_to_many(tiny_tsv):
    converter = TaxonomyConverter.from_tsv(tiny_tsv)
    a = ClassStats(["road", "sidewalk", "vehicle", "sky", "ego"], np.array([10, 5, 7, 3, 2]), np.array([1, 1, 1, 1, 1]), 4)
    b = ClassStats(["ground", "car", "truck", "sky", "person"], np.array([8, 1, 2, 6, 9]), np.array([2, 1, 1, 2, 2]))
    unified = unified_stats({"dsA": a, "dsB": b}, converter)
    # road sidewalk car truck sky person
    assert unified.pixels.tolist() == [10, 5, 1, 2, 9, 9]
    assert unified.images.tolist() == [1, 1, 1, 1, 3, 2]
    assert unified.unassigned_pixels == 7 + 8  # vehicle and ground are one-to-many
    assert unified.ignored_pixels == 4 + 2  # dsA's ignored pixels and its `ego` class
