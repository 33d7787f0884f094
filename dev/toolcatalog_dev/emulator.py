"""A Kubernetes API on loopback for the demo and the tests: ``ApiEmulator``.

It runs ``ApiServer`` (apiserver.py: kmock's emulator behind a front server that acts like a
Kubernetes API server where our operator depends on it; what is and is not emulated is listed
there) on 127.0.0.1, declares the core resources we use and our CRDs (read from crds/*.yaml, or
$TOOLCATALOG_CRDS_DIR), and offers a kubeconfig, reads from memory and writes over real HTTP.

``api.emulator`` is kmock's ``KubernetesEmulator`` itself, used as kmock documents it: add
reactions (``api.emulator["get", path] << 418``), read the request log (``list(api.emulator)``;
namespace requests are not in it), look at ``api.emulator.objects``.

``kopf run --standalone -A`` uses only discovery, list+watch of the handled kinds, list+watch
of CRDs (declared and seeded here) and POSTs to v1/events (explicit ``kopf.event()`` only).
"""
from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kmock
import yaml

from .apiserver import ApiServer
from .cluster import ApiError, Cluster

__all__ = ["ApiEmulator", "ApiError", "default_crds_dir", "load_crds"]

_T = TypeVar("_T")
_VERBS = {"get", "list", "watch", "create", "patch", "update", "delete", "deletecollection"}
_CORE = {  # declared besides our CRDs: resource -> (kind, namespaced, short names as a real server has them)
    "v1/configmaps": ("ConfigMap", True, ["cm"]),
    "v1/secrets": ("Secret", True, []),
    "v1/events": ("Event", True, ["ev"]),
    "v1/namespaces": ("Namespace", False, ["ns"]),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ["crd", "crds"]),
}


