"""Hold one long-lived MCP session to a server and report when its tool list changes.

The session itself is listensession.py, on the SDK's Client; that module (and with it the SDK and
the server stack its client package imports, tens of MiB) is imported only when a server
advertises tools.listChanged, not at the operator's start.
"""

from __future__ import annotations

import asyncio

from ..api import constants as c
from ..api.endpoint import Endpoint
from ..api.errors import SyncError
from .changes import OnChange
from .pool import HttpPool

__all__ = ["CONNECT_TIMEOUT_SECONDS", "IDLE_TIMEOUT_SECONDS", "LEGACY_PING_SECONDS", "listen_for_tool_changes"]

CONNECT_TIMEOUT_SECONDS = 30.0   # connect, handshake and the listen acknowledgment
IDLE_TIMEOUT_SECONDS = 60.0      # silence (not even a keep-alive) after which a stream counts as dead
LEGACY_PING_SECONDS = 30.0       # handshake-era sessions: how often to check the session is alive

async def listen_for_tool_changes(endpoint: Endpoint, *, pool: HttpPool, on_change: OnChange,
                                  ready: asyncio.Event | None = None,
                                  connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                                  idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                                  ping_interval: float = LEGACY_PING_SECONDS) -> None:
    """Call `on_change` for every tools list-changed notification from `endpoint`, until the session ends.

    Sets `ready` once the server listens (acknowledged `subscriptions/listen`, or a handshake-era
    session is up). Returns when the server closes the stream gracefully; raises SyncError when
    connecting fails or the session is lost (reason Timeout, after the handshake: the stream stayed
    silent for `idle_timeout` seconds). Runs until cancelled otherwise.
    """
    if endpoint.transport not in c.TRANSPORTS:
        raise SyncError(c.REASON_INVALID_SPEC, f"unknown transport {endpoint.transport!r}")
    from .listensession import listen_in_session  # the SDK, lazily

    await listen_in_session(endpoint, pool=pool, on_change=on_change, ready=ready, connect_timeout=connect_timeout,
                            idle_timeout=idle_timeout, ping_interval=ping_interval)
