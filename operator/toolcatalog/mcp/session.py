"""One MCP session's view of the wire, shared by fetch.py and listen.py.

Every HTTP request goes through `HttpPool` (pool.py), one connection pool shared by all syncs; a
per-session `WatchedTransport` sees each exchange on the wire, so a refused credential, a redirect
or a non-MCP answer ends the session at once with a precise, secret-free `SyncError` instead of
whatever generic error the SDK would derive from it later. `mcp_client` builds the SDK Client on
that transport; `describe_failure` turns whatever the SDK raised into one `SyncError`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types
from mcp.client.client import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .. import __version__
from ..api import constants as c
from ..api.endpoint import Endpoint, display_url
from ..api.errors import SyncError

CLIENT_INFO = mcp_types.Implementation(name="toolcatalog", version=__version__)
MAX_DETAIL = 200


class WireWatch:
    """What one fetch saw on the wire. The first decisive failure cancels the fetch at once."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.url = display_url(endpoint.url)
        self.sse = endpoint.transport == c.TRANSPORT_SSE
        self.failure: SyncError | None = None
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

    def fail(self, error: SyncError) -> None:
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
            self.fail(SyncError(c.REASON_PROTOCOL_ERROR,
                                 f"{self.url} redirected (HTTP {status}) to {target}; redirects are not followed: "
                                 f"set spec.url to {target} if that is the MCP endpoint"))
        elif status in (401, 403) and not self.sends_headers:
            self.fail(SyncError(c.REASON_AUTH_FAILED,
                                 f"server requires credentials (HTTP {status}) at {self.url}; "
                                 f"set {self.auth_source}.bearerToken "
                                 f"or {self.auth_source}.headers to a Secret key holding them"))
        elif status in (401, 403):
            self.fail(SyncError(c.REASON_AUTH_FAILED,
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
                self.fail(SyncError(c.REASON_PROTOCOL_ERROR,
                                     f"{self.url} answered with {content_type or 'no content type'} instead of MCP "
                                     f"({' or '.join(expected)}); is spec.url the server's MCP endpoint and "
                                     f"spec.transport ({'sse' if self.sse else 'streamable-http'}) right?"))


def _redirect_target(request: httpx2.Request, response: httpx2.Response) -> str:
    location = response.headers.get("location", "")
    try:
        return display_url(str(request.url.join(location))) if location else "(no Location header)"
    except httpx2.InvalidURL:
        return "(an invalid Location header)"


def http_status_error(status: int, url: str) -> SyncError:
    hints = {404: "check the path in spec.url", 429: "the server is rate-limiting requests"}
    hint = hints.get(status) or ("the server is failing or overloaded" if status >= 500
                                 else "the server rejected the MCP request")
    return SyncError(c.REASON_SERVER_UNAVAILABLE, f"{url} answered HTTP {status}; {hint}")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (httpx2 -> httpcore2 -> anyio -> OSError/SSLError)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def transport_error(exc: Exception, url: str, secrets: list[str]) -> SyncError:
    """A SyncError for an httpx2 transport failure (no response at all)."""
    causes = _chain(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return SyncError(c.REASON_TIMEOUT, f"no complete answer from {url} ({type(exc).__name__})")
    tls = next((cause for cause in causes if isinstance(cause, ssl.SSLError)), None)
    if tls is not None:
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or type(tls).__name__
        return SyncError(c.REASON_SERVER_UNAVAILABLE,
                          f"TLS handshake with {url} failed ({short(str(detail), secrets)}); set spec.tls.caBundle "
                          "to the CA that signed the server's certificate")
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return SyncError(c.REASON_SERVER_UNAVAILABLE,
                          f"connection refused by {url}; is the server running and the port right?")
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"cannot resolve the host of {url}; check spec.url")
    if any(isinstance(cause, ConnectionResetError) for cause in causes):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"connection to {url} was reset by the server")
    if isinstance(exc, httpx2.ConnectError):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"cannot connect to {url} ({short(str(exc), secrets)})")
    return SyncError(c.REASON_SERVER_UNAVAILABLE,
                      f"connection to {url} failed before a complete answer ({type(exc).__name__})")


