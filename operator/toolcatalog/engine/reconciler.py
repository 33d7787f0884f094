"""reconcile(key): read the latest object, decide, and do the I/O around the pure plan.

The executor of reconcile/: it reads the resource from the object cache, asks `decide` what to do,
resolves the references and fetches the catalog (through small interfaces: a catalog fetcher, a
Kubernetes store, a clock), hands the outcome to `plan_sync`, and writes what comes back: the cache
ConfigMap, then status (one merge patch, only when it changed), then Events. It is the only status
writer. A failure of the Kubernetes API itself (5xx, 429, timeouts) changes nothing and is retried
by the work queue's backoff. An exception no code path expected (a bug) ends the sync like any other
failure, as Synced=False InternalError through the same plan, retried with backoff: never a retry
loop that only the log shows.

Status writes carry the resourceVersion the reconcile decided from: a status written meanwhile by
another process (two shards briefly owning the same resource) is never overwritten. On a conflict
the object is read afresh. If its status is still the one read (the spec, an annotation or a label
changed), the outcome is still a true record of what this sync found, and the same write is made
again on the fresh object (the next reconcile takes up what changed). If another writer changed the
status, this outcome is stale: the ConfigMap goes back to what it was, no Event is posted, and the
resource is reconciled again at once from the fresh object (which may show the work done already,
e.g. the refresh answered by the other process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
    configmap_metadata,
    configmap_name,
    configmap_patch,
    is_owned_by,
    metadata_current,
    parse_cache,
    parse_document,
    restore_patch,
)
from ..reconcile.conditions import parse_time
from ..reconcile.decide import Decision, Observed, decide
from ..reconcile.plan import (
    CacheWrite,
    Plan,
    SyncOutcome,
    VerifiedCache,
    plan_failure,
    plan_rate_limited,
    plan_suspend,
    plan_sync,
    plan_verified,
)
from ..reconcile.report import verification_unreported
from ..reconcile.scrub import scrub_catalog, scrub_error
from ..reconcile.status import merge_patch
from .documents import RecentDocuments
from .objects import ObjectCache, pack_json, unpack_json
from .sharedfetch import SharedFetches

logger = logging.getLogger(__name__)


class Fetcher(Protocol):
    """Every tool of an endpoint; `fresh`: forget what is known of it (a refresh bypasses every cache)."""

    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool) -> FetchedCatalog: ...


class KubeStore(Protocol):
    """The Kubernetes reads and writes a sync makes (kube/client.py; a fake in engine tests)."""

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_configmap_version(self, namespace: str, name: str) -> str | None: ...
    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_configmap(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *,
                           resource_version: str | None = None) -> dict[str, Any]: ...
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
    def commit(self, resource: Resource, plan: Plan, started: float | None,
               load: Callable[[], CacheDocument | None] | None = None) -> None: ...
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
    list_changed_at: float | None = None    # the event loop's time of the latest notification
    answer_began: float | None = None       # when the fetch of the last sync's answer began (event-loop time)
    reconciled: bool = False
    # A verification left unwritten (reconcile/report.py): when the next sync is due, for the status at
    # this resourceVersion (a newer status brings its own nextSyncAt).
    verified_due: datetime | None = None
    verified_for: str | None = None


@dataclass
class Outcome:
    """What one reconcile did, for metrics and logs."""

    key: ObjectKey
    decision: Decision
    plan: Plan | None = None
    wrote_status: bool = False
    wrote_cache: bool = False           # this reconcile wrote the cache ConfigMap (and it stayed written)
    seconds: float = 0.0                # the whole reconcile: reads, fetch, merge and every write
    conflicts: int = 0                  # status writes refused because the object had changed (HTTP 409)


@dataclass(frozen=True)
class _CacheState:
    name: str
    resource_version: str | None
    document: CacheDocument | None      # None: no readable cache (absent, or to be rebuilt)
    exists: bool
    content: Mapping[str, Any] | None = None    # its data, binaryData and annotations: to put back if need be

    @property
    def content_hash(self) -> str | None:
        annotations = ((self.content or {}).get("metadata") or {}).get("annotations") or {}
        return annotations.get(c.ANN_CONTENT_HASH)

    def intact(self, resource: Resource) -> bool:
        """Whether the ConfigMap carries the labels, annotations and owner this release writes, for its
        document: then an unchanged catalog needs no write."""
        if self.document is None or self.content is None or self.content_hash is None:
            return False
        return metadata_current(self.content, configmap_metadata(
            kind=resource.kind, name=resource.name, owner_uid=resource.uid, cached_at=self.document.cached_at,
            content_hash=self.content_hash))


@dataclass(frozen=True, slots=True)
class _Written:
    """The cache ConfigMap as the last sync left it, kept compressed until a sync parses it again: about 2 KiB a
    resource instead of some 55 KiB for the parsed document and the manifest (20 tools).

    `packed` is the compressed JSON of its metadata and content; when the content is one plain tools.json (what
    the operator writes below the gzip size), that text is kept apart in `document`, compressed as it is: not
    escaped into a JSON string to be kept, nor read back out of one to be parsed.

    `answer` is the key of the server's answer that this catalog holds (`_answer_key`), once status
    records the catalog: a sync whose answer has the same key finds the catalog unchanged without
    parsing, merging or writing it."""

    name: str
    resource_version: str | None
    packed: bytes
    content_hash: str | None = None
    answer: str | None = None
    tools_available: int = 0
    tools_listed: int = 0
    document: bytes | None = None

    @classmethod
    def of(cls, name: str, resource_version: str | None, manifest: Mapping[str, Any]) -> _Written:
        annotations = (manifest.get("metadata") or {}).get("annotations") or {}
        slim = _slim(manifest)
        data, document = slim.get("data"), None
        if isinstance(data, Mapping) and "binaryData" not in slim and len(data) == 1 \
                and isinstance(text := data.get(c.CM_KEY_JSON), str):
            document = zlib.compress(text.encode("utf-8", "surrogatepass"), 1)
            del slim["data"]
        return cls(name, resource_version, pack_json(slim), annotations.get(c.ANN_CONTENT_HASH), document=document)

    def state(self, parsed: CacheDocument | None = None) -> _CacheState:
        """Its content and document; `parsed`: the document of this very write, held parsed already."""
        content = unpack_json(self.packed)
        document: CacheDocument | None = parsed
        try:
            if self.document is not None:
                text = zlib.decompress(self.document).decode("utf-8", "surrogatepass")
                content["data"] = {c.CM_KEY_JSON: text}
                document = document or parse_document(text)
            elif document is None:
                document = parse_cache(content)
        except CacheParseError:        # cannot happen for what we wrote; rebuild rather than fail
            document = None
        return _CacheState(self.name, self.resource_version, document, exists=True, content=content)


class StatusRejected(Exception):
    """The API server refused a status write for good (400, 413, 422): retrying the same write cannot help."""

    def __init__(self, error: SyncError) -> None:
        super().__init__(error.message)
        self.error = error


class StatusConflict(Exception):
    """The object is no longer at the resourceVersion the status write was made for (HTTP 409)."""


# A ConfigMap written this recently with a catalog status does not record is taken for another process's
# sync still between its ConfigMap and status writes; older, for one left over by an interrupted sync.
IN_FLIGHT_SECONDS = 30.0
# Conflicts in a row that left status alone (the object's spec or metadata rewritten) before it backs
# off: someone rewriting the object in a loop must not keep a worker busy.
MAX_RETRIED_CONFLICTS = 3


@dataclass
class _Sync:
    """A sync's plan, with what it needs if the status write is then refused."""

    plan: Plan
    outcome: SyncOutcome
    state: _CacheState | None
    wrote_cache: bool = False
    began: float = 0.0                  # time.monotonic() when the sync began
    answer: str | None = None           # the key of the server's answer (`Reconciler._answer_key`)
    tools_available: int = 0
    tools_listed: int = 0
    verified: bool = False              # the server answered as when the catalog was written (`plan_verified`)


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
    # A verification that moves only times is written when the recorded one is this old (0: always).
    status_report_interval: float = 0.0
    # A scheduled resync may take an answer of the same endpoint and credentials this many seconds old.
    fetch_share_window: float = 0.0
    _memory: dict[ObjectKey, _Memory] = field(default_factory=dict)
    # The catalog each resource's last sync wrote, by uid: no read of a ConfigMap we wrote ourselves.
    _catalogs: dict[str, _Written] = field(default_factory=dict)
    # The documents of the latest writes of large catalogs, parsed: the next merge of each needs it.
    _documents: RecentDocuments = field(default_factory=RecentDocuments)
    # Resources (by uid) whose ConfigMap create met one that exists: read it before the next write.
    _must_read: set[str] = field(default_factory=set)
    # Syncs whose server answered exactly as when the catalog was written, and wrote no ConfigMap.
    verified_syncs: int = 0
    fetches: SharedFetches = field(init=False)

    def __post_init__(self) -> None:
        self.fetches = SharedFetches(self._fetch, window=self.fetch_share_window, clock=_loop_time)

    async def _fetch(self, endpoint: Endpoint, *, timeout: float, fresh: bool) -> FetchedCatalog:
        return await self.fetch(endpoint, timeout=timeout, fresh=fresh)     # the fetcher set now (tests swap it)

    # -- hints from triggers ------------------------------------------------------------------

    def list_changed(self, key: ObjectKey) -> None:
        """The server told a listener its tool list changed (memory only: a restart re-listens and resyncs)."""
        memory = self._memory.setdefault(key, _Memory())
        memory.list_changed, memory.list_changed_at = True, _loop_time()

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        self._memory.pop(key, None)
        if uid is not None:
            self._catalogs.pop(uid, None)
            self._documents.forget(uid)
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
            try:
                wrote = await self._write(resource, plan)
            except StatusConflict:
                raise TransientError(f"{resource.describe()}: its status changed while recording an internal "
                                     "error; looked at again", reason="Conflict") from None
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
        conflicts, refused, wrote = 0, False, False
        memory.verified_due = memory.verified_for = None
        if run is not None and run.verified and not plan.events and verification_unreported(
                resource.status, plan.status, now=self.clock(), interval=self.status_report_interval):
            # Nothing but the verification's times moved, and the recorded one is recent: no write, no
            # watch event for anyone. The schedule is kept in memory until the next write.
            memory.verified_due, memory.verified_for = plan.requeue_at, resource.resource_version
        else:
            while True:
                try:
                    wrote = await self._write(resource, plan)
                    break
                except TransientError:
                    raise
                except StatusConflict:
                    conflicts += 1
                    fresh = await self._read_fresh(resource, run)
                    if fresh is not None and conflicts <= MAX_RETRIED_CONFLICTS and _same_status(fresh, resource):
                        resource = fresh        # nobody else wrote status: the same write, on the fresh object
                        continue
                    await self._discard(resource, run, decision, memory)
                    self._tell(Outcome(resource.key, decision, None, False, False, time.monotonic() - began, conflicts))
                    if fresh is not None and conflicts > MAX_RETRIED_CONFLICTS:
                        raise TransientError(f"{resource.describe()}: the object keeps changing under the status "
                                             "write") from None
                    return 0.0 if fresh is not None else None     # at once, from the fresh object
                except Exception as exc:        # refused for good (StatusRejected), or a failure nothing expected
                    if run is None or refused:
                        if isinstance(exc, StatusRejected):
                            raise TransientError(f"{resource.describe()}: writing status failed: {exc.error.message}",
                                                 reason=exc.error.api_reason or "Unknown") from None
                        raise
                    error = exc.error if isinstance(exc, StatusRejected) else \
                        self._internal_error(resource, exc, "writing status")
                    # Cache and status must describe one catalog: put the previous cache back, record the failure.
                    await self._undo_cache(resource, run, "status write refused", logging.WARNING)
                    plan = plan_failure(resource, run.outcome, scrub_error(error, self.redactor), self.jitter())
                    refused = True
        wrote_cache = run is not None and run.wrote_cache
        if run is not None and plan.succeeded and not refused:
            self._remember_answer(resource, run)
        if self.catalogs is not None and run is not None:
            self.catalogs.commit(resource, plan, run.began, self._document_loader(resource))
        self._tell(Outcome(resource.key, decision, plan, wrote, wrote_cache, time.monotonic() - began, conflicts))
        return _seconds_until(plan.requeue_at, self.clock())

    def _remember_answer(self, resource: Resource, run: _Sync) -> None:
        """Cache and status now hold this sync's catalog: remember which answer of the server it came from."""
        written = self._catalogs.get(resource.uid)
        if written is None or run.answer is None:
            return
        self._catalogs[resource.uid] = replace(written, answer=run.answer, tools_available=run.tools_available,
                                               tools_listed=run.tools_listed)

    def _document_loader(self, resource: Resource) -> Callable[[], CacheDocument | None]:
        """The catalog the cache holds, parsed on demand (the allowlists need it after an unchanged sync only
        when they do not hold it already)."""
        def load() -> CacheDocument | None:
            written = self._catalogs.get(resource.uid)
            return written.state(self._parsed(resource.uid, written)).document if written is not None else None
        return load

    async def _read_fresh(self, resource: Resource, run: _Sync | None) -> Resource | None:
        """The object as the API server has it now, into the object cache (None: it is gone)."""
        try:
            body = await self.kube.read_object(resource.kind, resource.namespace, resource.name)
        except ApiError as error:
            await self._undo_cache(resource, run, "status changed meanwhile", logging.INFO)
            raise TransientError(f"{resource.describe()}: reading it after a conflict failed: "
                                 f"{error.message}") from None
        if body is None:
            return None
        self.objects.observe(resource.kind, body)
        return Resource.from_body(resource.kind, body)

    async def _discard(self, resource: Resource, run: _Sync | None, decision: Decision, memory: _Memory) -> None:
        """This reconcile's outcome is older than the object: undo its cache write, keep the hints it used."""
        await self._undo_cache(resource, run, "status changed meanwhile", logging.INFO)
        if decision.trigger == c.TRIGGER_LIST_CHANGED:
            memory.list_changed = True
        elif decision.trigger == c.TRIGGER_RESUME:
            memory.reconciled = False
        logger.info("%s: its status changed while this %s was under way; the outcome is dropped (no Event), "
                    "its ConfigMap left as it was, and it is looked at again", resource.describe(), decision.action)

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
        verified_due = memory.verified_due if memory.verified_for == resource.resource_version else None
        return Observed(now=now, secrets=secrets, configmaps=configmaps, toolserver=toolserver,
                        list_changed=memory.list_changed, first_since_start=not memory.reconciled,
                        verified_due=verified_due,
                        token_seen_at=memory.token_seen_at, completed_before_token=memory.completed_before_token)

    # -- a sync ---------------------------------------------------------------------------------

    async def _sync(self, resource: Resource, decision: Decision, memory: _Memory) -> _Sync:
        """Resolve, fetch, and plan. A server that answers exactly as when it last wrote the catalog (and nothing
        else it depends on changed) gets `plan_verified`: nothing read, parsed, merged or written but status.
        Otherwise the previous catalog is read (from memory, else from its ConfigMap) and merged (`plan_sync`),
        and the ConfigMap written only when the catalog changed."""
        assert decision.trigger is not None
        began = time.monotonic()
        started = self.clock()
        not_before = self._answers_since(decision, memory)
        memory.list_changed = False
        fields: dict[str, Any] = {"trigger": decision.trigger, "refresh": decision.refresh, "started_at": started}
        endpoint: Endpoint | None = None
        state: _CacheState | None = None
        verified: VerifiedCache | None = None
        answer: str | None = None
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
            cm_name = configmap_name(resource.kind, resource.name, settings.config_map_name)
            step = "reading the previous cache"
            if not self._remembers(resource, cm_name):     # read it first: it may forbid the sync (not ours...)
                state = await self._previous_catalog(resource, cm_name)
            step = "fetching the tool list"
            timeout = min(float(settings.sync.timeout_seconds), self.max_sync_timeout)
            fetched, memory.answer_began = await self.fetches(endpoint, timeout=timeout,
                                                              fresh=decision.refresh is not None,
                                                              not_before=not_before)
            answer = self._answer_key(resource, cm_name, endpoint, fetched)
            step = "reading the previous cache"
            if state is None:
                verified = await self._verified(resource, cm_name, answer)
            if verified is not None:
                fields["server"] = scrub_catalog((), fetched.server, self.redactor)[1]
            else:
                state = state or await self._previous_catalog(resource, cm_name)
                fields.update(previous=state.document, previous_hash=state.content_hash,
                              previous_intact=state.intact(resource))
                tools, server = scrub_catalog(fetched.tools, fetched.server, self.redactor)
                fields.update(server=server, tools=tools)
        except SyncError as error:
            self._raise_if_transient(error, resource)
            fields["error"] = scrub_error(error, self.redactor)
            verified = None
        except Exception as exc:        # a bug must end as a condition, not as a retry loop only the log shows
            fields["error"] = self._internal_error(resource, exc, step)
            verified = None
        completed = self.clock()
        memory.last_completed = completed
        outcome = SyncOutcome(completed_at=completed, **fields)
        try:
            if verified is not None:
                plan = plan_verified(resource, outcome, verified, self.jitter(), server_ttl_floor=self.server_ttl_floor)
                self.verified_syncs += 1
            else:
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
        elif plan.kept is not None and state is not None and state.exists and state.content is not None \
                and self._catalogs.get(resource.uid) is None:
            # Read from the API and unchanged: remembered, so that the next sync neither reads nor parses it.
            self._catalogs[resource.uid] = _Written.of(state.name, state.resource_version, state.content)
        self._update_listener(resource, plan, endpoint)
        run = _Sync(plan, outcome, state, wrote_cache, began, answer=answer, verified=verified is not None)
        if plan.succeeded:
            document = plan.cache.document if plan.cache is not None else plan.kept.document if plan.kept else None
            if document is not None:
                run.tools_available = sum(1 for tool in document.tools if tool.available)
                run.tools_listed = len(outcome.tools or ())
            elif verified is not None:
                run.tools_available, run.tools_listed = verified.tools_available, verified.tools_listed
        return run

    def _answers_since(self, decision: Decision, memory: _Memory) -> float | None:
        """The earliest moment (event-loop time) a fetch may have begun for its answer to serve this sync: a
        refresh wants one of its own (None); a notification, one begun after it; anything else, one begun
        within the fetch share window (engine/sharedfetch.py). Always one newer than the last sync's."""
        if decision.refresh is not None:
            return None
        if decision.trigger == c.TRIGGER_LIST_CHANGED and memory.list_changed_at is not None:
            since = memory.list_changed_at
        elif self.fetch_share_window > 0:
            since = _loop_time() - self.fetch_share_window
        else:
            return None
        if memory.answer_began is not None:
            since = max(since, memory.answer_began + 1e-6)
        return since

    def _answer_key(self, resource: Resource, cm_name: str, endpoint: Endpoint, fetched: FetchedCatalog) -> str | None:
        """What decides the catalog besides the catalog it merges into: the server's answer (its digest), this
        generation of the spec (selector, tool settings, approval policy), the ConfigMap's name, the URL, whose
        credentials, and the credentials known to the redactor (a new one may have to be masked). Equal keys,
        equal catalogs: merging the same answer into the catalog it produced gives that catalog again."""
        if fetched.digest is None:
            return None
        fetched_with = endpoint.fetched_with.dump() if endpoint.fetched_with is not None else None
        key = json.dumps([fetched.digest, resource.uid, resource.generation, cm_name, endpoint.url, fetched_with,
                          len(self.redactor)], separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()

    def _remembers(self, resource: Resource, cm_name: str) -> bool:
        """Whether this process wrote (or read) the catalog status records, and knows which answer it holds."""
        written = self._catalogs.get(resource.uid)
        cache = resource.status.cache
        return written is not None and written.answer is not None and written.name == cm_name \
            and cache is not None and cache.config_map == cm_name and written.content_hash is not None \
            and cache.content_hash == written.content_hash

    async def _verified(self, resource: Resource, cm_name: str, answer: str | None) -> VerifiedCache | None:
        """The cache, if this answer is the one it holds, status records it, and its ConfigMap is still exactly
        as the operator left it (its resourceVersion, from the ConfigMap informer, else read as metadata only:
        deleted or edited, it is rebuilt)."""
        written = self._catalogs.get(resource.uid)
        cache = resource.status.cache
        if answer is None or written is None or written.answer != answer or not self._remembers(resource, cm_name) \
                or cache is None or cache.cached_at is None or written.content_hash is None:
            return None
        # The informer's version when it is the one we wrote (no request); else the API's, to be sure.
        version = self.versions.configmap(resource.namespace, cm_name)
        if version != written.resource_version:
            try:
                version = await self.kube.read_configmap_version(resource.namespace, cm_name)
            except ApiError as error:
                raise api_error(error, kind="ConfigMap") from None
        if version is None or version != written.resource_version:
            self._catalogs.pop(resource.uid, None)
            self._must_read.add(resource.uid)
            return None
        return VerifiedCache(config_map=cm_name, cached_at=cache.cached_at, content_hash=written.content_hash,
                             tools_available=written.tools_available, tools_listed=written.tools_listed)

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
        try:
            if plan.succeeded and endpoint is not None and server is not None and server.list_changed:
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
            return remembered.state(self._parsed(resource.uid, remembered))
        if resource.status.cache is None and resource.uid not in self._must_read \
                and self.versions.configmap(resource.namespace, cm_name) is None:
            # No cache recorded in status and none the ConfigMap informer knows of: create it
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
        self._check_not_in_flight(resource, existing)
        try:
            document: CacheDocument | None = parse_cache(existing)
        except CacheParseError as exc:
            logger.warning("%s: previous cache unreadable (%s); rebuilding it", resource.describe(), exc)
            document = None
        return _CacheState(cm_name, rv, document, exists=True, content=existing)

    def _check_not_in_flight(self, resource: Resource, existing: Mapping[str, Any]) -> None:
        """A ConfigMap whose catalog status does not record, written moments ago, is another process's sync
        between its two writes (its status write may still lose and put the ConfigMap back): merging with it
        would report changes against a catalog no status ever described. Wait for that write to settle
        (its status write comes through the watch and wakes this resource). Older, it is left over from an
        interrupted sync, and adopted."""
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        found = annotations.get(c.ANN_CONTENT_HASH)
        recorded = resource.status.cache.content_hash if resource.status.cache is not None else None
        written_at = parse_time(annotations.get(c.ANN_CACHED_AT))
        if not found or found == recorded or written_at is None or not is_owned_by(existing, resource.uid):
            return
        age = (self.clock() - written_at).total_seconds()
        if age < IN_FLIGHT_SECONDS:
            raise SyncError(c.REASON_API_UNAVAILABLE,
                            f"ConfigMap {resource.namespace}/{existing['metadata'].get('name')} holds a catalog "
                            f"written {max(0, round(age))}s ago that status does not record: another sync of this "
                            f"{resource.kind} is writing; syncing again")
        logger.warning("%s: its ConfigMap holds a catalog status does not record, left by an interrupted sync; "
                       "taken as the previous catalog", resource.describe())

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
        self._documents.remember(resource.uid, cache.name, rv, cache.rendered.size_bytes, cache.document)
        self._must_read.discard(resource.uid)

    def _parsed(self, uid: str, written: _Written) -> CacheDocument | None:
        return self._documents.get(uid, written.name, written.resource_version)

    async def _undo_cache(self, resource: Resource, run: _Sync | None, why: str, level: int) -> None:
        if run is not None and run.wrote_cache:
            assert run.plan.cache is not None and run.state is not None
            await self._restore_cache(resource, run.plan.cache, run.state, why, level)
            run.wrote_cache = False

    async def _restore_cache(self, resource: Resource, cache: CacheWrite, before: _CacheState, why: str,
                             level: int) -> None:
        """Undo this sync's cache write: the previous content back; a ConfigMap this sync created is
        emptied (no catalog, as status says; the operator may not delete ConfigMaps, by design).
        Only if nobody wrote it since: a newer write (another process's sync) is left as it is."""
        written = self._catalogs.pop(resource.uid, None)
        patch = restore_patch(before.content if before.exists and before.content is not None else {},
                              cache.manifest)
        if written is not None and written.resource_version:
            patch["metadata"]["resourceVersion"] = written.resource_version
        try:
            await self.kube.patch_configmap(resource.namespace, cache.name, patch)
        except ApiError as error:
            if error.status == 409:
                logger.info("%s: %s; ConfigMap %s was written again since, by someone else: left as it is",
                            resource.describe(), why, cache.name)
                return
            if error.status != 404:
                raise TransientError.of(f"{resource.describe()}: putting the previous cache back failed",
                                        error) from None
        logger.log(level, "%s: %s; ConfigMap %s put back as it was", resource.describe(), why, cache.name)

    # -- status and Events ----------------------------------------------------------------------

    async def _write(self, resource: Resource, plan: Plan) -> bool:
        """Patch /status when it changed (the answer goes into the cache), then post the Events."""
        patch = merge_patch(resource.status.dump(), plan.status_body)
        wrote = False
        if patch:
            try:
                answer = await self.kube.patch_status(resource.kind, resource.namespace, resource.name, patch,
                                                      resource_version=resource.resource_version)
            except ApiError as error:
                if error.status == 404:
                    return False        # deleted meanwhile
                if error.status == 409:
                    raise StatusConflict() from None
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
    size = len(json.dumps(plan.status_body, separators=(",", ":")))
    if size > c.STATUS_MAX_BYTES:
        raise SyncError(c.REASON_CACHE_TOO_LARGE,
                        f"the status would be {size} bytes, more than the {c.STATUS_MAX_BYTES} the operator "
                        "writes; list fewer tools (spec.toolSelector)")


def _same_status(fresh: Resource, planned: Resource) -> bool:
    """Whether nobody wrote the status of this incarnation since the reconcile read it. A spec, annotation
    or label changed meanwhile leaves the outcome true (it records the generation and the refresh it
    answered); a status written by someone else makes it stale."""
    return fresh.uid == planned.uid and fresh.status == planned.status


def _slim(configmap: Mapping[str, Any]) -> dict[str, Any]:
    """What a sync needs of a cache ConfigMap: its content, and the labels, annotations and owner it carries."""
    meta = configmap.get("metadata") or {}
    slim: dict[str, Any] = {"metadata": {key: meta[key] for key in ("name", "labels", "annotations", "ownerReferences")
                                         if key in meta}}
    for key in ("data", "binaryData"):
        if configmap.get(key) is not None:
            slim[key] = configmap[key]
    return slim


def _previous_incarnation(configmap: Mapping[str, Any], resource: Resource) -> bool:
    """Owned by an earlier object of the same kind and name (deleted and created again): ours to adopt."""
    references = (configmap.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("kind") == resource.kind and ref.get("name") == resource.name and ref.get("controller")
               for ref in references if isinstance(ref, Mapping))


def _loop_time() -> float:
    """The event loop's clock (monotonic; looptime's in the engine tests)."""
    return asyncio.get_running_loop().time()


def _seconds_until(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return max(0.0, (moment - now).total_seconds())
