"""Typed configs (DESIGN.md contract 1): the run config and the export, chat and evaluation settings.

Light package: stdlib + yaml. `from engine import config as C` gives the run config's API (RunConfig,
load, save, from_dict, replace, get, ConfigError, ...), defined in run.py; its sections that have their own
module are method (+ rl), distributed, report (retain and the report card); the other settings live in
their own modules (export, chat, evaluate, queue, grid, llamafactory) on the field machinery of schema.py.
"""
from engine.config.run import (SCHEMA_VERSION, RUN_NAME_RE, ConfigError, DataConfig, DistributedConfig,  # noqa: F401
                               ModelConfig, OutputConfig, RunConfig, SHARDED_STRATEGIES, TrainConfig, apply_overrides,
                               describe_fields, field_info, from_dict, from_yaml, get, iter_fields, load,
                               quantization, replace, save, semantic_problems, to_dict, to_yaml, world_size)
from engine.config.schema import choices, type_name  # noqa: F401
