"""The floor, measured in the same run as the operator's figures, against the same servers:

- `sdk_session`: a bare mcp SDK session as a user writes one (`async with Client(url)`: connect,
  negotiate, every tools/list page, close); the SDK makes its own HTTP client for it;
- `raw_warm`: the same catalog by hand, one 2026-07-28 stateless tools/list POST per page, on an
  already warm pooled connection: the protocol's floor;
- `open_session`: every tools/list page on an SDK session that is already open.

All on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx2
from mcp.client.client import Client

from bench.common import summary
from toolcatalog.mcp.stateless import sse_events

STATELESS_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json",
                     "mcp-protocol-version": "2026-07-28"}
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"}}


async def _list_all(client: Client) -> int:
    cursor: str | None = None
    count = 0
    while True:
        result = await client.list_tools(cursor=cursor)
        count += len(result.tools)
        cursor = result.next_cursor
        if not cursor:
            return count


async def sdk_session(url: str) -> int:
    async with Client(url) as client:
        return await _list_all(client)


async def raw_pages(http: httpx2.AsyncClient, url: str) -> int:
    cursor: str | None = None
    count, ident = 0, 0
    while True:
        ident += 1
        params: dict[str, Any] = {"_meta": META}
        if cursor:
            params["cursor"] = cursor
        response = await http.post(url, headers={**STATELESS_HEADERS, "mcp-method": "tools/list"},
                                   json={"jsonrpc": "2.0", "id": ident, "method": "tools/list", "params": params})
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            message = next(json.loads(data) for event, data in sse_events(response.text) if event == "message")
        else:
            message = response.json()
        result = message["result"]
        count += len(result["tools"])
        cursor = result.get("nextCursor")
        if not cursor:
            return count


async def _timed(samples: list[float], call: Any, *args: Any) -> int:
    started = time.perf_counter()
    count = await call(*args)
    samples.append((time.perf_counter() - started) * 1000)
    return int(count)


async def measure(urls: dict[int, str], rounds: int) -> dict[str, Any]:
    """Per catalog size: the three floors' p50/p95 in ms."""
    results: dict[str, Any] = {}
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        for tools, url in urls.items():
            figures: dict[str, Any] = {}
            session: list[float] = []
            await sdk_session(url)                      # warm-up: imports, the server's first answers
            for _ in range(rounds):
                assert await _timed(session, sdk_session, url) == tools
            figures["sdk_session_ms"] = summary(session)
            raw: list[float] = []
            await raw_pages(http, url)                  # the connection is warm from here on
            for _ in range(rounds):
                assert await _timed(raw, raw_pages, http, url) == tools
            figures["raw_warm_ms"] = summary(raw)
            open_session: list[float] = []
            async with Client(url, cache=None) as client:
                await _list_all(client)
                for _ in range(rounds):
                    assert await _timed(open_session, _list_all, client) == tools
            figures["open_session_ms"] = summary(open_session)
            results[str(tools)] = figures
    return results
