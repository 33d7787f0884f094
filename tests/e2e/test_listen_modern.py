"""The change listener against 2026-07-28 servers, without the SDK: real SDK servers over real HTTP on loopback.

The listener sends `subscriptions/listen` itself on the pooled HTTP client (mcp/listenmodern.py); handshake-era
servers still get an SDK session. What a user sees: notifications reach the operator, refusals read plainly,
no credential shows in an error or a log line, and an operator whose servers speak 2026-07-28 does not load
the SDK's client (tens of MiB of RSS per operator).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.endpoint import Endpoint
from toolcatalog.api.errors import SyncError
from toolcatalog.mcp.fetch import EraMemory, fetch_catalog
from toolcatalog.mcp.listen import listen_for_tool_changes
from toolcatalog.mcp.pool import HttpPool
from toolcatalog.mcp.wire import Limits
from toolcatalog_dev.mcpserver import McpTestServer, closed_port, make_tools, silent_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60),
              pytest.mark.emulator_only("talks to MCP servers only, no API server: runs once, in make test")]

MODERN = "2026-07-28"
TOKEN = "listen-s3cr3t-Token-4711"


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    http_pool = HttpPool()
    yield http_pool
    await http_pool.aclose()


async def listen_error(endpoint: Endpoint, pool: HttpPool, **options) -> SyncError:
    with pytest.raises(SyncError) as raised:
        await asyncio.wait_for(listen_for_tool_changes(endpoint, pool=pool, on_change=lambda: None, **options), 20)
    return raised.value


async def test_a_2026_server_is_heard_over_one_stateless_post(pool: HttpPool) -> None:
    heard: asyncio.Queue[int] = asyncio.Queue()
    with McpTestServer(tools=make_tools(2), list_changed=True) as server:
        eras = EraMemory()
        catalog = await fetch_catalog(Endpoint(url=server.url), pool=pool, timeout=10, eras=eras)
        assert catalog.server.protocol_version == MODERN and catalog.server.list_changed is True
        before = server.requests
        ready = asyncio.Event()
        listening = asyncio.create_task(listen_for_tool_changes(
            Endpoint(url=server.url), pool=pool, on_change=lambda: heard.put_nowait(1), ready=ready, eras=eras))
        await asyncio.wait_for(ready.wait(), 10)
        await server.wait_until_async(lambda s: s.open_listens == 1)
        for _ in range(3):
            server.notify_tools_changed()
            await asyncio.wait_for(heard.get(), 10)
        # One POST holds the stream: no handshake, no session, no GET stream, the 2026-07-28 header on it.
        assert server.requests == before + 1
        assert server.methods[before:] == ["POST"] and server.protocol_headers[before:] == [MODERN]
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await server.wait_until_async(lambda s: s.open_listens == 0)     # cancelling hangs up


async def test_an_async_on_change_is_awaited_and_a_graceful_close_returns(pool: HttpPool) -> None:
    heard: list[int] = []

    async def on_change() -> None:
        await asyncio.sleep(0)
        heard.append(1)

    with McpTestServer(list_changed=True) as server:
        ready = asyncio.Event()
        listening = asyncio.create_task(listen_for_tool_changes(Endpoint(url=server.url), pool=pool,
                                                                on_change=on_change, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        server.notify_tools_changed()
        await server.wait_until_async(lambda s: s.open_listens == 1)
    # stop() closes listen streams gracefully: the JSON-RPC result for the request ends the stream.
    assert await asyncio.wait_for(listening, 10) is None
    assert heard == [1]


async def test_a_2026_server_that_does_not_listen_is_reported_and_no_session_is_tried(pool: HttpPool) -> None:
    with McpTestServer(list_changed=False) as server:
        ready = asyncio.Event()
        error = await listen_error(Endpoint(url=server.url), pool, ready=ready)
        assert error.reason == c.REASON_PROTOCOL_ERROR and not ready.is_set()
        assert error.message.startswith(f"{server.url} did not accept subscriptions/listen")
        assert "JSON-RPC error -32601" in error.message
        assert server.requests == 1 and server.protocol_headers == [MODERN]     # no fallback to a session


async def test_a_handshake_era_server_falls_back_to_a_session_once_and_is_remembered(pool: HttpPool) -> None:
    heard: asyncio.Queue[int] = asyncio.Queue()
    with McpTestServer(list_changed=True, legacy=True) as server:
        eras = EraMemory()
        eras.learn(Endpoint(url=server.url), modern=True, list_changed=True)    # say it was 2026-07-28 before
        ready = asyncio.Event()
        listening = asyncio.create_task(listen_for_tool_changes(
            Endpoint(url=server.url), pool=pool, on_change=lambda: heard.put_nowait(1), ready=ready, eras=eras,
            ping_interval=0.2))
        await asyncio.wait_for(ready.wait(), 10)
        era = eras.get(Endpoint(url=server.url))
        assert era is not None and not era.modern       # the refusal taught the fetch too
        deadline = asyncio.get_running_loop().time() + 10
        while heard.empty():    # the server learns of the session from its pings: notify until one is heard
            assert asyncio.get_running_loop().time() < deadline, "no notification heard"
            server.notify_tools_changed()
            await asyncio.sleep(0.1)
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)

        # Known now: the next listener goes straight to a session, no 2026-07-28 request first.
        probes = server.protocol_headers.count(MODERN)
        ready = asyncio.Event()
        listening = asyncio.create_task(listen_for_tool_changes(
            Endpoint(url=server.url), pool=pool, on_change=lambda: None, ready=ready, eras=eras))
        await asyncio.wait_for(ready.wait(), 10)
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        assert server.protocol_headers.count(MODERN) == probes


@pytest.mark.parametrize("mode", ["huge", "gzip-bomb", "huge-sse"])
async def test_an_answer_past_the_byte_cap_is_not_read(pool: HttpPool, mode: str) -> None:
    with McpTestServer(list_changed=True) as server:
        server.mode = mode
        error = await listen_error(Endpoint(url=server.url), pool, limits=Limits(max_response_bytes=1024 * 1024))
    assert error.reason == c.REASON_PROTOCOL_ERROR and "larger than 1048576 bytes" in error.message


@pytest.mark.parametrize(("mode", "reason", "words"), [
    ("http500", c.REASON_SERVER_UNAVAILABLE, "answered HTTP 500"),
    ("garbage", c.REASON_PROTOCOL_ERROR, "instead of MCP"),
    ("redirect", c.REASON_PROTOCOL_ERROR, "redirects are not followed"),
])
async def test_bad_answers_read_as_the_fetch_reads_them(pool: HttpPool, mode: str, reason: str, words: str) -> None:
    with McpTestServer(list_changed=True) as server:
        server.mode = mode
        error = await listen_error(Endpoint(url=server.url), pool)
    assert error.reason == reason and words in error.message


async def test_the_connect_deadline_covers_a_server_that_never_answers(pool: HttpPool) -> None:
    with silent_port() as port:     # accepts connections, never answers
        error = await listen_error(Endpoint(url=f"http://127.0.0.1:{port}/mcp"), pool, connect_timeout=0.5)
    assert error.reason == c.REASON_TIMEOUT and "did not start listening within 0.5s" in error.message


async def test_a_refused_connection_is_server_unavailable(pool: HttpPool) -> None:
    with closed_port() as port:
        error = await listen_error(Endpoint(url=f"http://127.0.0.1:{port}/mcp"), pool)
    assert error.reason == c.REASON_SERVER_UNAVAILABLE and "connection refused" in error.message


async def test_no_credential_shows_in_errors_or_logs(pool: HttpPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with McpTestServer(list_changed=True, tokens={TOKEN: make_tools(1)}) as server:
        server.mode = "leaky-error"      # refuses to listen, quoting the caller's Authorization header back
        leaked = await listen_error(Endpoint(url=server.url, headers=headers), pool)
        assert leaked.reason == c.REASON_PROTOCOL_ERROR and "may not listen" in leaked.message
        server.mode = "ok"
        refused = await listen_error(Endpoint(url=server.url, headers={"Authorization": f"Bearer {TOKEN}x"}), pool)
        assert refused.reason == c.REASON_AUTH_FAILED
        silent = await listen_error(Endpoint(url=server.url, headers=headers), pool, idle_timeout=0.5)
        assert silent.reason == c.REASON_TIMEOUT and "silent for 0.5s" in silent.message
        assert server.last_headers["authorization"] == f"Bearer {TOKEN}"     # sent, never shown
    for error in (leaked, refused, silent):
        assert TOKEN not in error.message
    assert caplog.records and not [record for record in caplog.records if TOKEN in record.getMessage()]


async def test_an_operator_side_listener_on_2026_servers_never_loads_the_sdk_client() -> None:
    """Memory, as a user sees it: the SDK's client package imports its server stack, about 25 MiB of RSS per
    operator. Fetching from and listening to a 2026-07-28 server, as the operator does, must not import it."""
    script = textwrap.dedent("""
        import asyncio, json, sys
        from toolcatalog.api.endpoint import Endpoint
        from toolcatalog.mcp.fetch import EraMemory, fetch_catalog
        from toolcatalog.mcp.listen import listen_for_tool_changes
        from toolcatalog.mcp.pool import HttpPool

        async def main():
            pool, eras, heard, ready = HttpPool(), EraMemory(), asyncio.Event(), asyncio.Event()
            endpoint = Endpoint(url=sys.argv[1])
            catalog = await fetch_catalog(endpoint, pool=pool, timeout=10, eras=eras)
            task = asyncio.create_task(listen_for_tool_changes(endpoint, pool=pool, on_change=heard.set,
                                                               ready=ready, eras=eras))
            await asyncio.wait_for(ready.wait(), 10)
            print("listening", flush=True)
            await asyncio.wait_for(heard.wait(), 10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pool.aclose()
            print(json.dumps({"tools": len(catalog.tools), "heard": heard.is_set(),
                              "mcp": sorted(m for m in sys.modules if m == "mcp" or m.startswith("mcp."))}))

        asyncio.run(main())
    """)
    with McpTestServer(tools=make_tools(2), list_changed=True) as server:
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, server.url,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line.strip() == b"listening", (line, await child.stderr.read() if child.stderr else b"")
            server.notify_tools_changed()
            out, err = await asyncio.wait_for(child.communicate(), 30)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["tools"] == 2 and report["heard"] is True
    assert "mcp.client" not in report["mcp"] and report["mcp"] == [], report["mcp"]
