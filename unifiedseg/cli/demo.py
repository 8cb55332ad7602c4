"""`python tools/demo.py --config FILE --checkpoint CKPT --input IMAGES_DIR_OR_VIDEO --output DIR`: segment a
folder of images (or one image) into colour label maps and overlays with a legend, or a video into an
overlay video.

For an image NAME.jpg: OUTPUT/NAME_labels.png (an indexed PNG: its pixel values are the class ids, its
palette colours them; above 255 classes a PNG palette cannot hold them, so an RGB colour PNG) and
OUTPUT/NAME_overlay.jpg (the image blended with the colours, with a legend of the classes present
below it). For a video NAME.mp4: OUTPUT/NAME_overlay.mp4, every frame so, with
a legend strip of fixed height (frames of a video are all one size).

`--taxonomy universal` (the default) predicts in the model's own label space (the universal classes
of a unified model); `--taxonomy D` maps the predictions to the classes of test dataset D of the
config's taxonomy (MSeg's zero-shot mapping) and colours them with D's palette.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
OWN_SPACE = "universal"
VIDEO_LEGEND_ROWS = 2
VIDEO_CODEC = "mp4v"  # MPEG-4 part 2: encodable by the FFmpeg inside opencv-python(-headless) wheels
DEFAULT_FPS = 25.0  # when a video does not say


class DemoError(ValueError):
    """Bad input for the demo: the message names the path and what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Segment a folder of images, one image, or a video with a trained model, writing colour label "
                    "maps and overlays with a legend.\n\n" + __doc__.split("\n\n", 1)[1].replace("`", ""),
        epilog="examples:\n"
               "  python tools/demo.py --config config/train/demo/unified.yaml "
               "--checkpoint work_dirs/demo/unified/checkpoints/final.pth --input data/demo/demo-camvid/val "
               "--output work_dirs/demo/unified/demo\n"
               "  python tools/demo.py ... --input street.mp4 --output out/ --taxonomy demo-camvid",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config of the checkpoint")
    parser.add_argument("--checkpoint", required=True, nargs="+", help="checkpoint(s); several = an ensemble")
    parser.add_argument("--input", required=True,
                        help=f"a folder of images ({', '.join(IMAGE_SUFFIXES)}; not searched recursively), one image, "
                             f"or a video ({', '.join(VIDEO_SUFFIXES)})")
    parser.add_argument("--output", required=True, help="output folder (created if missing)")
    parser.add_argument("--taxonomy", default=OWN_SPACE, metavar="universal|DATASET",
                        help="'universal' (default): the model's own label space; or a test dataset of the config's "
                             "taxonomy, whose classes the predictions are mapped to")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize the short side before predicting (results are at the input size)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the class colours in overlays (default 0.5)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip and count unreadable images instead of stopping at the first")
    return parser


def find_inputs(path: Path) -> tuple[str, list[Path]]:
    """("images", files) or ("video", [file]); DemoError for a missing path or one with nothing to segment."""
    if not path.exists():
        raise DemoError(f"input {path} does not exist")
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DemoError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        by_stem = defaultdict(list)
        for image in images:
            by_stem[image.stem].append(image.name)
        clashes = [names for names in by_stem.values() if len(names) > 1]
        if clashes:
            raise DemoError(f"images in {path} share a name and would write the same outputs: "
                            + "; ".join(", ".join(names) for names in clashes) + " (rename or move one of each)")
        return "images", images
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "images", [path]
    if suffix in VIDEO_SUFFIXES:
        return "video", [path]
    raise DemoError(f"input {path} is neither a folder, an image ({', '.join(IMAGE_SUFFIXES)}) nor a video "
                    f"({', '.join(VIDEO_SUFFIXES)})")


def output_palette(predictor):
    """The palette of the predictor's output space: the test dataset's or oracle dataset's file, else generated."""
    from unifiedseg.drawing import palette_for

    count = len(predictor.class_names)
    if predictor.output_dataset is not None:
        return palette_for(predictor.output_dataset, num_classes=count)
    if predictor.converter.kind == "oracle":
        return palette_for(predictor.converter.train_datasets[0], num_classes=count)
    return palette_for(predictor.class_names)


