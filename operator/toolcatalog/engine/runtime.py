"""The running engine: one work queue, bounded workers, the reconciler, the list-changed listeners.

Every trigger only enqueues a key (`enqueue`); `workers` workers (--max-concurrent-syncs) take keys
from the queue and reconcile them, one reconcile per key at a time. What a reconcile asks for next (a
resync at expiresAt, a retry) goes back into the queue's delay heap; a Kubernetes API failure backs
off per key, exponentially with jitter, and never sooner than the API server's Retry-After.

No tenant starves the others: a reconcile still running after `slow_after` seconds (a server that
accepts and never answers) steps aside into a bounded pool of `slow_capacity` slow reconciles
(--max-slow-syncs), freeing its worker for the next key; one namespace may hold at most half of that
pool. A healthy resource therefore never waits behind hung servers for longer than `slow_after`, and
at most `workers + slow_capacity` reconciles run at once: when the pool is full, a worker waits for
its own slow reconcile (backpressure).

What it does is reported to an `EngineObserver` (the work queue's and the reconciles' metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..api.resource import ObjectKey
from ..config import MIN_SLOW_SYNCS, SLOW_SYNCS_PER_WORKER
from .objects import ObjectCache
from .queue import QueueObserver, ShutDown, WorkQueue
from .reconciler import Reconciler, TransientError

logger = logging.getLogger(__name__)

# Results of one reconcile, as controller-runtime names them (it also has `requeue`: never ours).
SUCCESS, ERROR, REQUEUE_AFTER = "success", "error", "requeue_after"


def default_slow_capacity(workers: int) -> int:
    """The slow pool when --max-slow-syncs is not given: SLOW_SYNCS_PER_WORKER per worker, at least
    MIN_SLOW_SYNCS."""
    return max(MIN_SLOW_SYNCS, SLOW_SYNCS_PER_WORKER * max(1, workers))


class EngineObserver(QueueObserver, Protocol):
    """The queue's events, and the end of each reconcile: its result, its seconds and, for an error, the
    Kubernetes API's Status reason (None: an unexpected error, a bug)."""

    def reconciled(self, result: str, seconds: float, api_reason: str | None = None) -> None: ...


class KindReconciler(Protocol):
    """What the engine asks of the reconciler of one kind (ToolAllowlists have their own)."""

    async def reconcile(self, key: ObjectKey) -> float | None: ...
    def forget(self, key: ObjectKey, uid: str | None = None) -> None: ...


class Engine:
    def __init__(self, reconciler: Reconciler, *, workers: int = 10, slow_after: float = 2.0,
                 slow_capacity: int | None = None, on_forget: Callable[[ObjectKey], None] | None = None,
                 observer: EngineObserver | None = None) -> None:
        self.reconciler = reconciler            # ToolServers and ConnectorConfigs
        self._by_kind: dict[str, KindReconciler] = {}   # other kinds, each with its own reconciler
        self.objects: ObjectCache = reconciler.objects
        self.observer = observer
        self.queue: WorkQueue[ObjectKey] = WorkQueue(observer=observer)
        self.workers = max(1, workers)
        self.slow_after = slow_after
        self.slow_capacity = slow_capacity if slow_capacity is not None else default_slow_capacity(self.workers)
        self._slow: dict[asyncio.Task[None], str] = {}     # slow reconciles, by namespace
        self._tasks: list[asyncio.Task[None]] = []
        self._on_forget = on_forget
        self.reconciles = 0
        self.echoes = 0         # watch events that were our own writes coming back: no reconcile
        self.busy = 0           # workers running a reconcile now (not counting those that stepped aside)
        # A watch event came: kopf runs no handler but its indexers until every initial listing is indexed.
        self.watching = False

    # -- triggers: they only enqueue ---------------------------------------------------------

    def observe(self, kind: str, body: Mapping[str, Any], deleted: bool = False) -> bool:
        """A watch event of one of our resources: remember the body, and look at the key. An event no newer
        than the body kept (the echo of our own status write, whose answer is kept already) changes nothing
        a reconcile could decide from: no reconcile. Returns whether the event was news."""
        meta = body.get("metadata") or {}
        key: ObjectKey = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if deleted:
            self.forget(key, str(meta.get("uid") or "") or None)
            return True
        if not self.objects.observe(kind, body):
            self.echoes += 1
            return False
        self.queue.add(key)
        return True

    def register(self, kind: str, reconciler: KindReconciler) -> None:
        """Keys of `kind` go to `reconciler`, through the same queue and workers."""
        self._by_kind[kind] = reconciler

    def reconciler_of(self, kind: str) -> KindReconciler:
        return self._by_kind.get(kind, self.reconciler)

    def enqueue(self, key: ObjectKey, urgent: bool = False) -> None:
        self.queue.add(key, urgent=urgent)

    def list_changed(self, key: ObjectKey) -> None:
        """A listener heard that the server's tool list changed."""
        self.reconciler.list_changed(key)
        self.queue.add(key)

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        if not self.objects.forget(key, uid) and uid is not None:
            return      # an older incarnation's deletion
        self.queue.discard(key)
        self.reconciler_of(key[0]).forget(key, uid)
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
            self.busy += 1
            try:
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
            finally:
                self.busy -= 1

    async def _reconcile(self, key: ObjectKey) -> None:
        began = time.monotonic()
        result, api_reason = ERROR, None
        try:
            self.reconciles += 1
            delay = await self.reconciler_of(key[0]).reconcile(key)
        except TransientError as error:
            api_reason = error.reason
            backoff = self.queue.add_rate_limited(key, retry_after=error.retry_after)
            logger.warning("%s; retrying in %.1fs%s", error, backoff,
                           f" (the API server asked for {error.retry_after:g}s)" if error.retry_after else "")
        except asyncio.CancelledError:
            result = ""         # cut at shutdown: no result
            raise
        except Exception:
            # The reconciler records an unexpected failure as Synced=False InternalError itself; only one it
            # could not even record (its status write failed too) gets here.
            backoff = self.queue.add_rate_limited(key)
            logger.exception("%s %s/%s: reconcile failed unexpectedly and could not record it in status; "
                             "retrying in %.1fs", *key, backoff)
        else:
            self.queue.forget(key)
            result = SUCCESS
            if delay is not None and key in self.objects:   # not deleted meanwhile
                self.queue.add_after(key, delay)
                result = REQUEUE_AFTER
        finally:
            self.queue.done(key)
            if result and self.observer is not None:
                self.observer.reconciled(result, time.monotonic() - began, api_reason)
