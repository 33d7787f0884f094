"""The 2026-07-28 tools/list: one self-contained POST per page, no session, the JSON as received.

A 2026-07-28 server needs no `initialize` handshake: each request carries the protocol version in
a header and in `params._meta`. One POST per page on a pooled connection is the protocol's floor,
and the answer is read as raw JSON, so a tool's definition is hashed exactly as the server sent it
(the SDK's models drop fields they do not know). Bodies are read with a byte cap, compressed and
inflated, before anything is buffered. A server of an older era refuses the request in a way
`LegacyEra` recognises; fetch.py then falls back to an SDK session. The change listener's
`subscriptions/listen` goes out the same way (`StatelessCall.post`, listenmodern.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from .. import __version__
from ..api import constants as c
from ..api.endpoint import Endpoint, display_url
from ..api.errors import SyncError
from .wire import (
    Limits,
    answers,
    check_response,
    content_type_of,
    is_response,
    read_capped,
    short,
    transport_error,
    wrong_answer,
)

MODERN_VERSION = "2026-07-28"
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
META = {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "toolcatalog", "version": __version__}}
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json",
           "mcp-protocol-version": MODERN_VERSION}
MODERN_ERRORS = (-32020, -32021)     # header mismatch, missing client capability: a modern server talking


class LegacyEra(Exception):
    """The server refused a stateless request the way a handshake-era server does."""

    def __init__(self, session_id: str | None = None) -> None:
        super().__init__("the server speaks a handshake era of MCP")
        self.session_id = session_id


@dataclass
class Page:
    result: Mapping[str, Any]
    wire_bytes: int
    body_bytes: int
    text: bytes = b""           # the JSON-RPC message as received (inflated): what the catalog's digest covers


@dataclass
class StatelessCall:
    """One JSON-RPC request over one POST: for tools/list pages and server/discover."""

    client: httpx2.AsyncClient
    endpoint: Endpoint
    limits: Limits
    secrets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return display_url(self.endpoint.url)

    @contextlib.asynccontextmanager
    async def post(self, method: str, request_id: int | str, params: Mapping[str, Any], *, first: bool,
                   timeout: httpx2.Timeout | None = None, check: bool = True
                   ) -> AsyncIterator[tuple[httpx2.Response, str]]:
        """POST one request; its answer and content type, once the status and type are checked (unless not
        `check`). LegacyEra when the `first` request to an endpoint is refused as a handshake-era server does;
        a transport failure (also one inside the block) becomes a secret-free SyncError."""
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                           "params": {**params, "_meta": META}}, separators=(",", ":")).encode()
        headers = {**self.endpoint.headers, **HEADERS, "mcp-method": method}
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            async with self.client.stream("POST", self.endpoint.url, content=body, headers=headers,
                                          **options) as response:
                if first and _refused_as_legacy_http(response):
                    raise LegacyEra(response.headers.get("mcp-session-id"))
                yield response, (check_response(response, self.endpoint, self.url, sse_ok=True) if check
                                 else content_type_of(response))
        except httpx2.TransportError as exc:
            raise transport_error(exc, self.url, self.secrets) from None

    async def call(self, method: str, request_id: int, params: Mapping[str, Any], *, first: bool) -> Page:
        async with self.post(method, request_id, params, first=first) as (response, content_type):
            if content_type == "text/event-stream":
                message, wire, size, raw = await _first_sse_response(response, request_id, self.limits,
                                                                     self.url, method)
            else:
                raw, wire = await read_capped(response, self.limits, self.url)
                size = len(raw)
                message = json_object(raw, self.url)
        if "error" in message:
            if first and refused_as_legacy_rpc(message["error"]):
                raise LegacyEra()
            if message.get("id") is not None and not answers(request_id, message.get("id")):
                raise wrong_answer(self.url, method, message.get("id"))
            raise rpc_error(self.url, method, message["error"], self.secrets)
        if not answers(request_id, message.get("id")):       # a result meant for another request, or for none
            raise wrong_answer(self.url, method, message.get("id"))
        result = message.get("result")
        if not isinstance(result, Mapping):
            raise SyncError(c.REASON_PROTOCOL_ERROR, f"{self.url} answered {method} without a result object")
        return Page(result, wire, size, raw)


def rpc_error(url: str, method: str, error: Any, secrets: list[str]) -> SyncError:
    """A JSON-RPC error answer, its message shortened and scrubbed (a careless server may quote credentials)."""
    error = error if isinstance(error, Mapping) else {}
    return SyncError(c.REASON_PROTOCOL_ERROR, f"{url} answered {method} with JSON-RPC error {error.get('code')}: "
                                              f"{short(str(error.get('message')), secrets)}")


def _refused_as_legacy_http(response: httpx2.Response) -> bool:
    """A handshake-era server's answer to a stateless request: a session id, or a 4xx it sends (not 401,
    403, 404, 429: those mean the same in every era)."""
    if response.headers.get("mcp-session-id"):
        return True
    return response.status_code in (400, 405, 406, 415)


def refused_as_legacy_rpc(error: Any) -> bool:
    """A JSON-RPC refusal that means "not this era" (the SDK's own rule: everything but a modern server's
    header errors, or an unsupported version whose alternatives are all modern ones we do not speak)."""
    if not isinstance(error, Mapping):
        return True
    code = error.get("code")
    if code in MODERN_ERRORS:
        return False
    if code == -32022:
        supported = (error.get("data") or {}).get("supported") if isinstance(error.get("data"), Mapping) else None
        return not supported or any(version in HANDSHAKE_VERSIONS for version in supported)
    return True


def json_object(raw: bytes, url: str) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SyncError(c.REASON_PROTOCOL_ERROR, f"{url} answered with a body that is not JSON") from None
    if not isinstance(message, dict):
        raise SyncError(c.REASON_PROTOCOL_ERROR, f"{url} answered with JSON that is not a JSON-RPC message")
    return message


def sse_events(text: str) -> Iterator[tuple[str, str]]:
    """(event, data) of each complete Server-Sent Event; comments and incomplete events skipped."""
    event, data = "message", list[str]()
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


async def _first_sse_response(response: httpx2.Response, request_id: int, limits: Limits,
                              url: str, method: str) -> tuple[dict[str, Any], int, int, bytes]:
    """The JSON-RPC response to `request_id` in an SSE stream (pings and notifications skipped); a response
    to any other request is a ProtocolError: this stream answers one request."""
    buffered = ""
    body_bytes = 0
    async for chunk in response.aiter_text():
        body_bytes += len(chunk.encode())
        limits.check(response.num_bytes_downloaded, body_bytes, url)
        buffered += chunk
        text, separator, rest = buffered.rpartition("\n\n")
        if not separator:
            continue
        buffered = rest
        for event, data in sse_events(text + "\n\n"):
            if event != "message":
                continue
            raw = data.encode()
            message = json_object(raw, url)
            if not is_response(message):
                continue
            if answers(request_id, message.get("id")) or (message.get("id") is None and "error" in message):
                return message, response.num_bytes_downloaded, body_bytes, raw
            raise wrong_answer(url, method, message.get("id"))
    raise SyncError(c.REASON_PROTOCOL_ERROR, f"{url} ended its event stream without answering the request")
