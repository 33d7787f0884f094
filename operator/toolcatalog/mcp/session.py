"""One MCP session's view of the wire, shared by fetch.py and listen.py.

Every HTTP request goes through `HttpPool` (pool.py), one connection pool shared by all syncs; a
per-session `WatchedTransport` sees each exchange on the wire, so a refused credential, a redirect
or a non-MCP answer ends the session at once with a precise, secret-free `SyncError` instead of
whatever generic error the SDK would derive from it later; in a fetch, every JSON-RPC response must
answer a request the session sent (`RequestLedger`): the SDK would drop any other and wait for the
real one until its timeout. `mcp_client` builds the SDK Client on that transport; `describe_failure`
turns whatever the SDK raised into one `SyncError`.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

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
from .stateless import sse_events
from .wire import (
    Limits,
    RequestLedger,
    content_type_of,
    http_status_error,
    scrub,
    session_secrets,
    short,
    status_error,
    transport_error,
)

CLIENT_INFO = mcp_types.Implementation(name="toolcatalog", version=__version__)
Mode = Literal["auto", "legacy", "2026-07-28"]
INFLATE_PIECE = 256 * 1024


class WireWatch:
    """What one fetch saw on the wire. The first decisive failure cancels the fetch at once."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.url = display_url(endpoint.url)
        self.sse = endpoint.transport == c.TRANSPORT_SSE
        self.failure: SyncError | None = None
        self.last_http_error: int | None = None
        self.scope: anyio.CancelScope | None = None
        self.phase = "the MCP handshake"  # what the server was asked last, for messages
        self.requests = RequestLedger()
        self.endpoint = endpoint
        self.secrets = session_secrets(endpoint)

    def fail_with(self, error: SyncError) -> SyncError:
        self.fail(error)
        return error

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
        error = status_error(request, response, self.endpoint, self.url)
        if error is not None and (status < 400 or status in (401, 403)):
            self.fail(error)        # a redirect, refused credentials: decisive at once
        elif error is not None:
            self.last_http_error = status
            if self.sse:  # the SDK's SSE transport swallows failed POSTs; never wait for them
                self.fail(error)
        elif status == 200 and (self.sse == (request.method == "GET")):
            self.last_http_error = None
            content_type = content_type_of(response)
            expected = ("text/event-stream",) if self.sse else ("application/json", "text/event-stream")
            if content_type not in expected:
                self.fail(SyncError(c.REASON_PROTOCOL_ERROR,
                                    f"{self.url} answered with {content_type or 'no content type'} instead of MCP "
                                    f"({' or '.join(expected)}); is spec.url the server's MCP endpoint and "
                                    f"spec.transport ({'sse' if self.sse else 'streamable-http'}) right?"))


class CappedStream(httpx2.AsyncByteStream):
    """A response body read through the byte caps: it inflates gzip and deflate itself, piece by piece,
    so neither the bytes on the wire nor the inflated ones can grow past `limits` (a gzip bomb included)."""

    def __init__(self, inner: httpx2.AsyncByteStream, encoding: str, limits: Limits, url: str) -> None:
        self._inner, self._limits, self._url = inner, limits, url
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS) \
            if encoding in ("gzip", "deflate") else None
        self.wire = self.body = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self.wire += len(chunk)
            self._limits.check(self.wire, self.body, self._url)
            if self._inflater is None:
                self.body += len(chunk)
                self._limits.check(self.wire, self.body, self._url)
                yield chunk
                continue
            data = chunk
            while data:
                try:
                    piece = self._inflater.decompress(data, INFLATE_PIECE)
                except zlib.error:
                    raise SyncError(c.REASON_PROTOCOL_ERROR, f"{self._url} sent a body that does not inflate") from None
                self.body += len(piece)
                self._limits.check(self.wire, self.body, self._url)
                if piece:
                    yield piece
                data = self._inflater.unconsumed_tail
        self._limits.spent(self.body)

    async def aclose(self) -> None:
        await self._inner.aclose()


