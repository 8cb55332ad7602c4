"""Export: the probability module checked by hand on constant-logit models; TorchScript and ONNX files
(onnxruntime) equal PyTorch at other sizes and batches, with and without the folded test mapping;
fixed sizes refused by name; a trace frozen on its example caught; tools/export.py on the demo model
against the Predictor."""

import math
import sys

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from checkpoint_fixtures import DEMO_CONFIG, one_thread, write_untrained_checkpoint  # noqa: F401 (autouse fixture)
from unifiedseg.cli.export import main as export_main
from unifiedseg.inference import Predictor
from unifiedseg.inference.export import (ExportError, ProbabilityModel, export_onnx, export_torchscript,
                                         read_onnx_metadata, read_torchscript_metadata)

# TorchScript's own functions warn that they are deprecated at every use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")

# test class 0 <- model classes 0 and 1; test class 1 <- class 2; model class 3 counts towards nothing
TEST_MATRIX = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


class ConstantLogits(nn.Module):
    """Logits log(1), log(2), log(3), log(4) everywhere: softmax gives 0.1, 0.2, 0.3, 0.4."""

    num_classes = 4

    def forward(self, images):
        n, _, h, w = images.shape
        return {"logits": torch.log(torch.arange(1.0, 5.0)).view(1, 4, 1, 1).expand(n, 4, h, w)}


class TinySegmenter(nn.Module):
    """A real little network with the model contract's quirks: logits at half resolution (logits_stride
    2, ceil of odd sizes) and inputs that must be multiples of 4 (size_multiple), like HRNet's 32."""

    num_classes = 4
    logits_stride = 2
    size_multiple = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.classifier = nn.Conv2d(8, 4, 1)

    def forward(self, images):
        if images.shape[-2] % 4 or images.shape[-1] % 4:
            raise ValueError(f"input sizes must be multiples of 4, got {tuple(images.shape)}")
        return {"logits": self.classifier(torch.relu(self.conv(images)))}


def tiny_reference(model, images, mean, std, test_matrix=None):
    """The probabilities by the rules of the module docstring, written out separately."""
    n, _, h, w = images.shape
    x = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    x = F.pad(x, (0, -w % 4, 0, -h % 4))
    logits = model(x)["logits"]
    logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    probs = logits.softmax(dim=1)
    if test_matrix is not None:
        probs = (test_matrix @ probs.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1).permute(0, 3, 1, 2)
    return probs


MEAN, STD = [120.0, 110.0, 100.0], [60.0, 50.0, 40.0]


