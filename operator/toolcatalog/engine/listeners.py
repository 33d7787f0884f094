"""The `list-changed` trigger: one listener per resource whose server advertises tools.listChanged.

A task supervisor owned by the engine, not a kopf daemon. Every sync already resolves the endpoint
(spec, Secrets, the referenced ToolServer) and learns whether the server advertises
tools.listChanged, and every change that could alter the endpoint causes a sync. So the reconciler
tells this module the outcome of each sync (`ensure` or `stop`), and it starts, keeps, restarts or
stops the resource's listener accordingly.

A listener reconnects with jittered exponential backoff, and after a lost stream it asks for one
resync once it listens again (the protocol has no replay). A burst of notifications becomes one
call of `on_change(key)`, which marks the key and puts it into the work queue: the resync starts
within the debounce (a quarter second), not after a timer interval.

At most `max_listeners` listeners are open at once; resources beyond that are resynced on TTL
expiry and refreshes only. Listeners use their own HTTP pool (same egress policy), so their
long-lived connections never starve syncs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..api import constants as c
from ..api.endpoint import Endpoint, display_url
from ..api.errors import SyncError
from ..api.resource import ObjectKey
from ..mcp.listen import listen_for_tool_changes
from ..mcp.pool import HttpPool

logger = logging.getLogger(__name__)

DEBOUNCE_QUIET_SECONDS = 0.25   # a burst ends after this long without a notification
DEBOUNCE_MAX_SECONDS = 5.0      # a never-ending stream of notifications still resyncs this often
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 120.0
STABLE_SECONDS = 30.0           # a stream that stayed up this long resets the backoff

Key = ObjectKey
Listen = Callable[..., Awaitable[None]]


# ------------------------------------------------------------------- pure policy


def endpoint_fingerprint(endpoint: Endpoint) -> str:
    """A digest of everything that decides the session (url, transport, headers, TLS).

    A changed fingerprint means the listener must reconnect; only the digest is kept, never a header value.
    """
    tls = endpoint.tls.pool_key() if endpoint.tls is not None else None
    canonical = json.dumps([endpoint.url, endpoint.transport, sorted(endpoint.headers.items()), tls],
                           separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def backoff_delay(failures: int, jitter: float, *, base: float = BACKOFF_BASE_SECONDS,
                  cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Seconds to wait before reconnecting after `failures` consecutive failed or short-lived sessions.

    Exponential and capped; `jitter` in [0, 1) spreads it over [half, all] of that, so the
    listeners of one server that went down do not all reconnect at once.
    """
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2 ** min(failures - 1, 32))
    return ceiling * (0.5 + jitter / 2)


def debounce_due(first: float, last: float, *, quiet: float = DEBOUNCE_QUIET_SECONDS,
                 longest: float = DEBOUNCE_MAX_SECONDS) -> float:
    """When a burst of notifications (first and last at these times) should become one resync."""
    return min(last + quiet, first + longest)


# ------------------------------------------------------------------- the supervisor


class _Debounce:
    """Coalesces a burst of notifications into one call of `fire`."""

    def __init__(self, fire: Callable[[], None], clock: Callable[[], float]) -> None:
        self._fire = fire
        self._clock = clock
        self._first: float | None = None
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self._last = self._clock()
        if self._first is None:
            self._first = self._last
            self._task = asyncio.get_running_loop().create_task(self._wait())

    async def _wait(self) -> None:
        while (delay := debounce_due(self._first or 0.0, self._last) - self._clock()) > 0:
            await asyncio.sleep(delay)
        self._first, self._task = None, None
        self._fire()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._first, self._task = None, None


@dataclass
class _Running:
    fingerprint: str
    task: asyncio.Task[None]


