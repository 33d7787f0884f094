"""The only module that speaks MCP: one session to one server, its whole tool list, or a typed error.

`fetch_catalog` opens a session with the mcp SDK client (streamable HTTP or
SSE), reads every tools/list page and closes the session, all within one
deadline. Every HTTP request goes through `HttpPool` (httppool.py), one
connection pool shared by all syncs; a per-fetch `_WatchedTransport` sees each
exchange on the wire, so a refused credential, a redirect or a non-MCP answer
ends the fetch at once with a precise, secret-free `FetchError` (fetcherrors.py)
instead of whatever generic error the SDK would derive from it later.

`HttpPool`, `TLSMaterial` and `FetchError` are re-exported here: a fetch's
callers need nothing else from the modules they live in.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import mcp_types
from mcp.client.client import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from . import __version__, models
from . import constants as c
from .fetcherrors import FetchError
from .httppool import HttpPool, TLSMaterial

__all__ = ["Endpoint", "FetchError", "FetchedCatalog", "HttpPool", "TLSMaterial", "display_url", "fetch_catalog",
           "http_status_error", "mcp_client", "tool_json", "transport_error"]

logger = logging.getLogger(__name__)

TOOL_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
CLIENT_INFO = mcp_types.Implementation(name="toolcatalog", version=__version__)
_MAX_DETAIL = 200


@dataclass(frozen=True)
class Endpoint:
    """A fully resolved endpoint. `headers` may hold secrets: repr shows their names only."""

    url: str
    transport: str = c.TRANSPORT_STREAMABLE_HTTP
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: TLSMaterial | None = None
    # Where the credentials come from, for messages: "spec.auth", or the referenced ToolServer's.
    auth_source: str = "spec.auth"

    def __repr__(self) -> str:
        return (
            f"Endpoint(url={display_url(self.url)!r}, transport={self.transport!r}, "
            f"headers=<{', '.join(sorted(self.headers)) or 'none'}>, tls={self.tls!r})"
        )


@dataclass(frozen=True)
class FetchedCatalog:
    server: models.ServerInfo
    tools: list[dict[str, Any]]
    pages: int


def display_url(url: str) -> str:
    """The URL without userinfo, query or fragment: safe for messages and logs."""
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        return "<invalid url>"


# ------------------------------------------------------------- one fetch's watcher


class _FetchWatch:
    """What one fetch saw on the wire. The first decisive failure cancels the fetch at once."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.url = display_url(endpoint.url)
        self.sse = endpoint.transport == c.TRANSPORT_SSE
        self.failure: FetchError | None = None
        self.last_http_error: int | None = None
        self.scope: anyio.CancelScope | None = None
        self.phase = "the MCP handshake"  # what the server was asked last, for messages
        self.sends_headers = bool(endpoint.headers)
        self.auth_source = endpoint.auth_source
        # Header values to keep out of messages; one the user also wrote into the URL is no secret
        # (static headers like X-Tenant: team-a often are), and sparing it keeps the URL readable.
        self.secrets = [value for value in endpoint.headers.values() if value and value not in endpoint.url]
        with contextlib.suppress(ValueError):
            self.secrets += [secret for secret in (urlsplit(endpoint.url).password,) if secret]

    def fail(self, error: FetchError) -> None:
        if self.failure is None:
            self.failure = error
            if self.scope is not None:
                self.scope.cancel()

    def decisive(self, request: httpx2.Request) -> bool:
        """Session teardown (DELETE) and streamable HTTP's optional GET stream may fail harmlessly."""
        return request.method != "DELETE" and (self.sse or request.method != "GET")

    def observe(self, request: httpx2.Request, response: httpx2.Response) -> None:
        status = response.status_code
        if 300 <= status < 400:
            target = _redirect_target(request, response)
            self.fail(FetchError(c.REASON_PROTOCOL_ERROR,
                                 f"{self.url} redirected (HTTP {status}) to {target}; redirects are not followed: "
                                 f"set spec.url to {target} if that is the MCP endpoint"))
        elif status in (401, 403) and not self.sends_headers:
            self.fail(FetchError(c.REASON_AUTH_FAILED,
                                 f"server requires credentials (HTTP {status}) at {self.url}; set {self.auth_source}.bearerToken "
                                 f"or {self.auth_source}.headers to a Secret key holding them"))
        elif status in (401, 403):
            self.fail(FetchError(c.REASON_AUTH_FAILED,
                                 f"server refused the credentials (HTTP {status}) at {self.url}; check the Secret "
                                 f"referenced by {self.auth_source} (bearerToken/headers) and that it is valid for "
                                 "this server"))
        elif status >= 400:
            self.last_http_error = status
            if self.sse:  # the SDK's SSE transport swallows failed POSTs; never wait for them
                self.fail(http_status_error(status, self.url))
        elif status == 200 and (self.sse == (request.method == "GET")):
            self.last_http_error = None
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            expected = ("text/event-stream",) if self.sse else ("application/json", "text/event-stream")
            if content_type not in expected:
                self.fail(FetchError(c.REASON_PROTOCOL_ERROR,
                                     f"{self.url} answered with {content_type or 'no content type'} instead of MCP "
                                     f"({' or '.join(expected)}); is spec.url the server's MCP endpoint and "
                                     f"spec.transport ({'sse' if self.sse else 'streamable-http'}) right?"))


