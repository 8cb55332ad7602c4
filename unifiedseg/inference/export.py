"""Export a trained segmentation model to TorchScript or ONNX, as one module from image to probabilities.

The exported module (`ProbabilityModel`) takes a float32 (N, 3, H, W) batch of RGB images with values
0-255 and returns (N, C, H, W) float32 class probabilities; argmax over dim 1 gives the labels. Inside:

1. the Segmentor's `predict_logits` (unifiedseg/models/segmentor.py), as in training and inference:
   normalisation with the training mean and std, padding (bottom/right, zeros = the mean colour) to
   the network's `size_multiple` (HRNet's coarsest stride; the padding is traced as arithmetic on the
   input's size, so any H x W works), and the logits upsampled to `logits_stride` x their size and
   cropped to H x W (or resized to H x W with align_corners for a network that asks so);
2. softmax over the classes -- the same probabilities as `unifiedseg.inference` in whole-image mode;
3. with `test_matrix` (T, C) folded in: test-class probabilities `test_matrix @ probs` (MSeg's
   zero-shot mapping; `TaxonomyConverter.test_matrix`), so C becomes T.

`model` is a Segmentor, or a bare network with `mean` and `std` (wrapped in a Segmentor here).

`dynamic=True` (the default) exports symbolic batch, height and width; `dynamic=False` fixes H x W to
the example's (batch stays dynamic), for runtimes that want static shapes; the TorchScript module then
refuses other sizes by name. Both exporters trace the model, so every export is checked: the
serialised model runs on the example and on a batch of another size (and, when dynamic, another
height and width) and is refused, with nothing written, when its probabilities differ from PyTorch's
by more than `atol` -- a trace frozen on the example's shape shows up there. ONNX models are run in
onnxruntime when it is installed (otherwise the report says the file went unchecked).

ONNX: `exporter="dynamo"` (torch.export, PyTorch's supported exporter; needs the onnxscript package;
slow on large models: about half a minute for HRNet-W18-small on 2 CPU cores) or `"torchscript"`
(the older tracing exporter, deprecated by PyTorch but fast). Files are written atomically with the
class names, mean and std in the metadata (ONNX metadata_props / a TorchScript extra file
`unifiedseg.json`). ONNX files hold their weights inline, which limits them to 2 GB.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unifiedseg.models.segmentor import Segmentor
from unifiedseg.utils.fileio import atomic_write

logger = logging.getLogger("unifiedseg")

FORMATS = ("onnx", "torchscript")
ONNX_EXPORTERS = ("dynamo", "torchscript")
INPUT_NAME = "image"
OUTPUT_NAME = "probs"
METADATA_FILE = "unifiedseg.json"  # TorchScript extra file holding the metadata
DEFAULT_ATOL = 1e-3  # on probabilities; a trace frozen on the wrong shape is off by ~0.1 or more


class ExportError(RuntimeError):
    """The model could not be exported, or the exported file does not reproduce PyTorch's output."""


def as_segmentor(model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None) -> Segmentor:
    """A Segmentor as it is (then mean and std must be None: it has its own), or a bare network wrapped in
    one with `mean` / `std` (None: the network gets the 0-255 values unchanged)."""
    if isinstance(model, Segmentor):
        if mean is not None or std is not None:
            raise ValueError("a Segmentor normalises with its own mean and std; pass mean/std only with a bare network")
        return model
    return Segmentor(network=model, mean=list(mean) if mean is not None else [0.0] * 3,
                     std=list(std) if std is not None else [1.0] * 3)