def default_crds_dir() -> Path:
    """$TOOLCATALOG_CRDS_DIR, else the repository's crds/ (this file is dev/toolcatalog_dev/)."""
    configured = os.environ.get("TOOLCATALOG_CRDS_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "crds"


def load_crds(crds_dir: Path) -> list[dict[str, Any]]:
    crds = [doc for path in sorted(crds_dir.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise FileNotFoundError(f"no CustomResourceDefinition in {crds_dir}/*.yaml")
    return crds


class ApiEmulator:
    """An ApiServer on 127.0.0.1 with our CRDs (read from crds/*.yaml) and the core resources
    we use declared; an async context manager.

    Reads (``get``, ``list``, ``events``, ``wait_for``) look into the emulator's memory,
    synchronously. Writes (``create``, ``patch``, ``delete``...) are real HTTP requests to
    ``url``: they get the server-side behaviours and reach kopf's watch streams. Resources
    are named like ``"toolcatalog.dev/v1alpha1/toolservers"`` or ``"v1/configmaps"``.
    ``emulator`` is kmock's emulator, ``server`` the ApiServer in front of it.
    """

    def __init__(self, crds_dir: Path | None = None) -> None:
        self.crds_dir = crds_dir or default_crds_dir()
        self.crds = load_crds(self.crds_dir)
        self.server = ApiServer()
        self.emulator: kmock.KubernetesEmulator = self.server.emulator
        self.url = ""
        self.client: Cluster | None = None
        for name, (kind, namespaced, shortnames) in _CORE.items():
            self.server.state.declare(kmock.resource(name), kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=_VERBS, shortnames=shortnames))
        for crd in self.crds:
            self.server.state.declare_crd(crd)

    async def __aenter__(self) -> ApiEmulator:
        await self.server.__aenter__()
        try:
            self.url = self.server.url
            self.client = Cluster(self.url)
            # What every cluster has: the default namespace and, here, our CRDs.
            await self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
            for crd in self.crds:
                await self.create(copy.deepcopy(crd))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        client, self.client, self.url = self.client, None, ""
        try:
            if client is not None:
                await client.aclose()
        finally:
            await self.server.__aexit__(None, None, None)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for kopf, kubectl and the kubernetes client: plain http, no credentials."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [{"name": "emulator",
                          "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------ reads: memory

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return copy.deepcopy(self.emulator.objects[key].raw)

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        wanted = kmock.resource(resource)
        return [copy.deepcopy(obj.raw) for (res, ns, _), obj in list(self.emulator.objects.items())
                if res == wanted and not obj.deleted and (namespace is None or ns == namespace)]

    def events(self, namespace: str | None = None, involved_name: str | None = None) -> list[dict[str, Any]]:
        """Core v1 Events posted so far (kopf posts those), oldest first."""
        events = [e for e in self.list("v1/events", namespace)
                  if involved_name is None or e.get("involvedObject", {}).get("name") == involved_name]
        return sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))

    async def wait_for(self, condition: Callable[[], _T], timeout: float = 10.0, what: str = "condition") -> _T:
        """The first truthy value of condition(), checked every 20 ms; TimeoutError after timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := condition()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{what}: not met within {timeout}s")
            await asyncio.sleep(0.02)
        return value

    # ------------------------------------------------------------------ writes: HTTP

    def path(self, resource: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
        res = kmock.resource(resource)
        if res not in self.emulator.resources:
            raise KeyError(f"undeclared resource {resource!r}")
        parts = ["/api", res.version] if not res.group else ["/apis", res.group, res.version]
        if namespace is not None and self.emulator.resources[res].namespaced:
            parts += ["namespaces", namespace]
        return "/".join(parts + [p for p in (res.plural, name, subresource) if p])

    def resource_of(self, obj: dict[str, Any]) -> str:
        for res, info in self.emulator.resources.items():
            api_version = f"{res.group}/{res.version}" if res.group else res.version
            if info.kind == obj.get("kind") and api_version == obj.get("apiVersion"):
                return f"{api_version}/{res.plural}"
        raise KeyError(f"undeclared kind {obj.get('apiVersion')}/{obj.get('kind')}")

    async def request(self, method: str, path: str, payload: Any = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        """One raw HTTP request to the emulator (through `Cluster`, the operator's client); ApiError unless 2xx."""
        assert self.client is not None, "ApiEmulator is not entered"
        return dict(await self.client.request(method, path, payload, content_type))

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST it: the server fills uid, generation, resourceVersion, creationTimestamp.
        A ``status`` in obj is then written through /status, as a real client must."""
        resource = self.resource_of(obj)
        created = await self.request("POST", self.path(resource, obj.get("metadata", {}).get("namespace")), obj)
        if "status" in obj and self.server.state.has_status_subresource(kmock.resource(resource)):
            meta = created["metadata"]
            created = await self.patch_status(resource, meta.get("namespace"), meta["name"], obj["status"])
        return created

    async def patch(self, resource: str, namespace: str | None, name: str, patch: dict[str, Any],
                    subresource: str | None = None) -> dict[str, Any]:
        """Merge-patch (None deletes a key); generation grows when the spec changes."""
        return await self.request("PATCH", self.path(resource, namespace, name, subresource),
                                   patch, "application/merge-patch+json")

    async def patch_spec(self, resource: str, namespace: str | None, name: str,
                         spec: dict[str, Any]) -> dict[str, Any]:
        return await self.patch(resource, namespace, name, {"spec": spec})

    async def patch_status(self, resource: str, namespace: str | None, name: str,
                           status: dict[str, Any]) -> dict[str, Any]:
        return await self.patch(resource, namespace, name, {"status": status}, subresource="status")

    async def annotate(self, resource: str, namespace: str | None, name: str,
                       annotations: dict[str, str | None]) -> dict[str, Any]:
        return await self.patch(resource, namespace, name, {"metadata": {"annotations": annotations}})

    async def delete(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """DELETE it (its dependents stay: no garbage collector here). With finalizers, only marks it."""
        return await self.request("DELETE", self.path(resource, namespace, name))
