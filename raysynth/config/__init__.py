"""Typed configuration, the ground floor: it imports nothing of raysynth outside itself.

``typed`` (fields with help text and rules, coercion), ``sections`` (the dataclasses of a
search config), ``loading`` (YAML + ``--set`` overrides). ``raysynth.validate.load_config``
adds each package's checks of its own section.
"""

from raysynth.config.loading import (
    apply_overrides, dump_yaml, flatten, flatten_params, get_path, load_yaml, nest, nest_params, parse_config, read_json, safe_load,
    set_path,
)
from raysynth.config.sections import (
    Config,
    DataConfig,
    FinetuneOptions,
    LoraConfig,
    ModelConfig,
    PartitionConfig,
    PoolConfig,
    PretrainConfig,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    TrainConfig,
    WorkResources,
)
from raysynth.config.typed import ConfigError, check_fields, check_rules, coerce, field_, flag_name, from_dict, one_of

__all__ = [
    "Config", "ConfigError", "DataConfig", "FinetuneOptions", "LoraConfig", "ModelConfig", "PartitionConfig", "PoolConfig",
    "PretrainConfig", "ResourcesConfig", "SchedulerConfig", "SearchConfig", "TrainConfig", "WorkResources", "apply_overrides", "check_fields", "check_rules", "coerce",
    "dump_yaml", "field_", "flag_name", "flatten", "flatten_params", "get_path", "nest", "nest_params", "read_json", "safe_load", "set_path", "from_dict", "load_yaml", "one_of", "parse_config",
]