class AnswerCheck(httpx2.AsyncByteStream):
    """A response body whose JSON-RPC responses are checked against the session's requests before the SDK
    reads them: an SSE stream event by event, a JSON body whole (it is capped already)."""

    def __init__(self, inner: httpx2.AsyncByteStream, watch: WireWatch, *, sse: bool, expected: Any) -> None:
        self._inner, self._watch, self._sse, self._expected = inner, watch, sse, expected

    def _check(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return          # not JSON: the SDK reports it in its own words
        error = self._watch.requests.received(message, self._watch.url, self._watch.phase, self._expected)
        if error is not None:
            raise self._watch.fail_with(error)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        buffered = ""
        async for chunk in self._inner:
            buffered += decoder.decode(chunk)
            if self._sse:
                complete, separator, buffered = buffered.replace("\r\n", "\n").rpartition("\n\n")
                for event, data in sse_events(complete + separator):
                    if event == "message":
                        self._check(data)
            yield chunk
        if not self._sse:
            self._check(buffered + decoder.decode(b"", final=True))

    async def aclose(self) -> None:
        await self._inner.aclose()


class WatchedTransport(httpx2.AsyncBaseTransport):
    """One session's view of the shared pool: reports each exchange to the watch; when it has `limits` (a
    fetch), reads bodies through the byte caps and checks every JSON-RPC response against the requests
    sent (`AnswerCheck`). Closing it is a no-op."""

    def __init__(self, shared: httpx2.AsyncBaseTransport, watch: WireWatch, limits: Limits | None = None) -> None:
        self._shared = shared
        self._watch = watch
        self._limits = limits

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        decisive = self._watch.decisive(request)
        expected = None
        if self._limits is not None and request.method == "POST":
            with contextlib.suppress(httpx2.RequestNotRead):
                expected = self._watch.requests.sent(request.content)
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
        if self._limits is not None:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", "gzip", "deflate"):
                await response.aclose()
                raise self._watch.fail_with(SyncError(c.REASON_PROTOCOL_ERROR,
                                                      f"{self._watch.url} sent a {encoding}-encoded body, "
                                                      "which was not asked for"))
            assert isinstance(response.stream, httpx2.AsyncByteStream)
            response.stream = CappedStream(response.stream, encoding, self._limits, self._watch.url)
            content_type = content_type_of(response)
            if content_type in ("application/json", "text/event-stream"):
                response.stream = AnswerCheck(response.stream, self._watch, sse=content_type == "text/event-stream",
                                              expected=expected if request.method == "POST" else None)
            headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-encoding"]
            response = httpx2.Response(response.status_code, headers=headers, stream=response.stream,
                                       request=request, extensions=response.extensions)
        return response

    async def aclose(self) -> None:
        """The shared pool outlives every per-fetch client (the SDK's sse_client closes its client)."""


@contextlib.asynccontextmanager
async def mcp_client(endpoint: Endpoint, transport: httpx2.AsyncBaseTransport, *, timeout: float,
                     read_timeout: float | None = None, mode: Mode = "auto",
                     message_handler: MessageHandlerFnT | None = None) -> AsyncIterator[Client]:
    """An SDK Client for `endpoint` (not entered yet) whose every HTTP request goes through `transport`.

    `transport` is the shared pool seen through a watch (`WatchedTransport`); `read_timeout`
    (default: `timeout`) bounds the wait for the next bytes of a response, long-lived streams included.
    """
    read = timeout if read_timeout is None else read_timeout
    timeouts = httpx2.Timeout(timeout, read=read)

    def make_client(headers: Mapping[str, str] | None = None, timeout: Any = None, auth: Any = None) -> Any:
        """A light per-session client over the shared pool; the SDK's redirect following is off (max 0)."""
        return httpx2.AsyncClient(transport=transport, headers={**endpoint.headers, **(headers or {}),
                                                                "accept-encoding": "gzip, deflate"},
                                  timeout=timeouts, trust_env=False, follow_redirects=False, max_redirects=0)

    def client_for(mcp_transport: Any) -> Client:
        return Client(mcp_transport, mode=mode, cache=None, client_info=CLIENT_INFO,
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


def scrubbed(error: SyncError, watch: WireWatch) -> SyncError:
    """Defence in depth: no header value may survive into a message, whoever wrote the text."""
    return SyncError(error.reason, " ".join(scrub(error.message, watch.secrets).split()),
                     retry_after=error.retry_after)
