"""Thin wrapper: see unifiedseg/cli/data.py, or run with --help."""

from unifiedseg.cli.data import main

if __name__ == "__main__":
    raise SystemExit(main())
