"""Hold one long-lived MCP session to a server and report when its tool list changes.

Two eras, as in the fetch (fetch.py), and the same memory of which one each endpoint speaks (`EraMemory`):

- 2026-07-28 servers: listenmodern.py sends `subscriptions/listen` itself over the pooled HTTP client. An
  endpoint whose era is not known (yet, or any longer) is tried so too; one that answers as a handshake-era
  server does is remembered as such and falls back at once.
- Handshake-era servers (and every SSE endpoint): listensession.py, a session on the SDK's Client. That
  module (and with it the SDK and the server stack its client package imports, tens of MiB) is imported
  only then, never at the operator's start nor for a 2026-07-28 server.
"""

from __future__ import annotations

import asyncio
import logging

from ..api import constants as c
from ..api.endpoint import Endpoint, display_url
from ..api.errors import SyncError
from .changes import OnChange
from .fetch import EraMemory, forget_session
from .listenmodern import listen_modern
from .pool import HttpPool
from .stateless import LegacyEra
from .wire import Limits

__all__ = ["CONNECT_TIMEOUT_SECONDS", "IDLE_TIMEOUT_SECONDS", "LEGACY_PING_SECONDS", "listen_for_tool_changes"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 30.0   # connect, handshake and the listen acknowledgment
IDLE_TIMEOUT_SECONDS = 60.0      # silence (not even a keep-alive) after which a stream counts as dead
LEGACY_PING_SECONDS = 30.0       # handshake-era sessions: how often to check the session is alive

async def listen_for_tool_changes(endpoint: Endpoint, *, pool: HttpPool, on_change: OnChange,
                                  ready: asyncio.Event | None = None, eras: EraMemory | None = None,
                                  limits: Limits | None = None,
                                  connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                                  idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                                  ping_interval: float = LEGACY_PING_SECONDS) -> None:
    """Call `on_change` for every tools list-changed notification from `endpoint`, until the session ends.

    Sets `ready` once the server listens (acknowledged `subscriptions/listen`, or a handshake-era
    session is up). Returns when the server closes the stream gracefully; raises SyncError when
    connecting fails or the session is lost (reason Timeout, after the handshake: the stream stayed
    silent for `idle_timeout` seconds). Runs until cancelled otherwise. `eras` is the fetch's memory of
    what each endpoint speaks; `limits` caps each message (only its per-answer size applies here).
    """
    if endpoint.transport not in c.TRANSPORTS:
        raise SyncError(c.REASON_INVALID_SPEC, f"unknown transport {endpoint.transport!r}")
    known = eras.get(endpoint) if eras is not None else None
    if endpoint.transport != c.TRANSPORT_SSE and (known is None or known.modern):
        try:
            await listen_modern(endpoint, pool=pool, on_change=on_change, ready=ready, limits=limits or Limits(),
                                connect_timeout=connect_timeout, idle_timeout=idle_timeout)
            return
        except LegacyEra as legacy:
            if legacy.session_id:
                await forget_session(pool, endpoint, legacy.session_id)
            if eras is not None:
                eras.learn(endpoint, modern=False, list_changed=None)
            logger.debug("%s speaks a handshake era of MCP: listening in a session", display_url(endpoint.url))
    from .listensession import listen_in_session  # the SDK, lazily

    # Streamable HTTP gets here only as a handshake-era endpoint: no 2026-07-28 probe by the SDK again.
    await listen_in_session(endpoint, pool=pool, on_change=on_change, ready=ready, connect_timeout=connect_timeout,
                            idle_timeout=idle_timeout, ping_interval=ping_interval,
                            mode="auto" if endpoint.transport == c.TRANSPORT_SSE else "legacy")
