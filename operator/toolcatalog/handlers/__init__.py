"""kopf registrations only: watches and indexes that enqueue keys, start-up and shutdown.

`build_registry` registers every handler into a fresh registry (nothing registers at import).
"""

from __future__ import annotations

import logging

import kopf

from ..api.redact import Redactor
from ..config import OperatorConfig
from . import admission, health, lifecycle, watch
from .sharding import Shard


def build_registry(config: OperatorConfig, redactor: Redactor) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    shard = Shard(config.shard, config.total_shards)
    if shard.sharded:
        logging.getLogger(__name__).info("sharding: this operator takes the resources of %s", shard.describe())
    watch.register(registry, shard)
    lifecycle.register(registry, config, redactor, shard)
    admission.register(registry, config)
    health.register(registry)
    return registry
