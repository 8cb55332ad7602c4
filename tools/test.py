"""Thin wrapper: see unifiedseg/cli/test.py, or run with --help."""

from unifiedseg.cli.test import main

if __name__ == "__main__":
    raise SystemExit(main())
