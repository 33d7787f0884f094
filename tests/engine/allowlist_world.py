"""The engine tests' World with ToolAllowlists: the source reconciler, the in-memory catalogs and the
allowlist reconciler wired together over the in-memory API server of fakes.py, plus a fake ContextForge.

The index kopf keeps of allowlists by source is computed here with the same function the operator
registers (handlers/watch.py `allowlist_references`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from tests.engine.fakes import NS, FakeKube, World, merge
from toolcatalog.api import constants as c
from toolcatalog.api.gateway import GatewayServer, GatewayUnavailable
from toolcatalog.engine.allowlists import AllowlistReconciler
from toolcatalog.engine.catalogs import SourceCatalogs
from toolcatalog.engine.targets import TargetWriter
from toolcatalog.handlers.watch import allowlist_references
from toolcatalog.kube.errors import ApiError

TOOLHIVE = f"{c.TOOLHIVE_GROUP}/{c.TOOLHIVE_VERSIONS[0]}"


class TargetKube(FakeKube):
    """FakeKube that also serves objects by path (ConfigMaps, MCPToolConfigs) and API discovery."""

    def __init__(self) -> None:
        super().__init__()
        self.served: dict[str, set[str]] = {TOOLHIVE: {c.TOOLHIVE_TOOLCONFIG_PLURAL}}

    @staticmethod
    def _key(path: str) -> tuple[str, str, str | None]:
        parts = path.strip("/").split("/")
        namespace = parts[parts.index("namespaces") + 1]
        plural = parts[parts.index("namespaces") + 2]
        name = parts[parts.index("namespaces") + 3] if len(parts) > parts.index("namespaces") + 3 else None
        kind = {"configmaps": "ConfigMap", c.TOOLHIVE_TOOLCONFIG_PLURAL: c.TOOLHIVE_TOOLCONFIG_KIND}[plural]
        return kind, namespace, name

    def _served(self, path: str) -> None:
        if "/apis/" in path or path.startswith("/apis"):
            version = "/".join(path.strip("/").split("/")[1:3])
            if c.TOOLHIVE_TOOLCONFIG_PLURAL not in self.served.get(version, set()):
                raise ApiError(404, "NotFound", f"{path}: HTTP 404 NotFound")

    async def get_object(self, path: str, what: str) -> dict[str, Any] | None:
        await self._maybe_fail("get_object")
        self._served(path)
        kind, namespace, name = self._key(path)
        assert name is not None
        return self.get(kind, name, namespace)

    async def create_object(self, path: str, manifest: Mapping[str, Any], what: str) -> dict[str, Any]:
        await self._maybe_fail("create_object")
        self._served(path)
        kind, namespace, _ = self._key(path)
        name = manifest["metadata"]["name"]
        if (kind, namespace, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f"{what}: HTTP 409 AlreadyExists")
        return self.put(kind, name, copy.deepcopy(dict(manifest)), namespace)

    async def patch_object(self, path: str, patch: Mapping[str, Any], what: str) -> dict[str, Any]:
        await self._maybe_fail("patch_object")
        self._served(path)
        kind, namespace, name = self._key(path)
        assert name is not None
        current = self.objects.get((kind, namespace, name))
        if current is None:
            raise ApiError(404, "NotFound", f"{what}: HTTP 404 NotFound")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"{what}: HTTP 409 Conflict")
        updated = merge(current, patch)
        return self.put(kind, name, updated, namespace)

    async def served_resources(self, api_version: str) -> set[str] | None:
        await self._maybe_fail("served_resources")
        return self.served.get(api_version)


class FakeContextForge:
    """What a ContextForge holds after each publish: gateway name -> (upstream URL, allowed tools)."""

    def __init__(self) -> None:
        self.gateways: dict[str, tuple[str | None, dict[str, str]]] = {}     # what is active there
        self.seen: dict[str, set[str]] = {}          # gateway -> every tool name it ever listed
        self.virtual: dict[str, set[str]] = {}
        self.tokens: list[str] = []
        self.owners: set[str] = set()
        self.down = False
        self.error: Exception | None = None

    def __call__(self, url: str, token: str) -> FakeContextForge:
        self.tokens.append(token)
        return self

    async def publish(self, servers: Sequence[GatewayServer], virtual_server: str | None = None, *,
                      owner: str = "") -> None:
        if self.down:
            raise GatewayUnavailable("connection refused")
        if self.error is not None:
            raise self.error
        self.owners.add(owner)
        for server in servers:
            self.gateways[server.name] = (server.upstream_url, dict(server.allowed))
            self.seen.setdefault(server.name, set()).update(server.allowed)
        if virtual_server:
            self.virtual[virtual_server] = {f"{s.name}/{name}" for s in servers for name in s.allowed}

    def refresh_on_its_own(self, gateway: str, served: Mapping[str, str]) -> None:
        """What a real ContextForge does when it hears the server's list_changed (stateful sessions): a tool
        it never listed arrives active, an active one is served at its new definition, an inactive one stays
        inactive, one gone is deleted."""
        url, active = self.gateways.get(gateway, (None, {}))
        seen = self.seen.setdefault(gateway, set())
        active = {name: served[name] for name in active if name in served}
        active.update({name: digest for name, digest in served.items() if name not in seen})
        seen.update(served)
        self.gateways[gateway] = (url, active)


class AllowlistWorld(World):
    """World plus ToolAllowlists: `allow` applies one, `settle` runs what the queue would run."""

    def __init__(self, tools: list[dict[str, Any]] | None = None) -> None:
        super().__init__(tools)
        self.kube = TargetKube()
        self.reconciler.kube = self.kube
        self.reconciler.versions.kube = self.kube  # type: ignore[attr-defined]
        self.index: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
        self.catalogs = SourceCatalogs(self.referrers)
        self.woken: list[tuple[tuple[str, str, str], bool]] = []
        self.forge = FakeContextForge()
        self.writer = TargetWriter(self.kube, contextforge=self.forge,
                                   webhook_path=lambda ns, name: f"/toolhive/{ns}/{name}")
        self.allowlists = AllowlistReconciler(objects=self.reconciler.objects, kube=self.kube,
                                              catalogs=self.catalogs, writer=self.writer,
                                              enqueue=lambda key, urgent: self.woken.append((key, urgent)),
                                              clock=self.clock, jitter=lambda: 0.0)
        self.catalogs.on_change = self.allowlists.source_changed
        self.reconciler.catalogs = self.catalogs

    def referrers(self, key: tuple[str, str, str]) -> set[tuple[str, str, str]]:
        kind, namespace, name = key
        return set(self.index.get((namespace, kind, name), set()))

    def allow(self, name: str, spec: Mapping[str, Any]) -> tuple[str, str, str]:
        """Apply a ToolAllowlist; kopf's index and the object cache see it."""
        key = self.apply(name, dict(spec), kind=c.KIND_TOOLALLOWLIST)
        for refs in self.index.values():
            refs.discard(key)
        for ref, allowlist in allowlist_references(NS, name, spec).items():
            self.index.setdefault(ref, set()).add(allowlist)
        return key

    async def reconcile_allowlist(self, name: str) -> float | None:
        return await self.allowlists.reconcile((c.KIND_TOOLALLOWLIST, NS, name))

    def allowlist_status(self, name: str) -> dict[str, Any]:
        return self.status(name, c.KIND_TOOLALLOWLIST)

    def document(self, configmap: str) -> dict[str, Any]:
        import json
        found = self.kube.get("ConfigMap", configmap)
        assert found is not None, configmap
        return json.loads(found["data"][c.ALLOWLIST_DOCUMENT_KEY])

    def documented(self, configmap: str) -> dict[str, dict[str, str]]:
        """`as` -> {tool: schemaHash} of a configMap target."""
        return {server["as"]: {t["name"]: t["schemaHash"] for t in server["tools"]}
                for server in self.document(configmap)["servers"]}

    def toolsfilter(self, name: str) -> list[str]:
        found = self.kube.get(c.TOOLHIVE_TOOLCONFIG_KIND, name)
        assert found is not None, name
        return list(found["spec"]["toolsFilter"])

    def cache_usable(self, source: str, kind: str = c.KIND_TOOLSERVER) -> dict[str, str]:
        """What the source's cache ConfigMap offers agents: the contract's definition of allowed."""
        from toolcatalog.reconcile.cachedoc import parse_cache
        status = self.status(source, kind)
        if not status.get("cache"):
            return {}
        configmap = self.kube.get("ConfigMap", status["cache"]["configMap"])
        assert configmap is not None
        return {t.name: t.schema_hash for t in parse_cache(configmap).tools
                if t.available and t.enabled and t.selected and t.approved}
