"""Fakes behind the engine's small interfaces: a Kubernetes store in memory, a catalog fetcher, a clock.

They hold plain JSON dicts the way an API server would (uid, generation, resourceVersion, the status
subresource), so the reconciler is tested in-process, in milliseconds, on what it reads and writes.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from toolcatalog.api import constants as c
from toolcatalog.api.endpoint import Endpoint, FetchedCatalog, catalog_digest
from toolcatalog.api.errors import SyncError
from toolcatalog.api.models import ServerInfo
from toolcatalog.engine.objects import ObjectCache
from toolcatalog.engine.reconciler import Reconciler
from toolcatalog.kube.errors import ApiError

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
NS = "team-a"
URL = "http://mcp.test/mcp"


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 applied to a copy."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class FakeKube:
    """An API server in memory: objects by (kind, namespace, name), every call recorded."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, ApiError] = {}        # method name -> the error it raises (once)
        # method name -> what happens just before it is served (once): another process's writes, say
        self.before: dict[str, Callable[[], Awaitable[None]]] = {}
        self._versions = itertools.count(100)

    def _rv(self) -> str:
        return str(next(self._versions))

    def put(self, kind: str, name: str, body: dict[str, Any], namespace: str = NS) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        meta.setdefault("name", name)
        meta.setdefault("namespace", namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._rv()
        self.objects[(kind, namespace, name)] = body
        return copy.deepcopy(body)

    def secret(self, name: str, data: Mapping[str, str], namespace: str = NS) -> dict[str, Any]:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        return self.put("Secret", name, {"data": encoded}, namespace)

    def get(self, kind: str, name: str, namespace: str = NS) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def _maybe_fail(self, method: str) -> None:
        self.calls.append((method, ""))
        meanwhile = self.before.pop(method, None)
        if meanwhile is not None:
            await meanwhile()
        error = self.fail.pop(method, None)
        if error is not None:
            raise error

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    # -- KubeStore --------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._maybe_fail("read_secret")
        return self.get("Secret", name, namespace)

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        await self._maybe_fail("read_configmap")
        return self.get("ConfigMap", name, namespace)

    async def read_configmap_version(self, namespace: str, name: str) -> str | None:
        await self._maybe_fail("read_configmap_version")
        found = self.objects.get(("ConfigMap", namespace, name))
        return found["metadata"]["resourceVersion"] if found else None

    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        await self._maybe_fail("read_object")
        return self.get(kind, name, namespace)

    async def create_configmap(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        await self._maybe_fail("create_configmap")
        name = manifest["metadata"]["name"]
        if ("ConfigMap", namespace, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f"ConfigMap {namespace}/{name}: HTTP 409 AlreadyExists")
        return self.put("ConfigMap", name, copy.deepcopy(dict(manifest)), namespace)

    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        await self._maybe_fail("patch_configmap")
        current = self.objects.get(("ConfigMap", namespace, name))
        if current is None:
            raise ApiError(404, "NotFound", f"ConfigMap {namespace}/{name}: HTTP 404 NotFound")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"ConfigMap {namespace}/{name}: HTTP 409 Conflict")
        updated = merge(current, patch)
        updated["metadata"]["resourceVersion"] = self._rv()
        self.objects[("ConfigMap", namespace, name)] = updated
        return copy.deepcopy(updated)

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *,
                           resource_version: str | None = None) -> dict[str, Any]:
        await self._maybe_fail("patch_status")
        current = self.objects.get((kind, namespace, name))
        if current is None:
            raise ApiError(404, "NotFound", f"{kind} {namespace}/{name}: HTTP 404 NotFound")
        if resource_version and resource_version != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"{kind} {namespace}/{name} status: HTTP 409 Conflict")
        updated = merge(current, {"status": patch})
        updated["metadata"]["resourceVersion"] = self._rv()
        self.objects[(kind, namespace, name)] = updated
        return copy.deepcopy(updated)

    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type_: str, reason: str,
                         message: str, now: datetime | None = None) -> None:
        await self._maybe_fail("post_event")
        self.events.append({"kind": kind, "name": name, "type": type_, "reason": reason, "message": message})

    # -- what the watches would see ------------------------------------------------------------

    def secret_version(self, namespace: str, name: str) -> str | None:
        found = self.objects.get(("Secret", namespace, name))
        return found["metadata"]["resourceVersion"] if found else None

    def configmap_version(self, namespace: str, name: str) -> str | None:
        found = self.objects.get(("ConfigMap", namespace, name))
        return found["metadata"]["resourceVersion"] if found else None


