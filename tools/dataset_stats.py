"""Thin wrapper: see unifiedseg/cli/dataset_stats.py, or run with --help."""

from unifiedseg.cli.dataset_stats import main

if __name__ == "__main__":
    raise SystemExit(main())
