"""Reading a spec, once, at the edge: typed models, the settings a sync needs, the objects it names.

Pure: no I/O. A spec that cannot be used raises `SyncError` InvalidSpec with a message naming each
bad field and never echoing a value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import constants as c
from .errors import SyncError
from .models import (
    ConnectorConfigSpec,
    SyncSettings,
    ToolSelector,
    ToolServerSpec,
    ToolSetting,
)
from .validation import spec_problems, url_problems

Spec = ToolServerSpec | ConnectorConfigSpec


@dataclass(frozen=True)
class Settings:
    """What a sync needs from the spec besides the endpoint (same shape for both kinds)."""

    sync: SyncSettings
    selector: ToolSelector
    tools: list[ToolSetting]
    config_map_name: str | None
    owner: str | None = None
    tool_server_ref: str | None = None


@dataclass(frozen=True)
class Named:
    """The objects a spec names in its own namespace (resolution reads them; watches resync on them)."""

    secrets: frozenset[str] = frozenset()
    configmaps: frozenset[str] = frozenset()
    toolserver: str | None = None


def describe_validation_error(kind: str, error: ValidationError) -> str:
    """A human message naming each bad field as admission does (spec.tools[0].name), without echoing input values."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"])[1:] or "spec"
        parts.append(f"spec.{location}: {item['msg']}" if location != "spec" else item["msg"])
    return f"{kind} spec is invalid: " + "; ".join(parts)


def parse_spec(kind: str, spec: Mapping[str, Any], *,
               egress_verdict: Callable[[Any], str | None] | None = None) -> Spec:
    """The spec as a model, or SyncError InvalidSpec naming each problem; with `egress_verdict` (the
    admission webhook's), a literal address the operator may not connect to is one too."""
    model = ToolServerSpec if kind == c.KIND_TOOLSERVER else ConnectorConfigSpec
    try:
        parsed = model.model_validate(dict(spec))
    except ValidationError as exc:
        raise SyncError(c.REASON_INVALID_SPEC, describe_validation_error(kind, exc)) from None
    problems = spec_problems(spec, egress_verdict=egress_verdict)
    if problems:
        raise SyncError(c.REASON_INVALID_SPEC, f"{kind} spec is invalid: " + "; ".join(problems))
    return parsed


def settings_of(spec: Spec) -> Settings:
    return Settings(
        sync=spec.sync, selector=spec.tool_selector, tools=list(spec.tools),
        config_map_name=spec.cache.config_map_name,
        owner=spec.owner if isinstance(spec, ConnectorConfigSpec) else None,
        tool_server_ref=spec.tool_server_ref.name if isinstance(spec, ConnectorConfigSpec)
        and spec.tool_server_ref else None,
    )


def check_url(url: str) -> None:
    """http(s) with a host in a standard form and no credentials; raises SyncError InvalidSpec naming
    what to fix (the same words the admission webhook rejects it with)."""
    problems = url_problems(url)
    if problems:
        raise SyncError(c.REASON_INVALID_SPEC, "; ".join(problems))


def names_of(spec: Spec, *, inherited: Spec | None = None) -> Named:
    """The Secrets, ConfigMaps and ToolServer a spec reads; with the referenced ToolServer's spec, the
    parts a ConnectorConfig inherits from it too (its auth unless it has its own, likewise tls)."""
    auth = spec.auth if spec.auth is not None or inherited is None else inherited.auth
    tls = spec.tls if spec.tls is not None or inherited is None else inherited.tls
    secrets: set[str] = set(auth.secret_names()) if auth else set()
    configmaps: set[str] = set()
    if tls is not None and tls.ca_bundle is not None:
        if tls.ca_bundle.secret_key_ref is not None:
            secrets.add(tls.ca_bundle.secret_key_ref.name)
        if tls.ca_bundle.config_map_key_ref is not None:
            configmaps.add(tls.ca_bundle.config_map_key_ref.name)
    ref = spec.tool_server_ref.name if isinstance(spec, ConnectorConfigSpec) and spec.tool_server_ref else None
    return Named(secrets=frozenset(secrets), configmaps=frozenset(configmaps), toolserver=ref)
