"""reconcile(key): read the latest object, decide, and do the I/O around the pure plan.

The executor of reconcile/: it reads the resource from the object cache, asks `decide` what to do,
resolves the references and fetches the catalog (through small interfaces: a catalog fetcher, a
Kubernetes store, a clock), hands the outcome to `plan_sync`, and writes what comes back: the cache
ConfigMap, then status (one merge patch, only when it changed), then Events. It is the only status
writer. A failure of the Kubernetes API itself (5xx, 429, timeouts) changes nothing and is retried
by the work queue's backoff. An exception no code path expected (a bug) ends the sync like any other
failure, as Synced=False InternalError through the same plan, retried with backoff: never a retry
loop that only the log shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..api import constants as c
from ..api.endpoint import Endpoint, FetchedCatalog
from ..api.errors import Retry, SyncError
from ..api.models import CacheDocument
from ..api.redact import Redactor
from ..api.resource import ObjectKey, Resource
from ..api.spec import settings_of
from ..kube.errors import ApiError, api_error, status_reason
from ..kube.resolve import ResolveError, resolve_endpoint
from ..reconcile.allowlist import catalog_tools, usable_of
from ..reconcile.cachedoc import (
    CacheParseError,
    configmap_name,
    configmap_patch,
    is_owned_by,
    parse_cache,
    restore_patch,
)
from ..reconcile.decide import Decision, Observed, decide
from ..reconcile.plan import (
    CacheWrite,
    Plan,
    SyncOutcome,
    plan_failure,
    plan_rate_limited,
    plan_suspend,
    plan_sync,
)
from ..reconcile.scrub import scrub_catalog, scrub_error
from ..reconcile.status import merge_patch
from .objects import ObjectCache, pack_json, unpack_json

logger = logging.getLogger(__name__)


class Fetcher(Protocol):
    """Every tool of an endpoint; `fresh`: forget what is known of it (a refresh bypasses every cache)."""

    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool) -> FetchedCatalog: ...


class KubeStore(Protocol):
    """The Kubernetes reads and writes a sync makes (kube/client.py; a fake in engine tests)."""

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_configmap(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch_status(self, kind: str, namespace: str, name: str,
                           patch: Mapping[str, Any]) -> dict[str, Any]: ...
    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type_: str, reason: str,
                         message: str, now: datetime | None = None) -> None: ...


class Versions(Protocol):
    """The resourceVersions the watches hold now for Secrets and ConfigMaps (None: absent)."""

    def secret(self, namespace: str, name: str) -> str | None: ...
    def configmap(self, namespace: str, name: str) -> str | None: ...


class Listeners(Protocol):
    def ensure(self, key: ObjectKey, endpoint: Endpoint) -> None: ...
    def stop(self, key: ObjectKey) -> None: ...


class CatalogSink(Protocol):
    """Told of each sync of a source (engine/catalogs.py: what ToolAllowlists and their webhook answer from)."""

    def spec_changed(self, resource: Resource) -> None: ...
    def narrow(self, resource: Resource, usable: frozenset[tuple[str, str]], started: float) -> None: ...
    def commit(self, resource: Resource, plan: Plan, started: float | None) -> None: ...
    def forget(self, key: ObjectKey) -> None: ...


class TransientError(Exception):
    """The Kubernetes API failed; nothing was changed; the work queue retries with backoff, and not before
    the API server's Retry-After (429, 503) when it sent one. `reason`: the API's Status reason."""

    def __init__(self, message: str, *, reason: str = "Unknown", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after

    @classmethod
    def of(cls, message: str, error: ApiError) -> TransientError:
        return cls(f"{message}: {error.message}", reason=status_reason(error), retry_after=error.retry_after)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Memory:
    """What the reconciler remembers of one resource, none of it needed for correctness."""

    token: str | None = None
    token_seen_at: datetime | None = None
    completed_before_token: datetime | None = None
    last_completed: datetime | None = None
    list_changed: bool = False
    reconciled: bool = False


@dataclass
class Outcome:
    """What one reconcile did, for metrics and logs."""

    key: ObjectKey
    decision: Decision
    plan: Plan | None = None
    wrote_status: bool = False
    wrote_cache: bool = False           # this reconcile wrote the cache ConfigMap (and it stayed written)
    seconds: float = 0.0                # the whole reconcile: reads, fetch, merge and every write


@dataclass(frozen=True)
class _CacheState:
    name: str
    resource_version: str | None
    document: CacheDocument | None      # None: no readable cache (absent, or to be rebuilt)
    exists: bool
    content: Mapping[str, Any] | None = None    # its data, binaryData and annotations: to put back if need be


@dataclass(frozen=True, slots=True)
class _Written:
    """The cache ConfigMap a sync wrote, kept as compressed JSON until the next sync parses it again:
    about 2 KiB a resource instead of some 55 KiB for the parsed document and the manifest (20 tools)."""

    name: str
    resource_version: str | None
    packed: bytes

    @classmethod
    def of(cls, name: str, resource_version: str | None, manifest: Mapping[str, Any]) -> _Written:
        return cls(name, resource_version, pack_json(manifest))

    def state(self) -> _CacheState:
        content = unpack_json(self.packed)
        try:
            document: CacheDocument | None = parse_cache(content)
        except CacheParseError:        # cannot happen for what we wrote; rebuild rather than fail
            document = None
        return _CacheState(self.name, self.resource_version, document, exists=True, content=content)


class StatusRejected(Exception):
    """The API server refused a status write for good (400, 413, 422): retrying the same write cannot help."""

    def __init__(self, error: SyncError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Sync:
    """A sync's plan, with what it needs if the status write is then refused."""

    plan: Plan
    outcome: SyncOutcome
    state: _CacheState | None
    wrote_cache: bool = False
    began: float = 0.0                  # time.monotonic() when the sync began


