"""reconcile(key) of a ToolAllowlist: the I/O around reconcile/allowlist*.py's pure plan.

One reconcile reads the allowlist from the object cache and each source's catalog from the
in-memory catalogs (engine/catalogs.py; a source not known yet is read from its cache ConfigMap,
whose content hash must match its status, else it is read again shortly and allows nothing
meanwhile), computes what is allowed, writes every target concurrently (each fails on its own),
then status and Events. It runs on the engine's work queue like the sources: one reconcile per
allowlist at a time; a source's sync that changes what is usable enqueues it with priority.

A target that could not be written is retried with backoff (1 s doubling to 60 s); everything is
looked at again every `resync` seconds, which also re-asserts what someone changed at a target and
re-publishes to gateways (ContextForge may discover tools on its own).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..api import constants as c
from ..api.allowlist import Allowlist, AllowlistSource, ToolAllowlistSpec
from ..api.resource import ObjectKey, Resource
from ..kube.errors import ApiError
from ..reconcile.allowlist import (
    SourceCatalog,
    SourceInput,
    allowed_names,
    catalog_tools,
    change_between,
    limits_of,
    lookup,
    view_allowlist,
)
from ..reconcile.allowlist_status import TargetResult, allowlist_events, plan_invalid, plan_status
from ..reconcile.allowlist_targets import TargetPlan, plan_targets
from ..reconcile.approval import POLICY_NONE
from ..reconcile.cachedoc import CacheParseError, is_owned_by, parse_cache
from ..reconcile.conditions import rfc3339
from ..reconcile.events import Event
from ..reconcile.status import merge_patch
from . import allowlist_metrics as metrics
from .catalogs import SourceCatalogs
from .objects import ObjectCache
from .reconciler import TransientError, utcnow
from .targets import TargetStore, TargetWriter, Written

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 120.0
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
LOADING_RETRY_SECONDS = 1.0


class AllowlistStore(TargetStore, Protocol):
    """Everything an allowlist's reconcile asks of the Kubernetes API (kube/client.py)."""

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def patch_status(self, kind: str, namespace: str, name: str,
                           patch: Mapping[str, Any]) -> dict[str, Any]: ...
    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type_: str, reason: str,
                         message: str, now: datetime | None = None) -> None: ...


@dataclass
class _Memory:
    """What the reconciler remembers of one allowlist; a restart loses nothing it needs to be right."""

    allowed: frozenset[tuple[str, str, str]] | None = None     # the allowed set of the last reconcile
    held: dict[str, str] = field(default_factory=dict)         # object or gateway -> content hash written there
    verified_at: float = float("-inf")                           # when every target was last read back
    failures: int = 0
    exposed_since: float | None = None       # start of the earliest sync whose change is not everywhere yet
    webhook: bool = False                    # it has a toolhiveWebhook target


