"""Every config section is checked by `load_config`, before anything is built: an unknown key (with the
closest valid one, or the section that has it), a wrong type and an invalid value in each section fail
there, each error naming the file and the dotted key. Numbers are read as people write them (1e-3)."""

import re
from pathlib import Path

import pytest

import unifiedseg.config.builders
import unifiedseg.models
import unifiedseg.models.build
from unifiedseg.config import ConfigError, load_config
from unifiedseg.models.hrnet import HRNetV2Seg
from unifiedseg.models.pspnet import PSPNet

DEMO = Path(__file__).resolve().parent.parent / "config" / "train" / "demo" / "unified.yaml"


@pytest.fixture(autouse=True)
def no_model_is_built(monkeypatch):
    """Checking a config never builds a network."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built while checking a config")

    for module in (unifiedseg.models.build, unifiedseg.models, unifiedseg.config.builders):
        monkeypatch.setattr(module, "build_model", refuse)
    monkeypatch.setattr(HRNetV2Seg, "__init__", refuse)
    monkeypatch.setattr(PSPNet, "__init__", refuse)


def write(tmp_path, text: str) -> Path:
    """A config on top of the demo one, with `text` (YAML) merged in."""
    path = tmp_path / "x.yaml"
    path.write_text(f"_base_: {DEMO}\n{text}\n")
    return path


def error_of(tmp_path, text: str, overrides=()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message  # every line names the file
    assert all(line.startswith(f"{path}: ") for line in message.splitlines()), message
    return message


# (config text, the error after "FILE: "). Per section: an unknown key, a wrong type, an invalid value.
CASES = {
    # model
    "model-unknown": ("model: {type: hrnet, backbone: hrnet_w18_small, dropuot: 0.1}",
                      r"model.dropuot: unknown key; did you mean 'dropout'\? \(valid keys for type hrnet: "),
    "model-type": ("model: {type: hrnet, backbone: hrnet_w18_small, dropout: high}",
                   r"model.dropout: must be a number in \[0, 1\), got 'high'"),
    "model-value": ("model: {type: hrnet, backbone: hrnet_w19}",
                    r"model.backbone: 'hrnet_w19' is not a HRNet backbone; did you mean 'hrnet_w\d+'\?; valid: "),
    "model-choice": ("model: {type: hrnett, backbone: hrnet_w18_small}",
                     r"model.type: must be one of hrnet, pspnet, got 'hrnett'; did you mean 'hrnet'\?"),
    "model-pspnet": ("model: {type: pspnet, backbone: resnet18, output_stride: 32}",
                     r"model.output_stride: must be one of \(8, 16\), got 32"),
    # loss
    "loss-unknown": ("loss: {loss_decode: {type: CrossEntropyLoss, avg_non_ingore: true}}",
                     r"loss.loss_decode.avg_non_ingore: unknown key; did you mean 'avg_non_ignore'\?"),
    "loss-section-unknown": ("loss: {loss_decod: {type: CrossEntropyLoss}}",
                             r"loss.loss_decod: unknown key; did you mean 'loss_decode'\?"),
    "loss-type": ("loss: {loss_decode: [{type: CrossEntropyLoss}, {type: DiceLoss, loss_weight: heavy}]}",
                  r"loss.loss_decode\[1\].loss_weight: must be a finite number >= 0, got 'heavy'"),
    "loss-value": ("loss: {loss_decode: {type: DiceLoss, smooth: 0}}",
                   r"loss.loss_decode.smooth: must be > 0, got 0 \(DiceLoss\)"),
    "loss-name": ("loss: {loss_decode: [{type: CrossEntropyLoss}, {type: CrossEntropyLoss}]}",
                  r"loss.loss_decode\[1\].loss_name: 'loss_ce' is already the name of loss.loss_decode\[0\]"),
    "loss-sampler": ("loss: {sampler: {type: OHEMPixelSampler, thresh: 2}}",
                     r"loss.sampler.thresh: must be a probability in \(0, 1\], got 2 \(OHEMPixelSampler\)"),
    "loss-class-weight": ("loss: {loss_decode: {type: CrossEntropyLoss, class_weight: stats.json}}",
                          r"loss.loss_decode.class_weight: 'stats.json' is not a class-weight file reference"),
    # optimizer
    "optimizer-unknown": ("optimizer: {momentun: 0.9}",
                          r"optimizer.momentun: unknown key; did you mean 'momentum'\? \(valid keys for type SGD: "),
    "optimizer-type": ("optimizer: {momentum: a}", r"optimizer.momentum: must be a number in \[0, 1\), got 'a'"),
    "optimizer-value": ("optimizer: {momentum: 1.5}", r"optimizer.momentum: must be a number in \[0, 1\), got 1.5"),
    "optimizer-choice": ("optimizer: {type: Adamw}",
                         r"optimizer.type: must be one of SGD, Adam, AdamW, got 'Adamw'; did you mean 'AdamW'\?"),
    # schedule
    "schedule-unknown": ("schedule: {powr: 0.9}", r"schedule.powr: unknown key; did you mean 'power'\?"),
    "schedule-type": ("schedule: {power: strong}", r"schedule.power: must be a number >= 0, got 'strong'"),
    "schedule-value": ("schedule: {warmup_iters: 1000}", r"schedule.warmup_iters: 1000 is beyond max_iters = 600"),
    "schedule-min-lr": ("schedule: {min_lr: 0.5}", r"schedule.min_lr: 0.5 is above the optimizer's base lr = 0.02"),
    # swa
    "swa-unknown": ("swa: {star_iter: 450, swa_lr: 0.005}", r"swa.star_iter: unknown key; did you mean 'start_iter'\?"),
    "swa-type": ("swa: {start_iter: 450, swa_lr: fast}", r"swa.swa_lr: must be a number >= 0, got 'fast'"),
    "swa-value": ("swa: {start_iter: 600, swa_lr: 0.005}", r"swa.start_iter: 600 must be below max_iters = 600"),
    "swa-choice": ("swa: {start_iter: 450, swa_lr: 0.005, anneal_strategy: cosine}",
                   r"swa.anneal_strategy: must be one of cos, linear, got 'cosine'; did you mean 'cos'\?"),
    # clip_grad
    "clip-unknown": ("clip_grad: {max_nrom: 35}", r"clip_grad.max_nrom: unknown key; did you mean 'max_norm'\?"),
    "clip-type": ("clip_grad: {max_norm: big}", r"clip_grad.max_norm: must be a number > 0, got 'big'"),
    "clip-value": ("clip_grad: {max_norm: 0}", r"clip_grad.max_norm: must be a number > 0, got 0"),
    "clip-norm-type": ("clip_grad: {max_norm: 35, norm_type: -1}", r"clip_grad.norm_type: must be a number > 0, got -1"),
    # data.sampling
    "sampling-unknown": ("data: {sampling: {weigthing: size}}",
                         r"data.sampling.weigthing: unknown key; did you mean 'weighting'\?"),
    "sampling-type": ("data: {sampling: {weighting: temperature, temperature: hot}}",
                      r"data.sampling.temperature: must be a number, got 'hot'"),
    "sampling-value": ("data: {sampling: {weighting: sqrt}}",
                       r"data.sampling.weighting: must be one of equal, size, temperature, explicit, got 'sqrt'"),
    "sampling-weights": ("data: {sampling: {weights: {demo-city: 1, demo-aed: 2}}}",
                         r"data.sampling.weights: names unknown dataset\(s\) \['demo-aed'\]; did you mean 'demo-ade'\?"),
    "sampling-ranks": ("data: {sampling: {mode: per_rank, dataset_gpu_mapping: {demo-city: [0], demo-ade: [2]}}}",
                       r"data.sampling.dataset_gpu_mapping: rank\(s\) \[1\] have no dataset"),
    # data.augmentation
    "augmentation-unknown": ("data: {augmentation: {rotate_prob: 0.5}}",
                             r"data.augmentation.rotate_prob: unknown key; did you mean 'rotate_p'\?"),
    "augmentation-type": ("data: {augmentation: {flip_p: often}}",
                          r"data.augmentation.flip_p: must be a number, got 'often'"),
    "augmentation-value": ("data: {augmentation: {flip_p: 1.5}}",
                           r"data.augmentation.flip_p: must be a probability in \[0, 1\], got 1.5"),
    "augmentation-crop": ("data: {augmentation: {crop_size: [512, 512]}}",
                          r"data.augmentation.crop_size: \(512, 512\) is larger than the largest resized short side"),
    "augmentation-modes": ("data: {augmentation: {scales: [256]}}",
                           r"data.augmentation: choose one resize mode, got short_side and scales"),
    # the rest of data, validation, train, taxonomy
    "data-unknown": ("data: {crop_size: [64, 64]}",
                     r"data.crop_size: unknown key; did you mean 'data.augmentation.crop_size' or 'inference.crop_size'\?"),
    "data-label-source": ("data: {label_source: rwa}",
                          r"data.label_source: must be one of prepared, raw, got 'rwa'; did you mean 'raw'\?"),
    "data-bad-sample": ("data: {on_bad_sample: ignore}", r"data.on_bad_sample: must be one of error, skip, got 'ignore'"),
    "data-batch": ("data: {batch_size: 0}", r"data.batch_size: must be an integer >= 1, got 0"),
    "data-datasets": ("data: {train_datasets: [demo-city, demo-city]}", r"data.train_datasets: names demo-city more"),
    "val-value": ("data: {val: {max_images: 0}}", r"data.val.max_images: must be an integer >= 1, got 0"),
    "val-size": ("data: {val: {short_side: -5}}", r"data.val.short_side: must be a positive int or None, got -5"),
    "val-unknown": ("data: {val: {intervals: 5}}", r"data.val.intervals: unknown key; did you mean 'interval'\?"),
    "train-lr": ("train: {lr: 0.1}", r"train.lr: unknown key; did you mean 'optimizer.lr'\?"),
    "train-type": ("train: {accumulate_grad: twice}", r"train.accumulate_grad: must be an integer, got 'twice'"),
    "train-accumulate": ("train: {accumulate_grad: 0}", r"train.accumulate_grad: must be an integer >= 1, got 0"),
    "train-length": ("train: {num_examples: 1000}", r"train.max_iters: set exactly one of train.max_iters .* "
                                                    r"got max_iters=600, num_examples=1000"),
    "train-amp": ("train: {amp: fp32}", r"train.amp: must be one of off, fp16, bf16, got 'fp32'"),
    "train-opt-level": ("train: {amp: bf16, opt_level: O1}", r"train.opt_level: O1 \(= amp fp16\) disagrees"),
    "train-device": ("train: {device: gpu}", r"train.device: must be one of auto, cpu, cuda, got 'gpu'"),
    "taxonomy-kind": ("taxonomy: {kind: unifed}", r"taxonomy.kind: unknown taxonomy kind 'unifed'.*did you mean 'unified'"),
    "taxonomy-oracle": ("taxonomy: {kind: oracle}", r"taxonomy.kind: an oracle taxonomy takes exactly one dataset"),
    "section-unknown": ("optimiser: {lr: 0.1}", r"optimiser: unknown key; did you mean 'optimizer'\?"),
    "elsewhere-free": ("optimizer: {max_iters: 5}", r"optimizer.max_iters: unknown key; did you mean 'train.max_iters'\?"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_section_error_comes_from_load_config_with_file_and_key(case, tmp_path):
    text, expected = CASES[case]
    message = error_of(tmp_path, text)
    assert re.search(f"^{re.escape(str(tmp_path / 'x.yaml'))}: {expected}", message, re.MULTILINE), message


def test_the_same_errors_come_from_overrides(tmp_path):
    message = error_of(tmp_path, "", ["optimizer.momentum=a"])
    assert f"{tmp_path / 'x.yaml'}: optimizer.momentum: must be a number in [0, 1), got 'a'" in message
    assert "did you mean 'optimizer.lr'?" in error_of(tmp_path, "", ["train.lr=0.1"])


def test_errors_of_several_sections_come_together_one_line_each(tmp_path):
    message = error_of(tmp_path, "optimizer: {momentum: 2}\nswa: {start_iter: 0, swa_lr: 0.1}\ndata: {batch_size: 0}")
    assert [line.split(": ")[1] for line in message.splitlines()] == [
        "data.batch_size", "optimizer.momentum", "swa.start_iter"]


def test_rules_on_the_run_length_wait_for_it_when_num_examples_sets_it(tmp_path):
    # With num_examples, max_iters depends on the dataset sizes: build_scheduler / build_swa check against it.
    path = write(tmp_path, "train: {max_iters: null, num_examples: 1000}\nswa: {start_iter: 5000, swa_lr: 0.001}\n"
                           "schedule: {warmup_iters: 3000}")
    cfg = load_config(path)
    assert (cfg.train.num_examples, cfg.swa.start_iter, cfg.schedule.warmup_iters) == (1000, 5000, 3000)


NUMBERS = {  # YAML 1.1 reads all but 1.0e-3 as strings
    "optimizer.lr": ("1e-3", 0.001, float),
    "optimizer.weight_decay": ("5e-4", 0.0005, float),
    "train.num_examples": ("1e6", 1000000, int),
    "schedule.warmup_ratio": ("1.0e-3", 0.001, float),
    "data.augmentation.rotate_range": ("[-2e-1, 2e-1]", [-0.2, 0.2], float),
    "loss.sampler.min_kept": ("1e5", 100000, int),
    "clip_grad.max_norm": ("3.5e1", 35, int),
}


def _get(cfg, dotted: str):
    node = cfg
    for key in dotted.split("."):
        node = node[key]
    return node


def _check_numbers(cfg):
    for key, (_, expected, kind) in NUMBERS.items():
        value = _get(cfg, key)
        assert value == expected, key
        items = list(value) if key.endswith("rotate_range") else [value]
        assert all(type(item) is kind for item in items), (key, value)


def test_numbers_in_exponent_notation_in_yaml_files(tmp_path):
    path = write(tmp_path, """\
