"""Validate, inspect, compare and edit a taxonomy TSV; see `python tools/taxonomy.py --help`."""
import sys

from unifiedseg.cli.taxonomy import main

if __name__ == "__main__":
    sys.exit(main())
