"""Pure status policy: from the previous status and what a sync did, the next status.

No I/O. The sync orchestration (sync.py) feeds it outcomes; the handlers write the result
through kopf's patch as a merge-patch computed by `merge_patch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import constants as c
from .catalog import CatalogDiff, cut
from .conditions import remove_condition, rfc3339, set_condition
from .models import CacheStatus, ErrorInfo, LastRefresh, LastSync, ServerInfo, Status, ToolStatus

# Retry delays after a failed sync, by reason. None: do not retry until something changes
# (the spec, a referenced Secret or ToolServer); those changes trigger a sync by themselves.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0
SLOW_RETRY_SECONDS = {
    c.REASON_AUTH_FAILED: 600.0,          # a server refusing credentials: no fast loop
    c.REASON_SECRET_NOT_FOUND: 300.0,     # the Secret watch resolves it sooner
    c.REASON_TOOLSERVER_NOT_FOUND: 300.0, # the ToolServer watch resolves it sooner
    c.REASON_CACHE_CONFLICT: 300.0,
    c.REASON_CACHE_TOO_LARGE: 1800.0,
    c.REASON_EGRESS_DENIED: 1800.0,
}
NO_RETRY = {c.REASON_INVALID_SPEC}


def retry_delay(reason: str, consecutive_failures: int) -> float | None:
    """Seconds until the next attempt after the n-th consecutive failure (n >= 1)."""
    if reason in NO_RETRY:
        return None
    if reason in SLOW_RETRY_SECONDS:
        return SLOW_RETRY_SECONDS[reason]
    exponent = max(0, min(consecutive_failures - 1, 10))
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2 ** exponent))


@dataclass(frozen=True)
class SyncSuccess:
    trigger: str
    started_at: datetime
    completed_at: datetime
    url: str
    server: ServerInfo
    tool_count: int
    tools: list[ToolStatus]
    tools_truncated: bool
    cache: CacheStatus
    expires_at: datetime
    tools_listed: int           # what the server listed (status.tools holds at most 500 entries)


@dataclass(frozen=True)
class SyncFailure:
    trigger: str
    started_at: datetime
    completed_at: datetime
    url: str | None
    error: ErrorInfo


def _last_sync(outcome: SyncSuccess | SyncFailure) -> LastSync:
    failed = isinstance(outcome, SyncFailure)
    return LastSync(
        trigger=outcome.trigger,
        started_at=rfc3339(outcome.started_at),
        completed_at=rfc3339(outcome.completed_at),
        duration_ms=max(0, round((outcome.completed_at - outcome.started_at).total_seconds() * 1000)),
        result="Failed" if failed else "Succeeded",
        error=outcome.error if failed else None,
    )


def has_cache(status: Status) -> bool:
    return status.cache is not None and status.cache.cached_at is not None


def after_success(prev: Status, outcome: SyncSuccess, *, generation: int | None,
                  owner: str | None = None) -> Status:
    now = rfc3339(outcome.completed_at)
    status = prev.model_copy(deep=True)
    status.observed_generation = generation
    status.phase = c.PHASE_READY
    status.url = outcome.url
    status.owner = owner
    status.server = outcome.server
    status.tool_count = outcome.tool_count
    status.tools = outcome.tools
    status.tools_truncated = outcome.tools_truncated
    status.cache = outcome.cache
    status.last_sync = _last_sync(outcome)
    status.consecutive_failures = 0
    status.next_sync_at = rfc3339(outcome.expires_at)
    status.conditions = set_condition(
        status.conditions, type_=c.COND_READY, status=True, reason=c.REASON_CACHE_FRESH,
        message=f"{outcome.tool_count} usable tools cached in ConfigMap {outcome.cache.config_map}, "
                f"fresh until {outcome.cache.expires_at}",
        generation=generation, now=now)
    status.conditions = set_condition(
        status.conditions, type_=c.COND_SYNCED, status=True, reason=c.REASON_SYNC_SUCCEEDED,
        message=f"listed {outcome.tools_listed} tools from {outcome.url} in "
                f"{status.last_sync.duration_ms} ms",
        generation=generation, now=now)
    status.conditions = remove_condition(status.conditions, c.COND_STALLED)
    return status


def after_failure(prev: Status, outcome: SyncFailure, *, generation: int | None,
                  owner: str | None = None) -> Status:
    """Tools, cache and server stay exactly as they were; only bookkeeping and conditions move."""
    now = rfc3339(outcome.completed_at)
    status = prev.model_copy(deep=True)
    status.observed_generation = generation
    status.owner = owner
    if status.url is None:
        status.url = outcome.url
    status.last_sync = _last_sync(outcome)
    status.consecutive_failures = prev.consecutive_failures + 1
    delay = retry_delay(outcome.error.reason, status.consecutive_failures)
    status.next_sync_at = None if delay is None else rfc3339(outcome.completed_at + timedelta(seconds=delay))
    retry_text = "" if delay is None else f"; retrying in {int(delay)}s"
    if has_cache(prev):
        status.phase = c.PHASE_STALE
        assert prev.cache is not None
        ready = (True, c.REASON_CACHE_STALE,
                 f"serving the cache from {prev.cache.cached_at} in ConfigMap {prev.cache.config_map}: "
                 f"the last sync failed ({outcome.error.reason})")
    else:
        status.phase = c.PHASE_FAILED
        ready = (False, c.REASON_NO_CACHE, f"no cache yet: the sync failed ({outcome.error.reason})")
    status.conditions = set_condition(
        status.conditions, type_=c.COND_READY, status=ready[0], reason=ready[1], message=ready[2],
        generation=generation, now=now)
    status.conditions = set_condition(
        status.conditions, type_=c.COND_SYNCED, status=False, reason=outcome.error.reason,
        message=outcome.error.message + retry_text, generation=generation, now=now)
    if outcome.error.reason in c.STALLED_REASONS:
        status.conditions = set_condition(
            status.conditions, type_=c.COND_STALLED, status=True, reason=outcome.error.reason,
            message=f"syncing cannot succeed until this is fixed: {outcome.error.message}",
            generation=generation, now=now)
    else:
        status.conditions = remove_condition(status.conditions, c.COND_STALLED)
    return status


def after_suspend(prev: Status, *, generation: int | None, now: datetime,
                  owner: str | None = None) -> Status:
    stamp = rfc3339(now)
    status = prev.model_copy(deep=True)
    status.observed_generation = generation
    status.owner = owner
    status.phase = c.PHASE_SUSPENDED
    status.next_sync_at = None
    cached = has_cache(prev)
    message = ("sync.suspend is true: no syncs; the cache is kept as it is" if cached
               else "sync.suspend is true: no syncs, and no cache exists yet")
    status.conditions = set_condition(
        status.conditions, type_=c.COND_READY, status=cached, reason=c.REASON_SUSPENDED,
        message=message, generation=generation, now=stamp)
    status.conditions = remove_condition(status.conditions, c.COND_STALLED)
    return status


@dataclass(frozen=True)
class RefreshRequest:
    """An annotation-triggered refresh: the token it answers and what the user asked for."""

    token: str
    reason: str | None
    force: bool
    requested_at: datetime


def with_refresh(status: Status, request: RefreshRequest, *, completed_at: datetime,
                 result: str, generation: int | None, diff: CatalogDiff | None = None,
                 previous_tool_count: int | None = None, tools_discovered: int | None = None,
                 error: ErrorInfo | None = None, rate_limit_message: str = "") -> Status:
    """Record the answer to a refresh in status.lastRefresh and the Refreshed condition."""
    status = status.model_copy(deep=True)
    record = LastRefresh(
        token=request.token, reason=request.reason, force=request.force,
        requested_at=rfc3339(request.requested_at), completed_at=rfc3339(completed_at),
        result=result, previous_tool_count=previous_tool_count, tools_discovered=tools_discovered,
        error=error,
    )
    if diff is not None:
        record.new_tools, record.removed_tools, record.changed_tools = (
            cut(diff.new), cut(diff.removed), cut(diff.changed))
        record.new_tools_count, record.removed_tools_count, record.changed_tools_count = (
            len(diff.new), len(diff.removed), len(diff.changed))
    status.last_refresh = record
    if result == "Succeeded":
        assert diff is not None and tools_discovered is not None
        cond = (True, c.REASON_REFRESH_SUCCEEDED, diff.summary(tools_discovered))
    elif result == "RateLimited":
        cond = (False, c.REASON_RATE_LIMITED, rate_limit_message)
    else:
        assert error is not None
        cond = (False, c.REASON_REFRESH_FAILED, f"{error.reason}: {error.message}")
    status.conditions = set_condition(
        status.conditions, type_=c.COND_REFRESHED, status=cond[0], reason=cond[1], message=cond[2],
        generation=generation, now=rfc3339(completed_at))
    return status


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge-patch turning `old` into `new`: removed keys become None, lists are replaced."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before or key not in old:
            patch[key] = value
    return patch
