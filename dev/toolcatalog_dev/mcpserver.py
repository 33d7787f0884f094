"""Real MCP servers for tests: the mcp SDK's low-level Server behind uvicorn on loopback.

`McpTestServer` serves streamable HTTP or SSE from a background thread with its
own event loop, so it keeps answering while a test's loop is blocked and when
the operator runs as a subprocess. Its knobs (tools, paging, tokens, delay,
fault mode) can be changed while it runs; its counters tell a test what the
server actually saw. With `list_changed=True` it serves 2026-07-28
`subscriptions/listen`, and `notify_tools_changed()` tells listening clients
that its tool list changed. The HTTP layer that counts requests and injects faults in
front of the MCP app lives in mcpfaults.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

import anyio
import anyio.to_thread
import mcp_types as types
import uvicorn
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.sse import SseServerTransport
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .mcpfaults import (
    MODES,
    REDIRECT_TARGET,
    REPEATED_CURSOR,
    TOOLS_LIST_MODES,
    FaultLayer,
    Mode,
    TrafficLog,
    bearer_token,
)

__all__ = ["MODES", "REDIRECT_TARGET", "REPEATED_CURSOR", "SSE_PATH", "STREAMABLE_PATH", "McpTestServer", "Mode",
           "SelfSignedCert", "closed_port", "free_port", "make_self_signed_cert", "make_tools", "silent_port"]

STREAMABLE_PATH = "/mcp"
SSE_PATH = "/sse"
SSE_MESSAGES_PATH = "/messages/"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_NO_SECURITY = TransportSecuritySettings(enable_dns_rebinding_protection=False)


def make_tools(n: int, prefix: str = "tool") -> list[dict[str, Any]]:
    """n distinct, valid MCP tool definitions, named `<prefix>_000` upwards (sorted order = list order)."""
    return [
        {
            "name": f"{prefix}_{i:03d}",
            "title": f"{prefix.capitalize()} number {i}",
            "description": f"Does thing {i} for the {prefix} tests.",
            "inputSchema": {
                "type": "object",
                "properties": {"value": {"type": "integer", "description": f"input {i}"}},
                "required": ["value"],
            },
            "outputSchema": {"type": "object", "properties": {"result": {"type": "string"}}},
            "annotations": {"readOnlyHint": i % 2 == 0, "destructiveHint": False},
        }
        for i in range(n)
    ]


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections for as long as the block runs.

    The socket stays bound without listening: connects get ECONNREFUSED and no
    other process can take the port meanwhile.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@dataclasses.dataclass(frozen=True)
class SelfSignedCert:
    certfile: str
    keyfile: str
    pem: str


def make_self_signed_cert(directory: str, host: str = "127.0.0.1") -> SelfSignedCert:
    """A throw-away certificate for `host` (IP SAN), self-signed so it is its own CA bundle.

    Uses the openssl CLI (tests skip when it is missing).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl CLI not found")
    certfile, keyfile = f"{directory}/server.crt", f"{directory}/server.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
         "-keyout", keyfile, "-out", certfile],
        check=True, capture_output=True, timeout=30,
    )
    with open(certfile, encoding="ascii") as fh:
        return SelfSignedCert(certfile=certfile, keyfile=keyfile, pem=fh.read())


def _page(tools: list[dict[str, Any]], next_cursor: str | None, ttl_ms: int = 0,
          cache_scope: Literal["public", "private"] = "private") -> types.ListToolsResult:
    """One tools/list page; ttlMs 0 (by default) so a client that honours server cache hints still refetches."""
    return types.ListToolsResult(
        tools=[types.Tool.model_validate(tool) for tool in tools], next_cursor=next_cursor, ttl_ms=ttl_ms,
        cache_scope=cache_scope,
    )


@contextlib.contextmanager
def silent_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers: a hung server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


class _ListChangedServer(Server[Any]):
    """A low-level Server whose handshake-era capabilities say tools.listChanged as configured.

    (The streamable HTTP session manager builds initialization options without
    notification options, so the flag has to come from here.)
    """

    def __init__(self, *args: Any, tools_changed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tools_changed = tools_changed

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      *args: Any, **kwargs: Any) -> Any:
        options = notification_options or NotificationOptions(tools_changed=self._tools_changed)
        return super().create_initialization_options(options, *args, **kwargs)