class ProbabilityModel(nn.Module):
    """RGB images (N, 3, H, W), values 0-255 -> probabilities (N, C, H, W); see the module docstring."""

    def __init__(self, model: nn.Module, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 test_matrix: torch.Tensor | None = None) -> None:
        super().__init__()
        self.segmentor = as_segmentor(model, mean, std)
        if test_matrix is not None:
            test_matrix = torch.as_tensor(test_matrix, dtype=torch.float32)
            num_classes = self.segmentor.num_classes
            if test_matrix.dim() != 2 or (num_classes is not None and test_matrix.shape[1] != num_classes):
                raise ValueError(f"test_matrix must be (test classes, {num_classes}) for this model, "
                                 f"got shape {tuple(test_matrix.shape)}")
        self.register_buffer("test_matrix", test_matrix)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probs = self.segmentor.predict_logits(images.float()).float().softmax(dim=1)
        if self.test_matrix is not None:
            # a 1x1 convolution is test_matrix @ probs at every pixel; written as an einsum it makes
            # the dynamo exporter freeze the batch size into HRNet's resize nodes
            probs = F.conv2d(probs, self.test_matrix[:, :, None, None])
        return probs


class _CheckedInput(nn.Module):
    """Scripted around the trace: refuses input the trace was not made for, saying what it expects
    (TorchScript raises it as torch.jit.Error)."""

    def __init__(self, traced: nn.Module, height: int, width: int) -> None:
        super().__init__()
        self.traced = traced
        self.height = height  # -1: any
        self.width = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.size(1) != 3:
            raise RuntimeError("expected RGB images of shape (N, 3, H, W) with values 0-255, got shape "
                               + str(images.shape))
        if self.height > 0 and (images.size(2) != self.height or images.size(3) != self.width):
            raise RuntimeError("this model was exported for " + str(self.height) + " x " + str(self.width)
                               + " images (height x width), got " + str(images.size(2)) + " x " + str(images.size(3)))
        return self.traced(images)


@dataclass
class ExportReport:
    """What was written and how it was checked: (input shape, largest absolute difference) per check."""

    path: Path
    format: str
    num_classes: int
    input_shape: list  # None for dynamic dimensions
    checked_with: str | None
    checks: list[tuple[tuple[int, ...], float]] = field(default_factory=list)
    unchecked_reason: str = "skipped (verify=False, --no-verify)"

    def summary(self) -> str:
        shape = " x ".join("?" if d is None else str(d) for d in self.input_shape)
        lines = [f"wrote {self.format} model {self.path}: input {INPUT_NAME!r} float32 ({shape}) RGB 0-255, "
                 f"output {OUTPUT_NAME!r} ({self.num_classes} class probabilities)"]
        if self.checked_with is None:
            lines.append(f"not checked against PyTorch: {self.unchecked_reason}")
        for shape_checked, diff in self.checks:
            lines.append(f"checked with {self.checked_with} at input {tuple(shape_checked)}: largest difference "
                         f"from PyTorch {diff:.2e}")
        return "\n".join(lines)


def _check_example(example: torch.Tensor) -> torch.Tensor:
    if not isinstance(example, torch.Tensor) or example.dim() != 4 or example.shape[1] != 3:
        shape = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
        raise ValueError(f"example must be a float (N, 3, H, W) tensor of RGB values 0-255, got {shape}")
    return example.detach().float().cpu()


def _check_inputs(example: torch.Tensor, dynamic: bool) -> list[torch.Tensor]:
    """The example, and a batch of another size (with an odd height and width when those are dynamic),
    so that a trace frozen on the example's shape is caught."""
    n, _, h, w = example.shape
    generator = torch.Generator().manual_seed(0)
    other_hw = (h + 3, w + 5) if dynamic else (h, w)
    return [example, torch.rand(n + 1, 3, *other_hw, generator=generator) * 255]


