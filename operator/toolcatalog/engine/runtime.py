"""The running engine: one work queue, bounded workers, the reconciler, the list-changed listeners.

Every trigger only enqueues a key (`enqueue`); `max_concurrent_syncs` workers take keys from the
queue and reconcile them, one reconcile per key at a time. What a reconcile asks for next (a resync
at expiresAt, a retry) goes back into the queue's delay heap; a Kubernetes API failure backs off
per key, exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..api.resource import ObjectKey
from .objects import ObjectCache
from .queue import ShutDown, WorkQueue
from .reconciler import Reconciler, TransientError

logger = logging.getLogger(__name__)


class Engine:
    def __init__(self, reconciler: Reconciler, *, workers: int = 10,
                 on_forget: Callable[[ObjectKey], None] | None = None) -> None:
        self.reconciler = reconciler
        self.objects: ObjectCache = reconciler.objects
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self.workers = max(1, workers)
        self._tasks: list[asyncio.Task[None]] = []
        self._on_forget = on_forget
        self.reconciles = 0

    # -- triggers: they only enqueue ---------------------------------------------------------

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool = False) -> None:
        """A watch event of one of our resources: remember the body, and look at the key."""
        meta = body.get("metadata") or {}
        key: ObjectKey = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if deleted:
            self.forget(key, str(meta.get("uid") or "") or None)
            return
        self.objects.observe(kind, body)
        self.queue.add(key)

    def enqueue(self, key: ObjectKey) -> None:
        self.queue.add(key)

    def list_changed(self, key: ObjectKey) -> None:
        """A listener heard that the server's tool list changed."""
        self.reconciler.list_changed(key)
        self.queue.add(key)

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        if self.objects.forget(key, uid) is None and uid is not None:
            return      # an older incarnation's deletion
        self.queue.discard(key)
        self.reconciler.forget(key, uid)
        logger.debug("%s %s/%s: forgotten", *key)
        if self._on_forget is not None:
            self._on_forget(key)

    # -- workers ---------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"reconcile worker {index}")
                       for index in range(self.workers)]
        logger.info("toolcatalog engine started: %d workers", self.workers)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking keys; give the reconciles in flight `timeout` seconds to finish, then cancel them."""
        self.queue.shut_down()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                self.reconciles += 1
                delay = await self.reconciler.reconcile(key)
            except TransientError as error:
                backoff = self.queue.add_rate_limited(key)
                logger.warning("%s; retrying in %.1fs", error, backoff)
            except Exception:
                backoff = self.queue.add_rate_limited(key)
                logger.exception("%s %s/%s: reconcile failed unexpectedly; retrying in %.1fs", *key, backoff)
            else:
                self.queue.forget(key)
                if delay is not None and self.objects.get(key) is not None:   # not deleted meanwhile
                    self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)
