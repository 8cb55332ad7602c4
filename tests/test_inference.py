"""Inference: tiling, flips, scales, chunked upsampling and padding checked exactly with fake models whose
logits encode pixel positions; then the Predictor on a tiny trained checkpoint (loading, test-dataset
output, ensembles, refused checkpoints)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unifiedseg.config import load_config
from unifiedseg.engine.checkpoint import CheckpointError, load_checkpoint
from unifiedseg.engine.launch import run_training
from unifiedseg.inference import InferenceSettings, Predictor, predict_probs
from unifiedseg.inference.tiling import (blend_window, confidence, logits_to_probs, pad_to_crop, slide_probs,
                                         tile_starts, upsample_chunked, whole_probs)
from unifiedseg.models import Segmentor
from unifiedseg.taxonomy import TaxonomyError, build_converter

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "train" / "demo" / "unified.yaml"

# Per-pixel linear map from the 3 input channels to 4 class logits.
POINTWISE_WEIGHTS = torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [-1.0, 0.2, 2.0], [0.0, 0.0, 0.0]])


def pointwise_model(images):
    """Logits of a pixel depend on that pixel's values only: flip- and tiling-equivariant."""
    return torch.einsum("kc,nchw->nkhw", POINTWISE_WEIGHTS, images)


def position_image(h, w):
    """A (3, h, w) image whose pixels encode their row and column (and a texture), so a misplaced tile shows."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([ys / h * 4 - 2, xs / w * 4 - 2, torch.sin(ys * 0.7) * torch.cos(xs * 1.3)])


class Recorder:
    """Wraps a fake model and keeps the input batches it saw."""

    def __init__(self, model):
        self.model, self.inputs = model, []

    def __call__(self, images):
        self.inputs.append(images.clone())
        return self.model(images)


def two_class_logits(logit0, like):
    """(N, 2, h, w) logits [logit0, 0]: class 0 has probability sigmoid(logit0)."""
    logit0 = logit0.expand(like.shape[0], like.shape[-2], like.shape[-1])
    return torch.stack([logit0, torch.zeros_like(logit0)], dim=1)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# ---- building blocks ---------------------------------------------------------------------------

def test_tile_starts_follow_msegs_grid_with_the_last_tile_moved_back_to_the_border():
    assert tile_starts(10, 4, 3) == [0, 3, 6]
    assert tile_starts(11, 4, 3) == [0, 3, 6, 7]
    assert tile_starts(4, 4, 3) == [0]
    assert tile_starts(713 + 475, 713, 476) == [0, 475]
    with pytest.raises(ValueError, match="shorter than the crop"):
        tile_starts(3, 4, 2)


def test_the_hann_window_is_symmetric_positive_and_peaks_in_the_middle():
    window = blend_window((1, 4), "hann")[0]
    assert window.tolist() == pytest.approx([0.146447, 0.853553, 0.853553, 0.146447], abs=1e-6)
    assert torch.equal(blend_window((3, 2), "uniform"), torch.ones(3, 2))
    with pytest.raises(ValueError, match="valid windows: hann, uniform"):
        blend_window((2, 2), "gauss")


def test_chunked_upsampling_equals_one_interpolate_call():
    logits = torch.randn(1, 10, 7, 9, generator=torch.Generator().manual_seed(0))
    reference = F.interpolate(logits, size=(50, 61), mode="bilinear", align_corners=False)
    # equal up to float rounding (the vectorised kernel may sum in another order for another channel count)
    assert torch.allclose(upsample_chunked(logits, (50, 61), class_chunk=3), reference, rtol=0, atol=1e-6)
    accumulated = torch.ones(1, 10, 50, 61)
    upsample_chunked(logits, (50, 61), class_chunk=4, out=accumulated, accumulate=True)
    assert torch.allclose(accumulated, reference + 1, rtol=0, atol=1e-6)


def test_logits_become_probabilities_in_row_blocks_and_must_be_at_the_input_size():
    h, w = 25, 30
    logits = torch.randn(2, 10, h, w, generator=torch.Generator().manual_seed(1))
    blocks = logits_to_probs(logits, (h, w), class_chunk=3)
    whole = logits_to_probs(logits, (h, w), class_chunk=100)
    assert blocks.shape == (2, 10, h, w)
    assert torch.allclose(blocks, whole, rtol=0, atol=1e-6)
    assert torch.allclose(blocks, logits.softmax(1), atol=1e-6)
    with pytest.raises(ValueError, match=r"are \(7, 8\): forward must return logits at the input size"):
        logits_to_probs(torch.zeros(1, 3, 7, 8), (h, w))


def test_padding_is_centred_with_the_mean_colour_or_by_reflection():
    image = position_image(3, 5).unsqueeze(0)
    padded, (top, left) = pad_to_crop(image, (8, 6), "mean")
    assert padded.shape == (1, 3, 8, 6) and (top, left) == (2, 0)
    assert torch.equal(padded[..., 2:5, 0:5], image)
    assert padded[..., :2, :].abs().sum() == 0 and padded[..., 5:, :].abs().sum() == 0 and padded[..., 5].abs().sum() == 0
    reflected, offset = pad_to_crop(image, (11, 6), "reflect")  # 8 rows of padding from 3: reflected twice
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (4, 4), (0, 1)), mode="reflect")
    assert offset == (4, 0) and np.array_equal(reflected.numpy(), expected)
    assert pad_to_crop(image, (2, 2))[0] is image


# ---- sliding window ----------------------------------------------------------------------------

@pytest.mark.parametrize("window", ["hann", "uniform"])
@pytest.mark.parametrize("tile_batch", [1, 3])
def test_sliding_window_assembles_tiles_where_they_belong(window, tile_batch):
    image = position_image(50, 70)
    recorder = Recorder(pointwise_model)
    tiled = slide_probs(recorder, image, crop_hw=(32, 24), stride_hw=(20, 16), tile_batch=tile_batch, window=window)
    whole = whole_probs(pointwise_model, image)
    assert tiled.shape == (4, 50, 70)
    assert torch.allclose(tiled, whole, atol=1e-6)
    # rows at 0, 18 (moved back); columns at 0, 16, 32, 46: 8 tiles of 32 x 24, in batches of tile_batch
    assert [b.shape[0] for b in recorder.inputs] == ([1] * 8 if tile_batch == 1 else [3, 3, 2])
    tiles = torch.cat(recorder.inputs)
    assert tiles.shape[1:] == (3, 32, 24)
    assert torch.equal(tiles[-1], image[:, 18:50, 46:70])


def first_pixel_model(images):
    """Every pixel of a tile gets logit0 = the tile's top-left value of channel 0: tiles tell themselves apart."""
    return two_class_logits(images[:, 0, :1, :1], images)


