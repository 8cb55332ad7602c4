"""`python tools/import_checkpoint.py --format mseg --config CONFIG IN OUT` (also `unifiedseg-import`): turn
a checkpoint of another code base into one of ours, which tools/test.py, tools/demo.py, tools/export.py,
`Predictor` and fine-tuning (`train.load_from=OUT`) take like a trained one.

--format mseg: MSeg's released HRNet models (mseg-semantic: mseg-3m.pth, mseg-1m.pth, ...; their keys
and their fate: unifiedseg/models/mseg_checkpoint.py). The config gives the label space (its taxonomy
and training datasets, whose fingerprint the checkpoint stores) and the model; config/mseg_zoo/ has one
per released model, with MSeg's architecture options and test settings. A file that is not an MSeg HRNet,
or predicts another number of classes, or comes from another HRNet width, is refused naming what was
expected and what was found.

Writes OUT (the weights, the taxonomy and model identity, and `imported`: format, source file, summary)
and OUT with the suffix .import.txt: every key of the file and where it went (loaded as / folded into).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("unifiedseg")

FORMATS = ("mseg",)
REPORT_SUFFIX = ".import.txt"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Import another code base's checkpoint as a unifiedseg checkpoint (weights, taxonomy and model "
                    "identity), for tools/test.py, tools/demo.py, tools/export.py, Predictor and train.load_from.",
        epilog="example: python tools/import_checkpoint.py --format mseg --config config/mseg_zoo/mseg-3m.yaml "
               "mseg-3m.pth work_dirs/mseg_zoo/mseg-3m.pth")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="mseg: MSeg's released HRNet models (mseg-semantic's train.py checkpoints or bare state dicts)")
    parser.add_argument("--config", required=True,
                        help="the config whose taxonomy and model the checkpoint holds (config/mseg_zoo/MODEL.yaml)")
    parser.add_argument("source", metavar="IN", help="the checkpoint to import")
    parser.add_argument("output", metavar="OUT", help="the unifiedseg checkpoint to write")
    parser.add_argument("--report", default=None,
                        help=f"where to write the fate of every key (default: OUT with the suffix {REPORT_SUFFIX})")
    return parser


def architecture_warnings(model_cfg: dict) -> list[str]:
    """How the config's HRNet computes differently from MSeg's (MSeg's weights then give other logits)."""
    from unifiedseg.models.hrnet import HRNetV2Seg

    warnings = []
    for key in HRNetV2Seg.IDENTITY_OPTIONS:
        value, mseg = model_cfg.get(key, HRNetV2Seg.OPTION_DEFAULTS[key]), HRNetV2Seg.MSEG_OPTIONS[key]
        if value != mseg and key != "head_conv_bias":  # a head conv bias folds exactly
            warnings.append(f"model.{key} is {value!r}, MSeg's is {mseg!r}: the logits will not be MSeg's")
    return warnings


def import_mseg(cfg, source, output, *, report_path=None):
    """Import MSeg checkpoint `source` for the config `cfg` into `output`; returns the MsegImportReport."""
    from unifiedseg.config.builders import build_model_for, training_converter
    from unifiedseg.engine import checkpoint as ckpt
    from unifiedseg.models.mseg_checkpoint import MsegCheckpointError, convert_mseg_state, read_mseg_state
    from unifiedseg.utils.fileio import atomic_write_text

    if cfg.model.type != "hrnet":
        raise MsegCheckpointError(f"MSeg's released models are HRNets: the config's model.type must be 'hrnet', "
                                  f"found {cfg.model.type!r} (use a config of config/mseg_zoo/)")
    converter = training_converter(cfg)
    logger.info("reading %s", source)
    state, layout, entries = read_mseg_state(source)
    network, model_cfg = build_model_for(cfg, converter.num_classes, pretrained=False)
    for warning in architecture_warnings(model_cfg):
        logger.warning(warning)
    weights, report = convert_mseg_state(state, network, path=source, layout=layout, entries=entries)
    network.load_state_dict(weights, strict=True)  # every key was matched: strict cannot fail here
    output = Path(output)
    ckpt.save_checkpoint(output, {"model": network.state_dict(), **ckpt.identity_entries(converter, model_cfg),
                                  "imported": {"format": "mseg", "source": str(source), "summary": report.summary(),
                                               **report.entries}})
    report_path = Path(report_path) if report_path else output.with_name(output.name + REPORT_SUFFIX)
    atomic_write_text(report_path, report.summary() + "\n" + "\n".join(report.lines()) + "\n")
    logger.info("%s", report.summary())
    logger.info("wrote %s (%s %s, %s taxonomy %s, fingerprint %s) and the key report %s", output, model_cfg["type"],
                model_cfg["backbone"], converter.kind, converter.source, converter.fingerprint(), report_path)
    return report


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from unifiedseg.config import ConfigError, load_config
    from unifiedseg.engine.checkpoint import CheckpointError
    from unifiedseg.models.mseg_checkpoint import MsegCheckpointError
    from unifiedseg.taxonomy import TaxonomyError

    try:
        cfg = load_config(args.config)
        import_mseg(cfg, args.source, args.output, report_path=args.report)
    except (ConfigError, CheckpointError, MsegCheckpointError, TaxonomyError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
