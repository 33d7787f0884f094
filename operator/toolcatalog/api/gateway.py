"""What the operator hands a gateway adapter, and the two ways an adapter may fail. No I/O.

The engine calls gateway adapters (ContextForge's REST API, ToolHive's webhook) through small
Protocols (engine/targets.py); adapters raise these errors so that a target's state says what
happened: `GatewayUnavailable` (cannot be reached, 5xx, timeouts: retried with backoff, the target
is Unavailable) or `GatewayRejected` (the gateway refused what was sent, e.g. its token: the target
Failed). Messages never hold a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatewayServer:
    """One source as a gateway knows it: its name there (the source's `as`), the upstream MCP server the
    gateway must call (the source's own URL, never a gateway's), and the tools allowed right now
    (name -> schemaHash). `upstream_url` is None when the operator does not know it (the source is
    gone or has no catalog yet): the gateway must then allow none of that server's tools."""

    name: str
    upstream_url: str | None
    allowed: Mapping[str, str] = field(default_factory=dict)


class GatewayUnavailable(Exception):
    """The gateway could not be reached or failed (connection refused, timeout, HTTP 5xx)."""


class GatewayRejected(Exception):
    """The gateway refused the request (a token it does not accept, a request it calls invalid)."""
