"""One client for tests and the demo, the same against both API servers: kmock's emulator and a real
kube-apiserver. Plain REST over HTTP(S) (POST, GET, merge-PATCH, DELETE), JSON in and out.

Objects are named by resource strings, "toolcatalog.dev/v1alpha1/toolservers" or "v1/configmaps";
`namespace` is the namespace this client works in when an object or a call names none (each test
has its own on a real server).
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx2

# Kinds whose plural is not lower(kind) + "s", and resources that are not namespaced.
_PLURALS = {"Endpoints": "endpoints", "NetworkPolicy": "networkpolicies", "Ingress": "ingresses",
            "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
            "PodSecurityPolicy": "podsecuritypolicies", "Policy": "policies"}
CLUSTER_SCOPED = {"namespaces", "customresourcedefinitions", "clusterroles", "clusterrolebindings", "nodes",
                  "validatingwebhookconfigurations", "mutatingwebhookconfigurations", "persistentvolumes",
                  "apiservices", "priorityclasses", "storageclasses", "validatingadmissionpolicies",
                  "validatingadmissionpolicybindings"}


class ApiError(Exception):
    """A non-2xx answer: `status` is the HTTP status, `body` the Status object (or text)."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body
        self.message = str(message)


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
    """An async REST client for one API server, working in `namespace` by default."""

    def __init__(self, url: str, *, namespace: str = "default", ssl_context: ssl.SSLContext | None = None,
                 token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.namespace = namespace
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx2.AsyncClient(base_url=self.url, verify=ssl_context or True, headers=headers,
                                          timeout=30.0, trust_env=False)

    @property
    def ns(self) -> str:
        return self.namespace

    async def aclose(self) -> None:
        await self._client.aclose()

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
        """One request; the decoded JSON answer (the text if it is not one JSON document), or ApiError
        unless 2xx."""
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        for attempt in (1, 2):
            try:
                response = await self._client.request(method, path, json=payload, params=params, headers=headers)
                break
            except (httpx2.RemoteProtocolError, httpx2.ConnectError):
                # A pooled connection to an API server that restarted since: it never saw the request.
                if attempt == 2:
                    raise
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 300:
            raise ApiError(response.status_code, body)
        return body

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
        return dict(await self.request("PATCH", self.path(resource, namespace, name, subresource), patch,
                                       "application/merge-patch+json"))

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
