"""ConfusionMatrix metrics by hand, distributed merge, the validation summary, and the results files."""

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unifiedseg.evaluation.confusion import ConfusionMatrix
from unifiedseg.evaluation.evaluate import DatasetResult, harmonic_mean, write_results
from unifiedseg.evaluation.validate import summarize


def hand_matrix():
    # labels:      0 0 1 1 255 2      predictions: 0 1 1 1 0 0
    m = ConfusionMatrix(4)
    m.update(torch.tensor([0, 1, 1, 1, 0, 0]), torch.tensor([0, 0, 1, 1, 255, 2]))
    return m


def test_metrics_by_hand():
    m = hand_matrix()
    assert m.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    iou = m.iou()
    # class 0: tp 1, union 1+2+... = row 2 + col 2 - tp 1 = 3 -> 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0/1
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(iou[3])  # absent from labels and predictions
    assert m.miou() == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m.miou(classes=[0, 1]) == pytest.approx(0.5)
    assert m.acc()[:3].tolist() == pytest.approx([0.5, 1.0, 0.0]) and math.isnan(m.acc()[3])
    assert m.macc() == pytest.approx(0.5)
    assert m.aacc() == pytest.approx(3 / 5)


def test_unchecked_updates_count_the_same_and_a_wide_space_ignores_65535():
    # The training logger's path: no range checks (each a GPU sync), the counts made where the ids are.
    m = ConfusionMatrix(4, device=torch.device("cpu"))
    m.update(torch.tensor([0, 1, 1, 1, 0, 0]), torch.tensor([0, 0, 1, 1, 255, 2]), check=False)
    assert m.matrix.tolist() == hand_matrix().matrix.tolist()
    wide = ConfusionMatrix(300, ignore_index=65535)  # a uint16 label space: 255 counts, 65535 does not
    wide.update(torch.tensor([255, 299, 0]), torch.tensor([255, 65535, 299]), check=False)
    assert wide.matrix.sum() == 2 and wide.matrix[255, 255] == 1 and wide.matrix[299, 0] == 1
    with pytest.raises(ValueError, match=r"label ids \[300\] are outside 0-299 \(and 65535 ignored\)"):
        wide.update(torch.tensor([0]), torch.tensor([300]))


def test_accumulates_over_the_set_not_per_image():
    m = ConfusionMatrix(2)
    m.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 0]))  # a perfect large image
    m.update(torch.tensor([0]), torch.tensor([1]))  # one wrong pixel of class 1
    # dataset IoU of class 1 is 0, of class 0 is 4/5; a per-image mean would differ
    assert m.iou().tolist() == pytest.approx([0.8, 0.0])


def test_bad_inputs_are_named():
    m = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"label ids \[5\] are outside 0-2"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="differs from label shape"):
        m.update(torch.zeros(2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="cannot merge 2-class and 3-class"):
        m.merge(ConfusionMatrix(2))


def _merge_worker(rank, port, result):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    m = ConfusionMatrix(2)
    m.update(torch.tensor([rank]), torch.tensor([0]))  # rank 0 right, rank 1 wrong
    m.merge()
    result[rank] = m.matrix.tolist()
    dist.destroy_process_group()


def test_merge_all_reduces_across_ranks():
    manager = mp.Manager()
    result = manager.dict()
    with socket.socket() as s:  # a free port, not a fixed one other test runs may hold
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_merge_worker, args=(port, result), nprocs=2)
    assert result[0] == result[1] == [[1, 1], [0, 0]]


def test_summary_scores_each_dataset_over_the_classes_it_can_label():
    m = hand_matrix()
    summary = summarize({"a": m}, ["x", "y", "z", "w"], labelable={"a": [0, 1]})
    assert summary["datasets"]["a"]["miou"] == pytest.approx(0.5)
    assert summary["datasets"]["a"]["classes_scored"] == ["x", "y"]
    assert summary["datasets"]["a"]["class_iou"]["w"] is None


def test_harmonic_mean():
    assert harmonic_mean([0.5, 0.25]) == pytest.approx(2 / (2 + 4))
    assert harmonic_mean([0.5, 0.0]) == 0.0
    assert math.isnan(harmonic_mean([]))


def test_results_files(tmp_path):
    a = DatasetResult("camvid", "test classes", ["x", "y", "z", "w"], hand_matrix(), images=3)
    data = write_results(tmp_path, [a], {"checkpoint": "final.pth", "taxonomy_kind": "unified"})
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["datasets"]["camvid"]["miou"] == pytest.approx(1 / 3) == data["harmonic_mean_miou"]
    assert (tmp_path / "results.csv").read_text().splitlines() == [
        "dataset,space,images,mIoU,mAcc,aAcc", "camvid,test classes,3,33.33,50.00,60.00", "harmonic mean,,3,33.33,,"]
    md = (tmp_path / "results.md").read_text()
    assert "| camvid | test classes | 3 | 33.3 | 50.0 | 60.0 |" in md and "**33.3**" in md
    np.testing.assert_allclose(saved["datasets"]["camvid"]["class_iou"]["y"], 2 / 3)
