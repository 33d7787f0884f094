"""One client for tests, the demo, the sandbox and the benchmarks, the same against both API servers: kmock's
emulator and a real kube-apiserver. A facade over the operator's own Kubernetes client (`KubeClient`,
toolcatalog/kube/client.py, on aiohttp), so that the repository has no second HTTP implementation of the
Kubernetes API: POST, GET, merge-PATCH and DELETE of any resource, JSON in and out.

Objects are named by resource strings, "toolcatalog.dev/v1alpha1/toolservers" or "v1/configmaps";
`namespace` is the namespace this client works in when an object or a call names none (each test
has its own on a real server). A refused request raises the operator's `ApiError` (status, reason,
message).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from os import PathLike
from typing import Any
from urllib.parse import urlencode

import kopf

from toolcatalog.kube.client import MERGE_PATCH, KubeClient
from toolcatalog.kube.errors import ApiError

__all__ = ["CLUSTER_SCOPED", "ApiError", "Cluster", "resource_of", "split_resource"]

# Kinds whose plural is not lower(kind) + "s", and resources that are not namespaced.
_PLURALS = {"Endpoints": "endpoints", "NetworkPolicy": "networkpolicies", "Ingress": "ingresses",
            "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
            "PodSecurityPolicy": "podsecuritypolicies", "Policy": "policies"}
CLUSTER_SCOPED = {"namespaces", "customresourcedefinitions", "clusterroles", "clusterrolebindings", "nodes",
                  "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "persistentvolumes",
                  "apiservices", "priorityclasses", "storageclasses", "validatingadmissionpolicies",
                  "validatingadmissionpolicybindings"}


def split_resource(resource: str) -> tuple[str, str, str]:
    """("toolcatalog.dev", "v1alpha1", "toolservers") from "toolcatalog.dev/v1alpha1/toolservers"."""
    parts = resource.strip("/").split("/")
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"resource {resource!r} is not GROUP/VERSION/PLURAL or VERSION/PLURAL")


def resource_of(obj: dict[str, Any]) -> str:
    kind = obj["kind"]
    plural = _PLURALS.get(kind) or (kind.lower() + ("es" if kind.endswith("s") else "s"))
    return f"{obj['apiVersion']}/{plural}"


class Cluster:
    """An async client for one API server, working in `namespace` by default: plain http (the emulator),
    or https with the server's `ca` and a client certificate (`client_cert`, `client_key`) or a `token`."""

    def __init__(self, url: str, *, namespace: str = "default", ca: str | PathLike[str] | None = None,
                 client_cert: str | PathLike[str] | None = None, client_key: str | PathLike[str] | None = None,
                 token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.namespace = namespace
        info = kopf.ConnectionInfo(server=self.url, ca_path=ca, certificate_path=client_cert,
                                   private_key_path=client_key, token=token)
        self._kube = KubeClient(lambda: info, qps=0)    # no client-side rate limit: the tests' own pace

    @property
    def ns(self) -> str:
        return self.namespace

    async def aclose(self) -> None:
        await self._kube.aclose()

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- paths ----------------------------------------------------------------------------

    def path(self, resource: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
        group, version, plural = split_resource(resource)
        parts = ["/api", version] if not group else ["/apis", group, version]
        if plural not in CLUSTER_SCOPED and namespace is not None:
            parts += ["namespaces", namespace]
        return "/".join(parts + [p for p in (plural, name, subresource) if p])

    # -- raw --------------------------------------------------------------------------------

    async def request(self, method: str, path: str, payload: Any = None,
                      content_type: str = "application/json", params: dict[str, str] | None = None,
                      accept: str | None = None) -> Any:
        """One request; the decoded JSON answer, or ApiError unless 2xx."""
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        for attempt in (1, 2):
            try:
                return await self._kube.request(method, path, body=payload, content_type=content_type,
                                                what=f"{method} {path}", accept=accept)
            except ApiError as error:
                # A pooled connection to an API server that restarted since: it never saw the request.
                if error.status != 0 or error.reason != "Unavailable" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def watch(self, resource: str, namespace: str | None, resource_version: str,
                    timeout_seconds: int = 60) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch of `resource` from `resource_version` (bookmarks included), until the
        server ends it after `timeout_seconds`."""
        async for event in self._kube.watch(self.path(resource, namespace), what=f"the watch of {resource}",
                                            timeout_seconds=timeout_seconds,
                                            params={"resourceVersion": resource_version}):
            yield event

    async def watch_metadata(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The decoded events of one metadata-only watch, until the server ends it (`timeoutSeconds`)."""
        return [json.loads(line) async for line in self._kube.watch_metadata(path, params, idle_timeout=30)]

    # -- reads --------------------------------------------------------------------------------

    async def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return dict(await self.request("GET", self.path(resource, namespace, name)))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def list(self, resource: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self.request("GET", self.path(resource, namespace), params=params)
        return list(body.get("items") or [])

    async def events(self, namespace: str | None = None, involved_name: str | None = None) -> list[dict[str, Any]]:
        """Core v1 Events in the namespace (this client's by default), oldest first."""
        items = await self.list("v1/events", namespace or self.namespace)
        events = [e for e in items if involved_name is None or e.get("involvedObject", {}).get("name") == involved_name]
        return sorted(events, key=lambda e: int(e["metadata"].get("resourceVersion") or 0))

    # -- writes -------------------------------------------------------------------------------

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST it (in this client's namespace when it names none). A `status` in obj is then
        written through /status, as a real client must (the POST ignores it)."""
        obj = dict(obj)
        metadata = dict(obj.get("metadata") or {})
        resource = resource_of(obj)
        group, _, plural = split_resource(resource)
        namespaced = plural not in CLUSTER_SCOPED
        if namespaced and not metadata.get("namespace"):
            metadata["namespace"] = self.namespace
        obj["metadata"] = metadata
        namespace = metadata.get("namespace") if namespaced else None
        created = dict(await self.request("POST", self.path(resource, namespace), obj))
        if "status" in obj and group:   # custom resources have the status subresource
            created = await self.patch_status(resource, namespace, created["metadata"]["name"], obj["status"])
        return created

    async def patch(self, resource: str, namespace: str | None, name: str, patch: dict[str, Any],
                    subresource: str | None = None) -> dict[str, Any]:
        """Merge-patch (None deletes a key)."""
        return dict(await self.request("PATCH", self.path(resource, namespace, name, subresource), patch, MERGE_PATCH))

    async def patch_spec(self, resource: str, namespace: str | None, name: str,
                         spec: dict[str, Any]) -> dict[str, Any]:
        return await self.patch(resource, namespace, name, {"spec": spec})

    async def patch_status(self, resource: str, namespace: str | None, name: str,
                           status: dict[str, Any]) -> dict[str, Any]:
        return await self.patch(resource, namespace, name, {"status": status}, subresource="status")

    async def annotate(self, resource: str, namespace: str | None, name: str,
                       annotations: dict[str, str | None]) -> dict[str, Any]:
        return await self.patch(resource, namespace, name, {"metadata": {"annotations": annotations}})

    async def delete(self, resource: str, namespace: str | None, name: str,
                     propagation: str | None = None) -> dict[str, Any]:
        payload = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation} \
            if propagation else None
        return dict(await self.request("DELETE", self.path(resource, namespace, name), payload))

    async def delete_all(self, resource: str, namespace: str | None) -> None:
        """Delete every object of a resource in a namespace, one by one (no deletecollection needed)."""
        for obj in await self.list(resource, namespace):
            try:
                await self.delete(resource, namespace, obj["metadata"]["name"])
            except ApiError as error:
                if error.status != 404:
                    raise
