"""MSeg's relabel records as one shipped index, record-line parsing per dataset, chained release remaps,
and the raw/prepared read plans of the registry."""

import lzma
from pathlib import Path

import numpy as np
import pytest

from unifiedseg.data.labels import read_plan
from unifiedseg.data.registry import DatasetRegistry
from unifiedseg.data.relabel import (INDEX_PATH, RelabelError, build_index_text, load_index, parse_index,
                                     record_key)
from unifiedseg.taxonomy.remap import chain_release_lut, remap_path
from unifiedseg.taxonomy.table import dataset_names


@pytest.mark.parametrize("group, split, line, key", [
    ("cocop", "train", "000000000283_8882056.png", ("train2017", "000000000283", 8882056)),
    ("ade20k", "val", "ADE_val_00000001_255.png", ("validation", "ADE_val_00000001", 255)),
    ("cityscapes", "train", "seqaachen_aachen_000000_000019_leftImg8bit_59.jpg",
     ("aachen", "aachen_000000_000019_leftImg8bit", 59)),
    ("idd", "train", "seq0_005506_leftImg8bit_15.jpg", ("0", "005506_leftImg8bit", 15)),
    ("bdd", "val", "3dc827e3-f3a359ce_11.jpg", ("val", "3dc827e3-f3a359ce", 11)),
    ("mapillary", "train", "mapillary_0NquXdbXeGCs8rw3XJ2apQ_7936.jpg", ("images", "0NquXdbXeGCs8rw3XJ2apQ", 7936)),
    ("mapillary", "train", "mapillary__ofW-AQ_x_7936.jpg", ("images", "_ofW-AQ_x", 7936)),  # stems with underscores
    ("sunrgbd", "val", "img-000015_4.jpg", ("test", "img-000015", 4)),  # MSeg's SUN val is its test folder
])
def test_record_lines_name_image_and_segment(group, split, line, key):
    assert record_key(group, split, line) == key


def test_record_line_errors():
    with pytest.raises(RelabelError, match="does not end in _<segment id>"):
        record_key("bdd", "train", "3dc827e3-f3a359ce.jpg")
    with pytest.raises(RelabelError, match="unknown record group 'kitti'"):
        record_key("kitti", "train", "a_1.png")


def test_shipped_index_has_msegs_226413_records_in_order():
    index = load_index()
    counts = index.counts()
    assert sum(segments for _, segments in counts.values()) == 226413
    assert counts["cityscapes"] == (1278, 2363) and counts["mapillary"] == (822, 911)
    edits = index.edits("cityscapes", Path("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"))
    assert (edits[0].segment, edits[0].orig_class, edits[0].new_class) == (59, "rider_other", "bicyclist")
    assert index.edits("cocop", Path("images/train2017/000000000283.jpg"))
    assert index.edits("cocop", Path("images/val2017/000000000283.jpg")) == ()  # split is part of the key
    with lzma.open(INDEX_PATH, "rt") as handle:
        assert handle.readline().rstrip("\n").split("\t") == ["group", "split", "parent", "stem", "segment",
                                                               "orig_class", "new_class"]


def test_index_builder_orders_records_and_refuses_duplicates(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "first.txt").write_text("3dc827e3-f3a359ce_11.jpg\n")
    (tmp_path / "a" / "second.txt").write_text("3dc827e3-f3a359ce_12.jpg\n\n")
    header = "records_list\torder\tdataset_tag\tsplit\torig_class\tnew_class\trecord_file\n"
    (tmp_path / "RECORDS.tsv").write_text(header + "bdd\t0\tbdd\ttrain\tperson\tbicyclist\ta/second.txt\n"
                                                   "bdd\t1\tbdd\ttrain\tperson\tmotorcyclist\ta/first.txt\n")
    text, counts = build_index_text(tmp_path)
    assert counts == {"bdd": 2}
    index = parse_index(text, "x")
    assert [(e.segment, e.new_class) for e in index.edits("bdd", Path("train/3dc827e3-f3a359ce.jpg"))] == \
        [(12, "bicyclist"), (11, "motorcyclist")]  # RECORDS.tsv order, not file order
    (tmp_path / "a" / "second.txt").write_text("3dc827e3-f3a359ce_11.jpg\n")
    with pytest.raises(RelabelError, match=r"first.txt:1: segment 11 of 3dc827e3-f3a359ce is already relabeled by .*second.txt:1"):
        build_index_text(tmp_path)  # the later record (RECORDS.tsv order) is named, with the earlier one
    with pytest.raises(RelabelError, match=r"x:2: expected 7 tab-separated fields"):
        parse_index(text.replace("\t12\t", "\tXII\t"), "x")


def test_remap_chains_compose_msegs_tables():
    assert remap_path("cityscapes-34", "cityscapes-19-relabeled") == ["cityscapes-34", "cityscapes-19",
                                                                      "cityscapes-19-relabeled"]
    src, dst = dataset_names("cityscapes-34"), dataset_names("cityscapes-19-relabeled")
    lut = chain_release_lut("cityscapes-34", "cityscapes-19-relabeled", src, dst)
    assert dst[lut[src.index("road")]] == "road" and dst[lut[src.index("rider")]] == "bicyclist"
    assert lut[src.index("ego vehicle")] == 255 and lut[255] == 255
    # PASCAL-Context's 460 release names id 0 `unlabeled`; MSeg maps it to background (id 1 of the 60)
    pc460, pc60 = dataset_names("pascal-context-460"), dataset_names("pascal-context-60")
    lut = chain_release_lut("pascal-context-460", "pascal-context-60", pc460, pc60)
    assert pc60[lut[0]] == "background" and len(lut) == 460 and lut.dtype == np.uint8
    with pytest.raises(Exception, match="no chain of remap tables .* from kitti-34 to camvid-11"):
        remap_path("kitti-34", "camvid-11")


def test_read_plans_of_the_registry():
    registry = DatasetRegistry.load()
    plan = read_plan(registry.get("coco-panoptic-133-relabeled"), "raw")
    assert (plan.list_info.name, plan.source, plan.release, plan.relabel) == (
        "coco-panoptic-inst-201", "coco_panoptic", "coco-panoptic-201", "cocop")
    plan = read_plan(registry.get("coco-panoptic-133-relabeled"), "prepared")
    assert (plan.list_info.name, plan.source, plan.release, plan.relabel) == (
        "coco-panoptic-133-relabeled", "id", "coco-panoptic-133-relabeled", None)
    assert read_plan(registry.get("voc2012"), "raw").list_info.name == "voc2012"  # shipped as published
    every_raw = {name: read_plan(info, "raw") for name, info in registry.entries.items()}
    # every raw plan maps its release to the dataset through the shipped tables
    for name, plan in every_raw.items():
        chain_release_lut(plan.release, name, dataset_names(plan.release), dataset_names(name))
    with pytest.raises(ValueError, match="unknown label source mode 'rwa'; valid: prepared, raw"):
        read_plan(registry.get("voc2012"), "rwa")
