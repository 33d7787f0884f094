"""Writing a ToolAllowlist's targets: its ConfigMap, its MCPToolConfigs, and the gateway adapters.

Each target fails on its own: a missing CRD or an unreachable gateway makes that target
Unavailable and leaves the others working. An object of the target's name that the allowlist does
not own is never touched (Conflict). Writes are merge patches with the resourceVersion just read as
a precondition; an object already holding the wanted content (its content-hash annotation) is not
written. Gateway adapters are reached through the small Protocols below and fail with
api/gateway.py's errors.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..api import constants as c
from ..api.allowlist import Allowlist, TargetState
from ..api.gateway import GatewayRejected, GatewayServer, GatewayUnavailable
from ..api.redact import Redactor
from ..kube.client import group_path
from ..kube.errors import ApiError
from ..reconcile.allowlist_targets import ObjectWrite

logger = logging.getLogger(__name__)

# How long discovery's answer for ToolHive's API group is trusted: installing its CRDs is noticed within the
# shorter figure (a target retries with backoff meanwhile), removing them at the first write that fails.
DISCOVERY_TTL_SECONDS = 60.0
DISCOVERY_ABSENT_TTL_SECONDS = 5.0


class TargetStore(Protocol):
    """The Kubernetes calls the targets make (kube/client.py; the emulator or a real server in tests)."""

    async def get_object(self, path: str, what: str) -> dict[str, Any] | None: ...
    async def create_object(self, path: str, manifest: Mapping[str, Any], what: str) -> dict[str, Any]: ...
    async def patch_object(self, path: str, patch: Mapping[str, Any], what: str) -> dict[str, Any]: ...
    async def served_resources(self, api_version: str) -> set[str] | None: ...
    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class ContextForgeClient(Protocol):
    """IBM ContextForge, through its REST API (the adapter in toolcatalog.gateways).

    `publish` makes the gateway hold exactly `servers`: each server's gateway there (named by its `as`,
    registered at its upstream URL) refreshed first; every tool of it not in `allowed` deactivated (the
    global /mcp endpoint serves every active tool), the allowed ones active; and the virtual server, when
    named, holding exactly the allowed tools of all of them, tagged with `owner` (the allowlist). A server
    whose upstream_url is None allows nothing. What it returns is not used. It fails with an exception
    that is GatewayUnavailable, GatewayRejected, or has a boolean `retryable` (True: unavailable, retry).
    """

    async def publish(self, servers: Sequence[GatewayServer], virtual_server: str | None = None, *,
                      owner: str = "") -> object: ...


# (url, token) -> a client; the token comes from the target's Secret and is never logged.
ContextForgeConnect = Callable[[str, str], ContextForgeClient]
# (namespace, allowlist) -> the path the operator's ToolHive webhook answers this allowlist on.
WebhookPath = Callable[[str, str], str]


@dataclass(frozen=True)
class Written:
    """What writing one object or one gateway came to."""

    state: TargetState
    message: str = ""
    reason: str | None = None
    written: bool = False       # its content changed


def _failed(error: ApiError, what: str) -> Written:
    if error.status == 403:
        return Written("Failed", f"{what}: the operator's RBAC does not allow it ({error.message})", c.REASON_FORBIDDEN)
    if error.status in (400, 422):
        return Written("Failed", f"{what}: the API server refused it ({error.message})", c.REASON_WRITE_REJECTED)
    if error.status in (404, 409):
        return Written("Pending", f"{what}: it changed meanwhile; retrying", c.REASON_TARGET_UNAVAILABLE)
    return Written("Unavailable", f"{what}: {error.message}", c.REASON_TARGET_UNAVAILABLE)


def controlled_by(obj: Mapping[str, Any], allowlist: Allowlist) -> bool:
    """Ours to overwrite: controlled by this allowlist, or by an earlier one of the same name (deleted and
    created again, whose objects the garbage collector has not removed yet)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True and ref.get("kind") == c.KIND_TOOLALLOWLIST \
                and (ref.get("uid") == allowlist.uid or ref.get("name") == allowlist.name):
            return True
    return False


