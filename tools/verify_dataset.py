"""Thin wrapper: see unifiedseg/cli/verify_dataset.py, or run with --help."""

from unifiedseg.cli.verify_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