def _redirect_target(request: httpx2.Request, response: httpx2.Response) -> str:
    location = response.headers.get("location", "")
    try:
        return display_url(str(request.url.join(location))) if location else "(no Location header)"
    except httpx2.InvalidURL:
        return "(an invalid Location header)"


def http_status_error(status: int, url: str) -> FetchError:
    hints = {404: "check the path in spec.url", 429: "the server is rate-limiting requests"}
    hint = hints.get(status) or ("the server is failing or overloaded" if status >= 500
                                 else "the server rejected the MCP request")
    return FetchError(c.REASON_SERVER_UNAVAILABLE, f"{url} answered HTTP {status}; {hint}")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (httpx2 -> httpcore2 -> anyio -> OSError/SSLError)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def transport_error(exc: Exception, url: str, secrets: list[str]) -> FetchError:
    """A FetchError for an httpx2 transport failure (no response at all)."""
    causes = _chain(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return FetchError(c.REASON_TIMEOUT, f"no complete answer from {url} ({type(exc).__name__})")
    tls = next((cause for cause in causes if isinstance(cause, ssl.SSLError)), None)
    if tls is not None:
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or type(tls).__name__
        return FetchError(c.REASON_SERVER_UNAVAILABLE,
                          f"TLS handshake with {url} failed ({_short(str(detail), secrets)}); set spec.tls.caBundle "
                          "to the CA that signed the server's certificate")
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return FetchError(c.REASON_SERVER_UNAVAILABLE,
                          f"connection refused by {url}; is the server running and the port right?")
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return FetchError(c.REASON_SERVER_UNAVAILABLE, f"cannot resolve the host of {url}; check spec.url")
    if any(isinstance(cause, ConnectionResetError) for cause in causes):
        return FetchError(c.REASON_SERVER_UNAVAILABLE, f"connection to {url} was reset by the server")
    if isinstance(exc, httpx2.ConnectError):
        return FetchError(c.REASON_SERVER_UNAVAILABLE, f"cannot connect to {url} ({_short(str(exc), secrets)})")
    return FetchError(c.REASON_SERVER_UNAVAILABLE,
                      f"connection to {url} failed before a complete answer ({type(exc).__name__})")


class _WatchedTransport(httpx2.AsyncBaseTransport):
    """One fetch's view of the shared pool: reports each exchange to the watch; closing it is a no-op."""

    def __init__(self, shared: httpx2.AsyncBaseTransport, watch: _FetchWatch) -> None:
        self._shared = shared
        self._watch = watch

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        decisive = self._watch.decisive(request)
        try:
            response = await self._shared.handle_async_request(request)
        except FetchError as exc:
            self._watch.fail(exc)
            raise
        except httpx2.TransportError as exc:
            if decisive:
                self._watch.fail(transport_error(exc, self._watch.url, self._watch.secrets))
            raise
        if decisive:
            self._watch.observe(request, response)
            if self._watch.failure is not None:  # the SDK never gets to see (and log about) the bad answer
                await response.aclose()
                raise self._watch.failure
        return response

    async def aclose(self) -> None:
        """The shared pool outlives every per-fetch client (the SDK's sse_client closes its client)."""


# ----------------------------------------------------------------------- the fetch


async def fetch_catalog(endpoint: Endpoint, *, pool: HttpPool, timeout: float,
                        max_pages: int = c.MAX_PAGES) -> FetchedCatalog:
    """Connect, initialize, read every tools/list page and disconnect, all within `timeout` seconds.

    Raises FetchError; its message never holds a header value.
    """
    if endpoint.transport not in c.TRANSPORTS:
        raise FetchError(c.REASON_INVALID_SPEC, f"unknown transport {endpoint.transport!r}")
    watch = _FetchWatch(endpoint)
    transport = _WatchedTransport(pool.transport_for(endpoint.tls), watch)
    catalog: FetchedCatalog | None = None
    deadline = anyio.move_on_after(timeout)
    try:
        with deadline, anyio.CancelScope() as abort:
            watch.scope = abort
            catalog = await _fetch_in_session(endpoint, transport, watch, timeout, max_pages)
    except Exception as exc:  # the SDK's errors come wrapped in (nested) ExceptionGroups
        error = watch.failure or (_timeout(watch, timeout) if deadline.cancel_called else None)
        error = error or _error_from_exception(exc, watch)
        logger.debug("fetch from %s failed: %s (%s)", watch.url, error.reason, type(exc).__name__)
        raise _scrubbed(error, watch) from None
    if catalog is None:  # the deadline passed, or the watch cancelled the session
        raise _scrubbed(watch.failure or _timeout(watch, timeout), watch)
    return catalog


def _timeout(watch: _FetchWatch, timeout: float) -> FetchError:
    return FetchError(c.REASON_TIMEOUT, f"no complete answer from {watch.url} within {timeout:g}s")


async def _fetch_in_session(endpoint: Endpoint, transport: _WatchedTransport, watch: _FetchWatch,
                            seconds: float, max_pages: int) -> FetchedCatalog:
    async with mcp_client(endpoint, transport, timeout=seconds) as client:
        return await _list_all(client, watch, max_pages)


@contextlib.asynccontextmanager
async def mcp_client(endpoint: Endpoint, transport: httpx2.AsyncBaseTransport, *, timeout: float,
                     read_timeout: float | None = None,
                     message_handler: MessageHandlerFnT | None = None) -> AsyncIterator[Client]:
    """An SDK Client for `endpoint` (not entered yet) whose every HTTP request goes through `transport`.

    `transport` is the shared pool seen through a watch (`_WatchedTransport`); `read_timeout`
    (default: `timeout`) bounds the wait for the next bytes of a response, long-lived streams included.
    """
    read = timeout if read_timeout is None else read_timeout
    timeouts = httpx2.Timeout(timeout, read=read)

    def make_client(headers: Mapping[str, str] | None = None, timeout: Any = None, auth: Any = None) -> Any:
        """A light per-session client over the shared pool; the SDK's redirect following is off (max 0)."""
        return httpx2.AsyncClient(transport=transport, headers={**endpoint.headers, **(headers or {})},
                                  timeout=timeouts, trust_env=False, follow_redirects=False, max_redirects=0)

    def client_for(mcp_transport: Any) -> Client:
        return Client(mcp_transport, mode="auto", cache=None, client_info=CLIENT_INFO,
                      message_handler=message_handler)

    if endpoint.transport == c.TRANSPORT_SSE:
        yield client_for(sse_client(endpoint.url, timeout=timeout, sse_read_timeout=read,
                                    httpx_client_factory=make_client))
        return
    async with make_client() as http_client:
        yield client_for(streamable_http_client(endpoint.url, http_client=http_client))


async def _list_all(client: Client, watch: _FetchWatch, max_pages: int) -> FetchedCatalog:
    async with client:
        server = _server_info(client)
        tools: list[dict[str, Any]] = []
        first_page: dict[str, int] = {}
        cursors: set[str] = set()
        cursor: str | None = None
        pages = 0
        while True:
            if pages >= max_pages:
                raise FetchError(c.REASON_PROTOCOL_ERROR,
                                 f"server listed more than {max_pages} pages of tools; its tools/list does not end")
            watch.phase = f"tools/list (page {pages + 1})"
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            pages += 1
            for tool in page.tools:
                entry = tool_json(tool)
                if entry["name"] in first_page:
                    raise FetchError(c.REASON_PROTOCOL_ERROR,
                                     f"server listed tool {entry['name']!r} twice (pages {first_page[entry['name']]} "
                                     f"and {pages})")
                first_page[entry["name"]] = pages
                tools.append(entry)
            if not page.next_cursor:
                return FetchedCatalog(server=server, tools=tools, pages=pages)
            if page.next_cursor in cursors or page.next_cursor == cursor:
                raise FetchError(c.REASON_PROTOCOL_ERROR,
                                 f"server repeated the pagination cursor {_short(page.next_cursor)!r} on tools/list "
                                 f"page {pages}; its pagination never ends")
            cursors.add(page.next_cursor)
            cursor = page.next_cursor


def tool_json(tool: mcp_types.Tool) -> dict[str, Any]:
    """The tool as the server sent it, restricted to the fields the catalog keeps."""
    dumped = tool.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return {key: dumped[key] for key in TOOL_FIELDS if key in dumped}


def _server_info(client: Client) -> models.ServerInfo:
    info = client.server_info
    tools_capability = client.server_capabilities.tools
    return models.ServerInfo(
        name=info.name if info else None,
        version=(info.version or None) if info else None,
        protocol_version=client.protocol_version,
        list_changed=bool(tools_capability.list_changed) if tools_capability else None,
    )


# ----------------------------------------------------------------- error mapping


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _error_from_exception(exc: BaseException, watch: _FetchWatch) -> FetchError:
    """Pick the most telling leaf of what the SDK raised and describe it."""
    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, anyio.get_cancelled_exc_class())] or [exc]
    for kind in (FetchError, MCPError, ValidationError, httpx2.TransportError, httpx2.HTTPStatusError):
        found = next((leaf for leaf in leaves if isinstance(leaf, kind)), None)
        if found is not None:
            return _describe(found, watch)
    return _describe(leaves[0], watch)


