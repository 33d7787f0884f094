"""Which Kubernetes Events a sync posts, and their words. Pure.

`Synced` on the first successful sync, `ToolsChanged` on any later non-empty diff, `Recovered` on a
success after failures, `SyncFailed` (Warning) when syncing starts failing or fails for a new reason,
`Refreshed` and `RefreshRateLimited` answering the refresh annotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..api import constants as c
from ..api.models import Status
from .approval import Pending
from .catalog import CatalogDiff
from .status import has_cache

EVENT_MESSAGE_MAX = 1000


@dataclass(frozen=True)
class Event:
    type: str          # Normal | Warning
    reason: str
    message: str


def _event(type_: str, reason: str, message: str) -> Event:
    return Event(type_, reason, message[:EVENT_MESSAGE_MAX])


def success_events(prev: Status, diff: CatalogDiff, *, trigger: str, tool_count: int, tools_listed: int,
                   configmap: str, url: str) -> list[Event]:
    events = []
    if not has_cache(prev):
        events.append(_event("Normal", c.EVENT_SYNCED,
                             f"first sync: {tool_count} usable tools from {url} cached in ConfigMap {configmap}"))
    elif not diff.is_empty():
        events.append(_event("Normal", c.EVENT_TOOLS_CHANGED, f"{diff.summary(tools_listed)} (trigger: {trigger})"))
    if prev.last_sync is not None and prev.last_sync.result == "Failed":
        reason = prev.last_sync.error.reason if prev.last_sync.error else "an error"
        events.append(_event("Normal", c.EVENT_RECOVERED,
                             f"sync succeeded again after {prev.consecutive_failures} failed attempts ({reason})"))
    return events


def failure_events(prev: Status, reason: str, message: str) -> list[Event]:
    """A Warning when syncing starts failing, or fails for another reason than last time; not on every retry."""
    last = prev.last_sync
    if last is None or last.result == "Succeeded" or (last.error is not None and last.error.reason != reason):
        return [_event("Warning", c.EVENT_SYNC_FAILED, f"{reason}: {message}")]
    return []


def refreshed_event(token: str, diff: CatalogDiff, tools_listed: int) -> Event:
    return _event("Normal", c.EVENT_REFRESHED, f"refresh {token!r}: {diff.summary(tools_listed)}")


def rate_limited_event(message: str) -> Event:
    return _event("Normal", c.EVENT_RATE_LIMITED, message)


def approval_events(prev: Status, pending: Sequence[Pending], status: Status) -> list[Event]:
    """A Warning once per new set of tools awaiting approval (not on every resync of the same set)."""
    before = {(tool.name, tool.schema_hash) for tool in prev.tools if tool.approval == "Pending" and tool.available}
    now = {(item.name, item.schema_hash) for item in pending}
    if not now or now == before:
        return []
    message = next((cond.message for cond in status.conditions if cond.type == c.COND_APPROVED), "")
    return [_event("Warning", c.EVENT_APPROVAL_PENDING, message)]
