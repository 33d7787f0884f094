"""The SDK side of listen.py: imported only for a handshake-era or SSE server that advertises tools.listChanged.

fetch.py's sibling: the same SDK Client, built by `mcp_client` on an `HttpPool`, the
same per-session watch over the wire (`WireWatch`, `WatchedTransport`) and the same
secret-free error mapping. Two eras of the protocol deliver the notification:

- 2026-07-28 servers answer a `subscriptions/listen` request (toolsListChanged) with a
  stream that stays open; the SDK server sends a keep-alive comment on it every 15 s.
- Older servers (`ListenNotSupportedError`) push `notifications/tools/list_changed` on the
  session's own stream (streamable HTTP's GET stream, or the SSE stream). Nothing marks
  that stream's end (the SDK retries its GET quietly), so a ping every `ping_interval`
  proves the session is still there.

listen.py sends 2026-07-28 servers' `subscriptions/listen` itself (listenmodern.py, no SDK); it comes here
for handshake-era servers (mode "legacy": no 2026-07-28 probe) and SSE endpoints.

Either way the notification reaches the Client's `message_handler`, the one path to
`on_change`. Header values are never logged nor put into an error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost

from ..api import constants as c
from ..api.endpoint import Endpoint
from ..api.errors import SyncError
from .changes import OnChange
from .pool import HttpPool
from .session import (
    Mode,
    WatchedTransport,
    WireWatch,
    describe_failure,
    exception_leaves,
    mcp_client,
    scrubbed,
)

logger = logging.getLogger("toolcatalog.mcp.listen")


class _ListenTransport(WatchedTransport):
    """The fetch watch, plus what only a long-lived session meets: a refused notification
    stream, and a response body that breaks off (to tell an idle timeout from a lost connection)."""

    def __init__(self, shared: httpx2.AsyncBaseTransport, watch: WireWatch) -> None:
        super().__init__(shared, watch)
        self.stream_error: Exception | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        if request.method == "GET" and response.status_code >= 400:
            # Streamable HTTP's GET stream carries handshake-era notifications: without it none arrive.
            await response.aclose()
            self._watch.fail(SyncError(c.REASON_PROTOCOL_ERROR,
                                        f"{self._watch.url} refused the stream that carries its notifications "
                                        f"(HTTP {response.status_code})"))
            raise self._watch.failure  # type: ignore[misc]
        response.stream = _RecordedStream(response.stream, self)
        return response


class _RecordedStream(httpx2.AsyncByteStream):
    """A response body that remembers why it broke off."""

    def __init__(self, inner: Any, owner: _ListenTransport) -> None:
        self._inner = inner
        self._owner = owner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            self._owner.stream_error = exc
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


async def listen_in_session(endpoint: Endpoint, *, pool: HttpPool, on_change: OnChange,
                            ready: asyncio.Event | None, connect_timeout: float, idle_timeout: float,
                            ping_interval: float, mode: Mode = "auto") -> None:
    """listen.py's `listen_for_tool_changes` in an SDK session (`mode` "legacy": the handshake era is known)."""
    watch = WireWatch(endpoint)
    transport = _ListenTransport(pool.transport_for(endpoint.tls), watch)

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            result = on_change()
            if inspect.isawaitable(result):
                await result

    connected = False
    scope = anyio.CancelScope(deadline=anyio.current_time() + connect_timeout)
    watch.scope = scope
    try:
        with scope:
            async with mcp_client(endpoint, transport, timeout=connect_timeout, read_timeout=idle_timeout,
                                  mode=mode, message_handler=on_message) as client:
                async with client:
                    watch.phase = "subscriptions/listen"
                    try:
                        async with client.listen(tools_list_changed=True) as subscription:
                            connected = _connected(scope, ready)
                            async for _event in subscription:
                                pass    # each event reached on_change through the message handler
                        logger.debug("listen stream from %s closed by the server", watch.url)
                        return
                    except ListenNotSupportedError:
                        pass
                    connected = _connected(scope, ready)
                    watch.phase = "ping"
                    while True:
                        await anyio.sleep(ping_interval)
                        with anyio.fail_after(connect_timeout):
                            await client.session.send_ping()
    except Exception as exc:  # the SDK's errors come wrapped in (nested) ExceptionGroups
        error = _listen_error(exc, watch, transport, connected=connected, idle_timeout=idle_timeout)
        logger.debug("listening to %s ended: %s (%s)", watch.url, error.reason, type(exc).__name__)
        raise scrubbed(error, watch) from None
    # Only a cancelled scope gets here: the watch saw a decisive failure, or connecting took too long.
    raise scrubbed(watch.failure or SyncError(
        c.REASON_TIMEOUT, f"{watch.url} did not start listening within {connect_timeout:g}s"), watch)


def _connected(scope: anyio.CancelScope, ready: asyncio.Event | None) -> bool:
    """The session is up: lift the connect deadline and tell the caller."""
    scope.deadline = math.inf
    if ready is not None:
        ready.set()
    return True


def _listen_error(exc: BaseException, watch: WireWatch, transport: _ListenTransport, *, connected: bool,
                  idle_timeout: float) -> SyncError:
    if watch.failure is not None:
        return watch.failure
    if not connected:
        error = describe_failure(exc, watch)
        if watch.phase == "subscriptions/listen":   # it advertised tools.listChanged, yet refused to listen
            return SyncError(error.reason, f"{watch.url} did not accept subscriptions/listen: {error.message}")
        return error
    leaves = list(exception_leaves(exc))
    if isinstance(transport.stream_error, httpx2.ReadTimeout):
        return SyncError(c.REASON_TIMEOUT, f"the listen stream from {watch.url} stayed silent for "
                                            f"{idle_timeout:g}s, not even a keep-alive")
    if transport.stream_error is not None or any(isinstance(leaf, _LOST) for leaf in leaves):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"the connection to {watch.url} was lost")
    if any(isinstance(leaf, TimeoutError) for leaf in leaves):
        return SyncError(c.REASON_TIMEOUT, f"{watch.url} did not answer a ping")
    return describe_failure(exc, watch)


# How a session that was up breaks off, as the SDK reports it.
_LOST = (SubscriptionLost, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream,
         httpx2.TransportError)
