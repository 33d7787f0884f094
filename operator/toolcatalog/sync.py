"""One sync of one resource, for both kinds: resolve -> fetch -> merge -> write ConfigMap -> status.

The engine serialises syncs per resource (a lock per uid), bounds concurrent syncs across
resources (a semaphore), remembers the last status it computed (kopf's body may lag behind
our own patch), and answers refresh requests. Deciding is left to the pure modules
(catalog, cachemap, status); this module only sequences the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from . import constants as c
from .cachemap import (CacheParseError, CacheTooLargeError, build_configmap, configmap_name, configmap_patch,
                       is_owned_by, parse_cache, render_cache)
from .catalog import CatalogDiff, InvalidToolError, merge_catalog, status_tools
from .conditions import parse_time, rfc3339
from .fetcherrors import FetchError
from .httppool import HttpPool
from .kube import Conflict, KubeApi, KubeError
from .mcpfetch import Endpoint, fetch_catalog
from .models import CachedTool, CacheDocument, CacheSource, CacheStatus, ErrorInfo, ServerInfo, Status
from .resolve import SyncProblem, parse_spec, resolve_endpoint, settings_of
from .status import (RefreshRequest, SyncFailure, SyncSuccess, after_failure, after_success, after_suspend,
                     has_cache, with_refresh)

logger = logging.getLogger(__name__)
DELETED_MEMORY = 10000      # how many deleted uids the engine remembers, to ignore their timers


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TransientKubeError(Exception):
    """Writing the cache hit a Kubernetes API error: retry later, change nothing."""


@dataclass(frozen=True)
class Target:
    """The resource a sync is for, as kopf handed it over."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Event:
    type: str          # Normal | Warning
    reason: str
    message: str


@dataclass
class Report:
    """What a handler must write: the new status (None: nothing) and the Events to post."""

    status: Status | None = None
    events: list[Event] = field(default_factory=list)
    diff: CatalogDiff | None = None
    synced: bool = False        # a sync ran (succeeded or failed), not just a refresh answered
    refreshed: bool = False     # a refresh token was answered
    endpoint: Endpoint | None = None    # what a successful sync talked to (for its list-changed listener)


class SyncObserver(Protocol):
    """Told of every sync that ran and of every forgotten resource (handlers/listchanged.py)."""

    def synced(self, target: Target, report: Report) -> None: ...

    def forgotten(self, target: Target) -> None: ...


def refresh_request(target: Target, requested_at: datetime) -> RefreshRequest | None:
    token = target.annotations.get(c.ANN_REFRESH)
    if not token:
        return None
    force = str(target.annotations.get(c.ANN_REFRESH_FORCE, "")).strip().lower() in ("true", "1", "yes")
    return RefreshRequest(token=token, reason=target.annotations.get(c.ANN_REFRESH_REASON) or None,
                          force=force, requested_at=requested_at)


