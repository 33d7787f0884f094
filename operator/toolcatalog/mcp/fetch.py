"""Fetch a server's whole tool list, every definition exactly as the server sent it, within one deadline.

Two eras of MCP, one result:

- 2026-07-28 servers: stateless.py, one POST per page on a pooled connection (and, when whether
  the server notifies of list changes is not known yet, one `server/discover` beside page 1).
- Handshake-era servers (and every SSE endpoint): an SDK session (session.py), asking each page
  for the raw JSON result.

Each endpoint's era is remembered (`EraMemory`), so a sync never probes twice; a refresh forgets it
and probes again. Byte caps hold on every answer and on the whole catalog. Errors are SyncErrors whose
messages never hold a header value. The SDK (and the server stack its client package imports, tens of
MiB) is imported only when an endpoint needs a session: an operator whose servers all speak 2026-07-28
never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from pydantic import TypeAdapter

from ..api import constants as c
from ..api.endpoint import Endpoint, FetchedCatalog, catalog_digest, display_url
from ..api.errors import SyncError
from ..api.models import ServerInfo
from .pool import HttpPool
from .stateless import MODERN_VERSION, SERVER_INFO_KEY, LegacyEra, StatelessCall
from .wire import Limits, header_secrets, scrub, short

logger = logging.getLogger(__name__)

ERA_MEMORY_SECONDS = 3600.0
RAW_RESULT = TypeAdapter(dict[str, Any])


@dataclass
class Era:
    modern: bool
    list_changed: bool | None
    learned_at: float


@dataclass
class EraMemory:
    """What each endpoint speaks, learned by the first fetch and kept for `ttl` seconds."""

    ttl: float = ERA_MEMORY_SECONDS
    _known: dict[tuple[str, str], Era] = field(default_factory=dict)

    def get(self, endpoint: Endpoint) -> Era | None:
        era = self._known.get((endpoint.url, endpoint.transport))
        if era is not None and time.monotonic() - era.learned_at > self.ttl:
            return None
        return era

    def learn(self, endpoint: Endpoint, *, modern: bool, list_changed: bool | None) -> None:
        self._known[(endpoint.url, endpoint.transport)] = Era(modern, list_changed, time.monotonic())


class Pages:
    """Accumulates tools/list pages: every tool once, cursors that end, a bounded number of pages."""

    def __init__(self, url: str, max_pages: int) -> None:
        self.url, self.max_pages = url, max_pages
        self.tools: list[dict[str, Any]] = []
        self.texts: list[bytes] = []        # each page as received: the catalog's digest
        self._first_page: dict[str, int] = {}
        self._cursors: set[str] = set()
        self.count = 0

    def add(self, result: Mapping[str, Any], text: bytes) -> str | None:
        """Take one page's result (and its JSON text as received); the cursor of the next page, if any."""
        self.count += 1
        self.texts.append(text)
        tools = result.get("tools")
        if not isinstance(tools, list):
            raise SyncError(c.REASON_PROTOCOL_ERROR, f"{self.url} answered tools/list without a list of tools")
        for position, tool in enumerate(tools):
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str) or not name:
                raise SyncError(c.REASON_PROTOCOL_ERROR,
                                f"{self.url} listed a tool without a name (page {self.count}, entry {position})")
            if name in self._first_page:
                raise SyncError(c.REASON_PROTOCOL_ERROR,
                                f"server listed tool {short(name)!r} twice (pages {self._first_page[name]} and "
                                f"{self.count}); nothing from this answer is used")
            self._first_page[name] = self.count
            self.tools.append(tool)
        cursor = result.get("nextCursor")
        if cursor in (None, ""):
            return None
        if not isinstance(cursor, str):
            raise SyncError(c.REASON_PROTOCOL_ERROR, f"{self.url} sent a pagination cursor that is not a string")
        if cursor in self._cursors:
            raise SyncError(c.REASON_PROTOCOL_ERROR,
                            f"server repeated the pagination cursor {short(cursor)!r} on tools/list page "
                            f"{self.count}; its pagination never ends")
        if self.count >= self.max_pages:
            raise SyncError(c.REASON_PROTOCOL_ERROR,
                            f"server listed more than {self.max_pages} pages of tools; its tools/list does not end")
        self._cursors.add(cursor)
        return cursor


