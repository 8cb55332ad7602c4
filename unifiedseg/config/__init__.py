"""Training configuration: the schema of every key (`schema`) and YAML loading with `_base_` and overrides (`loader`)."""

from unifiedseg.config.loader import ConfigError, dump_config, load_config, to_plain
from unifiedseg.config.schema import Config

__all__ = ["Config", "ConfigError", "dump_config", "load_config", "to_plain"]
