"""Thin wrapper: see unifiedseg/cli/export.py, or run with --help."""

from unifiedseg.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