class WatchedTransport(httpx2.AsyncBaseTransport):
    """One fetch's view of the shared pool: reports each exchange to the watch; closing it is a no-op."""

    def __init__(self, shared: httpx2.AsyncBaseTransport, watch: WireWatch) -> None:
        self._shared = shared
        self._watch = watch

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        decisive = self._watch.decisive(request)
        try:
            response = await self._shared.handle_async_request(request)
        except SyncError as exc:
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


@contextlib.asynccontextmanager
async def mcp_client(endpoint: Endpoint, transport: httpx2.AsyncBaseTransport, *, timeout: float,
                     read_timeout: float | None = None,
                     message_handler: MessageHandlerFnT | None = None) -> AsyncIterator[Client]:
    """An SDK Client for `endpoint` (not entered yet) whose every HTTP request goes through `transport`.

    `transport` is the shared pool seen through a watch (`WatchedTransport`); `read_timeout`
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


def exception_leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from exception_leaves(inner)
    else:
        yield exc


def describe_failure(exc: BaseException, watch: WireWatch) -> SyncError:
    """Pick the most telling leaf of what the SDK raised and describe it."""
    leaves = [leaf for leaf in exception_leaves(exc) if not isinstance(leaf, anyio.get_cancelled_exc_class())] or [exc]
    for kind in (SyncError, MCPError, ValidationError, httpx2.TransportError, httpx2.HTTPStatusError):
        found = next((leaf for leaf in leaves if isinstance(leaf, kind)), None)
        if found is not None:
            return _describe(found, watch)
    return _describe(leaves[0], watch)


def _describe(exc: BaseException, watch: WireWatch) -> SyncError:
    if isinstance(exc, SyncError):
        return exc
    if watch.last_http_error is not None:  # the SDK turned an HTTP error status into a generic JSON-RPC error
        return http_status_error(watch.last_http_error, watch.url)
    if isinstance(exc, MCPError):
        return SyncError(c.REASON_PROTOCOL_ERROR,
                          f"{watch.url} answered {watch.phase} with JSON-RPC error {exc.code}: "
                          f"{short(exc.message, watch.secrets)}")
    if isinstance(exc, ValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first.get("loc", ())) or "result"
        return SyncError(c.REASON_PROTOCOL_ERROR,
                          f"{watch.url} sent a malformed answer to {watch.phase} "
                          f"({where}: {short(str(first.get('msg')), watch.secrets)})")
    if isinstance(exc, httpx2.HTTPStatusError):
        return http_status_error(exc.response.status_code, watch.url)
    if isinstance(exc, httpx2.TransportError):
        return transport_error(exc, watch.url, watch.secrets)
    if isinstance(exc, TimeoutError):
        return SyncError(c.REASON_TIMEOUT, f"no complete answer from {watch.url}")
    return SyncError(c.REASON_PROTOCOL_ERROR,
                      f"unexpected failure during {watch.phase} with {watch.url} "
                      f"({type(exc).__name__}: {short(str(exc), watch.secrets)})")


def short(text: str, secrets: Iterable[str] = ()) -> str:
    """One line, no header value (scrubbed before cutting, so no secret is left half-shown), bounded length."""
    line = " ".join(_scrub(str(text), secrets).split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        for variant in {secret, secret.strip(), secret.partition(" ")[2].strip()}:
            if len(variant) >= 4:
                text = text.replace(variant, "***")
    return text


def scrubbed(error: SyncError, watch: WireWatch) -> SyncError:
    """Defence in depth: no header value may survive into a message, whoever wrote the text."""
    return SyncError(error.reason, " ".join(_scrub(error.message, watch.secrets).split()))
