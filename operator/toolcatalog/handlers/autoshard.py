"""Autosharding, as kube-state-metrics does it: a StatefulSet's pod is the shard of its ordinal, of as
many shards as the StatefulSet has replicas, read at start and followed while the pod runs.

`kubectl scale statefulset/toolcatalog --replicas N` is then the whole procedure. Each running pod sees
the new count within a moment (a watch on that one StatefulSet), stops its watches and syncs the way
SIGTERM stops them (a sync that began writing finishes), and starts them again as its shard of N; a
new pod starts as its shard. For that moment a resource may have two owners (one pod that has not
noticed yet, one that has) or none: status writes carry the resourceVersion they were decided from,
so two owners lose no update and post no Event twice, and an unowned resource waits for its owner.
A pod whose ordinal is beyond the replicas is being scaled away: it takes no resources.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import OperatorConfig
from ..kube.client import KubeClient
from ..kube.errors import ApiError
from ..kube.login import login
from .sharding import Shard, statefulset_pod, statefulset_shards

logger = logging.getLogger(__name__)

WATCH_SECONDS = 300             # one watch request; the next resumes from the last version seen
RETRY_SECONDS = (1.0, 60.0)     # API failures while following: backoff from, to
FATAL = (401, 403, 404)         # at start: the RBAC or the pod's name is wrong, say so and stop

Run = Callable[[Shard, asyncio.Event], Awaitable[None]]


class ShardingError(Exception):
    """The StatefulSet cannot be read at start: a configuration to fix, not a failure to retry."""


class StatefulSetShards:
    """The StatefulSet that runs this pod: its replicas (the number of shards) now, and when they change."""

    def __init__(self, kube: KubeClient, namespace: str, pod: str) -> None:
        self.kube, self.namespace, self.pod = kube, namespace, pod
        self.statefulset, self.ordinal = statefulset_pod(pod)

    def describe(self) -> str:
        return f"StatefulSet {self.namespace}/{self.statefulset}"

    def shard(self, statefulset: dict[str, Any]) -> tuple[int, int]:
        """(this pod's shard index, the number of shards) by this version of the StatefulSet."""
        replicas, start = statefulset_shards(statefulset)
        return self.ordinal - start, replicas

    async def read(self) -> tuple[dict[str, Any], str]:
        found = await self.kube.read_statefulset(self.namespace, self.statefulset)
        if found is None:
            raise ApiError(404, "NotFound", f"{self.describe()}: HTTP 404 NotFound")
        return found, str((found.get("metadata") or {}).get("resourceVersion") or "")

    async def first(self) -> tuple[tuple[int, int], str]:
        """The shard at start; passing API failures are retried, a wrong name or RBAC is fatal."""
        delay = RETRY_SECONDS[0]
        while True:
            try:
                found, version = await self.read()
                return self.shard(found), version
            except ApiError as error:
                if error.status in FATAL:
                    raise ShardingError(
                        f"--pod {self.pod}: cannot read {self.describe()} ({error.message}); the operator's "
                        f"ServiceAccount needs get, list and watch on it (deploy/overlays/sharded/rbac.yaml)"
                    ) from None
                logger.warning("reading %s failed (%s); trying again in %.0fs", self.describe(), error.message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_SECONDS[1])

    async def changed(self, shard: tuple[int, int], version: str) -> tuple[tuple[int, int], str]:
        """Wait until the StatefulSet gives this pod another shard than `shard`; that one, and its version."""
        delay = RETRY_SECONDS[0]
        while True:
            try:
                if not version:                 # resume impossible (410 Gone, an error): read it again
                    found, version = await self.read()
                    if self.shard(found) != shard:
                        return self.shard(found), version
                async for event in self.kube.watch_statefulset(self.namespace, self.statefulset,
                                                               resource_version=version,
                                                               timeout_seconds=WATCH_SECONDS):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = ""
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event.get("type") in ("ADDED", "MODIFIED") and self.shard(obj) != shard:
                        return self.shard(obj), version
                delay = RETRY_SECONDS[0]
            except ApiError as error:
                logger.warning("following %s failed (%s); trying again in %.0fs", self.describe(), error.message,
                               delay)
                version = ""
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])


def _set(flag: asyncio.Event, _: object) -> None:
    flag.set()


def _catch_signals(*flags: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `flags` from now on: while kopf is not running (it puts its own in place
    when it starts, and leaves them behind, stale, when it stops)."""
    def caught() -> None:
        for flag in flags:
            flag.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, caught)


async def operate_as_statefulset_pod(config: OperatorConfig, run: Run) -> None:
    """`run` the operator as this pod's shard until a signal stops it; again as its new shard whenever the
    StatefulSet's replicas change."""
    assert config.pod is not None and config.pod_namespace is not None
    kube = KubeClient(functools.partial(login, config.context), qps=config.kube_qps, burst=config.kube_burst)
    shards = StatefulSetShards(kube, config.pod_namespace, config.pod)
    terminated = asyncio.Event()
    try:
        (index, total), version = await shards.first()
        while not terminated.is_set():
            stop = asyncio.Event()
            change = asyncio.ensure_future(shards.changed((index, total), version))
            change.add_done_callback(functools.partial(_set, stop))
            try:
                if 0 <= index < total:
                    logger.info("pod %s is shard %d of %d (%s)", config.pod, index, total, shards.describe())
                    await run(Shard(index, total), stop)
                else:
                    logger.warning("pod %s: %s has %d replicas, this pod is being scaled away; it takes no "
                                   "resources", config.pod, shards.describe(), total)
                    _catch_signals(terminated, stop)
                    await stop.wait()
            finally:
                changed = change.done()
                change.cancel()
            _catch_signals(terminated)      # until kopf runs again, a signal ends it all here
            if not changed:
                return                      # stopped by a signal
            (index, total), version = change.result()
            logger.info("%s now has %d replica(s): pod %s starts again as shard %d", shards.describe(), total,
                        config.pod, index)
    finally:
        await kube.aclose()