@dataclass
class SyncEngine:
    kube: KubeApi
    pool: HttpPool
    max_concurrent: int = 10
    clock: Callable[[], datetime] = utcnow
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _statuses: dict[str, Status] = field(default_factory=dict)
    _completed: dict[str, datetime] = field(default_factory=dict)
    _semaphore: asyncio.Semaphore = field(init=False)
    _wanted: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # uids of deleted resources, oldest first: kopf keeps their timers ticking (no finalizer).
    _deleted: dict[str, None] = field(default_factory=dict)
    observers: list[SyncObserver] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_concurrent)

    # -- per-resource state ---------------------------------------------------------

    def lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def current_status(self, target: Target) -> Status:
        """Our last computed status if we have one (kopf's body may not show it yet), else the body's."""
        remembered = self._statuses.get(target.uid)
        if remembered is not None:
            return remembered
        try:
            return Status.model_validate(dict(target.status or {}))
        except ValueError:
            logger.warning("%s %s/%s: unreadable status, starting afresh", target.kind, target.namespace,
                           target.name)
            return Status()

    def last_completed(self, target: Target) -> datetime | None:
        """When the last sync of this resource ended (precise in memory, else from status)."""
        remembered = self._completed.get(target.uid)
        if remembered is not None:
            return remembered
        last = self.current_status(target).last_sync
        return parse_time(last.completed_at) if last else None

    def forget(self, target: Target) -> None:
        """A deleted resource: drop its lock, remembered status and pending sync requests."""
        self._locks.pop(target.uid, None)
        self._statuses.pop(target.uid, None)
        self._completed.pop(target.uid, None)
        self._wanted.pop((target.kind, target.namespace, target.name), None)
        self._deleted[target.uid] = None
        while len(self._deleted) > DELETED_MEMORY:
            self._deleted.pop(next(iter(self._deleted)))
        self._tell_observers(lambda observer: observer.forgotten(target))

    def _tell_observers(self, call: Callable[[SyncObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception:   # an observer must never fail a sync
                logger.exception("sync observer %r failed", observer)

    def want(self, kind: str, namespace: str, name: str, trigger: str) -> None:
        """Ask for a sync of another resource (a watched Secret or ToolServer changed); its timer runs it."""
        self._wanted[(kind, namespace, name)] = trigger

    def take_wanted(self, target: Target) -> str | None:
        return self._wanted.pop((target.kind, target.namespace, target.name), None)

    def scheduled_trigger(self, target: Target) -> str | None:
        """The timer's question: is a sync due now, and why?

        `schedule` when `nextSyncAt` has passed (TTL expiry or a retry); `update` when the spec
        moved past the last handled generation without a sync (kopf can fold a quick second spec
        change into a cycle that already ran the sync). None for deleted, suspended, busy or
        never-synced resources (the create or resume handler owns the first sync).
        """
        if target.uid in self._deleted or self.lock(target.uid).locked():
            return None
        status = self.current_status(target)
        if (status.phase == c.PHASE_SUSPENDED and _suspended(target)) or status.last_sync is None:
            return None
        if target.generation is not None and status.observed_generation is not None \
                and target.generation > status.observed_generation:
            return c.TRIGGER_UPDATE
        due = parse_time(status.next_sync_at)
        return c.TRIGGER_SCHEDULE if due is not None and self.clock() >= due else None

    def is_deleted(self, target: Target) -> bool:
        return target.uid in self._deleted

    # -- the sync path ------------------------------------------------------------------

    async def sync(self, target: Target, trigger: str, *, requested_at: datetime | None = None,
                   explicit_refresh: bool = False) -> Report:
        """Run one sync under the resource's lock; answer a pending refresh token if there is one.

        With `explicit_refresh`, the refresh annotation is what asked for this sync: it is rate
        limited against the last sync that completed before it was requested.
        """
        requested_at = requested_at or self.clock()
        completed_before = self.last_completed(target)
        async with self.lock(target.uid):
            prev = self.current_status(target)
            request = refresh_request(target, requested_at)
            if request is not None and prev.last_refresh and prev.last_refresh.token == request.token:
                request = None      # already answered
            if explicit_refresh and request is None:
                return Report()
            if explicit_refresh and request is not None:
                limited = self._rate_limited(target, prev, request, completed_before)
                if limited is not None:
                    return self._remember(target, limited)
            async with self._semaphore:
                report = await self._sync_locked(target, prev, trigger, request)
            self._tell_observers(lambda observer: observer.synced(target, report))
            return self._remember(target, report)

    def _remember(self, target: Target, report: Report) -> Report:
        if report.status is not None:
            self._statuses[target.uid] = report.status
        return report

    def _rate_limited(self, target: Target, prev: Status, request: RefreshRequest,
                      completed_before: datetime | None) -> Report | None:
        if request.force or completed_before is None:
            return None
        try:
            min_interval = settings_of(parse_spec(target.kind, target.spec)).sync.min_interval_seconds
        except SyncProblem:
            return None     # the sync will report InvalidSpec
        age = (request.requested_at - completed_before).total_seconds()
        if age >= min_interval:
            return None
        message = (f"refresh {request.token!r} not run: the last sync ended {max(age, 0):.1f}s before it was "
                   f"requested, less than sync.minIntervalSeconds={min_interval}; set "
                   f"{c.ANN_REFRESH_FORCE}=\"true\" to bypass")
        status = with_refresh(prev, request, completed_at=self.clock(), result="RateLimited",
                              generation=prev.observed_generation, rate_limit_message=message)
        return Report(status=status, events=[Event("Normal", c.EVENT_RATE_LIMITED, message)], refreshed=True)

    async def _sync_locked(self, target: Target, prev: Status, trigger: str,
                           request: RefreshRequest | None) -> Report:
        started = self.clock()
        owner = None
        try:
            spec = parse_spec(target.kind, target.spec)
            settings = settings_of(spec)
            owner = settings.owner
            if settings.sync.suspend:
                status = after_suspend(prev, generation=target.generation, now=started, owner=owner)
                if request is not None:
                    error = ErrorInfo(reason=c.PHASE_SUSPENDED, message="sync.suspend is true: nothing was fetched")
                    status = with_refresh(status, request, completed_at=self.clock(), result="Failed",
                                          generation=target.generation, error=error)
                return Report(status=status, refreshed=request is not None)
            endpoint = await resolve_endpoint(self.kube, target.kind, target.namespace, spec)
            url = endpoint.url
            cm_name = configmap_name(target.kind, target.name, settings.config_map_name)
            previous_tools, existing = await self._previous_tools(target, cm_name)
            fetched = await fetch_catalog(endpoint, pool=self.pool,
                                          timeout=float(settings.sync.timeout_seconds))
            completed = self.clock()
            now = rfc3339(completed)
            merge = merge_catalog(previous_tools, fetched.tools, settings=settings.tools,
                                  selector=settings.selector, now=now)
            expires = completed + timedelta(seconds=settings.sync.ttl_seconds)
            doc = CacheDocument(
                source=CacheSource(kind=target.kind, namespace=target.namespace, name=target.name, url=url),
                server=ServerInfo(name=fetched.server.name, version=fetched.server.version,
                                  protocol_version=fetched.server.protocol_version),
                cached_at=now, expires_at=rfc3339(expires), tools=merge.tools)
            rendered = render_cache(doc)
            manifest = build_configmap(kind=target.kind, name=target.name, namespace=target.namespace,
                                       owner_uid=target.uid, configmap_name=cm_name, rendered=rendered,
                                       cached_at=now, expires_at=rfc3339(expires))
            await self._write_configmap(target, cm_name, manifest, existing)
        except SyncProblem as problem:
            return self._failed(target, prev, trigger, request, started, problem.reason, problem.message,
                                url=None, owner=owner)
        except FetchError as exc:
            return self._failed(target, prev, trigger, request, started, exc.reason, exc.message,
                                url=endpoint.url, owner=owner)
        except InvalidToolError as exc:
            return self._failed(target, prev, trigger, request, started, c.REASON_PROTOCOL_ERROR,
                                f"the server's tool list is invalid: {exc}", url=endpoint.url, owner=owner)
        except CacheTooLargeError as exc:
            return self._failed(target, prev, trigger, request, started, c.REASON_CACHE_TOO_LARGE, str(exc),
                                url=endpoint.url, owner=owner)
        self._completed[target.uid] = self.clock()
        entries, truncated = status_tools(merge.tools)
        success = SyncSuccess(
            trigger=trigger, started_at=started, completed_at=completed, url=url, server=fetched.server,
            tool_count=merge.tool_count, tools=entries, tools_truncated=truncated,
            cache=CacheStatus(config_map=cm_name, cached_at=now, expires_at=rfc3339(expires),
                              content_hash=rendered.content_hash),
            expires_at=expires, tools_listed=len(fetched.tools))
        status = after_success(prev, success, generation=target.generation, owner=owner)
        events = self._success_events(prev, merge.diff, trigger, merge.tool_count, len(fetched.tools), cm_name, url)
        if request is not None:
            status = with_refresh(status, request, completed_at=self.clock(), result="Succeeded",
                                  generation=target.generation, diff=merge.diff,
                                  previous_tool_count=sum(1 for tool in previous_tools if tool.available),
                                  tools_discovered=len(fetched.tools))
            events.append(Event("Normal", c.EVENT_REFRESHED,
                                f"refresh {request.token!r}: {merge.diff.summary(len(fetched.tools))}"))
        return Report(status=status, events=events, diff=merge.diff, synced=True, refreshed=request is not None,
                      endpoint=endpoint)

    def _failed(self, target: Target, prev: Status, trigger: str, request: RefreshRequest | None,
                started: datetime, reason: str, message: str, *, url: str | None, owner: str | None) -> Report:
        completed = self.clock()
        self._completed[target.uid] = completed
        failure = SyncFailure(trigger=trigger, started_at=started, completed_at=completed, url=url,
                              error=ErrorInfo(reason=reason, message=message))
        status = after_failure(prev, failure, generation=target.generation, owner=owner)
        events: list[Event] = []
        last = prev.last_sync
        if last is None or last.result == "Succeeded" or (last.error and last.error.reason != reason):
            events.append(Event("Warning", c.EVENT_SYNC_FAILED, f"{reason}: {message}"))
        if request is not None:
            status = with_refresh(status, request, completed_at=completed, result="Failed",
                                  generation=target.generation, error=failure.error,
                                  previous_tool_count=sum(1 for tool in prev.tools if tool.available))
        return Report(status=status, events=events, synced=True, refreshed=request is not None)

    @staticmethod
    def _success_events(prev: Status, diff: CatalogDiff, trigger: str, tool_count: int, tools_listed: int,
                        cm_name: str, url: str) -> list[Event]:
        events = []
        if not has_cache(prev):
            events.append(Event("Normal", c.EVENT_SYNCED,
                                f"first sync: {tool_count} usable tools from {url} cached in ConfigMap {cm_name}"))
        elif not diff.is_empty():
            events.append(Event("Normal", c.EVENT_TOOLS_CHANGED,
                                f"{diff.summary(tools_listed)} (trigger: {trigger})"))
        if prev.last_sync is not None and prev.last_sync.result == "Failed":
            reason = prev.last_sync.error.reason if prev.last_sync.error else "an error"
            events.append(Event("Normal", c.EVENT_RECOVERED,
                                f"sync succeeded again after {prev.consecutive_failures} failed attempts "
                                f"({reason})"))
        return events

    # -- the cache ConfigMap -------------------------------------------------------------

    async def _previous_tools(self, target: Target, cm_name: str) -> tuple[list[CachedTool], dict | None]:
        """The catalog the last sync wrote (the ConfigMap holds every tool; status at most 500)."""
        try:
            existing = await self.kube.read_configmap(target.namespace, cm_name)
        except KubeError as exc:
            raise TransientKubeError(exc.message) from None
        if existing is None:
            return [], None
        if not is_owned_by(existing, target.uid):
            raise SyncProblem(c.REASON_CACHE_CONFLICT,
                              f"ConfigMap {target.namespace}/{cm_name} exists and is not owned by this "
                              f"{target.kind}; delete it or set spec.cache.configMapName to another name")
        try:
            return list(parse_cache(existing).tools), existing
        except CacheParseError as exc:
            logger.warning("%s %s/%s: previous cache unreadable (%s); rebuilding it", target.kind,
                           target.namespace, target.name, exc)
            return [], existing

    async def _write_configmap(self, target: Target, cm_name: str, manifest: dict[str, Any],
                               existing: dict | None) -> None:
        try:
            if existing is None:
                try:
                    await self.kube.create_configmap(target.namespace, manifest)
                    return
                except Conflict:
                    # Created meanwhile (by someone else?): only ever overwrite our own.
                    existing = await self.kube.read_configmap(target.namespace, cm_name)
                    if existing is None or not is_owned_by(existing, target.uid):
                        raise SyncProblem(c.REASON_CACHE_CONFLICT,
                                          f"ConfigMap {target.namespace}/{cm_name} appeared during the sync "
                                          f"and is not owned by this {target.kind}") from None
            await self.kube.patch_configmap(target.namespace, cm_name, configmap_patch(manifest))
        except KubeError as exc:
            raise TransientKubeError(exc.message) from None


def _suspended(target: Target) -> bool:
    sync = (target.spec or {}).get("sync") or {}
    return bool(sync.get("suspend"))