def images(n, h, w, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


# ---- the module that is exported ---------------------------------------------------------------
def test_probabilities_and_the_folded_test_mapping_by_hand():
    probs = ProbabilityModel(ConstantLogits())(images(1, 3, 5))
    assert probs.shape == (1, 4, 3, 5)
    assert torch.allclose(probs[0, :, 1, 2], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    folded = ProbabilityModel(ConstantLogits(), test_matrix=TEST_MATRIX)(images(2, 3, 5))
    # test class 0 = 0.1 + 0.2, test class 1 = 0.3; class 3's 0.4 counts towards no test class
    assert folded.shape == (2, 2, 3, 5) and torch.allclose(folded[1, :, 2, 4], torch.tensor([0.3, 0.3]))


def test_padding_upsampling_and_cropping_follow_the_model_contract():
    model = TinySegmenter().eval()
    x = images(2, 9, 13)  # neither a multiple of 4 nor of the logits stride
    with torch.no_grad():
        got = ProbabilityModel(model, mean=MEAN, std=STD, test_matrix=TEST_MATRIX)(x)
        assert torch.allclose(got, tiny_reference(model, x, MEAN, STD, TEST_MATRIX), atol=1e-6)
    with pytest.raises(ValueError, match=r"test_matrix must be \(test classes, 4\)"):
        ProbabilityModel(model, test_matrix=torch.ones(2, 5))


# ---- TorchScript ---------------------------------------------------------------------------------
@pytest.mark.parametrize("test_matrix", [None, TEST_MATRIX], ids=["model-classes", "test-classes"])
def test_torchscript_equals_pytorch_at_other_sizes_and_batches(tmp_path, test_matrix):
    model = TinySegmenter()
    report = export_torchscript(model, tmp_path / "m.pt", example=images(1, 16, 20), mean=MEAN, std=STD,
                                test_matrix=test_matrix, class_names=["a", "b"] if test_matrix is not None else None)
    assert report.checked_with == "torch.jit.load" and [shape for shape, _ in report.checks] == [(1, 3, 16, 20), (2, 3, 19, 25)]
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = images(3, 7, 11, seed=1)
    with torch.no_grad():
        assert torch.allclose(loaded(x), tiny_reference(model.eval(), x, MEAN, STD, test_matrix), atol=1e-5)
    assert report.num_classes == (2 if test_matrix is not None else 4)
    meta = read_torchscript_metadata(tmp_path / "m.pt")
    assert meta["mean"] == MEAN and meta["std"] == STD and meta["dynamic_size"] is True
    assert meta["class_names"] == (["a", "b"] if test_matrix is not None else None)


def test_a_fixed_size_torchscript_module_refuses_other_sizes(tmp_path):
    export_torchscript(TinySegmenter(), tmp_path / "m.pt", example=images(1, 16, 20), dynamic=False)
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    assert loaded(images(2, 16, 20)).shape == (2, 4, 16, 20)
    # TorchScript raises torch.jit.Error carrying the module's message
    with pytest.raises(torch.jit.Error, match=r"exported for 16 x 20 images \(height x width\), got 17 x 20"):
        loaded(images(1, 17, 20))
    with pytest.raises(torch.jit.Error, match=r"expected RGB images of shape \(N, 3, H, W\)"):
        loaded(torch.zeros(1, 4, 16, 20))


class FrozenByTrace(nn.Module):
    """A Python branch on the width: a trace keeps only the branch of its example."""

    num_classes = 2

    def forward(self, images):
        n, _, h, w = images.shape
        first = torch.ones(n, 1, h, w) if w > 20 else torch.zeros(n, 1, h, w)
        return {"logits": torch.cat([first, torch.zeros(n, 1, h, w)], dim=1)}


def test_an_export_that_does_not_reproduce_the_model_is_refused(tmp_path):
    # the trace at width 20 always gives logits (0, 0), PyTorch at width 25 gives (1, 0):
    # softmax e / (e + 1) - 1/2 = 0.231 by hand
    assert math.isclose(math.e / (math.e + 1) - 0.5, 0.2311, abs_tol=1e-4)
    with pytest.raises(ExportError, match=r"differs from PyTorch by 0.231 .* on input of shape \(2, 3, 19, 25\)"):
        export_torchscript(FrozenByTrace(), tmp_path / "m.pt", example=images(1, 16, 20))
    assert not (tmp_path / "m.pt").exists()


# ---- ONNX ---------------------------------------------------------------------------------------
def run_onnx(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["probs"], {"image": x.numpy()})[0])


@pytest.mark.parametrize("test_matrix", [None, TEST_MATRIX], ids=["model-classes", "test-classes"])
def test_onnx_equals_pytorch_in_onnxruntime(tmp_path, test_matrix):
    model = TinySegmenter()
    report = export_onnx(model, tmp_path / "m.onnx", example=images(1, 16, 20), mean=MEAN, std=STD,
                         test_matrix=test_matrix, exporter="torchscript", class_names=list("abcd"[:4 if test_matrix is None else 2]))
    assert report.checked_with == "onnxruntime" and len(report.checks) == 2
    x = images(3, 7, 11, seed=1)
    with torch.no_grad():
        assert torch.allclose(run_onnx(tmp_path / "m.onnx", x), tiny_reference(model.eval(), x, MEAN, STD, test_matrix),
                              atol=1e-5)
    assert read_onnx_metadata(tmp_path / "m.onnx")["class_names"] == list("abcd"[:4 if test_matrix is None else 2])


def test_onnx_with_the_dynamo_exporter_and_a_fixed_size(tmp_path):
    model = TinySegmenter()
    report = export_onnx(model, tmp_path / "m.onnx", example=images(1, 16, 20), mean=MEAN, std=STD,
                         test_matrix=TEST_MATRIX, exporter="dynamo", dynamic=False)
    assert report.input_shape == [None, 3, 16, 20] and [s for s, _ in report.checks] == [(1, 3, 16, 20), (2, 3, 16, 20)]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 16, 20]
    x = images(2, 16, 20, seed=3)
    with torch.no_grad():
        assert torch.allclose(run_onnx(tmp_path / "m.onnx", x), tiny_reference(model.eval(), x, MEAN, STD, TEST_MATRIX),
                              atol=1e-5)


