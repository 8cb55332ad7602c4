"""Thin wrapper: see unifiedseg/cli/train.py, or run with --help."""

from unifiedseg.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
