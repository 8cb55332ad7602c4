"""Thin wrapper: see unifiedseg/cli/import_checkpoint.py, or run with --help."""

from unifiedseg.cli.import_checkpoint import main

if __name__ == "__main__":
    raise SystemExit(main())
