"""One fetch for every resource that reads the same endpoint with the same credentials at the same moment.

A fleet where many resources read one server (1,000 ToolServers on 8 servers, each resynced every minute)
would otherwise ask the server the same question over and over, a second apart, with the same
credentials: the answers are the same answer. `SharedFetches` wraps the fetcher: a sync names the earliest
moment an answer may have been asked for (`not_before`, monotonic seconds) and gets

- the answer of a fetch still under way for the same endpoint and credentials, if it began since then
  (its outcome, success or failure, is the one it would have got itself);
- else a successful answer received from such a fetch within the window, if it began since then;
- else a fetch of its own, which later syncs may share in turn.

A refresh (`fresh`) asks at the moment it runs, so it never takes an earlier answer; a list-changed
notification asks for an answer begun after the notification; a scheduled resync accepts one begun up to
`window` seconds before. Endpoints are told apart by `endpoint_fingerprint` (URL, transport, TLS and every
header, credentials included, keyed by a secret of the process): two resources with different credentials
never share. The answers are read-only: the reconcile layer builds new values from them, never edits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..api import constants as c
from ..api.endpoint import Endpoint, FetchedCatalog, display_url
from ..api.errors import SyncError
from .listeners import endpoint_fingerprint


class Fetcher(Protocol):
    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool) -> FetchedCatalog: ...


@dataclass
class _Flight:
    began: float
    task: asyncio.Task[FetchedCatalog]
    waiters: int = 0


@dataclass(frozen=True, slots=True)
class _Landed:
    began: float
    received: float
    catalog: FetchedCatalog


@dataclass
class SharedFetches:
    fetch: Fetcher
    window: float = 5.0                 # how old an answer a scheduled resync may take, in seconds (0: none)
    clock: Callable[[], float] = time.monotonic
    shared: int = 0                     # syncs that took another's answer (the tests count them)
    _flights: dict[str, _Flight] = field(default_factory=dict)
    _landed: dict[str, _Landed] = field(default_factory=dict)

    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool,
                       not_before: float | None = None) -> tuple[FetchedCatalog, float]:
        """The catalog of `endpoint` from a fetch begun at `not_before` or later (None: a fetch of its own),
        and when that fetch began."""
        now = self.clock()
        key = endpoint_fingerprint(endpoint)
        if fresh or not_before is None:
            return await self._fly(key, endpoint, timeout, fresh, now)
        landed = self._landed.get(key)
        if landed is not None and now - landed.received > self.window:
            landed = None
        flight = self._flights.get(key)
        if flight is not None and flight.began >= not_before:
            self.shared += 1
            return await self._join(flight, endpoint, timeout), flight.began
        if landed is not None and landed.began >= not_before:
            self.shared += 1
            return landed.catalog, landed.began
        return await self._fly(key, endpoint, timeout, fresh, now)

    async def _fly(self, key: str, endpoint: Endpoint, timeout: float, fresh: bool,
                   began: float) -> tuple[FetchedCatalog, float]:
        task = asyncio.ensure_future(self.fetch(endpoint, timeout=timeout, fresh=fresh))
        flight = _Flight(began, task)
        self._flights[key] = flight

        def landed(done: asyncio.Task[FetchedCatalog]) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not done.cancelled() and done.exception() is None and self.window > 0:
                current = self._landed.get(key)
                if current is None or current.began <= began:
                    entry = self._landed[key] = _Landed(began, self.clock(), done.result())
                    # Kept for the window only: an endpoint nobody reads any more holds no catalog.
                    asyncio.get_running_loop().call_later(self.window, self._expire, key, entry)
        task.add_done_callback(landed)
        return await self._join(flight, endpoint, timeout), began

    def _expire(self, key: str, entry: _Landed) -> None:
        if self._landed.get(key) is entry:
            del self._landed[key]

    async def _join(self, flight: _Flight, endpoint: Endpoint, timeout: float) -> FetchedCatalog:
        """Wait for a shared fetch; the last waiter to give up (cancelled: a shutdown) cancels it. A joiner's
        own timeout is the fetch's bound too: a shorter one than the fetch's gives up first."""
        flight.waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(flight.task), timeout=timeout + 1.0)
        except TimeoutError:
            # The fetch enforces its own deadline (SyncError, Timeout); this is a joiner's shorter one.
            raise SyncError(c.REASON_TIMEOUT, f"no complete answer from {display_url(endpoint.url)} within "
                                              f"{timeout:g}s") from None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                with contextlib.suppress(BaseException):
                    await flight.task
