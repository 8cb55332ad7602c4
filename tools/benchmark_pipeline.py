"""Thin wrapper: see unifiedseg/cli/benchmark_pipeline.py, or run with --help."""

from unifiedseg.cli.benchmark_pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
