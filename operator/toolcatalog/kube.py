"""The only module that calls the Kubernetes API directly: ConfigMaps, Secrets, referenced objects.

kopf owns the watches and the status patches; this module does the few reads and writes a
sync needs besides them. It uses the official `kubernetes` client (blocking) in worker threads,
with create (POST) and merge-patch (PATCH) only: both work on a real API server and on the
test emulator, which does not emulate PUT.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import constants as c

# The client can log response bodies at DEBUG: a Secret's body must never reach a log.
logging.getLogger("kubernetes").setLevel(logging.INFO)
logging.getLogger("urllib3").setLevel(logging.INFO)

MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """A Kubernetes API call failed; `status` is the HTTP status (0 if unknown)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


def load_config(context: str | None = None) -> kubernetes.client.ApiClient:
    """In-cluster config when running in a pod, else KUBECONFIG / ~/.kube/config (http:// servers work)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(context=context, client_configuration=configuration)
    configuration.debug = False
    return kubernetes.client.ApiClient(configuration)


def _translate(exc: ApiException, what: str) -> KubeError:
    if exc.status == 404:
        return NotFound(f"{what} not found", 404)
    if exc.status == 409:
        return Conflict(f"{what}: conflict ({exc.reason})", 409)
    return KubeError(f"{what}: HTTP {exc.status} {exc.reason}", exc.status or 0)


@dataclass
class KubeApi:
    """Thin async facade over the blocking client; every call returns plain JSON-shaped dicts."""

    api_client: kubernetes.client.ApiClient

    def __post_init__(self) -> None:
        self._core = kubernetes.client.CoreV1Api(self.api_client)
        self._custom = kubernetes.client.CustomObjectsApi(self.api_client)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return self.api_client.sanitize_for_serialization(obj)

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            raise _translate(exc, what) from None

    # -- ConfigMaps ------------------------------------------------------------------

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self._call(f"ConfigMap {namespace}/{name}",
                                   self._core.read_namespaced_config_map, name, namespace)
        except NotFound:
            return None
        return self._plain(obj)

    async def create_configmap(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        obj = await self._call(f"ConfigMap {namespace}/{name}",
                               self._core.create_namespaced_config_map, namespace, manifest)
        return self._plain(obj)

    async def patch_configmap(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        obj = await self._call(f"ConfigMap {namespace}/{name}",
                               self._core.patch_namespaced_config_map, name, namespace, patch,
                               _content_type=MERGE_PATCH)
        return self._plain(obj)

    async def read_configmap_key(self, namespace: str, name: str, key: str) -> str | None:
        cm = await self.read_configmap(namespace, name)
        if cm is None:
            return None
        return (cm.get("data") or {}).get(key)

    # -- Secrets -----------------------------------------------------------------------

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value of one key, or None when the Secret or the key is missing.

        The value is a credential: callers must never log it or put it in a message.
        """
        try:
            secret = await self._call(f"Secret {namespace}/{name}",
                                      self._core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        data = secret.data or {}
        if key in data and data[key] is not None:
            try:
                return base64.b64decode(data[key]).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise KubeError(f"Secret {namespace}/{name} key {key!r} is not valid base64 UTF-8 text") from None
        string_data = getattr(secret, "string_data", None) or {}
        return string_data.get(key)

    # -- our own custom resources ------------------------------------------------------

    async def read_custom(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(f"{kind} {namespace}/{name}",
                                    self._custom.get_namespaced_custom_object,
                                    c.GROUP, c.VERSION, namespace, c.PLURAL[kind], name)
        except NotFound:
            return None

    def close(self) -> None:
        self.api_client.close()