def _cache_hints(result: Mapping[str, Any]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    ttl = result.get("ttlMs")
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 0:
        hints["ttl_ms"] = ttl
    scope = result.get("cacheScope")
    if scope in ("public", "private"):
        hints["cache_scope"] = scope
    return hints


async def fetch_catalog(endpoint: Endpoint, *, pool: HttpPool, timeout: float, eras: EraMemory | None = None,
                        limits: Limits | None = None, fresh: bool = False,
                        max_pages: int = c.MAX_PAGES) -> FetchedCatalog:
    """Every tool of `endpoint`, raw, within `timeout` seconds; `fresh` forgets what the endpoint spoke."""
    if endpoint.transport not in c.TRANSPORTS:
        raise SyncError(c.REASON_INVALID_SPEC, f"unknown transport {endpoint.transport!r}")
    limits = dataclasses.replace(limits, catalog_bytes=0) if limits is not None else Limits()   # this fetch's count
    url = display_url(endpoint.url)
    known = None if fresh or eras is None else eras.get(endpoint)
    try:
        with anyio.fail_after(timeout):
            if endpoint.transport == c.TRANSPORT_SSE or (known is not None and not known.modern):
                return await _in_session(endpoint, pool, timeout, limits, max_pages)
            try:
                catalog = await _stateless(endpoint, pool, timeout, limits, max_pages,
                                           known.list_changed if known is not None else None)
            except LegacyEra as legacy:
                if legacy.session_id:
                    await forget_session(pool, endpoint, legacy.session_id)
                if eras is not None:
                    eras.learn(endpoint, modern=False, list_changed=None)
                logger.debug("%s speaks a handshake era of MCP: using a session", url)
                return await _in_session(endpoint, pool, timeout, limits, max_pages)
            if eras is not None:
                eras.learn(endpoint, modern=True, list_changed=catalog.server.list_changed)
            return catalog
    except TimeoutError:
        raise SyncError(c.REASON_TIMEOUT, f"no complete answer from {url} within {timeout:g}s") from None
    except SyncError as error:
        raise SyncError(error.reason, " ".join(scrub(error.message, header_secrets(endpoint)).split()),
                        retry_after=error.retry_after) from None


async def _stateless(endpoint: Endpoint, pool: HttpPool, timeout: float, limits: Limits, max_pages: int,
                     list_changed: bool | None) -> FetchedCatalog:
    call = StatelessCall(pool.client_for(endpoint.tls), endpoint, limits, header_secrets(endpoint))
    pages = Pages(call.url, max_pages)
    discover = asyncio.ensure_future(_list_changed(call)) if list_changed is None else None
    try:
        first = await call.call("tools/list", 1, {}, first=True)
        limits.spent(first.body_bytes)
        cursor = pages.add(first.result, first.text)
        while cursor is not None:
            page = await call.call("tools/list", pages.count + 1, {"cursor": cursor}, first=False)
            limits.spent(page.body_bytes)
            cursor = pages.add(page.result, page.text)
        if discover is not None:
            list_changed = await discover
    finally:
        if discover is not None and not discover.done():
            discover.cancel()
            with contextlib.suppress(BaseException):
                await discover
    meta = first.result.get("_meta")
    info = meta.get(SERVER_INFO_KEY) if isinstance(meta, Mapping) else None
    info = info if isinstance(info, Mapping) else {}
    server = ServerInfo(name=_text(info.get("name")), version=_text(info.get("version")),
                        protocol_version=MODERN_VERSION, list_changed=list_changed, **_cache_hints(first.result))
    return FetchedCatalog(server=server, tools=pages.tools, pages=pages.count,
                          digest=catalog_digest(pages.texts, server))


async def _list_changed(call: StatelessCall) -> bool | None:
    """Whether the server notifies of tool-list changes (server/discover); None when it will not say."""
    try:
        page = await call.call("server/discover", 0, {}, first=False)
    except (SyncError, LegacyEra, httpx2.HTTPError):
        return None
    tools = (page.result.get("capabilities") or {}).get("tools") if isinstance(page.result, Mapping) else None
    return bool(tools.get("listChanged")) if isinstance(tools, Mapping) else False


async def forget_session(pool: HttpPool, endpoint: Endpoint, session_id: str) -> None:
    """A handshake-era server opened a session for our stateless probe: close it, best effort."""
    with contextlib.suppress(httpx2.HTTPError, SyncError):
        await pool.client_for(endpoint.tls).delete(endpoint.url, headers={**endpoint.headers,
                                                                           "mcp-session-id": session_id}, timeout=5)


def _text(value: Any) -> str | None:
    """A server's name or version: text, bounded (a hostile server could send megabytes)."""
    return value[: c.SERVER_TEXT_MAX] if isinstance(value, str) and value else None


async def _in_session(endpoint: Endpoint, pool: HttpPool, timeout: float, limits: Limits,
                      max_pages: int) -> FetchedCatalog:
    """A handshake-era session (the SDK's Client), asking for each page's raw JSON result."""
    import mcp_types  # the SDK, lazily: only endpoints that need a session pay for it

    from .session import WatchedTransport, WireWatch, describe_failure, mcp_client, scrubbed

    watch = WireWatch(endpoint)
    transport = WatchedTransport(pool.transport_for(endpoint.tls), watch, limits)
    catalog: FetchedCatalog | None = None
    try:
        with anyio.CancelScope() as abort:
            watch.scope = abort
            async with mcp_client(endpoint, transport, timeout=timeout, mode="legacy") as client, client:
                tools = client.server_capabilities.tools
                server = ServerInfo(name=_text(client.server_info.name) if client.server_info else None,
                                    version=_text(client.server_info.version) if client.server_info else None,
                                    protocol_version=client.protocol_version,
                                    list_changed=bool(tools.list_changed) if tools else None)
                pages = Pages(watch.url, max_pages)
                cursor: str | None = None
                while True:
                    watch.phase = f"tools/list (page {pages.count + 1})"
                    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    # The raw result: the SDK's Tool model would drop fields it does not know.
                    result = await client.session.send_request(
                        mcp_types.ListToolsRequest(params=params), RAW_RESULT)  # type: ignore[type-var]
                    # The SDK parsed the answer already: its JSON again, as the digest's text.
                    cursor = pages.add(result, json.dumps(result, separators=(",", ":"),
                                                          ensure_ascii=False).encode("utf-8", "surrogatepass"))
                    if cursor is None:
                        break
                catalog = FetchedCatalog(server=server, tools=pages.tools, pages=pages.count,
                                         digest=catalog_digest(pages.texts, server))
    except Exception as exc:  # the SDK's errors come wrapped in (nested) ExceptionGroups
        error = watch.failure or describe_failure(exc, watch)
        logger.debug("fetch from %s failed: %s (%s)", watch.url, error.reason, type(exc).__name__)
        raise scrubbed(error, watch) from None
    if catalog is None:  # the watch cancelled the session
        assert watch.failure is not None
        raise scrubbed(watch.failure, watch)
    return catalog