@pytest.mark.parametrize("window, expected", [
    ("uniform", [0.75, 0.75, 0.625, 0.625, 0.5, 0.5]),
    # Hann weights of a 4-pixel tile: 0.146447, 0.853553, 0.853553, 0.146447. Pixel 2 is pixel 2 of
    # tile 0 and pixel 0 of tile 1: 0.853553 * 0.75 + 0.146447 * 0.5; pixel 3 the other way round.
    ("hann", [0.75, 0.75, 0.713388, 0.536612, 0.5, 0.5]),
])
def test_overlapping_tiles_are_blended_by_their_window_weights(window, expected):
    image = torch.zeros(3, 1, 6)
    image[0, 0, 0] = math.log(3)  # tile 0 (columns 0-3) predicts class 0 with 0.75; tile 1 (2-5) with 0.5
    probs = slide_probs(first_pixel_model, image, crop_hw=(1, 4), stride_hw=(1, 2), window=window)
    assert probs[0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(probs.sum(0), torch.ones(1, 6))


def test_an_image_smaller_than_the_crop_is_padded_and_cropped_back():
    image = position_image(10, 12)
    recorder = Recorder(pointwise_model)
    settings = InferenceSettings(mode="slide", crop_size=16)
    probs = predict_probs(recorder, image, settings)
    assert probs.shape == (4, 10, 12)
    assert torch.allclose(probs, whole_probs(pointwise_model, image), atol=1e-6)
    (tile,) = recorder.inputs
    assert tile.shape == (1, 3, 16, 16)
    assert torch.equal(tile[0, :, 3:13, 2:14], image) and tile[0, :, :3].abs().sum() == 0
    recorder.inputs.clear()
    predict_probs(recorder, image, InferenceSettings(mode="slide", crop_size=16, pad_mode="reflect"))
    assert torch.equal(recorder.inputs[0][0, :, 2, 2:14], image[:, 1])  # row -1 mirrors row 1


# ---- flips and scales --------------------------------------------------------------------------

def column_model(images):
    """logit0 = the column index within the input: not flip-equivariant."""
    columns = torch.arange(images.shape[-1], dtype=torch.float32).view(1, 1, -1)
    return two_class_logits(columns, images)


def test_flip_averages_the_prediction_of_the_mirrored_image_mapped_back():
    image = position_image(2, 5)
    recorder = Recorder(column_model)
    probs = predict_probs(recorder, image, InferenceSettings(flip=True))
    # pixel x: (sigmoid(x) + sigmoid(4 - x)) / 2
    expected = [(sigmoid(x) + sigmoid(4 - x)) / 2 for x in range(5)]
    assert expected == pytest.approx([0.741007, 0.841816, 0.880797, 0.841816, 0.741007], abs=1e-6)
    assert probs[0, 1].tolist() == pytest.approx(expected, abs=1e-6)
    assert len(recorder.inputs) == 2 and torch.equal(recorder.inputs[1][0], image.flip(-1))
    # a flip-equivariant model gives the same with and without flip (the mirrored pass is mapped back)
    assert torch.allclose(predict_probs(pointwise_model, image, InferenceSettings(flip=True)),
                          predict_probs(pointwise_model, image, InferenceSettings()), atol=1e-6)


def width_model(images):
    """Constant logits decided by the input width: 0.75 for class 0 at width 8, 0.1 at any other."""
    logit0 = math.log(3) if images.shape[-1] == 8 else math.log(1 / 9)
    return two_class_logits(torch.tensor(logit0), images)


def test_multi_scale_averages_probabilities_not_logits():
    recorder = Recorder(width_model)
    probs = predict_probs(recorder, torch.zeros(3, 8, 8), InferenceSettings(scales=[1.0, 0.5]))
    # probabilities: (0.75 + 0.1) / 2 = 0.425; averaged logits would give sigmoid(-ln(3) / 2) = 0.366
    assert probs.shape == (2, 8, 8)
    assert torch.allclose(probs[0], torch.full((8, 8), 0.425))
    assert [tuple(x.shape[-2:]) for x in recorder.inputs] == [(8, 8), (4, 4)]


def test_scales_apply_to_the_short_side_size_and_the_output_keeps_the_image_size():
    image = position_image(20, 30)
    settings = InferenceSettings(short_side=10, scales=(1.0, 1.5), flip=True)
    assert settings.scaled_sizes((20, 30)) == [(10, 15), (15, 22)]
    assert settings.forward_passes((20, 30)) == 4
    recorder = Recorder(pointwise_model)
    probs = predict_probs(recorder, image, settings)
    assert probs.shape == (4, 20, 30)
    assert [tuple(x.shape[-2:]) for x in recorder.inputs] == [(10, 15), (10, 15), (15, 22), (15, 22)]
    assert torch.allclose(probs.sum(0), torch.ones(20, 30), atol=1e-5)


def test_forward_passes_count_tiles_over_scales_and_flips():
    settings = InferenceSettings(mode="slide", crop_size=32, stride=20, scales=(0.5, 1.0), flip=True)
    # 50 x 70 at 0.5 -> 25 x 35 padded to 32 x 35: 1 x 2 tiles; at 1.0: 2 x 3 tiles; (2 + 6) x 2 flips
    assert settings.forward_passes((50, 70)) == 16
    recorder = Recorder(pointwise_model)
    predict_probs(recorder, position_image(50, 70), settings)
    assert sum(x.shape[0] for x in recorder.inputs) == 16


class Stride2Network(torch.nn.Module):
    """Logits at ceil(size / 2), as PSPNet with a zoom_factor below its output stride."""

    logits_stride = 2
    num_classes = 4

    def forward(self, images):
        return {"logits": F.avg_pool2d(pointwise_model(images), 2, ceil_mode=True)}


def test_coarse_models_are_upsampled_by_the_segmentor_per_tile_and_per_image():
    segmentor = Segmentor(network=Stride2Network(), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def forward(images):
        return segmentor.predict_logits(images, normalized=True)

    image = position_image(21, 30)
    coarse = Stride2Network()(image[None])["logits"]  # 11 x 15 cells cover 22 x 30 pixels, cropped to 21 x 30
    reference = F.interpolate(coarse, size=(22, 30), mode="bilinear", align_corners=False)[..., :21, :30].softmax(1)
    assert torch.allclose(predict_probs(forward, image, InferenceSettings()), reference[0], atol=1e-6)
    for settings in (InferenceSettings(), InferenceSettings(mode="slide", crop_size=(9, 16), stride=(6, 8))):
        probs = predict_probs(forward, image, settings)
        assert probs.shape == (4, 21, 30) and torch.allclose(probs.sum(0), torch.ones(21, 30), atol=1e-5)
    with pytest.raises(ValueError, match="at the input size"):
        predict_probs(lambda images: Stride2Network()(images)["logits"], image, InferenceSettings())


def test_confidence_is_the_largest_class_probability():
    probs = torch.tensor([[[0.2, 0.7]], [[0.5, 0.1]], [[0.3, 0.2]]])
    assert confidence(probs).tolist() == [[pytest.approx(0.5), pytest.approx(0.7)]]


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "tiles"}, "valid modes: whole, slide"),
    ({"mode": "slide"}, "needs crop_size"),
    ({"crop_size": 64}, "mode='slide' only"),
    ({"mode": "slide", "crop_size": 64, "stride": 65}, "larger than crop_size"),
    ({"scales": []}, "scales: must be a non-empty list"),
    ({"scales": [1.0, -0.5]}, "positive numbers"),
    ({"tile_batch": 0}, "tile_batch: must be a positive int"),
    ({"pad_mode": "edge"}, "valid pad modes: mean, reflect"),
])
def test_bad_settings_are_refused_naming_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InferenceSettings(**kwargs)


