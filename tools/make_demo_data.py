"""Thin wrapper: see unifiedseg/cli/make_demo_data.py, or run with --help."""

from unifiedseg.cli.make_demo_data import main

if __name__ == "__main__":
    raise SystemExit(main())
