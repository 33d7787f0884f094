"""The HTTP layer in front of a test MCP server: what reached it, and the faults it injects.

`TrafficLog` counts what the server saw on the wire (requests, their paths and TCP
connections, the last request's headers, tools/list calls, subscriptions/listen streams)
and wakes waiters whenever a count moves. `FaultLayer` is the ASGI app in front of the
MCP app: it records every request, refuses unknown bearer tokens and, in the HTTP fault
modes, answers in the MCP app's place. "repeat-cursor" and "leaky-error" are MCP-level faults: the server's
tools/list handler plays those (mcpservers.py). "wrong-id" answers tools/list with the JSON-RPC id of
another request (one less than asked: the handshake's, or a stateless client's discover), as JSON, and
"wrong-id-sse" as an event stream; "null-schema" lists tools whose inputSchema is null or missing
beside a valid one; "huge-sse" answers every POST with an event stream whose first event never seems to end.
"""

from __future__ import annotations

import base64
import json
import threading
import zlib
from collections.abc import Callable, Collection
from typing import Any, Literal
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Mode = Literal["ok", "garbage", "http500", "http429", "redirect", "repeat-cursor", "bad-tools", "duplicate-tools",
               "leaky-error", "echo-token", "echo-token-name", "huge", "gzip-bomb", "wrong-id", "wrong-id-sse",
               "null-schema", "huge-sse"]
MODES: tuple[str, ...] = ("ok", "garbage", "http500", "http429", "redirect", "repeat-cursor", "bad-tools",
                          "duplicate-tools", "leaky-error", "echo-token", "echo-token-name", "huge", "gzip-bomb",
                          "wrong-id", "wrong-id-sse", "null-schema", "huge-sse")
# The modes that answer tools/list in the MCP app's place (streamable HTTP only).
TOOLS_LIST_MODES = ("bad-tools", "duplicate-tools", "wrong-id", "wrong-id-sse", "null-schema")
HUGE_BYTES = 200 * 1024 * 1024       # what "huge" and "gzip-bomb" answers hold (inflated)
REDIRECT_TARGET = "/moved"
REPEATED_CURSOR = "same-cursor-again"
LEGACY_REFUSAL = json.dumps({"jsonrpc": "2.0", "id": "server-error",
                             "error": {"code": -32600, "message": "Bad Request: Missing session ID"}}).encode()


def bearer_token(headers: Any) -> str | None:
    """The token of an `Authorization: Bearer` header, or None."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class TrafficLog:
    """What a server saw, guarded by the server's own lock so it can read knobs in the same breath."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self._changed = threading.Condition(lock)  # notified whenever a counter moves
        self._list_calls = 0
        self._listens = 0
        self._open_listens = 0
        self._requests = 0
        self._last_headers: dict[str, str] = {}
        self._paths: list[str] = []
        self._methods: list[str] = []
        self._protocol_headers: list[str] = []
        self._connections: set[tuple[str, int]] = set()

    def count_request(self, scope: Scope, headers: dict[str, str]) -> None:
        with self.lock:
            self._requests += 1
            self._last_headers = headers
            self._paths.append(scope["path"])
            self._methods.append(scope["method"])
            self._protocol_headers.append(headers.get("mcp-protocol-version", ""))
            client = scope.get("client")
            if client:
                self._connections.add((client[0], client[1]))
            self._changed.notify_all()

    def count_list_call(self) -> None:
        with self.lock:
            self._list_calls += 1
            self._changed.notify_all()

    def listen_opened(self) -> None:
        with self.lock:
            self._listens += 1
            self._open_listens += 1
            self._changed.notify_all()

    def listen_closed(self) -> None:
        with self.lock:
            self._open_listens -= 1
            self._changed.notify_all()

    @property
    def list_calls(self) -> int:
        with self.lock:
            return self._list_calls

    @property
    def listens(self) -> int:
        with self.lock:
            return self._listens

    @property
    def open_listens(self) -> int:
        with self.lock:
            return self._open_listens

    @property
    def requests(self) -> int:
        with self.lock:
            return self._requests

    @property
    def last_headers(self) -> dict[str, str]:
        with self.lock:
            return dict(self._last_headers)

    @property
    def paths(self) -> list[str]:
        with self.lock:
            return list(self._paths)

    @property
    def methods(self) -> list[str]:
        with self.lock:
            return list(self._methods)

    @property
    def protocol_headers(self) -> list[str]:
        """The MCP-Protocol-Version header of each request ("" when it had none)."""
        with self.lock:
            return list(self._protocol_headers)

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self._connections)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Block until `predicate()` holds (re-checked whenever a count moves), or raise TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(
                    f"condition not met within {timeout}s (requests={self._requests}, list_calls={self._list_calls})"
                )

    def reset(self) -> None:
        with self.lock:
            self._list_calls = self._listens = self._requests = 0     # open listens stay open
            self._last_headers = {}
            self._paths = []
            self._methods, self._protocol_headers = [], []
            self._connections = set()


