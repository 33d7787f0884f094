"""Fetch a server's whole tool list: one MCP session, every tools/list page, one deadline.

`fetch_catalog` opens a session with the mcp SDK client (streamable HTTP or SSE) over the shared
pool, reads every tools/list page and closes the session, all within one deadline, and raises
`SyncError` (never holding a header value) when anything goes wrong.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types
from mcp.client.client import Client

from ..api import constants as c
from ..api.endpoint import Endpoint, FetchedCatalog
from ..api.errors import SyncError
from ..api.models import ServerInfo
from .pool import HttpPool
from .session import (
    WatchedTransport,
    WireWatch,
    describe_failure,
    mcp_client,
    scrubbed,
    short,
)

logger = logging.getLogger(__name__)

TOOL_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


async def fetch_catalog(endpoint: Endpoint, *, pool: HttpPool, timeout: float,
                        max_pages: int = c.MAX_PAGES) -> FetchedCatalog:
    """Connect, initialize, read every tools/list page and disconnect, all within `timeout` seconds.

    Raises SyncError; its message never holds a header value.
    """
    if endpoint.transport not in c.TRANSPORTS:
        raise SyncError(c.REASON_INVALID_SPEC, f"unknown transport {endpoint.transport!r}")
    watch = WireWatch(endpoint)
    transport = WatchedTransport(pool.transport_for(endpoint.tls), watch)
    catalog: FetchedCatalog | None = None
    deadline = anyio.move_on_after(timeout)
    try:
        with deadline, anyio.CancelScope() as abort:
            watch.scope = abort
            catalog = await _fetch_in_session(endpoint, transport, watch, timeout, max_pages)
    except Exception as exc:  # the SDK's errors come wrapped in (nested) ExceptionGroups
        error = watch.failure or (_timeout(watch, timeout) if deadline.cancel_called else None)
        error = error or describe_failure(exc, watch)
        logger.debug("fetch from %s failed: %s (%s)", watch.url, error.reason, type(exc).__name__)
        raise scrubbed(error, watch) from None
    if catalog is None:  # the deadline passed, or the watch cancelled the session
        raise scrubbed(watch.failure or _timeout(watch, timeout), watch)
    return catalog


def _timeout(watch: WireWatch, timeout: float) -> SyncError:
    return SyncError(c.REASON_TIMEOUT, f"no complete answer from {watch.url} within {timeout:g}s")


async def _fetch_in_session(endpoint: Endpoint, transport: WatchedTransport, watch: WireWatch,
                            seconds: float, max_pages: int) -> FetchedCatalog:
    async with mcp_client(endpoint, transport, timeout=seconds) as client:
        return await _list_all(client, watch, max_pages)


async def _list_all(client: Client, watch: WireWatch, max_pages: int) -> FetchedCatalog:
    async with client:
        server = _server_info(client)
        tools: list[dict[str, Any]] = []
        first_page: dict[str, int] = {}
        cursors: set[str] = set()
        cursor: str | None = None
        pages = 0
        while True:
            if pages >= max_pages:
                raise SyncError(c.REASON_PROTOCOL_ERROR,
                                 f"server listed more than {max_pages} pages of tools; its tools/list does not end")
            watch.phase = f"tools/list (page {pages + 1})"
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            pages += 1
            for tool in page.tools:
                entry = tool_json(tool)
                if entry["name"] in first_page:
                    raise SyncError(c.REASON_PROTOCOL_ERROR,
                                     f"server listed tool {entry['name']!r} twice (pages {first_page[entry['name']]} "
                                     f"and {pages})")
                first_page[entry["name"]] = pages
                tools.append(entry)
            if not page.next_cursor:
                return FetchedCatalog(server=server, tools=tools, pages=pages)
            if page.next_cursor in cursors or page.next_cursor == cursor:
                raise SyncError(c.REASON_PROTOCOL_ERROR,
                                 f"server repeated the pagination cursor {short(page.next_cursor)!r} on tools/list "
                                 f"page {pages}; its pagination never ends")
            cursors.add(page.next_cursor)
            cursor = page.next_cursor


def tool_json(tool: mcp_types.Tool) -> dict[str, Any]:
    """The tool as the server sent it, restricted to the fields the catalog keeps."""
    dumped = tool.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return {key: dumped[key] for key in TOOL_FIELDS if key in dumped}


def _server_info(client: Client) -> ServerInfo:
    info = client.server_info
    tools_capability = client.server_capabilities.tools
    return ServerInfo(
        name=info.name if info else None,
        version=(info.version or None) if info else None,
        protocol_version=client.protocol_version,
        list_changed=bool(tools_capability.list_changed) if tools_capability else None,
    )