def test_slide_stride_defaults_to_two_thirds_of_the_crop():
    assert InferenceSettings(mode="slide", crop_size=(713, 473)).stride == (476, 316)


# ---- the Predictor on a trained checkpoint -----------------------------------------------------

def tiny_config(demo_root, work_dir, *extra):
    overrides = [f"work_dir={work_dir}", f"data.root={demo_root}", "data.generate_demo=false", "data.batch_size=2",
                 "data.num_workers=0", "data.augmentation.short_side=64", "data.augmentation.crop_size=[64, 64]",
                 "data.val.datasets=[]", "train.max_iters=2", "train.checkpoint_interval=0",
                 "schedule.warmup_iters=1", *extra]
    return load_config(DEMO_CONFIG, overrides)


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """(config, final checkpoint path) of a 2-iteration demo run."""
    work_dir = tmp_path_factory.mktemp("inference_run")
    cfg = tiny_config(demo_root, work_dir)
    run_training(cfg)
    return cfg, work_dir / "checkpoints" / "final.pth"


def demo_image(demo_root):
    import cv2

    path = sorted((Path(demo_root) / "demo-camvid").rglob("*.png"))[0]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(image[:40, :56])


def test_the_predictor_loads_a_checkpoint_and_predicts_the_model_label_space(trained, demo_root, caplog):
    cfg, checkpoint = trained
    with caplog.at_level("WARNING", logger="unifiedseg"):
        predictor = Predictor(cfg, checkpoint, device="cpu")
    assert "running inference on the CPU" in caplog.text
    image = demo_image(demo_root)
    labels, probs = predictor.predict(image)
    assert predictor.class_names[:2] == ["road", "sidewalk"] and predictor.num_classes == 9
    assert labels.shape == (40, 56) and labels.dtype == np.uint8 and labels.max() < 9
    assert probs.shape == (9, 40, 56) and probs.dtype == np.float32
    assert np.allclose(probs.sum(0), 1, atol=1e-5)
    assert np.array_equal(labels, probs.argmax(0))
    # the network's own output through the same normalisation gives the same probabilities
    segmentor = predictor.models[0]
    assert isinstance(segmentor, Segmentor)
    mean, std = np.array(cfg.data.augmentation.mean), np.array(cfg.data.augmentation.std)
    tensor = torch.from_numpy(((image - mean) / std).transpose(2, 0, 1).astype(np.float32))[None]
    with torch.no_grad():  # HRNet: pad 40 x 56 to 64 x 64, logits at stride 4 upsampled and cropped
        stride4 = segmentor.network(F.pad(tensor, (0, 8, 0, 24)))["logits"]
        upsampled = F.interpolate(stride4, size=(64, 64), mode="bilinear", align_corners=False)
        direct = upsampled[..., :40, :56].softmax(1)[0].numpy()
        via_uint8 = segmentor.predict_logits(torch.from_numpy(image.transpose(2, 0, 1))[None]).softmax(1)[0].numpy()
    assert np.allclose(probs, direct, atol=1e-5) and np.allclose(probs, via_uint8, atol=1e-5)
    prediction = predictor.predict(image)
    assert np.array_equal(prediction.confidence, probs.max(0))


