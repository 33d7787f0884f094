"""The work queue every trigger feeds: keys, not events, as controller-runtime's workqueue does.

- Deduplicated: a key waiting in the queue is there once, however often it is added.
- One at a time: a key being processed is never handed out again until `done`; if it was added
  meanwhile it comes back right after, so no request is lost and none overlap.
- Delayed: `add_after` keeps the earliest due time of a key (a resync at expiresAt, a retry).
- Rate limited: `add_rate_limited` backs off per key, exponentially with jitter, until `forget`; an
  API server's Retry-After (429, 503) makes that retry wait at least as long as it asked (capped).
- Observed: what client-go's workqueue reports to its metrics provider (adds, time waiting, time
  working, retries) goes to a `QueueObserver`; depth and unfinished work are read when scraped.
- Urgent: `add(key, urgent=True)` puts a key before the others (a withdrawal waits for no backlog).
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)

RETRY_AFTER_CAP_SECONDS = 300.0     # the longest an API server's Retry-After may hold one key back


class QueueObserver(Protocol):
    """What the queue reports as it works (client-go's workqueue metrics); the metrics implement it."""

    def added(self) -> None: ...
    def taken(self, waited: float) -> None: ...          # seconds the key waited in the queue
    def finished(self, worked: float) -> None: ...       # seconds from taken to done
    def retried(self) -> None: ...


class _Unobserved:
    def added(self) -> None:
        pass

    def taken(self, waited: float) -> None:
        pass

    def finished(self, worked: float) -> None:
        pass

    def retried(self) -> None:
        pass


class ShutDown(Exception):
    """The queue was shut down: workers stop."""


class Backoff(Generic[K]):
    """Per-key exponential backoff with jitter: base, 2×base, 4×base, ... up to cap."""

    def __init__(self, base: float = 0.5, cap: float = 60.0, jitter: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self._jitter = base, cap, jitter
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.cap, self.base * (2 ** min(failures, 30)))
        return delay * (0.5 + self._jitter() / 2)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, backoff: Backoff[K] | None = None,
                 observer: QueueObserver | None = None, retry_after_cap: float = RETRY_AFTER_CAP_SECONDS) -> None:
        self._clock = clock
        self.observer: QueueObserver = observer or _Unobserved()
        self.retry_after_cap = retry_after_cap
        self._added_at: dict[K, float] = {}      # when each dirty key was added (time waiting)
        self._started_at: dict[K, float] = {}    # when each processing key was taken (time working)
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()          # waiting in _ready, or to be re-queued when done
        self._urgent: set[K] = set()         # dirty keys that go before the others
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}       # the earliest due time of each delayed key
        self._counter = 0
        self._wakeup = asyncio.Event()
        self._shutdown = False
        self.backoff: Backoff[K] = backoff or Backoff()

    # -- adding -------------------------------------------------------------------------------

    def add(self, key: K, urgent: bool = False) -> None:
        if self._shutdown:
            return
        if key in self._dirty:
            if urgent and key not in self._processing and key not in self._urgent:
                self._urgent.add(key)           # waiting already: move it to the front
                self._ready.remove(key)
                self._ready.appendleft(key)
            elif urgent:
                self._urgent.add(key)
            return
        self._dirty.add(key)
        self._added_at[key] = self._clock()
        self.observer.added()
        self._due.pop(key, None)              # runs now: an older delay is moot (its entry is skipped)
        if urgent:
            self._urgent.add(key)
        if key not in self._processing:
            self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        if key in self._urgent:
            self._ready.appendleft(key)
        else:
            self._ready.append(key)
        self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self._clock() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        self._counter += 1
        heapq.heappush(self._delayed, (due, self._counter, key))
        self._wakeup.set()

    def add_rate_limited(self, key: K, retry_after: float | None = None) -> float:
        """Back off; `retry_after`: the API server asked to wait at least this long (capped)."""
        delay = self.backoff.when(key)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        self.observer.retried()
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its backoff starts afresh."""
        self.backoff.forget(key)

    def discard(self, key: K) -> None:
        """The key is gone (its object was deleted): drop pending work and backoff."""
        self._due.pop(key, None)
        self.backoff.forget(key)
        if key in self._dirty and key not in self._processing:
            self._dirty.discard(key)
            self._added_at.pop(key, None)
            self._urgent.discard(key)
            try:
                self._ready.remove(key)
            except ValueError:
                pass

    # -- taking ------------------------------------------------------------------------------

    def _promote_due(self) -> float | None:
        """Move delayed keys that are due into the ready queue; the seconds until the next one."""
        now = self._clock()
        while self._delayed:
            due, _, key = self._delayed[0]
            if self._due.get(key) != due:       # superseded by an earlier due time, or added since
                heapq.heappop(self._delayed)
                continue
            if due > now:
                return due - now
            heapq.heappop(self._delayed)
            del self._due[key]
            self.add(key)
        return None

    async def get(self) -> K:
        """The next ready key; it is processing until `done(key)`."""
        while True:
            if self._shutdown:
                raise ShutDown()
            wait = self._promote_due()
            if self._ready:
                key = self._ready.popleft()
                self._dirty.discard(key)
                self._urgent.discard(key)
                self._processing.add(key)
                now = self._clock()
                self.observer.taken(now - self._added_at.pop(key, now))
                self._started_at[key] = now
                return key
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=wait)
            except TimeoutError:
                pass

    def done(self, key: K) -> None:
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self.observer.finished(self._clock() - started)
        if key in self._dirty:          # added while it was processing: once more, now
            self._enqueue(key)

    def shut_down(self) -> None:
        self._shutdown = True
        self._wakeup.set()

    # -- looking ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def unfinished(self) -> tuple[float, float]:
        """Seconds of work in progress, in total and of the longest-running key (client-go's
        unfinished_work_seconds and longest_running_processor_seconds)."""
        now = self._clock()
        running = [now - started for started in list(self._started_at.values())]
        return sum(running), max(running, default=0.0)

    @property
    def delayed(self) -> int:
        return len(self._due)

    def is_due_later(self, key: K) -> float | None:
        """Seconds until a delayed key is due, if it is delayed."""
        due = self._due.get(key)
        return None if due is None else due - self._clock()