class FaultLayer:
    """ASGI app: count each request, enforce tokens and inject faults in front of the MCP app.

    `settings()` returns the server's current (mode, tokens); it is called under the
    traffic lock together with the counting, so a request sees the knobs of the moment
    it was counted.
    """

    def __init__(self, inner: ASGIApp, traffic: TrafficLog,
                 settings: Callable[[], tuple[str, Collection[str] | None]], *, legacy: bool = False) -> None:
        self._inner = inner
        self._traffic = traffic
        self._settings = settings
        self._legacy = legacy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self._inner
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with self._traffic.lock:
            self._traffic.count_request(scope, headers)
            mode, tokens = self._settings()
        if tokens is not None and bearer_token(headers) not in tokens:
            await respond(send, 401, b"unauthorized", "text/plain", {"www-authenticate": "Bearer"})
        elif self._legacy and scope["method"] == "POST" and headers.get("mcp-protocol-version") == "2026-07-28":
            # What an mcp 1.x server (handshake era only) answers a stateless request: a new session's id
            # and a JSON-RPC refusal.
            await respond(send, 400, LEGACY_REFUSAL, "application/json",
                          {"mcp-session-id": f"legacy-{self._traffic.requests}"})
        elif mode == "http500":
            await respond(send, 500, b"internal server error", "text/plain")
        elif mode == "http429":
            await respond(send, 429, b"slow down", "text/plain", {"retry-after": "3600"})
        elif mode in ("huge", "gzip-bomb") and scope["method"] == "POST":
            await self._answer_huge(send, bomb=mode == "gzip-bomb")
        elif mode == "huge-sse" and scope["method"] == "POST":
            await self._answer_huge_event(send)
        elif mode in ("echo-token", "echo-token-name") and scope["method"] == "POST":
            await self._answer_echo(receive, send, bearer_token(headers) or "",
                                    in_name=mode == "echo-token-name")
        elif mode == "garbage":
            await respond(send, 200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
        elif mode == "redirect" and scope["path"] != REDIRECT_TARGET:
            await respond(send, 307, b"", "text/plain", {"location": REDIRECT_TARGET})
        elif mode in TOOLS_LIST_MODES and scope["method"] == "POST":
            await self._answer_bad_tools(scope, receive, send, mode)
        else:
            await inner(scope, receive, send)

    async def _answer_huge(self, send: Send, *, bomb: bool) -> None:
        """A tools/list answer of HUGE_BYTES, streamed: plain JSON, or gzip that inflates to it (a bomb)."""
        chunk = b" " * (1024 * 1024)
        headers = [(b"content-type", b"application/json")]
        if bomb:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if bomb:
            packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            await send({"type": "http.response.body", "body": packer.compress(b'{"jsonrpc":"2.0","id":1,'),
                        "more_body": True})
            for _ in range(HUGE_BYTES // len(chunk)):
                piece = packer.compress(chunk)
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": packer.flush()})
            return
        await send({"type": "http.response.body", "body": b'{"jsonrpc":"2.0","id":1,', "more_body": True})
        for _ in range(HUGE_BYTES // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b'"result":{}}'})

    async def _answer_huge_event(self, send: Send) -> None:
        """An event stream whose first event grows to HUGE_BYTES before a blank line ends it."""
        chunk = b" " * (1024 * 1024)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"event: message\ndata: ", "more_body": True})
        for _ in range(HUGE_BYTES // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"\n\n"})

    async def _answer_echo(self, receive: Receive, send: Send, token: str, *, in_name: bool) -> None:
        """A hostile server quoting back the credential it was sent, everywhere it can."""
        body = await read_body(receive)
        rpc = json.loads(body or b"{}")
        encoded = base64.b64encode(token.encode()).decode()
        if rpc.get("method") == "initialize":      # a malformed handshake that quotes it (the SDK's era)
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc.get("id"), "result": {
                "protocolVersion": f"Bearer {token}", "capabilities": {"tools": token},
                "serverInfo": {"name": token, "version": encoded}}}
        elif rpc.get("method") != "tools/list":
            reply = {"jsonrpc": "2.0", "id": rpc.get("id"), "result": {}}
        else:
            self._traffic.count_list_call()
            tools = [{"name": "echo", "title": f"Token {token}",
                      "description": f"Send Bearer {token} along; or {encoded}; or {quote(token, safe='')}",
                      "inputSchema": {"type": "object", "properties": {token: {"type": "string"}}},
                      "icons": [{"src": f"https://example.com/i.png?t={quote(token, safe='')}"}]}]
            if in_name:
                tools.append({"name": f"steal_{token}", "inputSchema": {"type": "object"}})
            reply = {"jsonrpc": "2.0", "id": rpc.get("id"), "result": {
                "tools": tools, "ttlMs": 0, "cacheScope": "private", "resultType": "complete",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": f"srv-{token}", "version": encoded}}}}
        if rpc.get("method") == "initialize":      # as an SSE stream, which the SDK logs line by line
            await respond(send, 200, f"event: message\ndata: {json.dumps(reply)}\n\n".encode(), "text/event-stream")
            return
        await respond(send, 200, json.dumps(reply).encode(), "application/json")

    async def _answer_bad_tools(self, scope: Scope, receive: Receive, send: Send, mode: str) -> None:
        """Answer tools/list as `mode` says (malformed entries, one tool listed twice with two definitions,
        another request's id, tools without an inputSchema object); pass everything else through."""
        body = await read_body(receive)
        try:
            rpc = json.loads(body)
        except ValueError:
            rpc = None
        if isinstance(rpc, dict) and rpc.get("method") == "tools/list":
            self._traffic.count_list_call()
            schema = {"type": "object"}
            smuggled = [{"name": "smuggled", "description": "meant for another request", "inputSchema": schema}]
            tools: list[dict[str, Any]] = {
                "bad-tools": [{"name": 42, "inputSchema": "x"}],
                "duplicate-tools": [{"name": "twice", "description": description, "inputSchema": schema}
                                    for description in ("the harmless one", "the other one")],
                "wrong-id": smuggled, "wrong-id-sse": smuggled,
                "null-schema": [{"name": "fine", "inputSchema": schema}, {"name": "null_schema", "inputSchema": None},
                                {"name": "no_schema", "description": "no inputSchema at all"}],
            }[mode]
            result = {"tools": tools, "ttlMs": 0, "cacheScope": "private", "resultType": "complete"}
            request_id = rpc.get("id")
            if mode.startswith("wrong-id"):
                request_id = request_id - 1 if isinstance(request_id, int) else f"{request_id}-other"
            reply = {"jsonrpc": "2.0", "id": request_id, "result": result}
            if mode == "wrong-id-sse":
                await respond(send, 200, f"event: message\ndata: {json.dumps(reply)}\n\n".encode(),
                              "text/event-stream")
                return
            await respond(send, 200, json.dumps(reply).encode(), "application/json")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._inner(scope, replay, send)


async def read_body(receive: Receive) -> bytes:
    """A request's whole body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(
    send: Send, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> None:
    """A complete plain HTTP answer, sent in the MCP app's place."""
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