def test_slide_mode_with_flip_and_scales_predicts_at_the_image_size(trained, demo_root):
    cfg, checkpoint = trained
    predictor = Predictor(cfg, checkpoint, device="cpu", mode="slide", crop_size=32, stride=24, scales=(0.75, 1.0),
                          flip=True, tile_batch=3)
    labels, probs = predictor.predict(demo_image(demo_root))
    assert labels.shape == (40, 56) and probs.shape == (9, 40, 56)
    assert np.allclose(probs.sum(0), 1, atol=1e-5)
    # scale 0.75: 30 x 42, padded to 32 x 42: 1 x 2 tiles; scale 1: 40 x 56: 2 x 2 tiles; twice with flip
    assert predictor.forward_passes((40, 56)) == (2 + 4) * 2
    with pytest.raises(ValueError, match="RGB uint8 numpy array"):
        predictor.predict(np.zeros((8, 8), dtype=np.uint8))


def test_output_dataset_maps_averaged_probabilities_to_the_test_classes(trained, demo_root):
    cfg, checkpoint = trained
    image = demo_image(demo_root)
    universal = Predictor(cfg, checkpoint, device="cpu", flip=True).predict(image)
    camvid = Predictor(cfg, checkpoint, device="cpu", flip=True, output_dataset="demo-camvid")
    assert camvid.class_names == ["Sky", "Building", "Tree", "Road", "Sidewalk", "Car", "Truck", "Pedestrian",
                                  "Bicyclist"]
    labels, probs = camvid.predict(image)
    matrix = build_converter("unified", "demo", train_datasets=["demo-city", "demo-ade"],
                             test_datasets=["demo-camvid"]).test_matrix("demo-camvid").numpy()
    assert np.allclose(probs, np.einsum("tu,uhw->thw", matrix, universal.probs), atol=1e-6)
    assert labels.dtype == np.uint8 and labels.max() < 9 and np.array_equal(labels, probs.argmax(0))
    # universal class "road" (0) counts towards camvid "Road" (3): the same probability
    assert np.allclose(probs[3], universal.probs[0])
    with pytest.raises(TaxonomyError, match="test datasets: demo-camvid"):
        Predictor(cfg, checkpoint, device="cpu", output_dataset="demo-city")