optimizer: {lr: 1e-3, weight_decay: 5e-4}
train: {max_iters: null, num_examples: 1e6}
schedule: {warmup_ratio: 1.0e-3}
data: {augmentation: {rotate_range: [-2e-1, 2e-1]}, train_split: 1e3}
loss: {sampler: {type: OHEMPixelSampler, thresh: 0.7, min_kept: 1e5}}
clip_grad: {max_norm: 3.5e1}""")
    cfg = load_config(path)
    _check_numbers(cfg)
    assert cfg.data.train_split == "1e3"  # a text field keeps its text


def test_numbers_in_exponent_notation_in_overrides(tmp_path):
    overrides = [f"{key}={text}" for key, (text, _, _) in NUMBERS.items() if key != "loss.sampler.min_kept"]
    overrides += ["train.max_iters=null", "loss.sampler={type: OHEMPixelSampler, min_kept: 1e5}"]
    _check_numbers(load_config(write(tmp_path, ""), overrides))


def test_a_whole_number_in_exponent_notation_that_is_not_whole_is_refused_for_an_integer(tmp_path):
    assert "train.num_examples: must be an integer, got 1500.5" in error_of(
        tmp_path, "train: {max_iters: null, num_examples: 1.5005e3}")


def test_train_hooks_shape_is_checked_at_load():
    from unifiedseg.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"train.hooks\[0\]: must be a mapping with a `type`"):
        load_config("config/train/demo/unified.yaml", ["train.hooks=[{secs: 3}]"])
