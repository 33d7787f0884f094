"""kopf registrations only: watches and indexes that enqueue keys, start-up and shutdown.

`build_registry` registers every handler into a fresh registry (nothing registers at import); `operate`
runs kopf with it, once, or once per number of shards a StatefulSet has (autoshard.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging

import kopf

from ..api.redact import Redactor
from ..config import OperatorConfig
from ..engine import metrics
from . import admission, autoshard, diffbase, health, lifecycle, watch
from .sharding import Shard


async def operate(config: OperatorConfig, redactor: Redactor) -> None:
    """The operator, until a signal: with the shard the flags give, or as a StatefulSet pod's shard."""
    if config.pod is None:
        await run(config, redactor, Shard(config.shard, config.total_shards))
    else:
        await autoshard.operate_as_statefulset_pod(config, functools.partial(run, config, redactor))


async def run(config: OperatorConfig, redactor: Redactor, shard: Shard, stop: asyncio.Event | None = None) -> None:
    """kopf with every handler, for `shard`, until a signal or `stop`."""
    await kopf.operator(
        registry=build_registry(config, redactor, shard),
        standalone=config.standalone,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness,
        memo=kopf.Memo(),
        stop_flag=stop,
    )
    metrics.forget_all()        # what it reported of each resource: the next run may own others


def build_registry(config: OperatorConfig, redactor: Redactor, shard: Shard | None = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    shard = shard or Shard(config.shard, config.total_shards)
    if shard.sharded:
        logging.getLogger(__name__).info("sharding: this operator takes the resources of %s", shard.describe())
    watch.register(registry, shard)
    diffbase.register(registry)
    lifecycle.register(registry, config, redactor, shard)
    admission.register(registry, config)
    health.register(registry)
    return registry
