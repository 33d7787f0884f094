"""The HTTP connection pool shared by every catalog fetch, dialling only where egress permits.

One `HttpPool` serves all syncs (not one client per session): one httpx2 transport, with
its own TCP/TLS connection pool (httpcore2's), per distinct TLS setting. When an egress policy
is set, the pool dials through `_EgressCheckedBackend`, which connects only to the addresses the
policy checked (so a name cannot resolve elsewhere between check and connect); a denial
surfaces as a `SyncError` from the request. session.py wraps a per-fetch view around it.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

import httpcore2
import httpx2

from ..api import constants as c
from ..api.endpoint import TLSMaterial
from ..api.errors import SyncError
from .egress import EgressPolicy


class _EgressCheckedBackend(httpcore2.AsyncNetworkBackend):
    """Connects only to addresses the egress policy permits, and to exactly those it checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        last_error: Exception | None = None
        for address in await self._policy.permitted_addresses(host, port):
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except httpcore2.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # permitted_addresses never returns an empty list
        raise last_error

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore2's errors as httpx2 raises them (the same names in both), the most specific first: what the
# MCP SDK and session.py catch.
_ERRORS: tuple[tuple[type[Exception], type[httpx2.HTTPError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout), (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout), (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError), (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError), (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError), (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError), (httpcore2.ProtocolError, httpx2.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise       # anything else as it is: an egress denial is a SyncError


class _ResponseStream(httpx2.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _as_httpx_errors():
                await close()


class _PoolTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport (its public extension point) over an httpcore2 connection pool of our own,
    which dials through the egress-checked network backend (httpcore2's public `network_backend`;
    httpx2's own transport has no such parameter). HTTP/1.1, no proxy, no retries."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx2.Limits, egress: EgressPolicy | None) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_EgressCheckedBackend(egress) if egress is not None else None)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        url = request.url
        forwarded = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(forwarded)
        assert isinstance(response.stream, AsyncIterable)
        return httpx2.Response(status_code=response.status, headers=response.headers,
                               stream=_ResponseStream(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        with _as_httpx_errors():
            await self._pool.aclose()

    def connection_states(self) -> list[str]:
        return ["idle" if conn.is_idle() else "closed" if conn.is_closed() else "active"
                for conn in self._pool.connections]


class HttpPool:
    """One shared HTTP connection pool for all syncs (not one client per session).

    One transport (its own TCP/TLS pool) per distinct TLS setting; every fetch
    gets a light per-fetch client over it, whose closing leaves the pool open.
    """

    def __init__(self, *, egress: EgressPolicy | None = None, max_connections: int = 100) -> None:
        self.egress = egress
        self._limits = httpx2.Limits(max_connections=max_connections,
                                     max_keepalive_connections=max(1, max_connections // 4), keepalive_expiry=15.0)
        self._transports: dict[tuple[str, bool], _PoolTransport] = {}
        self._clients: dict[tuple[str, bool], httpx2.AsyncClient] = {}
        self._closed = False

    def transport_for(self, tls: TLSMaterial | None) -> _PoolTransport:
        """The shared transport for these TLS settings, created on first use."""
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        tls = tls or TLSMaterial()
        key = tls.pool_key()
        transport = self._transports.get(key)
        if transport is None:
            transport = _PoolTransport(_ssl_context(tls), self._limits, self.egress)
            self._transports[key] = transport
        return transport

    def client_for(self, tls: TLSMaterial | None) -> httpx2.AsyncClient:
        """A long-lived client over the shared transport for these TLS settings (for raw requests):
        no redirects followed, no proxy from the environment, timeouts set per request."""
        key = (tls or TLSMaterial()).pool_key()
        client = self._clients.get(key)
        if client is None:
            client = httpx2.AsyncClient(transport=self.transport_for(tls), follow_redirects=False, max_redirects=0,
                                        trust_env=False)
            self._clients[key] = client
        return client

    def connection_states(self) -> dict[str, int]:
        """Counts of pooled connections by state (idle, active, closed), over all TLS settings."""
        counts = {"idle": 0, "active": 0, "closed": 0}
        for transport in self._transports.values():
            for state in transport.connection_states():
                counts[state] += 1
        return counts

    async def aclose(self) -> None:
        self._closed = True
        self._clients = {}      # they share the transports closed below
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()


def _ssl_context(tls: TLSMaterial) -> ssl.SSLContext:
    """The context for these settings; a CA bundle that is no PEM certificate is the spec's fault."""
    if tls.insecure_skip_verify:
        return httpx2.create_ssl_context(verify=False)
    if not tls.ca_pem:
        return httpx2.create_ssl_context()
    try:
        return ssl.create_default_context(cadata=tls.ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise SyncError(c.REASON_INVALID_SPEC,
                        f"spec.tls.caBundle does not hold a usable PEM CA certificate "
                        f"({type(exc).__name__})") from None
