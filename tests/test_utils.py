"""The shared helpers, one home each: argument checks, plain values from config nodes, the module inside
training wrappers, and how missing metrics are written (null in JSON, "-" in text)."""

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from unifiedseg.evaluation.confusion import ConfusionMatrix
from unifiedseg.evaluation.metrics import dataset_metrics, format_metric, json_metric, mean_metric
from unifiedseg.utils.checks import (check_bool, check_choice, check_int, check_keys, check_number, is_finite_number,
                                     is_int, is_number, keyed)
from unifiedseg.utils.modules import unwrap
from unifiedseg.utils.plain import to_plain


def test_predicates_refuse_bools_and_accept_numpy_numbers():
    assert is_int(3) and is_int(np.int64(3)) and not is_int(True) and not is_int(3.0) and not is_int("3")
    assert is_number(2.5) and is_number(np.float32(2.5)) and is_number(math.inf) and not is_number(False)
    assert is_finite_number(7) and not is_finite_number(math.nan) and not is_finite_number(-math.inf)


def test_checks_name_the_argument_and_the_value():
    assert check_int(4, "batch_size", minimum=1) == 4
    with pytest.raises(ValueError, match=r"^batch_size: must be an integer >= 1, got True$"):
        check_int(True, "batch_size", minimum=1)
    with pytest.raises(KeyError, match=r"rank: must be an integer >= 0, got -1"):
        check_int(-1, "rank", error=KeyError)
    assert check_number(3, "lr", strictly_above=True) == 3.0
    with pytest.raises(ValueError, match=r"^lr: must be a number > 0, got 0$"):
        check_number(0, "lr", strictly_above=True)
    with pytest.raises(ValueError, match=r"^lr: must be a number >= 0, got nan$"):
        check_number(math.nan, "lr")
    with pytest.raises(ValueError, match=r"^x: must be a finite number, got 'a'$"):
        check_number("a", "x", minimum=None)
    assert check_number(0.9, "optimizer.momentum", below=1.0) == 0.9
    with pytest.raises(ValueError, match=r"^optimizer.momentum: must be a number in \[0, 1\), got 'a'$"):
        check_number("a", "optimizer.momentum", below=1.0)
    with pytest.raises(ValueError, match=r"^optimizer.momentum: must be a number in \[0, 1\), got 1$"):
        check_number(1, "optimizer.momentum", below=1.0)
    with pytest.raises(ValueError, match=r"^flip: must be true or false, got 1$"):
        check_bool(1, "flip")
    assert check_choice("cos", "swa.anneal_strategy", ("cos", "linear")) == "cos"
    with pytest.raises(ValueError, match=r"^swa.anneal_strategy: must be one of cos, linear, got 'cosine'; "
                                         r"did you mean 'cos'\?$"):
        check_choice("cosine", "swa.anneal_strategy", ("cos", "linear"))
    with pytest.raises(ValueError, match=r"^swa.star_iter: unknown key; did you mean 'start_iter'\? \(valid keys: "
                                         r"start_iter, swa_lr\)$") as err:
        check_keys({"star_iter": 1}, ("start_iter", "swa_lr"), "swa")
    assert (err.value.unknown_key, err.value.valid_keys) == ("swa.star_iter", ("start_iter", "swa_lr"))


def test_keyed_places_an_argument_error_under_its_config_section():
    assert str(keyed(ValueError("rotate_p: must be a probability"), "data.augmentation", ["rotate_p"])) == \
        "data.augmentation.rotate_p: must be a probability"
    assert str(keyed(ValueError("scales[1]: must be a size"), "data.augmentation", ["scales"])) == \
        "data.augmentation.scales[1]: must be a size"
    err = keyed(KeyError("choose one resize mode"), "data.augmentation", ["scales"], error=ValueError)
    assert type(err) is ValueError and str(err) == "data.augmentation: choose one resize mode"


def test_to_plain_turns_config_nodes_into_dicts_and_lists_all_the_way_down():
    cfg = OmegaConf.create({"a": {"b": [1, {"c": "${x}"}]}, "x": 5, "t": (1, 2)})
    plain = to_plain(cfg)
    assert plain == {"a": {"b": [1, {"c": 5}]}, "x": 5, "t": [1, 2]}
    assert type(plain["a"]) is dict and type(plain["a"]["b"]) is list
    assert to_plain("text") == "text" and to_plain(None) is None


def test_unwrap_reaches_the_bare_module_through_any_wrappers():
    bare = nn.Linear(2, 2)
    assert unwrap(bare) is bare
    assert unwrap(nn.DataParallel(bare)) is bare
    compiled = torch.compile(nn.DataParallel(bare))
    assert unwrap(compiled) is bare


def test_missing_metrics_are_null_in_json_and_a_dash_in_text():
    assert json_metric(math.nan) is None and json_metric(0.25) == 0.25
    assert format_metric(math.nan) == format_metric(None) == "-"
    assert format_metric(0.3333) == "33.3" and format_metric(0.5, digits=4, percent=False) == "0.5000"
    assert mean_metric([0.5, None, math.nan, 0.25]) == 0.375 and mean_metric([None]) is None
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    metrics = dataset_metrics(matrix, ["a", "b", "c"])
    assert metrics["class_iou"] == {"a": 0.5, "b": 0.0, "c": None}
    assert metrics["miou"] == 0.25 and metrics["classes_scored"] == ["a", "b", "c"]
    json.dumps(metrics, allow_nan=False)  # standard JSON: no NaN anywhere
    empty = dataset_metrics(ConfusionMatrix(2), ["a", "b"])
    assert empty["miou"] is None and empty["aacc"] is None and empty["class_iou"] == {"a": None, "b": None}
