"""Resolve a resource's spec into the effective endpoint a sync talks to.

ToolServer and ConnectorConfig share everything after this point: one sync path,
parameterised by the `Endpoint` this module returns. Reads Secrets, ConfigMaps (CA bundles)
and the referenced ToolServer through kube.py; raises `SyncProblem` with a reason from
api.md and a message that names what to fix and never holds a secret value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from . import constants as c
from .kube import KubeApi, KubeError
from .mcpfetch import Endpoint, TLSMaterial
from .models import TLS, Auth, ConnectorConfigSpec, SyncSettings, ToolSelector, ToolServerSpec, ToolSetting


class SyncProblem(Exception):
    """A sync cannot go on: `reason` is a Synced condition reason, `message` is for humans."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Settings:
    """What a sync needs from the spec besides the endpoint (same shape for both kinds)."""

    sync: SyncSettings
    selector: ToolSelector
    tools: list[ToolSetting]
    config_map_name: str | None
    owner: str | None = None
    tool_server_ref: str | None = None


def describe_validation_error(kind: str, error: ValidationError) -> str:
    """A human message naming each bad field, without echoing input values."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "spec"
        parts.append(f"spec.{location}: {item['msg']}" if location != "spec" else item["msg"])
    return f"{kind} spec is invalid: " + "; ".join(parts)


def parse_spec(kind: str, spec: Mapping[str, Any]) -> ToolServerSpec | ConnectorConfigSpec:
    model = ToolServerSpec if kind == c.KIND_TOOLSERVER else ConnectorConfigSpec
    try:
        return model.model_validate(dict(spec))
    except ValidationError as exc:
        raise SyncProblem(c.REASON_INVALID_SPEC, describe_validation_error(kind, exc)) from None


def settings_of(spec: ToolServerSpec | ConnectorConfigSpec) -> Settings:
    return Settings(
        sync=spec.sync, selector=spec.tool_selector, tools=list(spec.tools),
        config_map_name=spec.cache.config_map_name,
        owner=getattr(spec, "owner", None),
        tool_server_ref=spec.tool_server_ref.name if isinstance(spec, ConnectorConfigSpec)
        and spec.tool_server_ref else None,
    )


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SyncProblem(c.REASON_INVALID_SPEC,
                          f"spec.url must be an http:// or https:// URL with a host, got scheme "
                          f"{parts.scheme!r}")
    if parts.username or parts.password:
        raise SyncProblem(c.REASON_INVALID_SPEC,
                          "spec.url must not carry credentials; use spec.auth with a Secret")


async def _secret_value(kube: KubeApi, namespace: str, name: str, key: str, field_path: str) -> str:
    try:
        value = await kube.read_secret_key(namespace, name, key)
    except KubeError as exc:
        raise SyncProblem(c.REASON_SECRET_NOT_FOUND, f"{field_path}: {exc.message}") from None
    if value is None:
        raise SyncProblem(c.REASON_SECRET_NOT_FOUND,
                          f"{field_path}: Secret {namespace}/{name} or its key {key!r} does not exist")
    return value


async def _auth_headers(kube: KubeApi, namespace: str, auth: Auth | None, prefix: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if auth is None:
        return headers
    if auth.bearer_token is not None:
        ref = auth.bearer_token.secret_key_ref
        token = await _secret_value(kube, namespace, ref.name, ref.key, f"{prefix}.bearerToken")
        headers["Authorization"] = f"Bearer {token.strip()}"
    for index, header in enumerate(auth.headers):
        ref = header.secret_key_ref
        value = await _secret_value(kube, namespace, ref.name, ref.key, f"{prefix}.headers[{index}]")
        headers[header.name] = value.strip()
    return headers


async def _tls_material(kube: KubeApi, namespace: str, tls: TLS | None) -> TLSMaterial | None:
    if tls is None:
        return None
    ca_pem = None
    if tls.ca_bundle is not None:
        if tls.ca_bundle.secret_key_ref is not None:
            ref = tls.ca_bundle.secret_key_ref
            ca_pem = await _secret_value(kube, namespace, ref.name, ref.key, "spec.tls.caBundle")
        elif tls.ca_bundle.config_map_key_ref is not None:
            ref_cm = tls.ca_bundle.config_map_key_ref
            try:
                ca_pem = await kube.read_configmap_key(namespace, ref_cm.name, ref_cm.key)
            except KubeError as exc:
                raise SyncProblem(c.REASON_INVALID_SPEC, f"spec.tls.caBundle: {exc.message}") from None
            if ca_pem is None:
                raise SyncProblem(c.REASON_INVALID_SPEC,
                                  f"spec.tls.caBundle: ConfigMap {namespace}/{ref_cm.name} or its key "
                                  f"{ref_cm.key!r} does not exist")
    return TLSMaterial(ca_pem=ca_pem, insecure_skip_verify=tls.insecure_skip_verify)


def secret_uses_of(spec: ToolServerSpec | ConnectorConfigSpec) -> dict[str, tuple[str, ...]]:
    """The Secrets a spec names, each with what uses it ("auth", "tls"): a ConnectorConfig that
    brings its own auth does not care when only the ToolServer's auth Secret changes."""
    uses: dict[str, list[str]] = {}
    for name in sorted(spec.auth.secret_names() if spec.auth else ()):
        uses.setdefault(name, []).append("auth")
    if spec.tls and spec.tls.ca_bundle and spec.tls.ca_bundle.secret_key_ref:
        uses.setdefault(spec.tls.ca_bundle.secret_key_ref.name, []).append("tls")
    return {name: tuple(parts) for name, parts in uses.items()}


