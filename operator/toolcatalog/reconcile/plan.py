"""The plan of one reconcile: from the resource, what the sync found, and the time, everything to
write (the new status, the cache ConfigMap, the Events) and when to look again. Pure.

The cache ConfigMap is written only when the catalog changed; a sync that finds it unchanged writes
status alone, and a small part of it (docs/reference/freshness.md).

The reconciler (engine/reconciler.py) does the I/O around it: it resolves the references and
fetches the catalog, hands the outcome here, and writes what comes back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api import constants as c
from ..api.errors import SyncError, retry_delay
from ..api.models import (
    ApprovalRecord,
    CacheDocument,
    CacheSource,
    CacheStatus,
    ErrorInfo,
    FetchedWith,
    Reference,
    ServerInfo,
    Status,
    ToolStatus,
    Trigger,
)
from ..api.resource import Resource
from ..api.spec import settings_of
from .approval import approve
from .cachedoc import (
    CacheTooLargeError,
    RenderedCache,
    build_configmap,
    configmap_name,
    content_hash,
    render_cache,
)
from .catalog import CatalogDiff, InvalidToolError, count_usable, merge_catalog, status_tools
from .conditions import rfc3339
from .events import (
    Event,
    approval_events,
    failure_events,
    rate_limited_event,
    refreshed_event,
    success_events,
)
from .hashing import HASH_VERSION
from .refresh import RefreshRequest
from .status import (
    SyncFailure,
    SyncSuccess,
    after_failure,
    after_success,
    after_suspend,
    with_approval,
    with_refresh,
)

# The shortest catalog lifetime a server's ttlMs may impose (the operator's --min-server-ttl).
DEFAULT_SERVER_TTL_FLOOR = 60.0
# TTL resyncs are spread over the last tenth of the TTL (at most this long), so that resources
# created together do not all resync together.
TTL_JITTER_FRACTION = 0.1
TTL_JITTER_MAX_SECONDS = 300.0
RETRY_JITTER_FRACTION = 0.2


@dataclass(frozen=True)
class SyncOutcome:
    """What the I/O of one sync found: the resolved references, the previous catalog, the fetched one
    (the server's identity and its tools as received), or the error that ended it."""

    trigger: Trigger
    started_at: datetime
    completed_at: datetime
    refresh: RefreshRequest | None = None
    url: str | None = None
    references: Sequence[Reference] | None = None
    previous: CacheDocument | None = None         # what the last sync wrote, if anything
    # Its ConfigMap's content hash, and whether that ConfigMap carries the labels, annotations and owner this
    # release writes (a catalog that did not change is then not written again).
    previous_hash: str | None = None
    previous_intact: bool = False
    fetched_with: FetchedWith | None = None
    server: ServerInfo | None = None
    tools: Sequence[Mapping[str, Any]] | None = None
    error: SyncError | None = None


@dataclass(frozen=True)
class VerifiedCache:
    """What the cache holds when a sync finds the server's answer identical to the one that last wrote it:
    enough for the status, without reading, parsing or merging the catalog again."""

    config_map: str
    cached_at: str
    content_hash: str
    tools_available: int        # tools of the catalog the server lists (a refresh's previousToolCount)
    tools_listed: int


@dataclass(frozen=True)
class CacheWrite:
    """The cache ConfigMap to write: its name, the full manifest (for a create), what it holds."""

    name: str
    manifest: dict[str, Any]
    rendered: RenderedCache
    document: CacheDocument


@dataclass(frozen=True)
class Kept:
    """A successful sync's catalog that the cache ConfigMap holds already: nothing to write. `document` when
    the sync parsed it (None when the server's answer was identical to the one that wrote it)."""

    config_map: str
    content_hash: str
    document: CacheDocument | None = None


@dataclass(frozen=True)
class Plan:
    status: Status
    events: list[Event] = field(default_factory=list)
    cache: CacheWrite | None = None         # the ConfigMap to write: the catalog changed
    kept: Kept | None = None                # or the catalog did not change, and the ConfigMap stays as it is
    requeue_at: datetime | None = None      # when to look again (None: only when something changes)
    diff: CatalogDiff | None = None
    synced: bool = False                    # a sync ran (it may have failed)
    refreshed: bool = False                 # a refresh token was answered

    @functools.cached_property
    def status_body(self) -> dict[str, Any]:
        """`status.dump()`, made once: the size check before the cache write and the status patch both use it
        (500 tools: some 2 ms each time). Treat it as read-only."""
        return self.status.dump()

    @property
    def succeeded(self) -> bool:
        """A sync whose catalog the cache holds (written now, or already)."""
        return (self.cache is not None or self.kept is not None) and self.status.last_sync is not None \
            and self.status.last_sync.result == "Succeeded"


def ttl_due(completed: datetime, ttl_seconds: int, jitter: float) -> datetime:
    """When to resync a cache that expires `ttl_seconds` after `completed`: a little before, jittered."""
    spread = min(ttl_seconds * TTL_JITTER_FRACTION, TTL_JITTER_MAX_SECONDS)
    return completed + timedelta(seconds=ttl_seconds - spread * jitter)


def retry_due(error: SyncError, completed: datetime, consecutive_failures: int, jitter: float) -> datetime | None:
    delay = retry_delay(error.reason, consecutive_failures, error.retry_after)
    if delay is None:
        return None
    return completed + timedelta(seconds=delay * (1 - RETRY_JITTER_FRACTION * jitter))


def _owner(resource: Resource) -> str | None:
    return settings_of(resource.spec).owner if resource.spec is not None else None


def plan_failure(resource: Resource, outcome: SyncOutcome, error: SyncError, jitter: float) -> Plan:
    """A failed sync: the previous cache and status.tools stay exactly as they were."""
    prev = resource.status
    next_at = retry_due(error, outcome.completed_at, prev.consecutive_failures + 1, jitter)
    failure = SyncFailure(trigger=outcome.trigger, started_at=outcome.started_at, completed_at=outcome.completed_at,
                          url=outcome.url, error=ErrorInfo(reason=error.reason, message=error.message),
                          next_sync_at=next_at, references=outcome.references)
    status = after_failure(prev, failure, generation=resource.generation, owner=_owner(resource))
    events = failure_events(prev, error.reason, error.message)
    if outcome.refresh is not None:
        status = with_refresh(status, outcome.refresh, completed_at=outcome.completed_at, result="Failed",
                              generation=resource.generation, error=failure.error,
                              previous_tool_count=sum(1 for tool in prev.tools if tool.available))
    return Plan(status=status, events=events, requeue_at=next_at, synced=True, refreshed=outcome.refresh is not None)


def expiry(completed: datetime, ttl_seconds: int, server: ServerInfo, floor_seconds: float) -> datetime:
    """When a catalog expires: spec.sync.ttlSeconds, but never later than the server's own ttlMs allows,
    and not sooner than the operator's floor (no server makes it poll in a loop)."""
    seconds = float(ttl_seconds)
    if server.ttl_ms is not None:
        seconds = min(seconds, max(server.ttl_ms / 1000, floor_seconds))
    return completed + timedelta(seconds=seconds)


def plan_sync(resource: Resource, outcome: SyncOutcome, jitter: float, *,
              server_ttl_floor: float = DEFAULT_SERVER_TTL_FLOOR) -> Plan:
    """The plan for a sync that ran: a failure plan if it failed, else the merged catalog with its
    approvals, its cache ConfigMap (only when the catalog changed), the new status and the Events."""
    if outcome.error is not None:
        return plan_failure(resource, outcome, outcome.error, jitter)
    assert resource.spec is not None and outcome.tools is not None and outcome.server is not None
    assert outcome.url is not None
    settings = settings_of(resource.spec)
    policy = resource.spec.approval.policy
    completed = outcome.completed_at
    now = rfc3339(completed)
    previous = outcome.previous
    previous_tools = list(previous.tools) if previous is not None else []
    try:
        merge = merge_catalog(previous_tools, outcome.tools, settings=settings.tools, selector=settings.selector,
                              now=now, previous_version=previous.hash_version if previous else HASH_VERSION)
    except InvalidToolError as exc:
        return plan_failure(resource, outcome, SyncError(c.REASON_PROTOCOL_ERROR,
                                                         f"the server's tool list is invalid: {exc}"), jitter)
    baseline_taken = previous is not None and previous.approval.policy != "None"
    approval = approve(merge.tools, merge.previous, policy=policy, settings=settings.tools,
                       baseline_taken=baseline_taken, had_catalog=previous is not None)
    tools, tool_count = approval.tools, count_usable(approval.tools)
    cm_name = configmap_name(resource.kind, resource.name, settings.config_map_name)
    record = ApprovalRecord(policy=policy, baseline_at=(previous.approval.baseline_at if baseline_taken and previous
                                                        else now) if policy != "None" else None)
    document = CacheDocument(
        source=CacheSource(kind=resource.kind, namespace=resource.namespace, name=resource.name, url=outcome.url),
        server=outcome.server.model_copy(update={"list_changed": None}),
        cached_at=previous.cached_at if previous is not None else now, hash_version=HASH_VERSION,
        fetched_with=outcome.fetched_with, approval=record, tools=tools)
    cache: CacheWrite | None = None
    kept: Kept | None = None
    if previous is not None and outcome.previous_intact and document == previous:
        # The same catalog: the ConfigMap stays as it is, cachedAt included; only status says it was verified.
        kept = Kept(cm_name, outcome.previous_hash or content_hash(document.server, document.tools), document)
        digest = kept.content_hash
    else:
        document = document.model_copy(update={"cached_at": now})
        try:
            rendered = render_cache(document)
        except CacheTooLargeError as exc:
            return plan_failure(resource, outcome, SyncError(c.REASON_CACHE_TOO_LARGE, str(exc)), jitter)
        manifest = build_configmap(kind=resource.kind, name=resource.name, namespace=resource.namespace,
                                   owner_uid=resource.uid, configmap_name=cm_name, rendered=rendered, cached_at=now)
        cache = CacheWrite(cm_name, manifest, rendered, document)
        digest = rendered.content_hash
    entries, truncated = status_tools(tools, with_approval=policy != "None")
    tools_listed = len(outcome.tools)
    prev = resource.status
    status, next_at = _recorded_success(
        resource, outcome, jitter, server_ttl_floor, tool_count=tool_count, tools=entries, truncated=truncated,
        cache=(cm_name, document.cached_at, digest), tools_listed=tools_listed)
    status = with_approval(status, approval.pending, policy=policy, kind=resource.kind, name=resource.name,
                           generation=resource.generation, now=now)
    events = success_events(prev, merge.diff, trigger=outcome.trigger, tool_count=tool_count,
                            tools_listed=tools_listed, configmap=cm_name, url=outcome.url)
    events += approval_events(prev, approval.pending, status)
    status = _answer_refresh(status, events, resource, outcome, merge.diff, tools_listed=tools_listed,
                             previous_tool_count=sum(1 for tool in previous_tools if tool.available))
    return Plan(status=status, events=events, cache=cache, kept=kept, requeue_at=next_at, diff=merge.diff,
                synced=True, refreshed=outcome.refresh is not None)


def _recorded_success(resource: Resource, outcome: SyncOutcome, jitter: float, server_ttl_floor: float, *,
                      tool_count: int, tools: list[ToolStatus], truncated: bool, cache: tuple[str, str, str],
                      tools_listed: int) -> tuple[Status, datetime]:
    """The status of a successful sync whose catalog the cache holds (`cache`: its ConfigMap, cachedAt and
    content hash), verified now, and when the next sync is due."""
    assert resource.spec is not None and outcome.server is not None and outcome.url is not None
    settings = settings_of(resource.spec)
    completed = outcome.completed_at
    expires = expiry(completed, settings.sync.ttl_seconds, outcome.server, server_ttl_floor)
    next_at = ttl_due(completed, max(1, round((expires - completed).total_seconds())), jitter)
    config_map, cached_at, digest = cache
    success = SyncSuccess(
        trigger=outcome.trigger, started_at=outcome.started_at, completed_at=completed, url=outcome.url,
        server=outcome.server, tool_count=tool_count, tools=tools, tools_truncated=truncated,
        cache=CacheStatus(config_map=config_map, cached_at=cached_at, verified_at=rfc3339(completed),
                          expires_at=rfc3339(expires), content_hash=digest),
        next_sync_at=next_at, tools_listed=tools_listed, references=outcome.references or (),
        fetched_with=outcome.fetched_with)
    return after_success(resource.status, success, generation=resource.generation, owner=settings.owner), next_at


def _answer_refresh(status: Status, events: list[Event], resource: Resource, outcome: SyncOutcome,
                    diff: CatalogDiff, *, tools_listed: int, previous_tool_count: int) -> Status:
    """A successful sync that a refresh asked for: lastRefresh, the Refreshed condition and its Event."""
    if outcome.refresh is None:
        return status
    events.append(refreshed_event(outcome.refresh.token, diff, tools_listed))
    return with_refresh(status, outcome.refresh, completed_at=outcome.completed_at, result="Succeeded",
                        generation=resource.generation, diff=diff, previous_tool_count=previous_tool_count,
                        tools_discovered=tools_listed)


def plan_verified(resource: Resource, outcome: SyncOutcome, verified: VerifiedCache, jitter: float, *,
                  server_ttl_floor: float = DEFAULT_SERVER_TTL_FLOOR) -> Plan:
    """The plan for a sync whose server answered exactly as when it last wrote the cache (same bytes, same
    resource generation, same credentials, same URL): merging that answer into the catalog it wrote gives that
    catalog again, so none of it is merged, rendered or written. Status records the verification: lastSync,
    nextSyncAt, cache.verifiedAt and expiresAt, and the conditions (after failures: Ready again)."""
    assert outcome.url is not None
    prev = resource.status
    status, next_at = _recorded_success(
        resource, outcome, jitter, server_ttl_floor, tool_count=prev.tool_count, tools=list(prev.tools),
        truncated=prev.tools_truncated, cache=(verified.config_map, verified.cached_at, verified.content_hash),
        tools_listed=verified.tools_listed)
    unchanged = CatalogDiff(new=[], removed=[], changed=[])
    events = success_events(prev, unchanged, trigger=outcome.trigger, tool_count=prev.tool_count,
                            tools_listed=verified.tools_listed, configmap=verified.config_map, url=outcome.url)
    status = _answer_refresh(status, events, resource, outcome, unchanged, tools_listed=verified.tools_listed,
                             previous_tool_count=verified.tools_available)
    return Plan(status=status, events=events, kept=Kept(verified.config_map, verified.content_hash),
                requeue_at=next_at, diff=unchanged, synced=True, refreshed=outcome.refresh is not None)


def plan_suspend(resource: Resource, request: RefreshRequest | None, now: datetime) -> Plan:
    """sync.suspend: no fetch; the cache is kept as it is; a refresh is answered Failed."""
    status = after_suspend(resource.status, generation=resource.generation, now=now, owner=_owner(resource))
    if request is not None:
        error = ErrorInfo(reason=c.PHASE_SUSPENDED, message="sync.suspend is true: nothing was fetched")
        status = with_refresh(status, request, completed_at=now, result="Failed", generation=resource.generation,
                              error=error)
    return Plan(status=status, refreshed=request is not None)


def plan_rate_limited(resource: Resource, request: RefreshRequest, message: str, now: datetime) -> Plan:
    """A refresh too soon after the last sync: acknowledged in status, nothing fetched."""
    status = with_refresh(resource.status, request, completed_at=now, result="RateLimited",
                          generation=resource.status.observed_generation, rate_limit_message=message)
    return Plan(status=status, events=[rate_limited_event(message)], refreshed=True)
