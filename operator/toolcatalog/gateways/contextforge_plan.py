"""What to change in IBM ContextForge so that it serves exactly the allowed tools. Pure.

ContextForge (mcp-contextforge-gateway 1.0.7) keeps a copy of each registered server's ("gateway's")
tools, named `<gateway-slug>-<tool-slug>` and carrying the server's own name as `originalName`.
What it revealed when run here (tests/gateways/test_contextforge.py):
  - its global `/mcp` (and `/rpc`) endpoint lists and calls every *active* tool of every gateway,
    whatever virtual servers say: only deactivating a tool (`POST /tools/<id>/state?activate=false`)
    takes it away from agents; a deactivated tool stays inactive across refreshes;
  - a refresh (`POST /gateways/<id>/tools/refresh`) adds new tools *active*, updates a changed tool
    in place (same id, still active), and deletes a tool gone upstream (if it comes back, it comes
    back as a new, active tool);
  - a virtual server keeps inactive tools associated but serves only the active ones; one with no
    tools serves none;
  - `GET /tools` and `GET /servers` return 50 items unless asked for more, and no inactive ones
    unless asked: read them with `include_inactive=true` and cursor pagination.
So publishing withdraws first (deactivates what is not allowed), then makes a virtual server hold
exactly the allowed tools, and activates what is allowed last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

OWNER_TAG_PREFIX = "toolcatalog.dev:"
TAG_MAX_LENGTH = 100        # ContextForge's default VALIDATION_MAX_TAG_LENGTH
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}   # ContextForge stores a 127.0.0.1 upstream as localhost
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ForgeTool:
    """One of a gateway's tools as ContextForge holds it."""

    id: str
    name: str               # ContextForge's name: <gateway-slug>-<tool-slug>
    original_name: str      # the upstream server's name for it
    enabled: bool

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> ForgeTool:
        return cls(id=str(item["id"]), name=str(item.get("name") or ""),
                   original_name=str(item.get("originalName") or item.get("name") or ""),
                   enabled=bool(item.get("enabled")))


@dataclass(frozen=True)
class GatewayPlan:
    """For one gateway: ids to deactivate and to activate, the allowed ids, and the allowed names
    ContextForge does not hold (its refresh failed to import them, or the server stopped offering them)."""

    deactivate: tuple[ForgeTool, ...]
    activate: tuple[ForgeTool, ...]
    allowed_ids: tuple[str, ...]
    missing: tuple[str, ...]


def plan_gateway(tools: Iterable[ForgeTool], allowed: Mapping[str, str]) -> GatewayPlan:
    tools = sorted(tools, key=lambda tool: (tool.original_name, tool.id))
    allowed_tools = [tool for tool in tools if tool.original_name in allowed]
    held = {tool.original_name for tool in allowed_tools}
    return GatewayPlan(
        deactivate=tuple(tool for tool in tools if tool.enabled and tool.original_name not in allowed),
        activate=tuple(tool for tool in allowed_tools if not tool.enabled),
        allowed_ids=tuple(tool.id for tool in allowed_tools),
        missing=tuple(sorted(name for name in allowed if name not in held)),
    )


@dataclass(frozen=True)
class ServerPlan:
    """The virtual server's tool ids: None when they already are exactly the wanted ones."""

    associated: tuple[str, ...] | None


def plan_virtual_server(current: Iterable[str], wanted: Iterable[str]) -> ServerPlan:
    wanted_ids = tuple(sorted(set(wanted)))
    return ServerPlan(associated=None if set(current) == set(wanted_ids) else wanted_ids)


def owner_tag(owner: str) -> str:
    """The tag marking a virtual server as the operator's for `owner` (NAMESPACE/NAME of the allowlist).

    ContextForge lower-cases tags and allows letters, digits, '-', ':' and '.', 100 characters at most;
    a longer owner is tagged by a digest of it.
    """
    if not owner:
        return OWNER_TAG_PREFIX + "managed"
    readable = OWNER_TAG_PREFIX + owner.lower().replace("/", ":")
    if len(readable) <= TAG_MAX_LENGTH:
        return readable
    return OWNER_TAG_PREFIX + "sha256." + hashlib.sha256(owner.encode()).hexdigest()[:32]


def tag_ids(item: Mapping[str, Any]) -> set[str]:
    """A ContextForge object's tags, which it answers as {"id", "label"} objects (or plain strings)."""
    tags: set[str] = set()
    for tag in item.get("tags") or ():
        if isinstance(tag, Mapping):
            tags.add(str(tag.get("id") or ""))
        else:
            tags.add(str(tag))
    return tags


def same_upstream(registered: str, upstream: str) -> bool:
    """Whether a gateway's registered URL is this upstream: scheme, host (loopback names as one), port
    (defaults filled in) and path (trailing slash ignored) equal."""
    def key(url: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        host = "localhost" if host in _LOOPBACK_NAMES else host
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            port = None
        return scheme, host, port, parts.path.rstrip("/") or "/"

    return key(registered) == key(upstream)


@dataclass
class PublishResult:
    """What one publish did: tool names per gateway, the virtual server, and the request count."""

    deactivated: dict[str, list[str]] = field(default_factory=dict)
    activated: dict[str, list[str]] = field(default_factory=dict)
    allowed: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    gateway_ids: dict[str, str] = field(default_factory=dict)
    virtual_server_id: str | None = None
    virtual_server_created: bool = False
    virtual_server_changed: bool = False
    requests: int = 0

    @property
    def changed(self) -> bool:
        return (any(self.deactivated.values()) or any(self.activated.values()) or self.virtual_server_created
                or self.virtual_server_changed)

    @property
    def published(self) -> int:
        return sum(len(names) for names in self.allowed.values())


def ids_of(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(tool["id"]) for tool in tools if "id" in tool]
