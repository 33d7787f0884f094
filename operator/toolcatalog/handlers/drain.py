"""Graceful shutdown: a sync is cut only where nothing of it has been written, never half-way.

A sync reads first (the Secrets, the previous cache, the ToolServer it inherits from) and fetches
the catalog, then writes: the cache ConfigMap, the status, the Events. The reconciler gets its
Kubernetes store and its fetcher through `Drain`, which knows, for every reconcile task, whether it
is reading or fetching (it may be cut) or has begun to write (it may not).

On shutdown (SIGTERM, kopf's cleanup), `stop(grace)` refuses every new read and fetch, gives those
in flight `grace` seconds to finish by themselves, then cancels the ones still reading or fetching:
their reconciles end with nothing written, and the next start, deciding from the object alone,
does them again (a refresh left unanswered is answered then). A sync that has begun to write is
never cut here: the engine's stop gives it the time to write its status too, so the ConfigMap and
the status always describe the same catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from ..api.endpoint import Endpoint, FetchedCatalog
from ..engine.reconciler import Fetcher, KubeStore

logger = logging.getLogger(__name__)

# On shutdown: syncs still reading or fetching get this long to finish by themselves, then are cut;
# syncs already writing get up to the second figure (the engine's stop). Both well within the
# 30 s a Deployment's terminationGracePeriodSeconds gives by default.
FETCH_GRACE_SECONDS = 2.0
WRITE_TIMEOUT_SECONDS = 20.0


class Drain:
    def __init__(self) -> None:
        self._stopping = False
        self._cuttable: dict[asyncio.Task[Any], int] = {}     # reading or fetching now (nesting depth)
        self._writing: set[asyncio.Task[Any]] = set()         # began to write: never cut
        self._idle = asyncio.Event()
        self._idle.set()
        self.cut = 0

    @property
    def stopping(self) -> bool:
        return self._stopping

    @contextlib.contextmanager
    def cuttable(self) -> Iterator[None]:
        """Around a read or a fetch: cut on shutdown, unless this sync has begun to write."""
        task = asyncio.current_task()
        if task is None or task in self._writing:
            yield
            return
        if self._stopping:
            raise asyncio.CancelledError("the operator is shutting down")
        self._cuttable[task] = self._cuttable.get(task, 0) + 1
        self._idle.clear()
        try:
            yield
        finally:
            depth = self._cuttable.pop(task, 1) - 1
            if depth:
                self._cuttable[task] = depth
            elif not self._cuttable:
                self._idle.set()

    def writes(self) -> None:
        """This sync begins to write: from now on it is never cut."""
        task = asyncio.current_task()
        if task is not None and task not in self._writing:
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def stop(self, grace: float) -> None:
        """No new reads or fetches; `grace` seconds for those in flight, then they are cut."""
        self._stopping = True
        if self._cuttable:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=grace)
        pending = list(self._cuttable)
        for task in pending:
            task.cancel()
        self.cut += len(pending)
        if pending:
            logger.info("shutting down: %d sync(s) cut before writing anything; %d finishing their writes",
                        len(pending), len(self._writing))
        await asyncio.gather(*pending, return_exceptions=True)

    # -- what the reconciler is given -----------------------------------------------------

    def fetcher(self, fetch: Fetcher) -> Fetcher:
        async def drained_fetch(endpoint: Endpoint, *, timeout: float, fresh: bool) -> FetchedCatalog:
            with self.cuttable():
                return await fetch(endpoint, timeout=timeout, fresh=fresh)
        return drained_fetch

    def store(self, kube: KubeStore) -> KubeStore:
        return _DrainedStore(kube, self)


class _DrainedStore:
    """The reconciler's KubeStore: reads may be cut on shutdown, writes mark their sync as writing."""

    def __init__(self, kube: KubeStore, drain: Drain) -> None:
        self._kube, self._drain = kube, drain

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._drain.cuttable():
            return await self._kube.read_secret(namespace, name)

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._drain.cuttable():
            return await self._kube.read_configmap(namespace, name)

    async def read_configmap_version(self, namespace: str, name: str) -> str | None:
        with self._drain.cuttable():
            return await self._kube.read_configmap_version(namespace, name)

    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._drain.cuttable():
            return await self._kube.read_object(kind, namespace, name)

    async def create_configmap(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self._drain.writes()
        return await self._kube.create_configmap(namespace, manifest)

    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._drain.writes()
        return await self._kube.patch_configmap(namespace, name, patch)

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *,
                           resource_version: str | None = None) -> dict[str, Any]:
        self._drain.writes()
        return await self._kube.patch_status(kind, namespace, name, patch, resource_version=resource_version)

    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type_: str, reason: str,
                         message: str, now: datetime | None = None) -> None:
        self._drain.writes()
        await self._kube.post_event(kind=kind, namespace=namespace, name=name, uid=uid, type_=type_,
                                    reason=reason, message=message, now=now)