def _merge_patch(existing: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Make `existing` hold exactly our content: our labels, annotations and owner merged in, and the
    content (ConfigMap data, a custom resource's spec) replaced whole, foreign keys removed."""
    meta = manifest["metadata"]
    patch: dict[str, Any] = {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"],
                                          "ownerReferences": meta["ownerReferences"],
                                          "resourceVersion": (existing.get("metadata") or {}).get("resourceVersion")}}
    for part in ("data", "spec"):
        if part in manifest:
            content = {key: None for key in existing.get(part) or {}}
            content.update(manifest[part])
            patch[part] = content
    if "data" in manifest and existing.get("binaryData"):
        patch["binaryData"] = None
    return patch


class TargetWriter:
    def __init__(self, store: TargetStore, *, redactor: Redactor | None = None,
                 contextforge: ContextForgeConnect | None = None, webhook_path: WebhookPath | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.redactor = redactor or Redactor()
        self.contextforge = contextforge
        self.webhook_path = webhook_path
        self._clock = clock
        self._toolhive: tuple[float, str | None] | None = None     # (when looked, the served version)

    # -- Kubernetes objects ----------------------------------------------------------------

    async def toolhive_version(self) -> str | None:
        """`toolhive.stacklok.dev/<version>` serving MCPToolConfig (the storage version first), or None."""
        now = self._clock()
        if self._toolhive is not None and now - self._toolhive[0] < (
                DISCOVERY_TTL_SECONDS if self._toolhive[1] else DISCOVERY_ABSENT_TTL_SECONDS):
            return self._toolhive[1]
        found: str | None = None
        for version in c.TOOLHIVE_VERSIONS:
            served = await self.store.served_resources(f"{c.TOOLHIVE_GROUP}/{version}")
            if served is not None and c.TOOLHIVE_TOOLCONFIG_PLURAL in served:
                found = f"{c.TOOLHIVE_GROUP}/{version}"
                break
        self._toolhive = (now, found)
        return found

    def forget_discovery(self) -> None:
        self._toolhive = None

    async def write_object(self, allowlist: Allowlist, write: ObjectWrite, *, verify: bool,
                           held: str | None) -> Written:
        """Create or update one owned object; `held`: the content hash this operator last wrote there (skip the
        read when it is the wanted one and no verification is due)."""
        if write.kind == "ConfigMap":
            api_version, plural = "v1", "configmaps"
        else:
            api_version, plural = write.manifest["apiVersion"], c.TOOLHIVE_TOOLCONFIG_PLURAL
        what = f"{write.kind} {allowlist.namespace}/{write.name}"
        if held == write.content_hash and not verify:
            return Written("Published")
        path = group_path(api_version, plural, allowlist.namespace, write.name)
        try:
            existing = await self.store.get_object(path, what)
            if existing is None:
                await self.store.create_object(group_path(api_version, plural, allowlist.namespace), write.manifest,
                                               what)
                return Written("Published", written=True)
            if not controlled_by(existing, allowlist):
                return Written("Conflict", f"{what} exists and is not owned by this ToolAllowlist; it is left "
                                           "untouched: delete it, or rename the allowlist or the source's `as`",
                               c.REASON_TARGET_CONFLICT)
            annotations = (existing.get("metadata") or {}).get("annotations") or {}
            if annotations.get(c.ANN_CONTENT_HASH) == write.content_hash and _holds(existing, write.manifest):
                return Written("Published")
            await self.store.patch_object(path, _merge_patch(existing, write.manifest), what)
            return Written("Published", written=True)
        except ApiError as error:
            if error.status == 404 and write.kind != "ConfigMap":
                self.forget_discovery()         # the CRD went away meanwhile
                return Written("Unavailable", f"{what}: the API server no longer serves {api_version} "
                                              f"{write.kind}", c.REASON_TARGET_UNAVAILABLE)
            return _failed(error, what)

    # -- gateways --------------------------------------------------------------------------------

    async def publish_contextforge(self, allowlist: Allowlist, url: str, secret: tuple[str, str],
                                   servers: Sequence[GatewayServer], virtual_server: str | None) -> Written:
        if self.contextforge is None:
            return Written("Unavailable", "this operator has no ContextForge adapter", c.REASON_TARGET_UNAVAILABLE)
        token = await self._token(allowlist.namespace, *secret)
        if isinstance(token, Written):
            return token
        try:
            await self.contextforge(url, token).publish(servers, virtual_server,
                                                        owner=f"{allowlist.namespace}/{allowlist.name}")
        except Exception as error:      # whatever the adapter raised fails this target only, and says so
            retryable = getattr(error, "retryable", None)
            if isinstance(error, GatewayUnavailable) or retryable is True:
                return Written("Unavailable", f"ContextForge at {url}: {self.redactor.redact(str(error))}",
                               c.REASON_TARGET_UNAVAILABLE)
            if isinstance(error, GatewayRejected) or retryable is False:
                return Written("Failed", f"ContextForge at {url} refused it: {self.redactor.redact(str(error))}",
                               c.REASON_TARGET_FAILED)
            logger.exception("%s: the ContextForge adapter failed", allowlist.describe())
            return Written("Failed", f"ContextForge at {url}: {type(error).__name__}", c.REASON_TARGET_FAILED)
        return Written("Published", written=True)

    async def _token(self, namespace: str, name: str, key: str) -> str | Written:
        what = f"Secret {namespace}/{name}"
        try:
            secret = await self.store.read_secret(namespace, name)
        except ApiError as error:
            return _failed(error, what)
        encoded = ((secret or {}).get("data") or {}).get(key)
        if secret is None or encoded is None:
            return Written("Failed", f"{what} or its key {key!r} does not exist (tokenSecretRef)",
                           c.REASON_SECRET_NOT_FOUND)
        try:
            token = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return Written("Failed", f"{what}: key {key!r} does not hold a UTF-8 token", c.REASON_TARGET_FAILED)
        self.redactor.add(token)
        return token

    def webhook(self, allowlist: Allowlist) -> tuple[Written, str | None]:
        if self.webhook_path is None:
            return Written("Unavailable", "this operator does not serve ToolHive's validating webhook (see the "
                                          "README: ToolAllowlist, toolhiveWebhook)", c.REASON_TARGET_UNAVAILABLE), None
        return Written("Published"), self.webhook_path(allowlist.namespace, allowlist.name)


def _holds(existing: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    """The content and ownership are as written (the hash annotation alone could have been copied)."""
    meta = existing.get("metadata") or {}
    if meta.get("ownerReferences") != manifest["metadata"]["ownerReferences"]:
        return False
    for part in ("data", "spec"):
        if part in manifest and existing.get(part) != manifest[part]:
            return part == "data" and _same_data(existing.get("data"), manifest["data"])
    return True


def _same_data(existing: Any, wanted: Mapping[str, Any]) -> bool:
    """A ConfigMap's allowlist.json equal but for generatedAt counts as holding the content."""
    import json
    if not isinstance(existing, Mapping) or set(existing) != set(wanted):
        return False
    try:
        ours = {key: json.loads(value) for key, value in wanted.items()}
        theirs = {key: json.loads(value) for key, value in existing.items()}
    except (TypeError, ValueError):
        return False
    for document in (*ours.values(), *theirs.values()):
        if isinstance(document, dict):
            document.pop("generatedAt", None)
    return ours == theirs
