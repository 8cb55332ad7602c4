"""Where the project's shipped data lives (taxonomies, class-name lists, configs)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def taxonomy_dir() -> Path:
    """The folder holding the shipped taxonomy TSVs and class-name lists.

    `UNIFIEDSEG_TAXONOMY_DIR` overrides it; by default it is `taxonomy/` of the source checkout that
    the package is installed from (`pip install -e .`).
    """
    override = os.environ.get("UNIFIEDSEG_TAXONOMY_DIR")
    if override:
        return Path(override)
    return REPO_ROOT / "taxonomy"
