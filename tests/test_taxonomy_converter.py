"""TaxonomyConverter, NaiveTaxonomyConverter and OracleTaxonomyConverter on hand-worked taxonomies."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from taxonomy_fixtures import TINY_TSV, write_tiny_taxonomy
from unifiedseg.constants import IGNORE_INDEX
from unifiedseg.taxonomy import (
    NaiveTaxonomyConverter,
    OracleTaxonomyConverter,
    TaxonomyConverter,
    TaxonomyError,
    build_converter,
)

ROAD, SIDEWALK, CAR, TRUCK, SKY, PERSON = range(6)


@pytest.fixture
def tiny(tiny_tsv):
    return TaxonomyConverter.from_tsv(tiny_tsv)


def test_classes_in_row_order_without_unlabeled(tiny):
    assert tiny.class_names == ["road", "sidewalk", "car", "truck", "sky", "person"]
    assert tiny.num_classes == 6
    assert tiny.ignore_index == 255
    assert tiny.train_datasets == ["dsA", "dsB"]
    assert tiny.test_datasets == ["testT"]


def test_label_lut_maps_one_to_one_and_ignores_the_rest(tiny):
    lut_a = tiny.label_lut("dsA")
    assert lut_a.dtype == np.uint8 and lut_a.shape == (256,)
    # road, sidewalk, vehicle (one-to-many -> ignored), sky, ego (unlabeled row)
    assert lut_a[:5].tolist() == [ROAD, SIDEWALK, 255, SKY, 255]
    assert (lut_a[5:] == 255).all()
    # ground (one-to-many), car, truck, sky, person
    assert tiny.label_lut("dsB")[:5].tolist() == [255, CAR, TRUCK, SKY, PERSON]


def test_target_sets_keep_one_to_many_classes(tiny):
    sets = tiny.target_sets("dsA")
    assert sets.dtype == torch.bool and sets.shape == (5, 6)
    assert sets[2].nonzero().flatten().tolist() == [CAR, TRUCK]  # vehicle
    assert sets[0].nonzero().flatten().tolist() == [ROAD]
    assert not sets[4].any()  # ego is ignored
    assert tiny.target_sets("dsB")[0].nonzero().flatten().tolist() == [ROAD, SIDEWALK]
    assert tiny.one_to_many_ids("dsA") == [2]


def test_to_universal_numpy_and_torch_keep_kind_and_dtype(tiny):
    label = np.array([[0, 1, 2], [3, 4, 255]], dtype=np.uint8)
    expected = [[ROAD, SIDEWALK, 255], [SKY, 255, 255]]
    out = tiny.to_universal(label, "dsA")
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.tolist() == expected
    out32 = tiny.to_universal(label.astype(np.int32), "dsA")
    assert out32.dtype == np.int32 and out32.tolist() == expected
    tensor = tiny.to_universal(torch.from_numpy(label), "dsA")
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.uint8 and tensor.tolist() == expected
    long_tensor = tiny.to_universal(torch.from_numpy(label).long(), "dsA")
    assert long_tensor.dtype == torch.int64 and long_tensor.tolist() == expected


def test_to_universal_rejects_ids_outside_uint8_and_float_maps(tiny):
    with pytest.raises(ValueError, match="label id 300"):
        tiny.to_universal(np.array([1, 300]), "dsA")
    with pytest.raises(ValueError, match="label id -1"):
        tiny.to_universal(torch.tensor([-1, 2]), "dsA")
    with pytest.raises(TypeError, match="integer dtype"):
        tiny.to_universal(np.zeros(3, dtype=np.float32), "dsA")


def test_strict_mode_names_ids_outside_the_dataset_taxonomy(tiny):
    label = np.array([0, 7, 7, 9, 255], dtype=np.uint8)
    assert tiny.to_universal(label, "dsA").tolist() == [ROAD, 255, 255, 255, 255]
    with pytest.raises(ValueError, match=r"label ids 7 \(2 px\), 9 \(1 px\) are outside dsA's 5 classes"):
        tiny.to_universal(label, "dsA", strict=True)


def test_unknown_dataset_lists_valid_ones(tiny):
    with pytest.raises(TaxonomyError, match="training datasets: dsA, dsB"):
        tiny.label_lut("dsC")
    with pytest.raises(TaxonomyError, match="test datasets: testT"):
        tiny.test_matrix("dsA")


def test_test_matrix_and_zero_shot_probabilities(tiny):
    matrix = tiny.test_matrix("testT")
    assert matrix.dtype == torch.float32 and matrix.shape == (4, 6)
    assert matrix.tolist() == [
        [1, 0, 0, 0, 0, 0],  # road <- road
        [0, 0, 1, 0, 0, 0],  # car <- car
        [0, 0, 0, 1, 0, 0],  # truck <- truck
        [0, 1, 0, 0, 1, 0],  # background <- sidewalk, sky
    ]
    probs = tiny.to_test_probs(torch.zeros(2, 6, 3, 4), "testT")
    assert probs.shape == (2, 4, 3, 4)
    # uniform over 6 universal classes; person counts towards no test class
    torch.testing.assert_close(probs[0, :, 0, 0], torch.tensor([1 / 6, 1 / 6, 1 / 6, 2 / 6]))
    logits = torch.full((1, 6, 1, 1), -30.0)
    logits[0, SKY] = 10.0
    assert tiny.to_test_probs(logits, "testT")[0, :, 0, 0].argmax().item() == 3
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\)"):
        tiny.to_test_probs(torch.zeros(1, 5, 2, 2), "testT")


def test_selecting_datasets(tiny_tsv):
    only_b = TaxonomyConverter.from_tsv(tiny_tsv, train_datasets=["dsB"], test_datasets=[])
    assert only_b.train_datasets == ["dsB"] and only_b.test_datasets == []
    with pytest.raises(TaxonomyError, match="'testT' is not a training dataset .*training datasets: dsA, dsB"):
        TaxonomyConverter.from_tsv(tiny_tsv, train_datasets=["testT"])


def test_fingerprint_is_stable_and_sensitive_to_any_mapping_change(tmp_path, tiny):
    (tmp_path / "copy").mkdir()
    again = TaxonomyConverter.from_tsv(write_tiny_taxonomy(tmp_path / "copy"))
    assert again.fingerprint() == tiny.fingerprint()
    assert len(tiny.fingerprint()) == 16
    moved = TINY_TSV.replace("stuff\tsky\tsky\tsky\tbackground", "stuff\tsky\tsky\tsky\troad")
    (tmp_path / "moved").mkdir()
    other = TaxonomyConverter.from_tsv(write_tiny_taxonomy(tmp_path / "moved", moved))
    assert other.fingerprint() != tiny.fingerprint()
    subset = TaxonomyConverter.from_tsv(tiny.source, train_datasets=["dsA"])
    assert subset.fingerprint() != tiny.fingerprint()


def test_naive_merge_unions_names_and_maps_tests_through_the_unified_tsv(tiny_tsv):
    naive = NaiveTaxonomyConverter.from_tsv(tiny_tsv)
    # dsA's names, then dsB's new ones; `sky` is merged because the names are identical.
    assert naive.class_names == ["road", "sidewalk", "vehicle", "sky", "ego", "ground", "car", "truck", "person"]
    assert naive.label_lut("dsA")[:5].tolist() == [0, 1, 2, 3, 4]
    assert naive.label_lut("dsB")[:5].tolist() == [5, 6, 7, 3, 8]
    matrix = naive.test_matrix("testT")
    # vehicle -> car (tie car/truck, first universal class wins); ground -> road (tie road/background);
    # sidewalk, sky -> background; ego, person -> nothing.
    assert matrix.nonzero().tolist() == [[0, 0], [0, 5], [1, 2], [1, 6], [2, 7], [3, 1], [3, 3]]
    assert naive.fingerprint() != TaxonomyConverter.from_tsv(tiny_tsv).fingerprint()


def test_a_naive_merge_above_255_classes_uses_uint16_labels_with_ignore_65535():
    naive = NaiveTaxonomyConverter.from_tsv("mseg")  # all 16 training columns: 409 distinct names
    assert naive.num_classes == 409
    assert naive.label_dtype == np.uint16 and naive.ignore_index == 65535
    lut = naive.label_lut("sunrgbd-37-relabeled")
    assert lut.dtype == np.uint16 and lut.shape == (256,)
    # apparel (id 0) and lamp (id 22) are first named by this last dataset, after 255 other names;
    # class id 255 is a class here (lamp), not the ignore label.
    assert naive.class_names[286] == "apparel" and naive.class_names[255] == "lamp"
    assert lut[0] == 286 and lut[22] == 255 and lut[255] == 65535
    label = np.array([[0, 22, 255]], dtype=np.uint8)
    out = naive.to_universal(label, "sunrgbd-37-relabeled")
    assert out.dtype == np.uint16 and out.tolist() == [[286, 255, 65535]]  # widened: uint8 cannot hold them
    tensor = naive.to_universal(torch.from_numpy(label), "sunrgbd-37-relabeled")
    assert tensor.dtype == torch.int32 and tensor.tolist() == [[286, 255, 65535]]
    assert naive.to_universal(label.astype(np.int64), "sunrgbd-37-relabeled").dtype == np.int64
    assert 255 in naive.labelable_classes("sunrgbd-37-relabeled")
    assert 65535 not in naive.labelable_classes("sunrgbd-37-relabeled")


def test_oracle_is_the_identity_in_the_datasets_own_taxonomy(tiny_tsv):
    oracle = OracleTaxonomyConverter.for_dataset("testT", tiny_tsv)
    assert oracle.class_names == ["road", "car", "truck", "background"]
    assert oracle.label_lut("testT")[:6].tolist() == [0, 1, 2, 3, 255, 255]
    assert torch.equal(oracle.test_matrix("testT"), torch.eye(4))
    assert build_converter("oracle", tiny_tsv, ["dsB"]).class_names == ["ground", "car", "truck", "sky", "person"]
    with pytest.raises(TaxonomyError, match="exactly one dataset"):
        build_converter("oracle", tiny_tsv, ["dsA", "dsB"])
    with pytest.raises(TaxonomyError, match="valid kinds: unified, naive, mseg-naive, oracle"):
        build_converter("merged", tiny_tsv)


def test_converter_refuses_a_broken_tsv_and_lists_every_error(tmp_path):
    broken = TINY_TSV.replace("\tperson\tperson\t", "\tpersn\tperson\t").replace("\tego\t", "\tegoo\t")
    path = write_tiny_taxonomy(tmp_path, broken)
    with pytest.raises(TaxonomyError) as err:
        TaxonomyConverter.from_tsv(path)
    text = str(err.value)
    assert "4 error(s) in the taxonomy" in text
    assert "tiny.tsv:7: error: column 'dsB': cell 'persn': dsB has no class 'persn'; did you mean 'person'?" in text
    assert "tiny.tsv:8: error: column 'dsA': cell 'egoo': dsA has no class 'egoo'; did you mean 'ego'?" in text
    assert "class 'person' (id 4) of dsB is mapped nowhere" in text


# ---- MSeg's own taxonomy -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mseg():
    return TaxonomyConverter.from_tsv("mseg")


def test_mseg_taxonomy_loads_with_194_classes(mseg):
    assert mseg.num_classes == 194
    assert "unlabeled" not in mseg.class_names
    assert len(mseg.train_datasets) == 16 and "cityscapes-19-relabeled" in mseg.train_datasets
    assert mseg.test_datasets == ["kitti-19", "voc2012", "scannet-20", "camvid-11", "wilddash-19", "pascal-context-60"]


def test_mseg_cityscapes_road_maps_to_universal_road(mseg):
    road = mseg.dataset_class_names("cityscapes-19").index("road")
    assert mseg.class_names[mseg.label_lut("cityscapes-19")[road]] == "road"
    # many-to-one: ADE20K's `house` and `building` both become universal `building`
    ade = mseg.dataset_class_names("ade20k-150")
    lut = mseg.label_lut("ade20k-150")
    assert mseg.class_names[lut[ade.index("house")]] == mseg.class_names[lut[ade.index("building")]] == "building"


def test_mseg_zero_shot_matrix_sums_each_universal_class_at_most_once(mseg):
    for dataset in mseg.test_datasets:
        matrix = mseg.test_matrix(dataset)
        assert matrix.sum(0).max() <= 1
        assert matrix.shape == (len(mseg.dataset_class_names(dataset)), 194)


# ---- to_universal agrees with a per-pixel dictionary lookup ------------------------------------
label_maps = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.int64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7),
    elements=st.integers(0, 255),
)


@settings(max_examples=150, deadline=None)
@given(label=label_maps, dataset=st.sampled_from(["cityscapes-19", "ade20k-150", "mapillary-public65-relabeled"]),
       as_tensor=st.booleans(), transpose=st.booleans())
def test_to_universal_matches_a_per_pixel_dictionary_lookup(mseg, label, dataset, as_tensor, transpose):
    if transpose and label.ndim >= 2:
        label = label.swapaxes(0, -1)  # non-contiguous input
    targets = mseg.target_sets(dataset)
    lookup = {i: (int(row.nonzero()[0, 0]) if row.sum() == 1 else IGNORE_INDEX) for i, row in enumerate(targets)}
    expected = np.array([lookup.get(int(v), IGNORE_INDEX) for v in label.reshape(-1)], dtype=label.dtype).reshape(label.shape)
    if as_tensor:
        out = mseg.to_universal(torch.from_numpy(np.ascontiguousarray(label) if not transpose else label.copy()), dataset)
        assert out.dtype == torch.from_numpy(label.copy()).dtype
        np.testing.assert_array_equal(out.numpy(), expected)
    else:
        out = mseg.to_universal(label, dataset)
        assert out.dtype == label.dtype and out.shape == label.shape
        np.testing.assert_array_equal(out, expected)


def test_labelable_classes_are_the_hard_targets(tiny):
    assert tiny.labelable_classes("dsA") == [ROAD, SIDEWALK, SKY]  # vehicle is one-to-many, ego ignored
    assert tiny.labelable_classes("dsB") == [CAR, TRUCK, SKY, PERSON]


def test_mseg_naive_is_msegs_own_naive_merge_space():
    """mseg-api's NaiveTaxonomyConverter, re-derived here from the shipped class-name lists: names lower-cased
    and merged in dataset order, output id 255 skipped, test classes matched by lower-cased name."""
    from unifiedseg.taxonomy import TaxonomyTable
    from unifiedseg.taxonomy.converter import MSegNaiveTaxonomyConverter, build_converter

    datasets = ["ade20k-150", "bdd", "cityscapes-19", "coco-panoptic-133", "idd-39", "mapillary-public65", "sunrgbd-37"]
    table = TaxonomyTable.load("mseg")
    expected, next_id = {}, 0
    for dataset in datasets:
        for name in table.dataset_names(dataset):
            if name.lower() not in expected:
                expected[name.lower()] = next_id
                next_id += 1 + (next_id + 1 == 255)
    converter = build_converter("mseg-naive", "mseg", datasets)
    assert isinstance(converter, MSegNaiveTaxonomyConverter) and converter.num_classes == 316
    assert {name: converter.class_names.index(name) for name in expected} == expected
    assert converter.class_names[255] == MSegNaiveTaxonomyConverter.PLACEHOLDER
    names = table.dataset_names("mapillary-public65")
    bicyclist = names.index("Bicyclist")
    lut = converter.to_universal(np.arange(len(names), dtype=np.uint8), "mapillary-public65")
    assert lut[bicyclist] == expected["bicyclist"] and 255 not in lut.tolist()  # no class maps to the hole
    camvid = table.dataset_names("camvid-11")
    matrix = converter.test_matrix("camvid-11")
    for t, name in enumerate(camvid):  # a test class counts the naive class of its name, or none
        counted = matrix[t].nonzero().flatten().tolist()
        assert counted == ([expected[name.lower()]] if name.lower() in expected else [])
    assert converter.test_matrix("camvid-11")[:, 255].sum() == 0
