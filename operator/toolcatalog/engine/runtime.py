"""The running engine: one work queue, bounded workers, the reconciler, the list-changed listeners.

Every trigger only enqueues a key (`enqueue`); `max_concurrent_syncs` workers take keys from the
queue and reconcile them, one reconcile per key at a time. What a reconcile asks for next (a resync
at expiresAt, a retry) goes back into the queue's delay heap; a Kubernetes API failure backs off
per key, exponentially with jitter.

No tenant starves the others: a reconcile still running after `slow_after` seconds (a server that
accepts and never answers) steps aside into a bounded pool of slow reconciles, freeing its worker
for the next key; one namespace may hold at most half of that pool. A healthy resource therefore
never waits behind hung servers for longer than `slow_after`.
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
    def __init__(self, reconciler: Reconciler, *, workers: int = 10, slow_after: float = 2.0,
                 slow_capacity: int | None = None, on_forget: Callable[[ObjectKey], None] | None = None) -> None:
        self.reconciler = reconciler
        self.objects: ObjectCache = reconciler.objects
        self.queue: WorkQueue[ObjectKey] = WorkQueue()
        self.workers = max(1, workers)
        self.slow_after = slow_after
        self.slow_capacity = slow_capacity if slow_capacity is not None else max(50, 5 * self.workers)
        self._slow: dict[asyncio.Task[None], str] = {}     # slow reconciles, by namespace
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
        if not self.objects.forget(key, uid) and uid is not None:
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
        deadline = asyncio.get_running_loop().time() + timeout
        # A reconcile may step aside into the slow pool while we wait: wait until both sets are empty.
        while running := {*(t for t in self._tasks if not t.done()), *self._slow}:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                logger.warning("stopping: %d reconcile(s) still running after %.0fs; they are cut", len(running),
                               timeout)
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                break
            await asyncio.wait(running, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        self._tasks = []

    @property
    def slow(self) -> int:
        return len(self._slow)

    def _room_for_slow(self, namespace: str) -> bool:
        if len(self._slow) >= self.slow_capacity:
            return False
        mine = sum(1 for owner in self._slow.values() if owner == namespace)
        return mine < max(1, self.slow_capacity // 2)

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            task = asyncio.ensure_future(self._reconcile(key))
            done, _ = await asyncio.wait({task}, timeout=self.slow_after)
            if task in done:
                continue
            if self._room_for_slow(key[1]):         # it steps aside; this worker takes the next key
                self._slow[task] = key[1]
                task.add_done_callback(self._slow.pop)
                logger.debug("%s %s/%s: still syncing after %.0fs; it steps aside", *key, self.slow_after)
            else:
                await task                          # no room: this worker waits (backpressure)

    async def _reconcile(self, key: ObjectKey) -> None:
        try:
            self.reconciles += 1
            delay = await self.reconciler.reconcile(key)
        except TransientError as error:
            backoff = self.queue.add_rate_limited(key)
            logger.warning("%s; retrying in %.1fs", error, backoff)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The reconciler records an unexpected failure as Synced=False InternalError itself; only one it
            # could not even record (its status write failed too) gets here.
            backoff = self.queue.add_rate_limited(key)
            logger.exception("%s %s/%s: reconcile failed unexpectedly and could not record it in status; "
                             "retrying in %.1fs", *key, backoff)
        else:
            self.queue.forget(key)
            if delay is not None and key in self.objects:   # not deleted meanwhile
                self.queue.add_after(key, delay)
        finally:
            self.queue.done(key)