def _describe(exc: BaseException, watch: _FetchWatch) -> FetchError:
    if isinstance(exc, FetchError):
        return exc
    if watch.last_http_error is not None:  # the SDK turned an HTTP error status into a generic JSON-RPC error
        return http_status_error(watch.last_http_error, watch.url)
    if isinstance(exc, MCPError):
        return FetchError(c.REASON_PROTOCOL_ERROR,
                          f"{watch.url} answered {watch.phase} with JSON-RPC error {exc.code}: "
                          f"{_short(exc.message, watch.secrets)}")
    if isinstance(exc, ValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first.get("loc", ())) or "result"
        return FetchError(c.REASON_PROTOCOL_ERROR,
                          f"{watch.url} sent a malformed answer to {watch.phase} "
                          f"({where}: {_short(str(first.get('msg')), watch.secrets)})")
    if isinstance(exc, httpx2.HTTPStatusError):
        return http_status_error(exc.response.status_code, watch.url)
    if isinstance(exc, httpx2.TransportError):
        return transport_error(exc, watch.url, watch.secrets)
    if isinstance(exc, TimeoutError):
        return FetchError(c.REASON_TIMEOUT, f"no complete answer from {watch.url}")
    return FetchError(c.REASON_PROTOCOL_ERROR,
                      f"unexpected failure during {watch.phase} with {watch.url} "
                      f"({type(exc).__name__}: {_short(str(exc), watch.secrets)})")


def _short(text: str, secrets: Iterable[str] = ()) -> str:
    """One line, no header value (scrubbed before cutting, so no secret is left half-shown), bounded length."""
    line = " ".join(_scrub(str(text), secrets).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        for variant in {secret, secret.strip(), secret.partition(" ")[2].strip()}:
            if len(variant) >= 4:
                text = text.replace(variant, "***")
    return text


def _scrubbed(error: FetchError, watch: _FetchWatch) -> FetchError:
    """Defence in depth: no header value may survive into a message, whoever wrote the text."""
    return FetchError(error.reason, " ".join(_scrub(error.message, watch.secrets).split()))