class McpTestServer:
    """A real MCP server on 127.0.0.1 (or another loopback address) with knobs for faults.

    Use as `with McpTestServer(...) as server:` or `async with ...`; `server.url`
    is the endpoint. Knobs, changeable at any time while it runs (lock-guarded):
    `tools` (list of tool dicts, see make_tools), `page_size` (None: one page),
    `tokens` (token -> its own tool list; requests without a known
    `Authorization: Bearer` get 401), `delay` (seconds before answering
    tools/list), `mode` (see MODES: "ok", "garbage", "http500", "redirect",
    "repeat-cursor", "bad-tools", "duplicate-tools", "wrong-id", "null-schema" [streamable only], "leaky-error":
    tools/list and subscriptions/listen refuse, quoting the caller's Authorization header back),
    `server_name`/`server_version`. Counters: `list_calls`, `listens`, `open_listens`, `requests`,
    `last_headers`, `paths`, `connections`, `tool_calls` (the names of the tools called, in order:
    a call answers with its name and arguments, or an error for a tool it does not list);
    `wait_until[_async]` waits on them.
    `stop()` then `start()` brings it back on the same port.

    `list_changed` (read at start) advertises tools.listChanged and serves
    `subscriptions/listen`; off by default, so that no client keeps a session
    open unless a test asks for it. `notify_tools_changed()` publishes a tools
    list-changed event to every open listen stream; with `notify_on_change`,
    setting `tools` does that too. With `legacy=True` (read at start; streamable
    HTTP only) it refuses `server/discover` and stateless 2026-07-28 requests the way
    an mcp 1.x server does, so clients fall back to the handshake era, where there is no listen:
    `notify_tools_changed()` then sends `notifications/tools/list_changed` to every session that has
    pinged it. `ttl_ms` and `cache_scope` are the cache hints of its 2026-07-28 answers.
    """

    def __init__(
        self,
        *,
        transport: Literal["streamable-http", "sse"] = "streamable-http",
        tools: list[dict[str, Any]] | None = None,
        page_size: int | None = None,
        tokens: dict[str, list[dict[str, Any]]] | None = None,
        delay: float = 0.0,
        mode: Mode = "ok",
        server_name: str = "test-mcp",
        server_version: str = "1.0.0",
        list_changed: bool = False,
        notify_on_change: bool = False,
        legacy: bool = False,
        ttl_ms: int = 0,
        cache_scope: Literal["public", "private"] = "private",
        host: str = "127.0.0.1",
        port: int | None = None,
        cert: SelfSignedCert | None = None,
        tcp_nodelay: bool = True,
    ) -> None:
        if transport not in ("streamable-http", "sse"):
            raise ValueError(f"unknown transport {transport!r}")
        if legacy and transport != "streamable-http":
            raise ValueError("legacy=True needs streamable HTTP (a refused discover locks an SSE session modern)")
        self.transport = transport
        self.host = host
        self._port = port
        self.cert = cert
        self.tcp_nodelay = tcp_nodelay
        self._active_lists = 0
        self.max_active_lists = 0  # the most tools/list calls served at once (concurrency of clients)
        self._lock = threading.RLock()
        self._traffic = TrafficLog(self._lock)  # the counters; shares the knobs' lock
        self._tools = copy.deepcopy(tools if tools is not None else make_tools(3))
        self._page_size = page_size
        self._tokens = copy.deepcopy(tokens)
        self._delay = delay
        self._mode: str = "ok"
        self.mode = mode
        self._mcp_server: Server[Any] | None = None
        self._server_name = server_name
        self._server_version = server_version
        self.list_changed = list_changed  # read at start()
        self.notify_on_change = notify_on_change
        self.legacy = legacy  # read at start()
        self.ttl_ms, self.cache_scope = ttl_ms, cache_scope     # the cache hints of 2026-07-28 answers
        self._legacy_sessions: dict[str, Any] = {}  # by Mcp-Session-Id: handshake-era sessions that pinged
        self._tool_calls: list[str] = []
        self._listen_handler: ListenHandler | None = None
        self._bus: InMemorySubscriptionBus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the server thread's loop, while it runs
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._startup_failed: str | None = None

    # ------------------------------------------------------------------ knobs

    def _get(self, name: str) -> Any:
        with self._lock:
            return getattr(self, name)

    def _set(self, name: str, value: Any) -> None:
        with self._lock:
            setattr(self, name, value)

    @property
    def tools(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._tools)

    @tools.setter
    def tools(self, value: list[dict[str, Any]]) -> None:
        self._set("_tools", copy.deepcopy(value))
        if self.notify_on_change:
            self.notify_tools_changed()

    def notify_tools_changed(self) -> None:
        """Publish a tools list-changed event to every open `subscriptions/listen` stream (2026-07-28).

        Runs on the server's own loop (the bus is not thread-safe); returns once it was published.
        """
        with self._lock:
            loop, bus = self._loop, self._bus
        if loop is None or bus is None:
            raise RuntimeError("notify_tools_changed needs a running server started with list_changed=True")
        asyncio.run_coroutine_threadsafe(self._publish(bus), loop).result(START_TIMEOUT)

    async def _publish(self, bus: InMemorySubscriptionBus) -> None:
        await bus.publish(ToolsListChanged())
        with self._lock:
            sessions = list(self._legacy_sessions.values())
        for session in sessions:
            with contextlib.suppress(Exception):  # a session that went away
                await session.send_tool_list_changed()

    @property
    def page_size(self) -> int | None:
        return self._get("_page_size")  # type: ignore[no-any-return]

    @page_size.setter
    def page_size(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError("page_size must be >= 1 or None")
        self._set("_page_size", value)

    @property
    def tokens(self) -> dict[str, list[dict[str, Any]]] | None:
        with self._lock:
            return copy.deepcopy(self._tokens)

    @tokens.setter
    def tokens(self, value: dict[str, list[dict[str, Any]]] | None) -> None:
        self._set("_tokens", copy.deepcopy(value))

    @property
    def delay(self) -> float:
        return self._get("_delay")  # type: ignore[no-any-return]

    @delay.setter
    def delay(self, value: float) -> None:
        self._set("_delay", float(value))

    @property
    def mode(self) -> str:
        return self._get("_mode")  # type: ignore[no-any-return]

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; one of {MODES}")
        if value in TOOLS_LIST_MODES and self.transport != "streamable-http":
            raise ValueError(f"mode {value!r} rewrites HTTP answers: streamable HTTP only")
        self._set("_mode", value)

    @property
    def server_name(self) -> str:
        return self._get("_server_name")  # type: ignore[no-any-return]

    @server_name.setter
    def server_name(self, value: str) -> None:
        self._set("_server_name", value)
        self._apply_identity()

    @property
    def server_version(self) -> str:
        return self._get("_server_version")  # type: ignore[no-any-return]

    @server_version.setter
    def server_version(self, value: str) -> None:
        self._set("_server_version", value)
        self._apply_identity()

    def _apply_identity(self) -> None:
        """Name and version go live at once: the SDK server caches its 2026-era identity stamp."""
        with self._lock:
            server = self._mcp_server
            if server is not None:
                server.name, server.version = self._server_name, self._server_version
                server.__dict__.pop("_server_info_stamp_source", None)

    # --------------------------------------------------------------- counters

    @property
    def list_calls(self) -> int:
        """tools/list requests the MCP server answered (or started answering)."""
        return self._traffic.list_calls

    @property
    def listens(self) -> int:
        """`subscriptions/listen` requests the server accepted (each one opens a stream)."""
        return self._traffic.listens

    @property
    def open_listens(self) -> int:
        """`subscriptions/listen` streams open right now."""
        return self._traffic.open_listens

    @property
    def requests(self) -> int:
        """HTTP requests that reached the server, of any method and path."""
        return self._traffic.requests

    @property
    def last_headers(self) -> dict[str, str]:
        """Headers of the last HTTP request, names lower-cased."""
        return self._traffic.last_headers

    @property
    def methods(self) -> list[str]:
        return self._traffic.methods

    @property
    def protocol_headers(self) -> list[str]:
        return self._traffic.protocol_headers

    @property
    def paths(self) -> list[str]:
        """Paths of all HTTP requests, in arrival order."""
        return self._traffic.paths

    @property
    def connections(self) -> int:
        """Distinct TCP connections (client address, port) that carried requests."""
        return self._traffic.connections

    def wait_until(self, predicate: Callable[[McpTestServer], bool], timeout: float = 10.0) -> None:
        """Block until `predicate(server)` holds (re-checked on every request), or raise TimeoutError."""
        self._traffic.wait_until(lambda: predicate(self), timeout)

    async def wait_until_async(self, predicate: Callable[[McpTestServer], bool], timeout: float = 10.0) -> None:
        """`wait_until` without blocking the event loop (the operator may run on it)."""
        await anyio.to_thread.run_sync(self.wait_until, predicate, timeout)

    @property
    def tool_calls(self) -> list[str]:
        """Names of the tools/call requests that reached the server, in arrival order."""
        with self._lock:
            return list(self._tool_calls)

    def reset_counters(self) -> None:
        self._traffic.reset()
        with self._lock:
            self._tool_calls = []

    # -------------------------------------------------------------- addresses

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server was never started: no port yet")
        return self._port

    @property
    def base_url(self) -> str:
        return f"{'https' if self.cert else 'http'}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The endpoint a client configures (spec.url)."""
        return self.base_url + (STREAMABLE_PATH if self.transport == "streamable-http" else SSE_PATH)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------- MCP server

    def _visible_tools(self, request: Request | None) -> list[dict[str, Any]]:
        with self._lock:
            if self._tokens is None:
                return copy.deepcopy(self._tools)
            token = bearer_token(request.headers) if request is not None else None
            return copy.deepcopy(self._tokens.get(token or "", []))

    def _build_mcp_server(self) -> Server[Any]:
        def remember_session(ctx: Any) -> None:
            """A handshake-era session (it has an Mcp-Session-Id) hears of list changes, as every session of a
            real server does, on its own GET stream: a gateway's upstream session too, not only a pinging one."""
            request = getattr(ctx, "request", None)
            session_id = request.headers.get("mcp-session-id") if request is not None else None
            if session_id:
                with self._lock:
                    self._legacy_sessions[session_id] = ctx.session

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            remember_session(ctx)
            with self._lock:
                self._traffic.count_list_call()
                delay, page_size, mode = self._delay, self._page_size, self._mode
                self._active_lists += 1
                self.max_active_lists = max(self.max_active_lists, self._active_lists)
            try:
                if delay > 0:
                    await anyio.sleep(delay)
            finally:
                with self._lock:
                    self._active_lists -= 1
            request = getattr(ctx, "request", None)
            if mode == "leaky-error":  # a careless server that quotes the caller's credentials back
                auth = request.headers.get("authorization", "") if request is not None else ""
                raise MCPError(code=-32603, message=f"credentials {auth!r} may not list tools")
            tools = self._visible_tools(request)
            cursor = getattr(params, "cursor", None) if params is not None else None
            size = page_size or 1
            if mode == "repeat-cursor":  # page 1, then page 2 for ever, always with the same cursor
                offset = 0 if cursor is None else size
                return _page(tools[offset : offset + size], REPEATED_CURSOR, self.ttl_ms, self.cache_scope)
            start = 0
            if cursor is not None:
                if not cursor.isdigit():
                    raise MCPError(code=-32602, message=f"invalid cursor {cursor!r}")
                start = int(cursor)
            if page_size is None:
                return _page(tools[start:], None, self.ttl_ms, self.cache_scope)
            end = start + page_size
            return _page(tools[start:end], str(end) if end < len(tools) else None, self.ttl_ms, self.cache_scope)

        bus, listen_handler, listen = None, None, None
        if self.list_changed:  # at 2026-07-28, tools.listChanged is advertised exactly when listen is served
            bus = InMemorySubscriptionBus()
            listen_handler = ListenHandler(bus)

            async def listen(ctx: Any, params: types.SubscriptionsListenRequestParams) -> Any:
                request = getattr(ctx, "request", None)
                if self.mode == "leaky-error":  # quotes the caller's credentials back, refusing to listen
                    auth = request.headers.get("authorization", "") if request is not None else ""
                    raise MCPError(code=-32603, message=f"credentials {auth!r} may not listen")
                self._traffic.listen_opened()
                try:
                    return await listen_handler(ctx, params)
                finally:  # the client went away, or the stream was closed
                    self._traffic.listen_closed()

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            remember_session(ctx)
            with self._lock:
                self._tool_calls.append(params.name)
            if params.name not in {tool["name"] for tool in self._visible_tools(getattr(ctx, "request", None))}:
                raise MCPError(code=types.INVALID_PARAMS, message=f"unknown tool {params.name!r}")
            text = f"{params.name} called with {json.dumps(params.arguments or {}, sort_keys=True)}"
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                        structured_content={"result": text})

        async def ping(ctx: Any, params: Any) -> types.EmptyResult:
            with self._lock:  # any request's session reaches the connection's own stream
                self._legacy_sessions[ctx.request.headers.get("mcp-session-id", "")] = ctx.session
            return types.EmptyResult()

        server = _ListChangedServer(
            self.server_name, version=self.server_version, on_list_tools=list_tools, on_call_tool=call_tool,
            tools_changed=self.list_changed,
            on_subscriptions_listen=listen, on_ping=ping if self.legacy else None,
        )
        if self.legacy:
            async def refuse_discover(ctx: Any, params: Any) -> Any:
                raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found")

            server.add_request_handler("server/discover", types.RequestParams, refuse_discover)
        with self._lock:
            self._mcp_server = server
            self._bus = bus
            self._listen_handler = listen_handler
            self._legacy_sessions = {}
        return server

    def _build_app(self) -> ASGIApp:
        server = self._build_mcp_server()
        if self.transport == "streamable-http":
            inner: ASGIApp = server.streamable_http_app(
                streamable_http_path=STREAMABLE_PATH, transport_security=_NO_SECURITY, host=self.host
            )
        else:
            sse = SseServerTransport(SSE_MESSAGES_PATH, security_settings=_NO_SECURITY)

            async def handle_sse(request: Request) -> Response:
                async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
                    await server.run(read, write, server.create_initialization_options())
                return Response()

            inner = Starlette(
                routes=[
                    Route(SSE_PATH, endpoint=handle_sse, methods=["GET"]),
                    Mount(SSE_MESSAGES_PATH, app=sse.handle_post_message),
                ]
            )
        return self._watch_startup(FaultLayer(inner, self._traffic, self._fault_settings, legacy=self.legacy))

    def _fault_settings(self) -> tuple[str, dict[str, list[dict[str, Any]]] | None]:
        with self._lock:
            return self._mode, self._tokens

    # ------------------------------------------------------------- start-up

    def _watch_startup(self, app: ASGIApp) -> ASGIApp:
        """Let start() know when the app's lifespan start-up completed or failed."""

        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            await app(scope, receive, self._lifespan_send(send) if scope["type"] == "lifespan" else send)

        return watched

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                self._startup_failed = str(message.get("message"))
                self._started.set()
            elif message["type"] == "lifespan.startup.complete":
                with self._lock:
                    self._loop = asyncio.get_running_loop()
                self._started.set()
            await send(message)

        return wrapped

    # ------------------------------------------------------------- lifecycle

    def start(self) -> McpTestServer:
        """Start serving (again, on the same port if it ran before); returns when requests are answered."""
        if self.running:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.tcp_nodelay:  # accepted sockets inherit it; uvicorn's default is Nagle (+40 ms a response)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self._port or 0))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._build_app(),
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
            ssl_certfile=self.cert.certfile if self.cert else None,
            ssl_keyfile=self.cert.keyfile if self.cert else None,
        )
        self._uvicorn = uvicorn.Server(config)
        self._started.clear()
        self._startup_failed = None
        uv = self._uvicorn
        self._thread = threading.Thread(
            target=lambda: asyncio.run(uv.serve(sockets=[sock])),
            name=f"mcp-test-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        if not self._started.wait(START_TIMEOUT) or self._startup_failed is not None:
            self.stop()
            raise RuntimeError(f"MCP test server did not start: {self._startup_failed or 'timed out'}")
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; the port is refused until start()."""
        with self._lock:
            loop, listen_handler, self._loop = self._loop, self._listen_handler, None
        if loop is not None and listen_handler is not None:
            with contextlib.suppress(RuntimeError):  # end listen streams gracefully: no wait for them to drain
                loop.call_soon_threadsafe(listen_handler.close)
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError("MCP test server did not stop in time")
        self._thread = None
        self._uvicorn = None

    def __enter__(self) -> McpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> McpTestServer:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await anyio.to_thread.run_sync(self.stop)
