"""Training configuration: the schema of every key (`schema`), YAML loading with `_base_` and overrides
(`loader`), and what training and inference both build from a config (`builders`: the label space and
the model; import it directly, it loads torch). `to_plain` (from unifiedseg.utils.plain) turns a
section into plain dicts and lists."""

from unifiedseg.config.loader import ConfigError, dump_config, load_config
from unifiedseg.config.schema import Config
from unifiedseg.utils.plain import to_plain

__all__ = ["Config", "ConfigError", "dump_config", "load_config", "to_plain"]
