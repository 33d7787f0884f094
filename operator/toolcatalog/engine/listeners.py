"""The `list-changed` trigger: one listener per endpoint whose server advertises tools.listChanged.

A task supervisor owned by the engine, not a kopf daemon. Every sync already resolves the endpoint
(spec, Secrets, the referenced ToolServer) and learns whether the server advertises
tools.listChanged, and every change that could alter the endpoint causes a sync. So the reconciler
tells this module the outcome of each sync (`ensure` or `stop`), and it subscribes the resource to
the listener of its endpoint, moves it to another one, or unsubscribes it.

One listener (one long-lived session) serves every resource that reads the same endpoint: the same
URL, transport, headers (the credentials included) and TLS settings, as a digest of them tells
(`endpoint_fingerprint`, kept in memory only). Resources with other credentials never share a
session: what a server lists, and whether it notifies, may depend on who asks. The first
subscriber starts the listener, the last one leaving stops it.

A listener reconnects with jittered exponential backoff, and after a lost stream it asks every
subscriber for one resync once it listens again (the protocol has no replay). A burst of
notifications becomes one call of `on_change(key)` per subscriber, which marks the key and puts it
into the work queue: the resyncs start within the debounce (a quarter second), not after a timer
interval.

At most `max_listeners` listeners are open at once; resources of endpoints beyond that are resynced
on TTL expiry and refreshes only. Listeners use their own HTTP pool (same egress policy), so their
long-lived connections never starve syncs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
_FINGERPRINT_KEY = os.urandom(32)     # this process's: fingerprints are compared, never stored or shown


# ------------------------------------------------------------------- pure policy


def endpoint_fingerprint(endpoint: Endpoint) -> str:
    """A digest of everything that decides the session (url, transport, headers, TLS).

    Resources with equal fingerprints share one listener. Only the digest is kept, never a header value, and
    it is keyed with a secret of this process: it cannot be checked against a guessed credential.
    """
    tls = endpoint.tls.pool_key() if endpoint.tls is not None else None
    canonical = json.dumps([endpoint.url, endpoint.transport, sorted(endpoint.headers.items()), tls],
                           separators=(",", ":"))
    return "hmac-sha256:" + hmac.new(_FINGERPRINT_KEY, canonical.encode(), hashlib.sha256).hexdigest()


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
class _Listener:
    """One endpoint's session and the resources subscribed to it."""

    url: str                            # for logs (display_url: no userinfo, query or fragment)
    task: asyncio.Task[None]
    keys: set[Key] = field(default_factory=set)


