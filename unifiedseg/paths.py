"""Where the project's shipped data lives: taxonomies, class-name lists, MSeg's split lists, registries
and configs. They are package data under `unifiedseg/resources/`, so a wheel finds them from any
working directory; a source checkout also reaches them as `taxonomy/` and `config/` (links)."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES_DIR = PACKAGE_DIR / "resources"
CONFIG_PREFIX = "config"  # how the README and users spell shipped configs: config/train/demo/unified.yaml
CACHE_ENV = "UNIFIEDSEG_CACHE_DIR"


def taxonomy_dir() -> Path:
    """The folder holding the shipped taxonomy TSVs, class-name lists, remap tables and registries.

    `UNIFIEDSEG_TAXONOMY_DIR` overrides it.
    """
    override = os.environ.get("UNIFIEDSEG_TAXONOMY_DIR")
    if override:
        return Path(override)
    return RESOURCES_DIR / "taxonomy"


def shipped_lists_dir() -> Path:
    """MSeg's split lists, `NAME/SPLIT.txt.xz` (CC BY 4.0, see resources/lists/README.md)."""
    return RESOURCES_DIR / "lists"


def shipped_config_dir() -> Path:
    """The shipped training and model-zoo configs (`config/` of a source checkout)."""
    return RESOURCES_DIR / "config"


def cache_dir() -> Path:
    """Where generated files are cached (e.g. COCO's train lists): $UNIFIEDSEG_CACHE_DIR, else
    $XDG_CACHE_HOME/unifiedseg, else ~/.cache/unifiedseg."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unifiedseg"


def find_config(path: str | os.PathLike) -> Path:
    """A config path as the user gave it, else the shipped config of that name.

    `config/train/demo/unified.yaml` (or `train/demo/unified.yaml`) that does not exist relative to the
    working directory is looked up among the shipped configs, so the README's commands work from any
    directory with an installed wheel. A path that is neither is returned unchanged (the loader then
    reports it missing).
    """
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts
    relative = Path(*parts[1:]) if parts and parts[0] == CONFIG_PREFIX and len(parts) > 1 else given
    shipped = shipped_config_dir() / relative
    return shipped if shipped.is_file() else given