def secret_names_of(spec: ToolServerSpec | ConnectorConfigSpec) -> set[str]:
    return set(secret_uses_of(spec))


async def resolve_endpoint(kube: KubeApi, kind: str, namespace: str,
                           spec: ToolServerSpec | ConnectorConfigSpec) -> Endpoint:
    """The effective endpoint: a ConnectorConfig inherits from its ToolServer, its own auth wins."""
    if isinstance(spec, ConnectorConfigSpec) and spec.tool_server_ref is not None:
        ref = spec.tool_server_ref.name
        try:
            body = await kube.read_custom(c.KIND_TOOLSERVER, namespace, ref)
        except KubeError as exc:
            raise SyncProblem(c.REASON_SERVER_UNAVAILABLE, f"cannot read ToolServer {namespace}/{ref}: "
                                                           f"{exc.message}") from None
        if body is None:
            raise SyncProblem(c.REASON_TOOLSERVER_NOT_FOUND,
                              f"spec.toolServerRef: ToolServer {namespace}/{ref} does not exist "
                              f"(it will be used as soon as it is created)")
        try:
            server = ToolServerSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            raise SyncProblem(c.REASON_INVALID_SPEC, f"referenced {describe_validation_error(c.KIND_TOOLSERVER, exc)}"
                              ) from None
        url, transport = server.url, server.transport
        static = {**server.headers, **(spec.headers or {})}
        tls = spec.tls if spec.tls is not None else server.tls
        auth = spec.auth if spec.auth is not None else server.auth
        auth_prefix = "spec.auth" if spec.auth is not None else f"ToolServer {ref} spec.auth"
    else:
        assert spec.url is not None
        url, transport = spec.url, spec.transport or c.TRANSPORT_STREAMABLE_HTTP
        static, tls, auth, auth_prefix = dict(spec.headers or {}), spec.tls, spec.auth, "spec.auth"
    check_url(url)
    headers = {**static, **await _auth_headers(kube, namespace, auth, auth_prefix)}
    tls_material = await _tls_material(kube, namespace, tls)
    return Endpoint(url=url, transport=transport, headers=headers, tls=tls_material, auth_source=auth_prefix)