def test_an_ensemble_of_one_checkpoint_twice_equals_the_single_model(trained, demo_root, tmp_path):
    cfg, checkpoint = trained
    image = demo_image(demo_root)
    single = Predictor(cfg, checkpoint, device="cpu").predict(image)
    copy = tmp_path / "copy.pth"
    copy.write_bytes(checkpoint.read_bytes())
    ensemble = Predictor(cfg, [checkpoint, copy], device="cpu")
    assert len(ensemble.models) == 2
    labels, probs = ensemble.predict(image)
    assert np.allclose(probs, single.probs, atol=1e-6) and np.array_equal(labels, single.labels)


def altered_checkpoint(source, target, change):
    state = load_checkpoint(source)
    change(state)
    torch.save(state, target)
    return target


def test_checkpoints_of_another_taxonomy_or_model_are_refused_naming_both(trained, demo_root, tmp_path):
    cfg, checkpoint = trained
    naive_cfg = load_config(REPO / "config" / "train" / "demo" / "naive.yaml",
                            [f"data.root={demo_root}", "data.generate_demo=false"])
    with pytest.raises(CheckpointError, match=r"final.pth was trained on taxonomy unified .*fingerprint 7e3a4d3c0f75e81a"
                                              r".*uses naive .*fingerprint 645b32992d1529a0"):
        Predictor(naive_cfg, checkpoint, device="cpu")

    other_taxonomy = altered_checkpoint(checkpoint, tmp_path / "other_taxonomy.pth",
                                        lambda s: s["taxonomy"].update(fingerprint="0123456789abcdef"))
    with pytest.raises(CheckpointError, match=r"ensemble checkpoints disagree on the taxonomy: .*final.pth .*"
                                              r"fingerprint 7e3a4d3c0f75e81a.*other_taxonomy.pth .*0123456789abcdef"):
        Predictor(cfg, [checkpoint, other_taxonomy], device="cpu")

    other_model = altered_checkpoint(checkpoint, tmp_path / "other_model.pth",
                                     lambda s: s["model_config"].update(backbone="hrnet_w18"))
    with pytest.raises(CheckpointError, match=r"disagree on the model: .*hrnet_w18_small.*other_model.pth.*'hrnet_w18'"):
        Predictor(cfg, [checkpoint, other_model], device="cpu")
    with pytest.raises(CheckpointError, match=r"other_model.pth holds a model .*'hrnet_w18'.*config builds .*"
                                              r"'hrnet_w18_small'.*differing: backbone"):
        Predictor(cfg, other_model, device="cpu")

    def drop_a_class(state):
        weights = state["model"]
        for key in [k for k in weights if k.startswith("classifier")]:
            weights[key] = weights[key][:8]
    wrong_weights = altered_checkpoint(checkpoint, tmp_path / "wrong_weights.pth", drop_a_class)
    with pytest.raises(CheckpointError, match=r"wrong_weights.pth: its weights do not fit the model the config builds "
                                              r"\(hrnet hrnet_w18_small, 9 classes\).*classifier"):
        Predictor(cfg, wrong_weights, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor(cfg, tmp_path / "missing.pth", device="cpu")
    with pytest.raises(ValueError, match="non-empty list of paths"):
        Predictor(cfg, [], device="cpu")


def test_inference_settings_come_from_the_config_section_with_arguments_in_its_place():
    from unifiedseg.config.inference import inference_settings

    section = {"mode": "slide", "crop_size": None, "stride": None, "scales": [1.0, 1.5], "window": "uniform"}
    settings = inference_settings(section, training_crop=[713, 713])  # slide without a crop: the training crop
    assert settings == InferenceSettings(mode="slide", crop_size=713, stride=476, scales=(1.0, 1.5), window="uniform")
    assert inference_settings(section, training_crop=[713, 713], crop_size=473, flip=True) == InferenceSettings(
        mode="slide", crop_size=473, stride=316, scales=(1.0, 1.5), window="uniform", flip=True)
    whole = inference_settings({**section, "crop_size": 593}, mode="whole")  # the section's crop is slide mode's
    assert whole == InferenceSettings(scales=(1.0, 1.5), window="uniform")
    with pytest.raises(ValueError, match=r"^inference.pad_mode: 'edge' is unknown"):
        inference_settings({}, pad_mode="edge")