@contextlib.contextmanager
def _quiet_export_warnings():
    """Tracing warns about every Python branch on a shape (the exports are checked numerically instead),
    and TorchScript's functions about their deprecation (said once, in the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*(deprecated|legacy TorchScript-based ONNX|will be removed).*")
        yield


def _metadata(class_names: Sequence[str] | None, wrapper: ProbabilityModel, dynamic: bool) -> dict:
    return {"input": f"{INPUT_NAME}: float32 (N, 3, H, W) RGB 0-255", "output": f"{OUTPUT_NAME}: (N, C, H, W) probabilities",
            "class_names": list(class_names) if class_names is not None else None,
            "mean": wrapper.segmentor.mean.flatten().tolist(), "std": wrapper.segmentor.std.flatten().tolist(),
            "dynamic_size": dynamic}


def _compare(run, wrapper: ProbabilityModel, inputs: list[torch.Tensor], atol: float, what: str) -> list:
    checks = []
    for images in inputs:
        with torch.no_grad():
            expected = wrapper(images).numpy()
        try:
            got = np.asarray(run(images))
        except Exception as err:  # the runtime's own error types; we add what was being checked
            raise ExportError(f"{what} failed on input of shape {tuple(images.shape)}: {str(err).splitlines()[0]}") from err
        if got.shape != expected.shape:
            raise ExportError(f"{what} returned shape {got.shape} for input {tuple(images.shape)}, PyTorch {expected.shape}")
        diff = float(np.abs(got - expected).max()) if got.size else 0.0
        if not diff <= atol:
            raise ExportError(f"{what} differs from PyTorch by {diff:.3g} (tolerance {atol}) on input of shape "
                              f"{tuple(images.shape)}: the export does not reproduce the model")
        checks.append((tuple(images.shape), diff))
    return checks


def _prepare(model: nn.Module, example, mean, std, test_matrix) -> tuple[ProbabilityModel, torch.Tensor, bool]:
    example = _check_example(example)
    was_training = model.training
    wrapper = ProbabilityModel(model.cpu().eval(), mean=mean, std=std, test_matrix=test_matrix).cpu().eval()
    return wrapper, example, was_training


def export_torchscript(model: nn.Module, path, *, example: torch.Tensor, test_matrix: torch.Tensor | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None, dynamic: bool = True,
                       class_names: Sequence[str] | None = None, verify: bool = True,
                       atol: float = DEFAULT_ATOL) -> ExportReport:
    """Trace `ProbabilityModel(model, ...)` on `example` and save it with torch.jit.save; see the module docstring.

    `model` is a Segmentor, or a bare network with `mean` / `std`, the training normalisation (None: the
    network gets the 0-255 values unchanged).
    """
    path = Path(path)
    wrapper, example, was_training = _prepare(model, example, mean, std, test_matrix)
    try:
        with _quiet_export_warnings(), torch.no_grad():
            return _trace_and_save(wrapper, path, example=example, dynamic=dynamic, class_names=class_names,
                                   verify=verify, atol=atol)
    finally:
        model.train(was_training)


def _trace_and_save(wrapper: ProbabilityModel, path: Path, *, example, dynamic, class_names, verify,
                    atol) -> ExportReport:
    traced = torch.jit.trace(wrapper, example, check_trace=False)
    height, width = (-1, -1) if dynamic else (int(example.shape[2]), int(example.shape[3]))
    module = torch.jit.script(_CheckedInput(traced, height, width))
    buffer = io.BytesIO()
    torch.jit.save(module, buffer, _extra_files={METADATA_FILE: json.dumps(_metadata(class_names, wrapper, dynamic))})
    blob = buffer.getvalue()
    report = ExportReport(path=path, format="torchscript", num_classes=_output_classes(wrapper, example),
                          input_shape=_input_shape(example, dynamic), checked_with=None)
    if verify:  # the saved bytes, loaded back, before anything is written
        loaded = torch.jit.load(io.BytesIO(blob), map_location="cpu")
        report.checks = _compare(lambda images: loaded(images).numpy(), wrapper, _check_inputs(example, dynamic), atol,
                                 f"the TorchScript module for {path}")
        report.checked_with = "torch.jit.load"
    _write(path, blob)
    return report


def _write(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(blob))


def _input_shape(example: torch.Tensor, dynamic: bool) -> list:
    return [None, 3, None, None] if dynamic else [None, 3, int(example.shape[2]), int(example.shape[3])]


def _onnx_module():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install onnx (or export --format torchscript)") from None
    return onnx


def export_onnx(model: nn.Module, path, *, example: torch.Tensor, test_matrix: torch.Tensor | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None, dynamic: bool = True,
                class_names: Sequence[str] | None = None, exporter: str = "dynamo", opset: int | None = None,
                verify: bool = True, atol: float = DEFAULT_ATOL) -> ExportReport:
    """Export `ProbabilityModel(model, ...)` to an ONNX file; see the module docstring.

    The batch dimension is always dynamic; H and W too with `dynamic=True`. `exporter` is "dynamo" or
    "torchscript"; `opset` None takes the exporter's default.
    """
    if exporter not in ONNX_EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(ONNX_EXPORTERS)}")
    onnx = _onnx_module()
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter builds the graph with it)
        except ImportError:
            raise ExportError("the dynamo ONNX exporter needs the onnxscript package: pip install onnxscript, "
                              "or use the older tracing exporter (exporter='torchscript', --onnx-exporter torchscript)") from None
    path = Path(path)
    wrapper, example, was_training = _prepare(model, example, mean, std, test_matrix)
    try:
        with tempfile.TemporaryDirectory() as tmp, _quiet_export_warnings(), torch.no_grad():
            raw = Path(tmp) / "model.onnx"
            _run_onnx_exporter(wrapper, raw, example=example, dynamic=dynamic, exporter=exporter, opset=opset)
            proto = onnx.load(str(raw))
        for key, value in _metadata(class_names, wrapper, dynamic).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        onnx.checker.check_model(proto)
        blob = proto.SerializeToString()
        report = ExportReport(path=path, format="onnx", num_classes=_output_classes(wrapper, example),
                              input_shape=_input_shape(example, dynamic), checked_with=None)
        if verify:
            try:
                import onnxruntime
            except ImportError:
                onnxruntime = None
                report.unchecked_reason = "onnxruntime is not installed (pip install onnxruntime)"
                logger.warning("onnxruntime is not installed: %s is not checked against PyTorch", path)
            if onnxruntime is not None:  # the serialised model, before anything is written
                session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
                report.checks = _compare(lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0],
                                         wrapper, _check_inputs(example, dynamic), atol,
                                         f"the ONNX model for {path} in onnxruntime")
                report.checked_with = "onnxruntime"
        _write(path, blob)
        return report
    finally:
        model.train(was_training)


def _run_onnx_exporter(wrapper: ProbabilityModel, raw: Path, *, example, dynamic, exporter, opset) -> None:
    options = {} if opset is None else {"opset_version": opset}
    try:
        if exporter == "dynamo":
            auto = torch.export.Dim.AUTO  # named Dims trip over HRNet's size arithmetic; AUTO infers the relations
            dims = {0: auto, 2: auto, 3: auto} if dynamic else {0: auto}
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress; the report says what matters
                torch.onnx.export(wrapper, (example,), str(raw), dynamo=True, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], dynamic_shapes=(dims,), external_data=False, **options)
        else:
            axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
            torch.onnx.export(wrapper, (example,), str(raw), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, **options)
    except Exception as err:  # torch.export raises many error types; name the step and keep the cause
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "; try exporter='torchscript' (--onnx-exporter torchscript)" if exporter == "dynamo" else ""
        raise ExportError(f"the {exporter} ONNX exporter failed: {first_line}{hint}") from err


def _output_classes(wrapper: ProbabilityModel, example: torch.Tensor) -> int:
    if wrapper.test_matrix is not None:
        return int(wrapper.test_matrix.shape[0])
    with torch.no_grad():
        return int(wrapper(example[:1]).shape[1])


def read_torchscript_metadata(path) -> dict:
    """The metadata saved with a TorchScript export (class names, mean, std, ...)."""
    extra = {METADATA_FILE: ""}
    with _quiet_export_warnings():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])


def read_onnx_metadata(path) -> dict:
    """The metadata saved with an ONNX export (class names, mean, std, ...)."""
    proto = _onnx_module().load(str(path), load_external_data=False)
    return {entry.key: json.loads(entry.value) for entry in proto.metadata_props}


__all__ = ["ExportError", "ExportReport", "FORMATS", "ONNX_EXPORTERS", "ProbabilityModel", "export_onnx",
           "export_torchscript", "read_onnx_metadata", "read_torchscript_metadata"]