class ToolChangeListeners:
    """One listener task per resource, started, restarted and stopped by the outcome of its syncs."""

    def __init__(self, on_change: Callable[[Key], None], *, max_listeners: int, pool: HttpPool,
                 listen: Listen = listen_for_tool_changes, clock: Callable[[], float] = time.monotonic) -> None:
        self.on_change = on_change
        self.max_listeners = max_listeners
        self.pool = pool
        self._listen = listen
        self._clock = clock
        self._running: dict[Key, _Running] = {}
        self._over_limit: set[Key] = set()   # warned about once

    # -- driven by sync outcomes ---------------------------------------------------------

    def ensure(self, key: Key, endpoint: Endpoint) -> None:
        """The last sync of `key` succeeded against a server that advertises tools.listChanged."""
        fingerprint = endpoint_fingerprint(endpoint)
        current = self._running.get(key)
        if current is not None and current.fingerprint == fingerprint and not current.task.done():
            return
        self._stop(key)
        if len(self._running) >= self.max_listeners:
            if key not in self._over_limit:
                self._over_limit.add(key)
                logger.warning("%s %s/%s: not listening for tool changes, %d listeners are open already "
                               "(--max-listeners); TTL expiry and refreshes still resync it",
                               *key, self.max_listeners)
            return
        self._over_limit.discard(key)
        logger.info("%s %s/%s: listening for tool-list changes at %s", *key, display_url(endpoint.url))
        task = asyncio.get_running_loop().create_task(self._supervise(key, endpoint),
                                                      name=f"list-changed {'/'.join(key)}")
        self._running[key] = _Running(fingerprint, task)

    def stop(self, key: Key) -> None:
        """No listener for `key`: its last sync failed, it is suspended or deleted, or its server does not
        advertise tools.listChanged."""
        self._stop(key)
        self._over_limit.discard(key)

    @property
    def open(self) -> int:
        return len(self._running)

    # -- lifecycle -------------------------------------------------------------------

    def _stop(self, key: Key) -> None:
        running = self._running.pop(key, None)
        if running is not None:
            running.task.cancel()

    async def aclose(self) -> None:
        tasks = [running.task for running in self._running.values()]
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pool.aclose()

    def _request_sync(self, key: Key, why: str = "the server's tool list changed") -> None:
        logger.info("%s %s/%s: %s; resync requested", *key, why)
        self.on_change(key)

    async def _supervise(self, key: Key, endpoint: Endpoint) -> None:
        """Listen, and reconnect with backoff, until cancelled (resource stopped, deleted or changed)."""
        url = display_url(endpoint.url)
        debounce = _Debounce(lambda: self._request_sync(key), self._clock)
        failures, missed = 0, False
        try:
            while True:
                ready = asyncio.Event()
                resync_when_ready = (asyncio.get_running_loop().create_task(self._resync_when_ready(key, ready))
                                     if missed else None)
                started = self._clock()
                try:
                    await self._listen(endpoint, pool=self.pool, on_change=debounce.poke, ready=ready)
                    outcome, idle = "the server closed the stream", False
                except SyncError as exc:
                    outcome, idle = f"{exc.reason}: {exc.message}", exc.reason == c.REASON_TIMEOUT and ready.is_set()
                except Exception as exc:    # a bug must not end the listener for good; FetchErrors are expected
                    outcome, idle = f"unexpected {type(exc).__name__}", False
                    logger.warning("%s %s/%s: listener failed unexpectedly (%s)", *key, type(exc).__name__)
                finally:
                    if resync_when_ready is not None:
                        resync_when_ready.cancel()
                if ready.is_set():
                    missed = False
                # A stream that idled out lost nothing; any other end may have hidden a change.
                missed = missed or not idle
                stable = ready.is_set() and self._clock() - started >= STABLE_SECONDS
                failures = 1 if stable else failures + 1
                delay = backoff_delay(failures, random.random())
                log = logger.info if ready.is_set() else logger.debug
                log("%s %s/%s: listening to %s ended (%s); reconnecting in %.1fs", *key, url, outcome, delay)
                await asyncio.sleep(delay)
        finally:
            debounce.cancel()

    async def _resync_when_ready(self, key: Key, ready: asyncio.Event) -> None:
        """Listening again after a lost stream: a change may have gone unnoticed meanwhile."""
        await ready.wait()
        self._request_sync(key, "listening again after a lost stream, which may have hidden a change")