@dataclass
class AllowlistReconciler:
    objects: ObjectCache
    kube: AllowlistStore
    catalogs: SourceCatalogs
    writer: TargetWriter
    enqueue: Callable[[ObjectKey, bool], None] = lambda key, urgent: None
    owns: Callable[[str], bool] = lambda uid: True      # this shard's sources (the others: read from the API)
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    resync: float = RESYNC_SECONDS
    jitter: Callable[[], float] = random.random
    _memory: dict[ObjectKey, _Memory] = field(default_factory=dict)
    _specs: dict[ObjectKey, tuple[str | None, ToolAllowlistSpec | None]] = field(default_factory=dict)

    # -- triggers --------------------------------------------------------------------------------

    def source_changed(self, source: ObjectKey, allowlists: set[ObjectKey], started: float | None) -> None:
        """A source's usable set changed (`started`: when the sync that changed it began): the allowlists
        naming it are reconciled before anything else waiting."""
        now = self.monotonic()
        for key in allowlists:
            memory = self._memory.setdefault(key, _Memory())
            if started is not None:
                if memory.exposed_since is None or started < memory.exposed_since:
                    memory.exposed_since = started
                if memory.webhook:
                    metrics.TARGET_EXPOSURE.labels("toolhiveWebhook").observe(max(0.0, now - started))
            self.enqueue(key, True)

    def forget(self, key: ObjectKey, uid: str | None = None) -> None:
        self._memory.pop(key, None)
        self._specs.pop(key, None)
        metrics.forget(key)

    # -- the webhook's lookup ----------------------------------------------------------------------

    def allowed(self, namespace: str, allowlist: str, server: str) -> Mapping[str, str] | None:
        """The tools of `server` (a source's `as`) that allowlist `namespace/allowlist` allows right now, name ->
        schemaHash; None when that allowlist or server is unknown, or its state is not rebuilt yet after a
        start (a gateway must then deny: fail closed)."""
        key: ObjectKey = (c.KIND_TOOLALLOWLIST, namespace, allowlist)
        spec = self._spec(key)
        if spec is None:
            return None
        source = next((s for s in spec.sources if s.alias == server), None)
        if source is None:
            return None
        catalog, loaded = self.catalogs.state((source.kind, namespace, source.name))
        return lookup(spec, server, True, catalog, loaded)

    def _spec(self, key: ObjectKey) -> ToolAllowlistSpec | None:
        version = self.objects.version(key)
        cached = self._specs.get(key)
        if cached is not None and cached[0] == version and version is not None:
            return cached[1]
        body = self.objects.body(key)
        if body is None:
            return None
        spec = Allowlist.from_body(body).spec
        self._specs[key] = (version, spec)
        return spec

    # -- the loop's step -------------------------------------------------------------------------

    async def reconcile(self, key: ObjectKey) -> float | None:
        body = self.objects.body(key)
        if body is None:
            self.forget(key)
            return None
        allowlist = Allowlist.from_body(body)
        now = self.clock()
        if allowlist.spec is None:
            assert allowlist.spec_error is not None
            await self._write(allowlist, plan_invalid(allowlist, allowlist.spec_error, now), [])
            return None
        memory = self._memory.setdefault(key, _Memory())
        memory.webhook = any(t.toolhive_webhook is not None for t in allowlist.spec.targets)
        inputs = [await self._source_input(allowlist.namespace, source) for source in allowlist.spec.sources]
        views = view_allowlist(allowlist.spec, inputs)
        current = allowed_names(views)
        change = change_between(memory.allowed, current)
        began = self.monotonic()
        verify = began - memory.verified_at >= self.resync * 0.9
        plans, served = await self._plans(allowlist, views, now)
        results = list(await asyncio.gather(*(self._publish(allowlist, plan, memory, current, verify, served)
                                              for plan in plans)))
        status = plan_status(allowlist, views, results, change, now)
        await self._write(allowlist, status, allowlist_events(allowlist.status, views, results, change))
        memory.allowed = current
        if verify:
            memory.verified_at = began
        self._measure(key, memory, results, status.tool_count)
        if any(result.state != "Published" for result in results):
            memory.failures += 1
            delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (memory.failures - 1))
            return delay * (0.5 + self.jitter() / 2)
        memory.failures = 0
        if any(source.loading for source in inputs):
            return LOADING_RETRY_SECONDS
        return self.resync

    async def _plans(self, allowlist: Allowlist, views: list[Any], now: datetime) -> tuple[list[TargetPlan], bool]:
        """Every target's plan, and whether the API server serves MCPToolConfigs (ToolHive's CRDs)."""
        previously: dict[str, list[str]] = {"ConfigMap": [], c.TOOLHIVE_TOOLCONFIG_KIND: []}
        for target in allowlist.status.targets:
            if target.type == "configMap":
                previously["ConfigMap"].extend([target.object] if target.object else [])
                previously["ConfigMap"].extend(target.objects)
            elif target.type == "toolhive":
                previously[c.TOOLHIVE_TOOLCONFIG_KIND].extend(target.objects)
        assert allowlist.spec is not None
        version = None
        if any(t.toolhive is not None for t in allowlist.spec.targets) or previously[c.TOOLHIVE_TOOLCONFIG_KIND]:
            try:
                version = await self.writer.toolhive_version()
            except ApiError as error:
                raise TransientError(f"{allowlist.describe()}: API discovery failed: {error.message}") from None
        plans = plan_targets(allowlist, views, generated_at=rfc3339(now),
                             toolhive_version=version or f"{c.TOOLHIVE_GROUP}/{c.TOOLHIVE_VERSIONS[0]}",
                             previously=previously)
        return plans, version is not None

    async def _publish(self, allowlist: Allowlist, plan: TargetPlan, memory: _Memory,
                       current: frozenset[tuple[str, str, str]], verify: bool, toolhive_served: bool) -> TargetResult:
        held_key = f"{plan.type}/{plan.index}"
        before = allowlist.status.targets[plan.index] if 0 <= plan.index < len(allowlist.status.targets) else None
        # Failing now would leave tools allowed there that are withdrawn: it held ours, and what it must hold
        # now takes something away (unknown since a restart: assumed so), or it is being retired.
        holds_ours = before is not None and before.type == plan.type and before.content_hash is not None \
            and before.content_hash != plan.content_hash
        withdrawing = (holds_ours and (memory.allowed is None or bool(memory.allowed - current))) \
            or any(w.retired for w in plan.writes)
        if plan.type == "toolhiveWebhook":
            written, endpoint = self.writer.webhook(allowlist)
            return TargetResult(plan, written.state, written.message, written.reason, endpoint=endpoint)
        if plan.type == "contextforge":
            target = plan.target.contextforge
            assert target is not None
            if memory.held.get(held_key) == plan.content_hash and not verify:
                return TargetResult(plan, "Published", endpoint=target.url)
            ref = target.token_secret_ref
            written = await self.writer.publish_contextforge(allowlist, target.url, (ref.name, ref.key), plan.servers,
                                                             target.virtual_server)
            return self._result(plan, written, memory, held_key, withdrawing, endpoint=target.url)
        if plan.type == "toolhive" and not toolhive_served:
            names = plan.objects + [w.name for w in plan.writes if w.retired]
            return TargetResult(plan, "Unavailable", "ToolHive's CRDs are not installed: the API server serves no "
                                "MCPToolConfig (toolhive.stacklok.dev); the other targets are written",
                                c.REASON_TARGET_UNAVAILABLE, objects=names)
        outcomes = await asyncio.gather(*(self.writer.write_object(allowlist, write, verify=verify,
                                                                   held=memory.held.get(f"{write.kind}/{write.name}"))
                                          for write in plan.writes))
        objects: list[str] = []
        for write, outcome in zip(plan.writes, outcomes, strict=True):
            if outcome.state == "Published":
                memory.held[f"{write.kind}/{write.name}"] = write.content_hash
                if not write.retired:
                    objects.append(write.name)
            else:
                memory.held.pop(f"{write.kind}/{write.name}", None)
                objects.append(write.name)      # still ours to finish (a retirement is retried)
        worst = next((o for state in ("Conflict", "Failed", "Unavailable", "Pending") for o in outcomes
                      if o.state == state), None)
        changed = any(o.written for o in outcomes)
        if plan.type == "configMap":        # its ConfigMap; retired ones that have not held yet, to retry them
            main, objects = plan.writes[0].name, [name for name in objects if name != plan.writes[0].name]
        else:
            main = None
        if worst is None:
            return TargetResult(plan, "Published", written=changed, objects=objects, object=main)
        messages = "; ".join(o.message for o in outcomes if o.state != "Published")
        if withdrawing:
            metrics.WITHDRAWAL_FAILURES.labels(plan.type).inc()
        return TargetResult(plan, worst.state, messages, worst.reason, written=changed, withdrawing=withdrawing,
                            objects=objects, object=main)

    def _result(self, plan: TargetPlan, written: Written, memory: _Memory, held_key: str, withdrawing: bool,
                endpoint: str | None) -> TargetResult:
        if written.state == "Published":
            memory.held[held_key] = plan.content_hash
            return TargetResult(plan, "Published", written=written.written, endpoint=endpoint)
        memory.held.pop(held_key, None)
        if withdrawing:
            metrics.WITHDRAWAL_FAILURES.labels(plan.type).inc()
        return TargetResult(plan, written.state, written.message, written.reason, withdrawing=withdrawing,
                            endpoint=endpoint)

    # -- sources -------------------------------------------------------------------------------------

    async def _source_input(self, namespace: str, source: AllowlistSource) -> SourceInput:
        key: ObjectKey = (source.kind, namespace, source.name)
        resource = self.objects.get(key) if key in self.objects else None
        if resource is None or not self.owns(resource.uid):
            resource = await self._read_source(key)     # another shard's (or not seen yet): its status from the API
        if resource is None or resource.deleting:
            self.catalogs.drop(key)
            return SourceInput(source, exists=False)
        catalog, loaded = self.catalogs.state(key)
        current = loaded and catalog is not None and catalog.uid == resource.uid and (
            self.owns(resource.uid) or (resource.status.cache is not None
                                        and catalog.content_hash == resource.status.cache.content_hash))
        if not current:
            return await self._load(source, resource)
        assert catalog is not None
        if resource.spec is not None and catalog.limits != limits_of(resource.spec):
            self.catalogs.spec_changed(resource)        # a spec the source's reconcile has not looked at yet
            catalog, _ = self.catalogs.state(key)
        return SourceInput(source, exists=True, catalog=catalog)

    async def _read_source(self, key: ObjectKey) -> Resource | None:
        try:
            body = await self.kube.read_object(*key)
        except ApiError as error:
            raise TransientError(f"{key[0]} {key[1]}/{key[2]}: reading it failed: {error.message}") from None
        return Resource.from_body(key[0], body) if body is not None else None

    async def _load(self, source: AllowlistSource, resource: Resource) -> SourceInput:
        """A source's catalog from its cache ConfigMap, when its status says the same catalog is there."""
        status = resource.status
        failing = status.last_sync is not None and status.last_sync.result == "Failed"
        base = SourceCatalog(kind=resource.kind, namespace=resource.namespace, name=resource.name, uid=resource.uid,
                             url=status.url, failing=failing,
                             policy=resource.spec.approval.policy if resource.spec is not None else POLICY_NONE,
                             limits=limits_of(resource.spec) if resource.spec is not None else None)
        if status.cache is None or not status.cache.content_hash:
            return SourceInput(source, exists=True, catalog=self.catalogs.fill(base))
        try:
            configmap = await self.kube.read_configmap(resource.namespace, status.cache.config_map)
        except ApiError as error:
            raise TransientError(f"{resource.describe()}: reading its cache failed: {error.message}") from None
        if configmap is None or not is_owned_by(configmap, resource.uid):
            return SourceInput(source, exists=True, catalog=self.catalogs.fill(base))
        annotations = (configmap.get("metadata") or {}).get("annotations") or {}
        if annotations.get(c.ANN_CONTENT_HASH) != status.cache.content_hash:
            return SourceInput(source, exists=True, loading=True)   # a sync is writing: cache and status differ
        try:
            document = parse_cache(configmap)
        except CacheParseError as error:
            logger.warning("%s: its cache is unreadable (%s): nothing of it is allowed", resource.describe(), error)
            return SourceInput(source, exists=True, catalog=self.catalogs.fill(base))
        catalog = base.with_tools(catalog_tools(document), url=document.source.url, policy=document.approval.policy,
                                  content_hash=status.cache.content_hash)
        return SourceInput(source, exists=True, catalog=self.catalogs.fill(catalog))

    # -- status, Events, metrics -------------------------------------------------------------------

    async def _write(self, allowlist: Allowlist, status: Any, events: list[Event]) -> None:
        patch = merge_patch(allowlist.status.dump(), status.dump())
        if patch:
            try:
                answer = await self.kube.patch_status(c.KIND_TOOLALLOWLIST, allowlist.namespace, allowlist.name, patch)
            except ApiError as error:
                if error.status == 404:
                    return
                raise TransientError(f"{allowlist.describe()}: writing status failed: {error.message}") from None
            self.objects.observe(c.KIND_TOOLALLOWLIST, answer)
        for event in events:
            try:
                await self.kube.post_event(kind=c.KIND_TOOLALLOWLIST, namespace=allowlist.namespace,
                                           name=allowlist.name, uid=allowlist.uid, type_=event.type,
                                           reason=event.reason, message=event.message)
            except ApiError as error:
                logger.warning("%s: could not post Event %s: %s", allowlist.describe(), event.reason, error.message)
            log = logger.warning if event.type == "Warning" else logger.info
            log("%s: %s: %s", allowlist.describe(), event.reason, event.message)

    def _measure(self, key: ObjectKey, memory: _Memory, results: list[TargetResult], allowed: int) -> None:
        metrics.record(key, allowed, [(result.type, result.state) for result in results if result.plan.index >= 0])
        if memory.exposed_since is None:
            return
        elapsed = max(0.0, self.monotonic() - memory.exposed_since)
        for result in results:
            if result.written and result.state == "Published" and result.type != "toolhiveWebhook":
                metrics.TARGET_EXPOSURE.labels(result.type).observe(elapsed)
        # The window closes when every target that can be written holds the change; one that is unavailable or
        # not ours is reported (and retried) on its own, and must not hold the figure open for ever.
        if all(r.state in ("Published", "Unavailable", "Conflict") for r in results):
            if any(result.written for result in results):
                metrics.EXPOSURE.observe(elapsed)
            memory.exposed_since = None
