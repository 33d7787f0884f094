"""Listen to a 2026-07-28 server without the SDK: one `subscriptions/listen` POST, whose answer is the stream.

A 2026-07-28 server needs no session to tell of changes, so the listener speaks the protocol itself over
the pooled HTTP client, as the fetch does (stateless.py): the SDK's client package imports the SDK's
server stack, about 25 MiB of RSS, which an operator whose servers all speak 2026-07-28 never loads.

What goes over the wire is what the SDK's own client (mcp.client.subscriptions) sends and expects:

- the request: `subscriptions/listen` with `notifications: {toolsListChanged: true}`, the id `listen-1`,
  and the 2026-07-28 headers and `_meta` of every stateless request;
- the answer, an SSE stream: first `notifications/subscriptions/acknowledged` (its `_meta` names the
  request's id as `io.modelcontextprotocol/subscriptionId`), then one `notifications/tools/list_changed`
  per change; SSE comments keep it alive in between (the SDK's server sends one every 15 s);
- the end: the JSON-RPC result for the request closes the stream gracefully. An error answer before the
  acknowledgment is a refusal; an error after it, a `notifications/cancelled` naming the request, or a
  stream that breaks off, is a lost subscription (there is no replay: the caller resyncs).

Errors are the listener's usual SyncErrors, with the fetch's secret-free mapping; each event is read with
the per-answer byte cap (--max-response-bytes) before it is parsed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2

from ..api import constants as c
from ..api.endpoint import Endpoint
from ..api.errors import SyncError
from .changes import OnChange
from .pool import HttpPool
from .stateless import (
    LegacyEra,
    StatelessCall,
    json_object,
    refused_as_legacy_rpc,
    rpc_error,
    sse_events,
)
from .wire import (
    Limits,
    answers,
    check_response,
    is_response,
    read_capped,
    scrub,
    session_secrets,
    status_error,
    transport_error,
    wrong_answer,
)

logger = logging.getLogger("toolcatalog.mcp.listen")

LISTEN = "subscriptions/listen"
LISTEN_ID = "listen-1"          # the SDK's form: one request per POST, so one id is enough
ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
TOOLS_CHANGED = "notifications/tools/list_changed"
CANCELLED = "notifications/cancelled"
SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"


async def listen_modern(endpoint: Endpoint, *, pool: HttpPool, on_change: OnChange, ready: asyncio.Event | None,
                        limits: Limits, connect_timeout: float, idle_timeout: float) -> None:
    """listen.py's `listen_for_tool_changes` for a 2026-07-28 endpoint; LegacyEra when the server turns out to
    speak a handshake era (listen.py then falls back to an SDK session)."""
    secrets = session_secrets(endpoint)
    call = StatelessCall(pool.client_for(endpoint.tls), endpoint, limits, secrets)
    stream = _Stream(call.url, on_change, ready, secrets)
    try:
        async with asyncio.timeout(connect_timeout) as deadline:
            stream.deadline = deadline
            async with call.post(LISTEN, LISTEN_ID, {"notifications": {"toolsListChanged": True}}, first=True,
                                 timeout=httpx2.Timeout(connect_timeout, read=idle_timeout), check=False
                                 ) as (response, kind):
                await _check(response, kind, stream, endpoint, limits)
                try:
                    async for message in _messages(response, kind, limits, call.url):
                        if await stream.take(message):
                            logger.debug("listen stream from %s closed by the server", call.url)
                            return
                except httpx2.ReadTimeout:
                    raise stream.silent(idle_timeout) from None
                except httpx2.TransportError as exc:
                    raise (stream.lost() if stream.acknowledged else transport_error(exc, call.url, secrets)) from None
            raise stream.lost() if stream.acknowledged else SyncError(
                c.REASON_PROTOCOL_ERROR, f"{call.url} did not accept {LISTEN}: it ended the stream without "
                                         "acknowledging the request")
    except TimeoutError:    # only before the acknowledgment: it lifts the deadline
        error = SyncError(c.REASON_TIMEOUT, f"{call.url} did not start listening within {connect_timeout:g}s")
    except SyncError as exc:
        error = exc
    logger.debug("listening to %s ended: %s", call.url, error.reason)
    raise SyncError(error.reason, " ".join(scrub(error.message, secrets).split()), retry_after=error.retry_after)


class _Stream:
    """What one listen stream said so far, and what each message means."""

    def __init__(self, url: str, on_change: OnChange, ready: asyncio.Event | None, secrets: list[str]) -> None:
        self.url, self.on_change, self.ready, self.secrets = url, on_change, ready, secrets
        self.deadline: asyncio.Timeout | None = None
        self.acknowledged = False

    async def take(self, message: Mapping[str, Any]) -> bool:
        """Act on one message of the stream; True when it was the graceful end."""
        if is_response(message):
            return self.take_answer(message)
        method = message.get("method")
        params = message.get("params")
        params = params if isinstance(params, Mapping) else {}
        if method == TOOLS_CHANGED:
            result = self.on_change()
            if inspect.isawaitable(result):
                await result
        elif method == ACKNOWLEDGED and _names_this_listen(params):
            self._listening()
            honored = params.get("notifications")
            if not (isinstance(honored, Mapping) and honored.get("toolsListChanged")):
                logger.debug("%s acknowledged %s without tool-list changes; it may never send one", self.url, LISTEN)
        elif method == CANCELLED and answers(LISTEN_ID, params.get("requestId")):
            raise self.lost(f"{self.url} cancelled the listen stream")
        return False

    def take_answer(self, message: Mapping[str, Any]) -> bool:
        """The response to the listen request: its graceful end, or a refusal."""
        if message.get("id") is not None and not answers(LISTEN_ID, message.get("id")):
            raise wrong_answer(self.url, LISTEN, message.get("id"))
        if "error" not in message:
            self._listening()   # as the SDK's client: a result without an acknowledgment opened a closed stream
            return True
        error = rpc_error(self.url, LISTEN, message["error"], self.secrets)
        if self.acknowledged:
            raise self.lost(f"the listen stream ended with an error: {error.message}")
        if _version_refused(message["error"]):
            raise LegacyEra()
        raise SyncError(error.reason, f"{self.url} did not accept {LISTEN}: {error.message}")

    def _listening(self) -> None:
        """Acknowledged: lift the connect deadline and tell the caller."""
        self.acknowledged = True
        if self.deadline is not None:
            self.deadline.reschedule(None)
        if self.ready is not None:
            self.ready.set()

    def lost(self, message: str | None = None) -> SyncError:
        return SyncError(c.REASON_SERVER_UNAVAILABLE, message or f"the connection to {self.url} was lost")

    def silent(self, idle_timeout: float) -> SyncError:
        if not self.acknowledged:
            return SyncError(c.REASON_TIMEOUT, f"{self.url} did not acknowledge {LISTEN} within {idle_timeout:g}s")
        return SyncError(c.REASON_TIMEOUT, f"the listen stream from {self.url} stayed silent for {idle_timeout:g}s, "
                                           "not even a keep-alive")


async def _check(response: httpx2.Response, kind: str, stream: _Stream, endpoint: Endpoint, limits: Limits) -> None:
    """The fetch's checks of status and type; but a 2026-07-28 server refuses with an HTTP status *and* a JSON-RPC
    error (method not found: 404), and that error says what happened."""
    error = status_error(response.request, response, endpoint, stream.url)
    if error is not None and response.status_code >= 400 and error.reason != c.REASON_AUTH_FAILED \
            and kind == "application/json":
        message = json_object((await read_capped(response, limits, stream.url))[0], stream.url)
        if is_response(message) and "error" in message:
            stream.take_answer(message)
    if error is not None:
        raise error
    check_response(response, endpoint, stream.url, sse_ok=True)


async def _messages(response: httpx2.Response, kind: str, limits: Limits, url: str
                    ) -> AsyncIterator[Mapping[str, Any]]:
    """The JSON-RPC messages of the answer as they arrive: a JSON body whole (a refusal, or an immediate end),
    an event stream event by event, each event capped at the per-answer byte limit."""
    if kind != "text/event-stream":
        raw, _wire = await read_capped(response, limits, url)
        yield json_object(raw, url)
        return
    buffered = ""
    async for chunk in response.aiter_text():
        buffered = (buffered + chunk).replace("\r\n", "\n")
        complete, separator, buffered = buffered.rpartition("\n\n")
        if len(buffered.encode()) > limits.max_response_bytes:
            raise SyncError(c.REASON_PROTOCOL_ERROR,
                            f"{url} sent a listen-stream event larger than {limits.max_response_bytes} bytes "
                            "(--max-response-bytes); it was not read further")
        for event, data in sse_events(complete + separator) if separator else ():
            if event == "message":
                yield json_object(data.encode(), url)


def _names_this_listen(params: Mapping[str, Any]) -> bool:
    meta = params.get("_meta")
    return isinstance(meta, Mapping) and answers(LISTEN_ID, meta.get(SUBSCRIPTION_ID_KEY))


def _version_refused(error: Any) -> bool:
    """Refused for its protocol version in favour of a handshake era. Any other refusal (method not found
    included) is a 2026-07-28 server that does not listen: an SDK session would be refused the same."""
    return isinstance(error, Mapping) and error.get("code") == -32022 and refused_as_legacy_rpc(error)

