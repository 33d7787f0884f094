"""Resolve a resource's spec into the endpoint a sync talks to, and record what it read.

ToolServer and ConnectorConfig share everything after this point: one sync path, parameterised by
the `Endpoint` returned here. Reads Secrets, ConfigMaps (CA bundles) and the referenced ToolServer;
every one it reads (or finds missing) goes into the returned references, by resourceVersion or
generation, never by value. Raises `SyncError` with a message that names what to fix and never
holds a secret value; the references read so far travel with it (`ResolveError`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from ..api import constants as c
from ..api.endpoint import Endpoint, TLSMaterial
from ..api.errors import SyncError
from ..api.models import (
    TLS,
    Auth,
    ConnectorConfigSpec,
    FetchedWith,
    Reference,
    ReferenceKind,
    SecretKeyRef,
    ToolServerSpec,
)
from ..api.redact import Redactor
from ..api.spec import Spec, check_url, describe_validation_error
from ..api.validation import header_problems, header_value_problem
from .errors import ApiError, api_error

ReadToolServer = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


class Reads(Protocol):
    """The reads resolution makes (KubeClient, or a fake in tests)."""

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


class ResolveError(SyncError):
    """A SyncError from resolution, with the references it had read before it stopped."""

    def __init__(self, error: SyncError, references: list[Reference]) -> None:
        super().__init__(error.reason, error.message, retry_after=error.retry_after, api_reason=error.api_reason)
        self.references = references


@dataclass
class _Reader:
    kube: Reads
    namespace: str
    read_toolserver: ReadToolServer | None = None
    redactor: Redactor | None = None
    references: list[Reference] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def _record(self, kind: ReferenceKind, name: str, obj: Mapping[str, Any] | None) -> None:
        if (kind, name) in self._seen:
            return
        self._seen.add((kind, name))
        meta = (obj or {}).get("metadata") or {}
        if kind == "ToolServer":
            self.references.append(Reference(kind=kind, name=name, uid=meta.get("uid"),
                                             generation=meta.get("generation")))
        else:
            self.references.append(Reference(kind=kind, name=name, resource_version=meta.get("resourceVersion")))

    async def read(self, kind: ReferenceKind, name: str) -> Mapping[str, Any] | None:
        obj: Mapping[str, Any] | None
        try:
            if kind == "Secret":
                obj = await self.kube.read_secret(self.namespace, name)
            elif kind == "ConfigMap":
                obj = await self.kube.read_configmap(self.namespace, name)
            elif self.read_toolserver is not None:
                obj = await self.read_toolserver(self.namespace, name)
            else:
                obj = await self.kube.read_object(c.KIND_TOOLSERVER, self.namespace, name)
        except ApiError as error:
            raise api_error(error, kind=kind) from None
        self._record(kind, name, obj)
        return obj

    async def secret_value(self, name: str, key: str, field_path: str) -> str:
        secret = await self.read("Secret", name)
        if secret is None:
            raise SyncError(c.REASON_SECRET_NOT_FOUND, f"{field_path}: Secret {self.namespace}/{name} (key {key!r}) "
                                                       "does not exist; it will be used as soon as it is created")
        data = secret.get("data") or {}
        if key not in data or data[key] is None:
            raise SyncError(c.REASON_SECRET_NOT_FOUND,
                            f"{field_path}: Secret {self.namespace}/{name} has no key {key!r}")
        try:
            value = base64.b64decode(data[key]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SyncError(c.REASON_INVALID_SPEC, f"{field_path}: Secret {self.namespace}/{name} key {key!r} "
                                                   "is not UTF-8 text") from None
        if self.redactor is not None:
            self.redactor.add(value)        # from now on, masked wherever it might show up
        return value

    async def configmap_value(self, name: str, key: str, field_path: str) -> str:
        configmap = await self.read("ConfigMap", name)
        if configmap is None:
            raise SyncError(c.REASON_CONFIGMAP_NOT_FOUND, f"{field_path}: ConfigMap {self.namespace}/{name} "
                                                          f"(key {key!r}) does not exist; it will be used as soon "
                                                          "as it is created")
        value = (configmap.get("data") or {}).get(key)
        if value is None:
            raise SyncError(c.REASON_CONFIGMAP_NOT_FOUND,
                            f"{field_path}: ConfigMap {self.namespace}/{name} has no key {key!r}")
        return str(value)

    async def auth_headers(self, auth: Auth | None, prefix: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        if auth is None:
            return headers
        if auth.bearer_token is not None:
            ref = auth.bearer_token.secret_key_ref
            token = await self.header_value(ref, f"{prefix}.bearerToken")
            headers["Authorization"] = f"Bearer {token}"
        for index, header in enumerate(auth.headers):
            headers[header.name] = await self.header_value(header.secret_key_ref, f"{prefix}.headers[{index}]")
        return headers

    async def header_value(self, ref: SecretKeyRef, field_path: str) -> str:
        """A Secret's value for a request header, stripped; InvalidSpec (naming the Secret and key, never the
        value) when HTTP cannot carry it: the HTTP client would refuse it at every attempt."""
        value = (await self.secret_value(ref.name, ref.key, field_path)).strip()
        why = header_value_problem(value)
        if why is not None:
            raise SyncError(c.REASON_INVALID_SPEC,
                            f"{field_path}: Secret {self.namespace}/{ref.name} key {ref.key!r} holds {why}; a token "
                            "or header value must be printable ASCII, as HTTP headers carry nothing else (the value "
                            "is not shown)")
        return value

    async def tls_material(self, tls: TLS | None) -> TLSMaterial | None:
        if tls is None:
            return None
        ca_pem = None
        if tls.ca_bundle is not None:
            if tls.ca_bundle.secret_key_ref is not None:
                ref = tls.ca_bundle.secret_key_ref
                ca_pem = await self.secret_value(ref.name, ref.key, "spec.tls.caBundle")
            elif tls.ca_bundle.config_map_key_ref is not None:
                cm_ref = tls.ca_bundle.config_map_key_ref
                ca_pem = await self.configmap_value(cm_ref.name, cm_ref.key, "spec.tls.caBundle")
        return TLSMaterial(ca_pem=ca_pem, insecure_skip_verify=tls.insecure_skip_verify)


async def resolve_endpoint(kube: Reads, kind: str, namespace: str, spec: Spec, *,
                           read_toolserver: ReadToolServer | None = None,
                           redactor: Redactor | None = None) -> tuple[Endpoint, list[Reference]]:
    """The effective endpoint: a ConnectorConfig inherits from its ToolServer, its own auth wins.

    Returns it with the references read; raises ResolveError (a SyncError) otherwise.
    """
    reader = _Reader(kube, namespace, read_toolserver, redactor)
    try:
        endpoint = await _resolve(reader, kind, namespace, spec)
    except SyncError as error:
        raise ResolveError(error, reader.references) from None
    return endpoint, reader.references


async def _resolve(reader: _Reader, kind: str, namespace: str, spec: Spec) -> Endpoint:
    if isinstance(spec, ConnectorConfigSpec) and spec.tool_server_ref is not None:
        ref = spec.tool_server_ref.name
        body = await reader.read("ToolServer", ref)
        if body is None:
            raise SyncError(c.REASON_TOOLSERVER_NOT_FOUND,
                            f"spec.toolServerRef: ToolServer {namespace}/{ref} does not exist "
                            f"(it will be used as soon as it is created)")
        try:
            server = ToolServerSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            raise SyncError(c.REASON_INVALID_SPEC,
                            f"referenced {describe_validation_error(c.KIND_TOOLSERVER, exc)}") from None
        url, transport = server.url, server.transport
        if problems := header_problems(server.headers, f"ToolServer {ref} spec.headers"):
            raise SyncError(c.REASON_INVALID_SPEC, "referenced " + "; ".join(problems))
        static = {**server.headers, **(spec.headers or {})}
        tls = spec.tls if spec.tls is not None else server.tls
        auth = spec.auth if spec.auth is not None else server.auth
        auth_prefix = "spec.auth" if spec.auth is not None else f"ToolServer {ref} spec.auth"
        source: Literal["None", "ToolServer", "ConnectorConfig"] = \
            "ConnectorConfig" if spec.auth is not None else "ToolServer" if server.auth is not None else "None"
    else:
        assert spec.url is not None
        url, transport = spec.url, spec.transport or c.TRANSPORT_STREAMABLE_HTTP
        static, tls, auth, auth_prefix = dict(spec.headers or {}), spec.tls, spec.auth, "spec.auth"
        source = kind if auth is not None else "None"  # type: ignore[assignment]
    check_url(url)
    headers = {**static, **await reader.auth_headers(auth, auth_prefix)}
    tls_material = await reader.tls_material(tls)
    fetched_with = FetchedWith(source=source,
                               secret_key_ref=auth.bearer_token.secret_key_ref if auth and auth.bearer_token else None,
                               headers=list(auth.headers) if auth and auth.headers else None)
    return Endpoint(url=url, transport=transport, headers=headers, tls=tls_material, auth_source=auth_prefix,
                    fetched_with=fetched_with)