@dataclass
class Reconciler:
    objects: ObjectCache
    kube: KubeStore
    fetch: Fetcher
    versions: Versions
    listeners: Listeners | None = None
    clock: Callable[[], datetime] = utcnow
    jitter: Callable[[], float] = random.random
    observers: list[Callable[[Outcome], None]] = field(default_factory=list)
    server_ttl_floor: float = 60.0      # the shortest catalog lifetime a server's ttlMs may impose
    max_sync_timeout: float = 60.0      # the operator's cap on spec.sync.timeoutSeconds
    redactor: Redactor = field(default_factory=Redactor)    # every credential read, to mask it everywhere
    catalogs: CatalogSink | None = None     # the allowlists' view of catalogs: narrowed before writes, then committed
    _memory: dict[ObjectKey, _Memory] = field(default_factory=dict)
    # The catalog each resource's last sync wrote, by uid: no read of a ConfigMap we wrote ourselves.
    _catalogs: dict[str, _Written] = field(default_factory=dict)
    # Resources (by uid) whose ConfigMap create met one that exists: read it before the next write.
    _must_read: set[str] = field(default_factory=set)

    # -- hints from triggers ------------------------------------------------------------------

    def list_changed(self, key: ObjectKey) -> None:
        """The server told a listener its tool list changed (memory only: a restart re-listens and resyncs)."""
        self._memory.setdefault(key, _Memory()).list_changed = True

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        self._memory.pop(key, None)
        if uid is not None:
            self._catalogs.pop(uid, None)
            self._must_read.discard(uid)
        if self.listeners is not None:
            self.listeners.stop(key)
        if self.catalogs is not None:
            self.catalogs.forget(key)

    def looked_at(self, key: ObjectKey) -> bool:
        """Whether a reconcile has decided about `key` since the operator started (readiness)."""
        memory = self._memory.get(key)
        return memory is not None and memory.reconciled

    # -- the loop's step --------------------------------------------------------------------------

    async def reconcile(self, key: ObjectKey) -> float | None:
        """One reconcile; the seconds until the key wants another look (None: only on a change).

        Raises TransientError when the Kubernetes API failed and nothing was changed.
        """
        resource = self.objects.get(key)
        if resource is None:
            self.forget(key)
            return None
        now = self.clock()
        began = time.monotonic()
        memory = self._memory.setdefault(key, _Memory())
        if self.catalogs is not None:      # what the spec takes away is withdrawn before any sync
            self.catalogs.spec_changed(resource)
        decision = decide(resource, self._observed(resource, memory, now))
        memory.reconciled = True
        if decision.action == "wait":
            logger.debug("%s: nothing to do%s", resource.describe(),
                         f" until {decision.due:%Y-%m-%dT%H:%M:%SZ}" if decision.due else "")
            return _seconds_until(decision.due, now)
        logger.debug("%s: %s%s", resource.describe(), decision.action,
                     f" ({decision.trigger})" if decision.trigger else "")
        try:
            return await self._act(resource, decision, memory, now, began)
        except (TransientError, asyncio.CancelledError):
            raise
        except Exception as exc:        # a bug: recorded like any failure, so the resource shows it
            error = self._internal_error(resource, exc, "reconciling")
            outcome = SyncOutcome(trigger=decision.trigger or c.TRIGGER_UPDATE, started_at=now,
                                  completed_at=self.clock(), refresh=decision.refresh)
            plan = plan_failure(resource, outcome, error, self.jitter())
            wrote = await self._write(resource, plan)
            self._tell(Outcome(key, decision, plan, wrote, False, time.monotonic() - began))
            return _seconds_until(plan.requeue_at, self.clock())

    async def _act(self, resource: Resource, decision: Decision, memory: _Memory, now: datetime,
                   began: float) -> float | None:
        """Sync (or answer a refresh without one, or suspend), then write what the plan says."""
        run: _Sync | None = None
        if decision.action == "rate-limited":
            assert decision.refresh is not None
            plan = plan_rate_limited(resource, decision.refresh, decision.message, now)
        elif decision.action == "suspend":
            plan = plan_suspend(resource, decision.refresh, now)
            if self.listeners is not None:
                self.listeners.stop(resource.key)
        else:
            run = await self._sync(resource, decision, memory)
            plan = run.plan
        wrote_cache = run is not None and run.wrote_cache
        try:
            wrote = await self._write(resource, plan)
        except TransientError:
            raise
        except Exception as exc:        # refused for good (StatusRejected), or a failure nothing expected
            if run is None:
                if isinstance(exc, StatusRejected):
                    raise TransientError(f"{resource.describe()}: writing status failed: {exc.error.message}",
                                         reason=exc.error.api_reason or "Unknown") from None
                raise
            error = exc.error if isinstance(exc, StatusRejected) else \
                self._internal_error(resource, exc, "writing status")
            # Cache and status must describe one catalog: put the previous cache back, record the failure.
            if run.wrote_cache:
                assert run.plan.cache is not None and run.state is not None
                await self._restore_cache(resource, run.plan.cache, run.state)
                wrote_cache = False
            plan = plan_failure(resource, run.outcome, scrub_error(error, self.redactor), self.jitter())
            wrote = await self._write(resource, plan)
        if self.catalogs is not None and run is not None:
            self.catalogs.commit(resource, plan, run.began)
        self._tell(Outcome(resource.key, decision, plan, wrote, wrote_cache, time.monotonic() - began))
        return _seconds_until(plan.requeue_at, self.clock())

    def _observed(self, resource: Resource, memory: _Memory, now: datetime) -> Observed:
        token = resource.annotations.get(c.ANN_REFRESH)
        if token != memory.token:
            memory.token, memory.token_seen_at = token, now
            memory.completed_before_token = memory.last_completed
        secrets = {ref.name: self.versions.secret(resource.namespace, ref.name)
                   for ref in resource.status.references if ref.kind == "Secret"}
        configmaps = {ref.name: self.versions.configmap(resource.namespace, ref.name)
                      for ref in resource.status.references if ref.kind == "ConfigMap"}
        toolserver = None
        for ref in resource.status.references:
            if ref.kind == "ToolServer":
                server = self.objects.get((c.KIND_TOOLSERVER, resource.namespace, ref.name))
                toolserver = (server.uid, server.generation) if server is not None else None
        return Observed(now=now, secrets=secrets, configmaps=configmaps, toolserver=toolserver,
                        list_changed=memory.list_changed, first_since_start=not memory.reconciled,
                        token_seen_at=memory.token_seen_at, completed_before_token=memory.completed_before_token)

    # -- a sync ---------------------------------------------------------------------------------

    async def _sync(self, resource: Resource, decision: Decision, memory: _Memory) -> _Sync:
        assert decision.trigger is not None
        began = time.monotonic()
        started = self.clock()
        memory.list_changed = False
        fields: dict[str, Any] = {"trigger": decision.trigger, "refresh": decision.refresh, "started_at": started}
        endpoint: Endpoint | None = None
        state: _CacheState | None = None
        step = "resolving the spec's references"
        try:
            if resource.spec is None:
                assert resource.spec_error is not None
                raise resource.spec_error
            settings = settings_of(resource.spec)
            try:
                endpoint, references = await resolve_endpoint(self.kube, resource.kind, resource.namespace,
                                                              resource.spec, read_toolserver=self._read_toolserver,
                                                              redactor=self.redactor)
            except ResolveError as error:
                fields["references"] = error.references
                raise
            fields.update(url=endpoint.url, references=references, fetched_with=endpoint.fetched_with)
            step = "reading the previous cache"
            cm_name = configmap_name(resource.kind, resource.name, settings.config_map_name)
            state = await self._previous_catalog(resource, cm_name)
            fields["previous"] = state.document
            step = "fetching the tool list"
            timeout = min(float(settings.sync.timeout_seconds), self.max_sync_timeout)
            fetched = await self.fetch(endpoint, timeout=timeout, fresh=decision.refresh is not None)
            tools, server = scrub_catalog(fetched.tools, fetched.server, self.redactor)
            fields.update(server=server, tools=tools)
        except SyncError as error:
            self._raise_if_transient(error, resource)
            fields["error"] = scrub_error(error, self.redactor)
        except Exception as exc:        # a bug must end as a condition, not as a retry loop only the log shows
            fields["error"] = self._internal_error(resource, exc, step)
        completed = self.clock()
        memory.last_completed = completed
        outcome = SyncOutcome(completed_at=completed, **fields)
        try:
            plan = plan_sync(resource, outcome, self.jitter(), server_ttl_floor=self.server_ttl_floor)
        except Exception as exc:
            plan = plan_failure(resource, outcome, self._internal_error(resource, exc, "merging the catalog"),
                                self.jitter())
        wrote_cache = False
        if plan.cache is not None:
            assert state is not None
            if self.catalogs is not None:     # withdraw what is no longer usable before writing anything
                self.catalogs.narrow(resource, usable_of(catalog_tools(plan.cache.document)), began)
            try:
                _check_status_size(plan)
                await self._write_cache(resource, plan.cache, state)
                wrote_cache = True
            except SyncError as error:
                self._raise_if_transient(error, resource)
                plan = plan_failure(resource, outcome, scrub_error(error, self.redactor), self.jitter())
            except Exception as exc:
                self._catalogs.pop(resource.uid, None)      # whatever happened to it: read it afresh next time
                self._must_read.add(resource.uid)
                plan = plan_failure(resource, outcome, self._internal_error(resource, exc, "writing the cache"),
                                    self.jitter())
        self._update_listener(resource, plan, endpoint)
        return _Sync(plan, outcome, state, wrote_cache, began)

    def _internal_error(self, resource: Resource, exc: Exception, step: str) -> SyncError:
        """An exception no code path expected, as the failure it is recorded as. Its traceback goes to the
        log (through the redacting filter); the condition names only its type, since its text may quote
        what it failed on (a character of a credential, say)."""
        logger.error("%s: unexpected %s while %s; recorded as %s and retried with backoff", resource.describe(),
                     type(exc).__name__, step, c.REASON_INTERNAL_ERROR, exc_info=exc)
        return SyncError(c.REASON_INTERNAL_ERROR,
                         f"the operator failed unexpectedly while {step} ({type(exc).__name__}); it retries with "
                         "backoff. This is a bug: the operator's log has the details")

    @staticmethod
    def _raise_if_transient(error: SyncError, resource: Resource) -> None:
        if error.retry is Retry.TRANSIENT:
            raise TransientError(f"{resource.describe()}: {error.message}", reason=error.api_reason or "Unknown",
                                 retry_after=error.retry_after) from error

    async def _read_toolserver(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A referenced ToolServer: from the cache; from the API when the cache has not seen it (yet)."""
        cached = self.objects.get((c.KIND_TOOLSERVER, namespace, name))
        if cached is not None and cached.spec is not None:
            return {"metadata": {"uid": cached.uid, "generation": cached.generation},
                    "spec": cached.spec.dump()}
        return await self.kube.read_object(c.KIND_TOOLSERVER, namespace, name)

    def _update_listener(self, resource: Resource, plan: Plan, endpoint: Endpoint | None) -> None:
        """Listen for list changes after a successful sync of a server that notifies; stop otherwise. Only a
        hint (TTL resyncs still come): its failure is logged, never the sync's, whose cache is written."""
        if self.listeners is None:
            return
        server = plan.status.server
        succeeded = plan.cache is not None and plan.status.last_sync is not None \
            and plan.status.last_sync.result == "Succeeded"
        try:
            if succeeded and endpoint is not None and server is not None and server.list_changed:
                self.listeners.ensure(resource.key, endpoint)
            else:
                self.listeners.stop(resource.key)
        except Exception as exc:
            logger.error("%s: updating its list-changed listener failed (%s)", resource.describe(),
                         type(exc).__name__, exc_info=exc)

    # -- the cache ConfigMap -------------------------------------------------------------------

    async def _previous_catalog(self, resource: Resource, cm_name: str) -> _CacheState:
        """The catalog the last sync wrote: remembered from our own write, else read from the ConfigMap."""
        remembered = self._catalogs.get(resource.uid)
        if remembered is not None and remembered.name == cm_name:
            return remembered.state()
        if resource.status.cache is None and resource.uid not in self._must_read \
                and self.versions.configmap(resource.namespace, cm_name) is None:
            # No cache recorded in status and none the watch knows of (it skips ours by label): create it
            # without reading first, one request less for every new resource. Should one exist after all
            # (an earlier incarnation's, someone else's), the create's 409 makes the next try read it.
            return _CacheState(cm_name, None, None, exists=False)
        try:
            existing = await self.kube.read_configmap(resource.namespace, cm_name)
        except ApiError as error:
            raise api_error(error, kind="ConfigMap") from None
        if existing is None:
            return _CacheState(cm_name, None, None, exists=False)
        if not is_owned_by(existing, resource.uid) and not _previous_incarnation(existing, resource):
            raise SyncError(c.REASON_CACHE_CONFLICT,
                            f"ConfigMap {resource.namespace}/{cm_name} exists and is not owned by this "
                            f"{resource.kind}; delete it or set spec.cache.configMapName to another name")
        rv = (existing.get("metadata") or {}).get("resourceVersion")
        if not existing.get("data") and not existing.get("binaryData"):    # emptied: no catalog yet
            return _CacheState(cm_name, rv, None, exists=True, content=existing)
        try:
            document: CacheDocument | None = parse_cache(existing)
        except CacheParseError as exc:
            logger.warning("%s: previous cache unreadable (%s); rebuilding it", resource.describe(), exc)
            document = None
        return _CacheState(cm_name, rv, document, exists=True, content=existing)

    async def _write_cache(self, resource: Resource, cache: CacheWrite, state: _CacheState) -> None:
        """Create it, or merge-patch it on the condition that nobody changed it since we read it."""
        try:
            if not state.exists:
                written = await self.kube.create_configmap(resource.namespace, cache.manifest)
            else:
                patch = configmap_patch(cache.manifest)
                if state.resource_version:
                    patch["metadata"]["resourceVersion"] = state.resource_version
                written = await self.kube.patch_configmap(resource.namespace, cache.name, patch)
        except ApiError as error:
            self._catalogs.pop(resource.uid, None)
            if error.status == 409 and not state.exists:
                self._must_read.add(resource.uid)
            if error.status in (404, 409):
                # Created, changed or deleted by someone else meanwhile: read it afresh next time.
                raise SyncError(c.REASON_API_UNAVAILABLE,
                                f"ConfigMap {resource.namespace}/{cache.name} changed during the sync; "
                                "syncing again", api_reason=status_reason(error)) from None
            raise api_error(error, kind="ConfigMap") from None
        rv = (written.get("metadata") or {}).get("resourceVersion")
        self._catalogs[resource.uid] = _Written.of(cache.name, rv, cache.manifest)
        self._must_read.discard(resource.uid)

    async def _restore_cache(self, resource: Resource, cache: CacheWrite, before: _CacheState) -> None:
        """Undo this sync's cache write: the previous content back; a ConfigMap this sync created is
        emptied (no catalog, as status says; the operator may not delete ConfigMaps, by design)."""
        written = self._catalogs.pop(resource.uid, None)
        patch = restore_patch(before.content if before.exists and before.content is not None else {},
                              cache.manifest)
        if written is not None and written.resource_version:
            patch["metadata"]["resourceVersion"] = written.resource_version
        try:
            await self.kube.patch_configmap(resource.namespace, cache.name, patch)
        except ApiError as error:
            if error.status != 404:
                raise TransientError.of(f"{resource.describe()}: putting the previous cache back failed",
                                        error) from None
        logger.warning("%s: status write refused; ConfigMap %s put back as it was", resource.describe(),
                       cache.name)

    # -- status and Events ----------------------------------------------------------------------

    async def _write(self, resource: Resource, plan: Plan) -> bool:
        """Patch /status when it changed (the answer goes into the cache), then post the Events."""
        patch = merge_patch(resource.status.dump(), plan.status.dump())
        wrote = False
        if patch:
            try:
                answer = await self.kube.patch_status(resource.kind, resource.namespace, resource.name, patch)
            except ApiError as error:
                if error.status == 404:
                    return False        # deleted meanwhile
                if error.status in (400, 413, 422):
                    raise StatusRejected(api_error(error)) from None
                raise TransientError.of(f"{resource.describe()}: writing status failed", error) from None
            self.objects.observe(resource.kind, answer)
            logger.debug("%s: status patched (%s)", resource.describe(), ", ".join(sorted(patch)))
            wrote = True
        for event in plan.events:
            try:
                await self.kube.post_event(kind=resource.kind, namespace=resource.namespace, name=resource.name,
                                           uid=resource.uid, type_=event.type, reason=event.reason,
                                           message=event.message)
            except ApiError as error:
                logger.warning("%s: could not post Event %s: %s", resource.describe(), event.reason, error.message)
            except Exception as exc:    # an Event is best effort; status is already written
                logger.error("%s: could not post Event %s (%s)", resource.describe(), event.reason,
                             type(exc).__name__, exc_info=exc)
        return wrote

    def _tell(self, outcome: Outcome) -> None:
        for observer in self.observers:
            try:
                observer(outcome)
            except Exception:       # an observer must never fail a reconcile
                logger.exception("reconcile observer %r failed", observer)


def _check_status_size(plan: Plan) -> None:
    """The status a sync is about to record fits in one request: checked before the cache is written."""
    size = len(json.dumps(plan.status.dump(), separators=(",", ":")))
    if size > c.STATUS_MAX_BYTES:
        raise SyncError(c.REASON_CACHE_TOO_LARGE,
                        f"the status would be {size} bytes, more than the {c.STATUS_MAX_BYTES} the operator "
                        "writes; list fewer tools (spec.toolSelector)")


def _previous_incarnation(configmap: Mapping[str, Any], resource: Resource) -> bool:
    """Owned by an earlier object of the same kind and name (deleted and created again): ours to adopt."""
    references = (configmap.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("kind") == resource.kind and ref.get("name") == resource.name and ref.get("controller")
               for ref in references if isinstance(ref, Mapping))


def _seconds_until(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return max(0.0, (moment - now).total_seconds())