class Versions:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.unseen: set[str] = set()       # ConfigMaps the watch has not delivered yet


    def secret(self, namespace: str, name: str) -> str | None:
        return self.kube.secret_version(namespace, name)

    def configmap(self, namespace: str, name: str) -> str | None:
        return None if name in self.unseen else self.kube.configmap_version(namespace, name)


def tool(name: str, description: str = "does things") -> dict[str, Any]:
    return {"name": name, "description": description, "inputSchema": {"type": "object"}}


class FakeFetcher:
    """Answers every fetch with `tools` (or raises `error`); records the endpoints it was asked for."""

    def __init__(self, tools: list[dict[str, Any]] | None = None, list_changed: bool = False) -> None:
        self.tools = tools if tools is not None else [tool("a"), tool("b")]
        self.error: SyncError | None = None
        self.list_changed = list_changed
        self.endpoints: list[Endpoint] = []
        self.fresh: list[bool] = []
        self.server_hints: dict[str, Any] = {}

    async def __call__(self, endpoint: Endpoint, *, timeout: float, fresh: bool = False) -> FetchedCatalog:
        self.endpoints.append(endpoint)
        self.fresh.append(fresh)
        if self.error is not None:
            raise self.error
        server = ServerInfo(name="fake", version="1", protocol_version="2026-07-28", list_changed=self.list_changed,
                            **self.server_hints)
        # The digest of the answer as a server would send it (a real fetch hashes the bytes it received).
        page = json.dumps({"tools": self.tools}, separators=(",", ":")).encode()
        return FetchedCatalog(server=server, tools=copy.deepcopy(self.tools), pages=1,
                              digest=catalog_digest([page], server))

    @property
    def calls(self) -> int:
        return len(self.endpoints)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeListeners:
    def __init__(self) -> None:
        self.listening: dict[tuple[str, str, str], Endpoint] = {}

    def ensure(self, key: tuple[str, str, str], endpoint: Endpoint) -> None:
        self.listening[key] = endpoint

    def stop(self, key: tuple[str, str, str]) -> None:
        self.listening.pop(key, None)


class World:
    """A reconciler wired to the fakes, plus helpers that play the user and the watches."""

    def __init__(self, tools: list[dict[str, Any]] | None = None, list_changed: bool = False) -> None:
        self.kube = FakeKube()
        self.fetch = FakeFetcher(tools, list_changed)
        self.clock = Clock()
        self.listeners = FakeListeners()
        self.reconciler = Reconciler(objects=ObjectCache(), kube=self.kube, fetch=self.fetch,
                                     versions=Versions(self.kube), listeners=self.listeners, clock=self.clock,
                                     jitter=lambda: 0.0)

    def apply(self, name: str, spec: Mapping[str, Any] | None = None, kind: str = c.KIND_TOOLSERVER,
              annotations: Mapping[str, str] | None = None) -> tuple[str, str, str]:
        """Create, or change the spec/annotations of, a resource, as `kubectl apply` would; the watch sees it."""
        current = self.kube.get(kind, name)
        spec = dict(spec if spec is not None else {"url": URL})
        if current is None:
            body = {"metadata": {"annotations": dict(annotations or {})}, "spec": spec}
            self.kube.put(kind, name, body)
        else:
            if spec != current.get("spec"):
                current["metadata"]["generation"] += 1
            current["spec"] = spec
            current["metadata"]["annotations"] = {**current["metadata"].get("annotations", {}),
                                                  **(annotations or {})}
            self.kube.put(kind, name, current)
        self.watch(kind, name)
        return (kind, NS, name)

    def watch(self, kind: str, name: str) -> None:
        """The watch delivers the latest body (as kopf would, after any write)."""
        body = self.kube.get(kind, name)
        assert body is not None
        self.reconciler.objects.observe(kind, body)

    async def reconcile(self, name: str, kind: str = c.KIND_TOOLSERVER) -> float | None:
        return await self.reconciler.reconcile((kind, NS, name))

    def status(self, name: str, kind: str = c.KIND_TOOLSERVER) -> dict[str, Any]:
        return (self.kube.get(kind, name) or {}).get("status") or {}

    def condition(self, name: str, type_: str, kind: str = c.KIND_TOOLSERVER) -> dict[str, Any]:
        return next((cond for cond in self.status(name, kind).get("conditions", []) if cond["type"] == type_), {})

    def status_patches(self) -> int:
        return self.kube.count("patch_status")

