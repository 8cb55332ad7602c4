"""Argument helpers shared by the data commands: pick a registry dataset and its data root."""

from __future__ import annotations

import argparse

from unifiedseg.data.labels import LABEL_MODES
from unifiedseg.data.registry import DATA_ROOT_ENV, DatasetRegistry, resolve_data_root


def add_dataset_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        parser.add_argument("--datasets", nargs="+", required=True, metavar="NAME", help="registry dataset names")
    else:
        parser.add_argument("--dataset", required=True, metavar="NAME", help="registry dataset name (see taxonomy/datasets/)")
    parser.add_argument("--split", default="train", help="which list of the dataset (default: train)")
    parser.add_argument("--root", default=None, help=f"data root (default: ${DATA_ROOT_ENV})")
    parser.add_argument("--registry", nargs="*", default=[], metavar="YAML",
                        help="extra dataset registry files, for datasets not in taxonomy/datasets/")
    parser.add_argument("--label-source", choices=LABEL_MODES, default="prepared",
                        help="prepared: the files MSeg's preparation writes (default) | raw: the publishers' files, "
                             "MSeg's relabeling applied on the fly")


def load_registry_and_root(args):
    return DatasetRegistry.load(extra_files=args.registry), resolve_data_root(args.root)
