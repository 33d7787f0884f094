"""Whether the watches keep up: changes the API server holds that the object cache has not caught up with.

The liveness check (handlers/health.py) asks the API server what changed since the last version it
checked, and tells `WatchLag`; a change is caught up once the object cache (filled by the watches,
and by the answers to our own writes) holds that version or a newer one, or, for a deletion, no
longer holds the object. A change the cache is still behind is normal for a moment (its watch event
is on its way); one that lasts `stall_after` seconds, while the cache makes no progress on that
object, means the watches have stalled. Pure bookkeeping with an injected clock: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.resource import ObjectKey, resource_version_newer
from .objects import ObjectCache

EXAMPLES = 5


@dataclass(frozen=True)
class Change:
    """One change the API server reported: the object's version after it, or its deletion."""

    key: ObjectKey
    resource_version: str
    deleted: bool = False


@dataclass(frozen=True)
class _Pending:
    change: Change
    since: float                # when the cache began to lag behind on this object
    cached: str | None          # the version the cache held then: any progress restarts the clock


@dataclass
class Verdict:
    """What the last check found."""

    behind: int = 0             # objects whose latest change the cache does not hold yet
    gone: int = 0               # ... of them, deleted on the server and still in the cache
    stalled: list[str] = field(default_factory=list)    # behind for longer than stall_after
    error: str | None = None    # the API server could not be asked: nothing new is known

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"behind": self.behind, "gone": self.gone}
        if self.stalled:
            result["stalled"] = self.stalled[:EXAMPLES]
        if self.error:
            result["error"] = self.error
        return result


class WatchLag:
    def __init__(self, objects: ObjectCache, *, stall_after: float = 180.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.objects, self.stall_after, self.clock = objects, stall_after, clock
        self._pending: dict[ObjectKey, _Pending] = {}

    def _caught_up(self, change: Change) -> bool:
        cached = self.objects.version(change.key)
        if change.deleted:
            # Gone from the cache, or there again at a newer version (created again since).
            return cached is None or (cached != change.resource_version
                                      and resource_version_newer(cached, change.resource_version))
        return cached is not None and resource_version_newer(cached, change.resource_version)

    def reported(self, changes: Iterable[Change]) -> None:
        """Changes the API server holds (in the order it made them)."""
        now = self.clock()
        for change in changes:
            if self._caught_up(change):
                continue
            cached = self.objects.version(change.key)
            before = self._pending.get(change.key)
            since = before.since if before is not None and before.cached == cached else now
            self._pending[change.key] = _Pending(change, since, cached)

    def compared(self, listed: Mapping[ObjectKey, str], every: Iterable[ObjectKey],
                 within: Callable[[ObjectKey], bool]) -> None:
        """A full listing (`listed`: the version of every object to check; `every`: every key listed, some
        maybe not ours; `within`: the cached keys the listing speaks for): whatever the cache lacks, holds at
        an older version, or holds but the server does not, is behind."""
        keys = set(every)
        changes = [Change(key, version) for key, version in listed.items()]
        changes += [Change(key, self.objects.version(key) or "", deleted=True)
                    for key in self.objects.keys() if within(key) and key not in keys]
        self.reported(changes)

    def verdict(self) -> Verdict:
        """Forget what has caught up; count what has not, and name what has lagged for too long."""
        now = self.clock()
        self._pending = {key: pending for key, pending in self._pending.items()
                         if not self._caught_up(pending.change)}
        stalled = sorted(((now - pending.since, key) for key, pending in self._pending.items()
                          if now - pending.since >= self.stall_after), reverse=True)
        return Verdict(behind=len(self._pending),
                       gone=sum(1 for pending in self._pending.values() if pending.change.deleted),
                       stalled=[f"{kind} {namespace}/{name} ({age:.0f}s)" for age, (kind, namespace, name) in stalled])