def segment_images(predictor, images: list[Path], output: Path, *, palette, alpha: float, skip_bad: bool) -> tuple[int, list]:
    """Write NAME_labels.png and NAME_overlay.jpg for each image; returns (written, [skipped BadSampleErrors])."""
    from tqdm import tqdm

    from unifiedseg.data.decode import BadSampleError, read_image
    from unifiedseg.drawing import overlay_with_legend, save_label_png, write_image

    written, skipped = 0, []
    for path in tqdm(images, desc="demo", unit="image"):
        try:
            image = read_image(path)
        except BadSampleError as err:
            if not skip_bad:
                raise DemoError(f"{err} (--skip-bad skips unreadable images)") from None
            skipped.append(err)
            continue
        labels = predictor.predict(image).labels
        save_label_png(output / f"{path.stem}_labels.png", labels, palette)
        write_image(output / f"{path.stem}_overlay.jpg",
                    overlay_with_legend(image, labels, palette, predictor.class_names, alpha))
        written += 1
    return written, skipped


def segment_video(predictor, video: Path, output: Path, *, palette, alpha: float) -> tuple[Path, int]:
    """Write OUTPUT/NAME_overlay.mp4; returns (its path, frames written)."""
    import cv2
    from tqdm import tqdm

    from unifiedseg.drawing import overlay_with_legend

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DemoError(f"{video}: OpenCV cannot open this video (unsupported codec or corrupt file)")
    target = output / f"{video.stem}_overlay.mp4"
    # OpenCV picks the container by the suffix, so the temporary file keeps it
    partial = output / f".{video.stem}_overlay.partial.mp4"
    writer = None
    frames = 0
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and fps > 0 else DEFAULT_FPS
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        with tqdm(total=total if total > 0 else None, desc="demo", unit="frame") as progress:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                labels = predictor.predict(rgb).labels
                frame = overlay_with_legend(rgb, labels, palette, predictor.class_names, alpha,
                                            legend_rows=VIDEO_LEGEND_ROWS)
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*VIDEO_CODEC), fps, (width, height))
                    if not writer.isOpened():
                        raise DemoError(f"OpenCV cannot write {VIDEO_CODEC} video to {partial}")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                frames += 1
                progress.update(1)
        if frames == 0:
            raise DemoError(f"{video}: no frame could be read")
        writer.release()
        writer = None
        os.replace(partial, target)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if partial.exists():
            partial.unlink()
    return target, frames


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # our messages at INFO; other libraries' (the ONNX exporter's are many) from WARNING up
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("unifiedseg").setLevel(logging.INFO)
    if not 0.0 <= args.alpha <= 1.0:
        print(f"error: --alpha must be between 0 and 1, got {args.alpha}", file=sys.stderr)
        return 2
    from unifiedseg.config import ConfigError
    from unifiedseg.engine.checkpoint import CheckpointError
    from unifiedseg.taxonomy import TaxonomyError

    try:
        kind, inputs = find_inputs(Path(args.input))
        from unifiedseg.inference import Predictor

        predictor = Predictor(args.config, args.checkpoint, device=args.device, short_side=args.short_side,
                              output_dataset=None if args.taxonomy == OWN_SPACE else args.taxonomy)
        palette = output_palette(predictor)
    except (DemoError, ConfigError, CheckpointError, TaxonomyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "video":
            target, frames = segment_video(predictor, inputs[0], output, palette=palette, alpha=args.alpha)
            print(f"wrote {target} ({frames} frames)")
            return 0
        written, skipped = segment_images(predictor, inputs, output, palette=palette, alpha=args.alpha,
                                          skip_bad=args.skip_bad)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s):", file=sys.stderr)
        for err in skipped:
            print(f"  {err}", file=sys.stderr)
    print(f"wrote label maps and overlays of {written} image(s) to {output}")
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
