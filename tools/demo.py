"""Thin wrapper: see unifiedseg/cli/demo.py, or run with --help."""

from unifiedseg.cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