def test_bad_export_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown ONNX exporter 'tf'; valid: dynamo, torchscript"):
        export_onnx(TinySegmenter(), tmp_path / "m.onnx", example=images(1, 8, 8), exporter="tf")
    with pytest.raises(ValueError, match=r"example must be a float \(N, 3, H, W\) tensor"):
        export_torchscript(TinySegmenter(), tmp_path / "m.pt", example=torch.zeros(3, 8, 8))
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.onnx").exists()


# ---- tools/export.py ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_untrained_checkpoint(tmp_path_factory.mktemp("export_ckpt") / "untrained.pth")


def export_cli(*args):
    return export_main(["--config", str(DEMO_CONFIG), *[str(a) for a in args]])


def demo_image(h, w):
    rng = np.random.default_rng(0)
    image = np.zeros((h, w, 3), np.uint8)
    image[: h // 2] = (70, 130, 180)
    image[h // 2:, : w // 2] = (128, 64, 128)
    return np.clip(image + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)


def test_export_cli_onnx_with_the_test_mapping_equals_the_predictor(tmp_path, checkpoint, capsys):
    out = tmp_path / "demo_camvid.onnx"
    assert export_cli("--checkpoint", checkpoint, "--format", "onnx", "--onnx-exporter", "torchscript",
                      "--test-dataset", "demo-camvid", "--output", out) == 0
    printed = capsys.readouterr().out
    assert "checked with onnxruntime at input (2, 3, 99, 101)" in printed  # the training crop 96 x 96, + (3, 5)
    image = demo_image(40, 56)
    predictor = Predictor(DEMO_CONFIG, checkpoint, device="cpu", output_dataset="demo-camvid")
    expected = predictor.predict(image).probs
    got = run_onnx(out, torch.from_numpy(image).permute(2, 0, 1)[None].float())[0].numpy()
    assert got.shape == expected.shape == (len(predictor.class_names), 40, 56)
    assert np.abs(got - expected).max() < 1e-4
    assert read_onnx_metadata(out)["class_names"] == predictor.class_names


def test_export_cli_torchscript_at_a_fixed_size(tmp_path, checkpoint, capsys):
    out = tmp_path / "demo.pt"
    assert export_cli("--checkpoint", checkpoint, "--format", "torchscript", "--height", 40, "--width", 56,
                      "--output", out) == 0
    assert "input 'image' float32 (? x 3 x 40 x 56)" in capsys.readouterr().out
    image = demo_image(40, 56)
    expected = Predictor(DEMO_CONFIG, checkpoint, device="cpu").predict(image).probs
    with torch.no_grad():
        got = torch.jit.load(str(out))(torch.from_numpy(image).permute(2, 0, 1)[None].float())[0].numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_export_cli_errors(tmp_path, checkpoint, capsys):
    assert export_cli("--checkpoint", checkpoint, "--format", "onnx", "--height", 40, "--output", tmp_path / "m") == 2
    assert "give both --height and --width" in capsys.readouterr().err
    assert export_cli("--checkpoint", checkpoint, "--format", "torchscript", "--opset", 17, "--output", tmp_path / "m") == 2
    assert "--onnx-exporter and --opset apply to --format onnx only" in capsys.readouterr().err
    assert export_cli("--checkpoint", checkpoint, "--format", "onnx", "--test-dataset", "camvid",
                      "--output", tmp_path / "m") == 2
    assert "'camvid' is not a test dataset" in capsys.readouterr().err
    assert export_cli("--checkpoint", tmp_path / "none.pth", "--format", "onnx", "--output", tmp_path / "m") == 2
    assert "none.pth does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_without_onnxruntime_the_file_is_written_and_the_report_says_it_went_unchecked(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    report = export_onnx(TinySegmenter(), tmp_path / "m.onnx", example=images(1, 8, 8), exporter="torchscript")
    assert (tmp_path / "m.onnx").exists() and report.checked_with is None and report.checks == []
    assert "not checked against PyTorch: onnxruntime is not installed" in report.summary()