class ToolChangeListeners:
    """One listener task per distinct endpoint, shared by the resources whose last sync reached it."""

    def __init__(self, on_change: Callable[[Key], None], *, max_listeners: int, pool: HttpPool,
                 listen: Listen = listen_for_tool_changes, clock: Callable[[], float] = time.monotonic) -> None:
        self.on_change = on_change
        self.max_listeners = max_listeners
        self.pool = pool
        self._listen = listen
        self._clock = clock
        self._listeners: dict[str, _Listener] = {}     # by endpoint fingerprint
        self._subscribed: dict[Key, str] = {}          # resource -> the fingerprint it listens through
        self._over_limit: set[Key] = set()   # warned about once

    # -- driven by sync outcomes ---------------------------------------------------------

    def ensure(self, key: Key, endpoint: Endpoint) -> None:
        """The last sync of `key` succeeded against a server that advertises tools.listChanged."""
        fingerprint = endpoint_fingerprint(endpoint)
        listener = self._listeners.get(fingerprint)
        if self._subscribed.get(key) == fingerprint and listener is not None and not listener.task.done():
            return
        self._unsubscribe(key)
        if listener is not None and listener.task.done():      # cannot happen but by a bug: start it afresh
            self._listeners.pop(fingerprint, None)
            listener = None
        if listener is None:
            if len(self._listeners) >= self.max_listeners:
                if key not in self._over_limit:
                    self._over_limit.add(key)
                    logger.warning("%s %s/%s: not listening for tool changes, %d listeners are open already "
                                   "(--max-listeners); TTL expiry and refreshes still resync it",
                                   *key, self.max_listeners)
                return
            url = display_url(endpoint.url)
            logger.info("listening for tool-list changes at %s", url)
            task = asyncio.get_running_loop().create_task(self._supervise(fingerprint, endpoint),
                                                          name=f"list-changed {url}")
            listener = self._listeners[fingerprint] = _Listener(url, task)
        self._over_limit.discard(key)
        listener.keys.add(key)
        self._subscribed[key] = fingerprint
        logger.debug("%s %s/%s: told of tool-list changes at %s (%d resources listen there)", *key, listener.url,
                     len(listener.keys))

    def stop(self, key: Key) -> None:
        """No listening for `key`: its last sync failed, it is suspended or deleted, or its server does not
        advertise tools.listChanged. Its endpoint's listener stops when nobody else listens there."""
        self._unsubscribe(key)
        self._over_limit.discard(key)

    @property
    def open(self) -> int:
        """Listeners (sessions) open."""
        return len(self._listeners)

    @property
    def subscribed(self) -> int:
        """Resources told of changes by them."""
        return len(self._subscribed)

    # -- lifecycle -------------------------------------------------------------------

    def _unsubscribe(self, key: Key) -> None:
        fingerprint = self._subscribed.pop(key, None)
        listener = self._listeners.get(fingerprint) if fingerprint is not None else None
        if fingerprint is None or listener is None:
            return
        listener.keys.discard(key)
        if not listener.keys:
            del self._listeners[fingerprint]
            listener.task.cancel()
            logger.info("no longer listening for tool-list changes at %s", listener.url)

    async def aclose(self) -> None:
        tasks = [listener.task for listener in self._listeners.values()]
        self._listeners.clear()
        self._subscribed.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pool.aclose()

    def _request_syncs(self, fingerprint: str, why: str = "the server's tool list changed") -> None:
        listener = self._listeners.get(fingerprint)
        if listener is None:
            return
        logger.info("%s: %s; resync requested for %d resource(s)", listener.url, why, len(listener.keys))
        for key in sorted(listener.keys):
            self.on_change(key)

    async def _supervise(self, fingerprint: str, endpoint: Endpoint) -> None:
        """Listen, and reconnect with backoff, until cancelled (its last subscriber left)."""
        url = display_url(endpoint.url)
        debounce = _Debounce(lambda: self._request_syncs(fingerprint), self._clock)
        failures, missed = 0, False
        try:
            while True:
                ready = asyncio.Event()
                resync_when_ready = (asyncio.get_running_loop().create_task(
                    self._resync_when_ready(fingerprint, ready)) if missed else None)
                started = self._clock()
                try:
                    await self._listen(endpoint, pool=self.pool, on_change=debounce.poke, ready=ready)
                    outcome, idle = "the server closed the stream", False
                except SyncError as exc:
                    outcome, idle = f"{exc.reason}: {exc.message}", exc.reason == c.REASON_TIMEOUT and ready.is_set()
                except Exception as exc:    # a bug must not end the listener for good; FetchErrors are expected
                    outcome, idle = f"unexpected {type(exc).__name__}", False
                    logger.warning("%s: listener failed unexpectedly (%s)", url, type(exc).__name__)
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
                log("listening to %s ended (%s); reconnecting in %.1fs", url, outcome, delay)
                await asyncio.sleep(delay)
        finally:
            debounce.cancel()

    async def _resync_when_ready(self, fingerprint: str, ready: asyncio.Event) -> None:
        """Listening again after a lost stream: a change may have gone unnoticed meanwhile."""
        await ready.wait()
        self._request_syncs(fingerprint, "listening again after a lost stream, which may have hidden a change")
