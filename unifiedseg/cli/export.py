"""`python tools/export.py --config FILE --checkpoint CKPT --format onnx|torchscript --output FILE`: export a
trained model as one module from RGB images to class probabilities (see unifiedseg/inference/export.py).

The exported module takes a float32 (N, 3, H, W) batch of RGB values 0-255 (normalisation is inside)
and returns (N, C, H, W) probabilities: of the model's own classes, or with `--test-dataset D` of D's
classes (the taxonomy's mapping folded in). Without --height/--width, batch, height and width are
dynamic and the model is traced at the training crop size; with them, height and width are fixed.
The written file is run on the example (and a second size) and compared with PyTorch before the
command reports success.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from unifiedseg.inference.export import FORMATS, ONNX_EXPORTERS

    parser = argparse.ArgumentParser(
        description="Export a trained segmentation model to ONNX or TorchScript.\n\n"
                    + __doc__.split("\n\n", 1)[1].replace("`", ""),
        epilog="examples:\n"
               "  python tools/export.py --config config/train/demo/unified.yaml "
               "--checkpoint work_dirs/demo/unified/checkpoints/final.pth --format onnx --output demo.onnx\n"
               "  python tools/export.py ... --format torchscript --output demo_camvid.pt --test-dataset demo-camvid "
               "--height 360 --width 480",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config of the checkpoint")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint to export")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx or torchscript")
    parser.add_argument("--output", required=True, help="file to write (.onnx / .pt)")
    parser.add_argument("--test-dataset", default=None, metavar="DATASET",
                        help="fold the mapping to this test dataset's classes into the model")
    parser.add_argument("--height", type=int, default=None, help="fixed input height (needs --width)")
    parser.add_argument("--width", type=int, default=None, help="fixed input width (needs --height)")
    parser.add_argument("--onnx-exporter", default=None, choices=ONNX_EXPORTERS,
                        help="dynamo (torch.export, default; needs onnxscript; about a minute for big models on a CPU) "
                             "or torchscript (PyTorch's older tracing exporter; fast)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no-verify", action="store_true", help="skip running the written file against PyTorch")
    return parser


def example_size(cfg, height: int | None, width: int | None) -> tuple[tuple[int, int], bool]:
    """((height, width) to trace at, dynamic?): the given fixed size, else the training crop with dynamic sizes."""
    if (height is None) != (width is None):
        raise ValueError("give both --height and --width (a fixed input size), or neither (dynamic sizes)")
    if height is not None:
        if height < 1 or width < 1:
            raise ValueError(f"--height and --width must be positive, got {height} x {width}")
        return (height, width), False
    crop = list(cfg.data.augmentation.crop_size)
    return (int(crop[0]), int(crop[1])), True


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # our messages at INFO; other libraries' (the ONNX exporter's are many) from WARNING up
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("unifiedseg").setLevel(logging.INFO)
    import torch

    from unifiedseg.config import ConfigError, load_config
    from unifiedseg.engine.checkpoint import CheckpointError
    from unifiedseg.inference import Predictor
    from unifiedseg.inference.export import ExportError, export_onnx, export_torchscript
    from unifiedseg.taxonomy import TaxonomyError

    if args.format != "onnx" and (args.onnx_exporter is not None or args.opset is not None):
        print("error: --onnx-exporter and --opset apply to --format onnx only", file=sys.stderr)
        return 2
    exporter = args.onnx_exporter or "dynamo"
    try:
        cfg = load_config(args.config)
        (height, width), dynamic = example_size(cfg, args.height, args.width)
        predictor = Predictor(cfg, args.checkpoint, device="cpu", output_dataset=args.test_dataset)
    except (ConfigError, CheckpointError, TaxonomyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, 3, height, width, generator=generator) * 255
    # predictor.models[0] is a Segmentor: it carries the config's normalisation
    options = dict(example=example, test_matrix=predictor.test_matrix, dynamic=dynamic,
                   class_names=predictor.class_names, verify=not args.no_verify)
    output = Path(args.output)
    print(f"exporting {cfg.model.type} ({len(predictor.class_names)} "
          f"{'classes of ' + args.test_dataset if args.test_dataset else 'classes'}) to {args.format}, traced at "
          f"{height} x {width}" + (f" with the {exporter} exporter" if args.format == "onnx" else ""),
          file=sys.stderr)
    try:
        if args.format == "onnx":
            report = export_onnx(predictor.models[0], output, exporter=exporter, opset=args.opset, **options)
        else:
            report = export_torchscript(predictor.models[0], output, **options)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
