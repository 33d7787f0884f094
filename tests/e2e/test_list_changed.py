"""The `list-changed` trigger end to end: servers that push tool-list changes get resynced promptly.

The MCP test servers serve 2026-07-28 `subscriptions/listen` when `list_changed=True`; their
`listens` / `open_listens` counters show the operator's listeners from the server's side.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from tests.support.k8s import CC, CM, SECRETS, TS, condition, connectorconfig, secret, toolserver, wait_until
from toolcatalog.api.endpoint import Endpoint
from toolcatalog.api.errors import SyncError as FetchError
from toolcatalog.mcp.listen import listen_for_tool_changes
from toolcatalog.mcp.pool import HttpPool
from toolcatalog_dev.mcpserver import McpTestServer, make_tools

pytestmark = pytest.mark.e2e


def synced(obj):
    return condition(obj, "Synced").get("status") == "True"


def tool_names(obj):
    return [tool["name"] for tool in obj["status"]["tools"] if tool["available"]]


def resynced_with(tool):
    """Synced by a list-changed sync that saw `tool`."""
    return lambda obj: (synced(obj) and obj["status"]["lastSync"]["trigger"] == "list-changed"
                        and tool in tool_names(obj))


async def cached_names(api, name):
    return [tool["name"] for tool in json.loads((await api.get(CM, api.ns, name))["data"]["tools.json"])["tools"]]


def bearer(secret_name):
    return {"bearerToken": {"secretKeyRef": {"name": secret_name, "key": "token"}}}


async def test_a_notification_resyncs_both_kinds_with_trigger_list_changed(api, operator, waiter):
    with McpTestServer(tools=make_tools(2), list_changed=True, notify_on_change=True) as server:
        await api.create(toolserver("lc", server.url))
        await api.create(connectorconfig("lc-alice", toolServerRef={"name": "lc"}))
        first = await waiter.status(TS, "lc", synced, "first sync", operator=operator)
        await waiter.status(CC, "lc-alice", synced, "first sync", operator=operator)
        assert first["status"]["server"]["listChanged"] is True
        # The ConnectorConfig reads the ToolServer's endpoint with its credentials: one listener serves both.
        await server.wait_until_async(lambda s: s.open_listens == 1)

        server.tools = make_tools(3)        # notifies: notify_on_change
        ts = await waiter.status(TS, "lc", resynced_with("tool_002"), "list-changed resync", operator=operator)
        cc = await waiter.status(CC, "lc-alice", resynced_with("tool_002"), "list-changed resync",
                                 operator=operator)
        assert server.listens == 1 and server.open_listens == 1
    assert tool_names(ts) == tool_names(cc) == ["tool_000", "tool_001", "tool_002"]
    assert ts["status"]["toolCount"] == 3 and ts["status"]["lastSync"]["result"] == "Succeeded"
    cached = await cached_names(api, "toolserver-lc")
    assert cached == await cached_names(api, "connectorconfig-lc-alice") == tool_names(ts)
    changed = await waiter.events("lc", "ToolsChanged")
    assert "1 new (tool_002)" in changed[0]["message"] and "(trigger: list-changed)" in changed[0]["message"]


async def test_a_burst_of_notifications_is_one_resync(api, operator, waiter):
    with McpTestServer(tools=make_tools(2), list_changed=True) as server:
        await api.create(toolserver("burst", server.url))
        await waiter.status(TS, "burst", synced, "first sync", operator=operator)
        await server.wait_until_async(lambda s: s.open_listens == 1)
        calls = server.list_calls

        server.tools = make_tools(3)
        for _ in range(5):
            server.notify_tools_changed()
        await waiter.status(TS, "burst", resynced_with("tool_002"), "resync after the burst", operator=operator)
        # A marker: one more change, notified once, and its resync comes after the burst's.
        server.tools = make_tools(4)
        server.notify_tools_changed()
        await waiter.status(TS, "burst", resynced_with("tool_003"), "resync after the marker", operator=operator)
        burst_syncs = server.list_calls - calls - 1
    assert 1 <= burst_syncs <= 2
    # kopf posts Events asynchronously: wait for the marker's, then count.
    async def changes_after_marker():
        changes = [e for e in await api.events(api.ns, "burst") if e["reason"] == "ToolsChanged"]
        return changes if any("tool_003" in e["message"] for e in changes) else None

    changes = await wait_until(changes_after_marker, what="the marker's ToolsChanged event")
    assert len(changes) == 2        # one for the burst's change, one for the marker's


async def test_a_server_without_list_changed_gets_no_listener(api, operator, waiter):
    with McpTestServer(list_changed=False) as quiet, McpTestServer(list_changed=True) as chatty:
        await api.create(toolserver("quiet", quiet.url))
        obj = await waiter.status(TS, "quiet", synced, "first sync", operator=operator)
        assert obj["status"]["server"]["listChanged"] is False
        requests = quiet.requests
        # A listener starts as soon as a sync ends: by the time a resource created later listens,
        # one for `quiet` would have reached its server long ago.
        await api.create(toolserver("chatty", chatty.url))
        await waiter.status(TS, "chatty", synced, "first sync", operator=operator)
        await chatty.wait_until_async(lambda s: s.open_listens == 1)
        assert quiet.requests == requests and quiet.listens == 0


async def test_the_listener_reconnects_after_a_server_restart(api, operator, waiter):
    with McpTestServer(tools=make_tools(2), list_changed=True) as server:
        await api.create(toolserver("restart", server.url))
        await waiter.status(TS, "restart", synced, "first sync", operator=operator)
        await server.wait_until_async(lambda s: s.open_listens == 1)

        await asyncio.to_thread(server.stop)
        server.tools = make_tools(3)        # changed while it was down: nobody was told
        await asyncio.to_thread(server.start)
        # Listening again, the operator resyncs once: the stream has no replay of what it missed.
        await waiter.status(TS, "restart", resynced_with("tool_002"), "resync after reconnecting",
                            operator=operator)
        await server.wait_until_async(lambda s: s.listens >= 2 and s.open_listens == 1)

        server.tools = make_tools(4)
        server.notify_tools_changed()
        obj = await waiter.status(TS, "restart", resynced_with("tool_003"), "resync after a notification",
                                  operator=operator)
    assert tool_names(obj) == ["tool_000", "tool_001", "tool_002", "tool_003"]


async def test_resources_with_the_same_credentials_share_one_stream_and_other_credentials_get_their_own(
        api, operator, waiter):
    alice, bob = "lc-alice-token-3e8f0", "lc-bob-token-77c1d"
    with McpTestServer(tokens={alice: make_tools(2), bob: make_tools(2)}, list_changed=True) as server:
        await api.create(secret("lc-alice", {"token": alice}))
        await api.create(secret("lc-bob", {"token": bob}))
        names = {"share-1": "lc-alice", "share-2": "lc-alice", "share-3": "lc-alice", "other": "lc-bob"}
        for name, secret_name in names.items():
            await api.create(toolserver(name, server.url, auth=bearer(secret_name)))
        for name in names:
            await waiter.status(TS, name, synced, "first sync", operator=operator)
        # Three resources read the endpoint with Alice's token, one with Bob's: two streams.
        await server.wait_until_async(lambda s: s.open_listens == 2)

        server.tokens = {alice: make_tools(3), bob: make_tools(3)}
        server.notify_tools_changed()
        for name in names:
            await waiter.status(TS, name, resynced_with("tool_002"), "list-changed resync", operator=operator)
        assert server.listens == 2 and server.open_listens == 2

        # The stream stays while one of its resources still reads it, and goes with the last.
        await api.delete(TS, api.ns, "share-1")
        await api.delete(TS, api.ns, "share-2")
        await api.delete(TS, api.ns, "other")
        await server.wait_until_async(lambda s: s.open_listens == 1)
        server.tokens = {alice: make_tools(4)}
        server.notify_tools_changed()
        await waiter.status(TS, "share-3", resynced_with("tool_003"), "list-changed resync", operator=operator)
        assert server.listens == 2
        await api.delete(TS, api.ns, "share-3")
        await server.wait_until_async(lambda s: s.open_listens == 0)
    assert alice not in operator.log() and bob not in operator.log()


async def test_the_listener_follows_credentials_suspension_and_deletion(api, operator, waiter):
    old, new = "lc-old-token-51d2e", "lc-new-token-9a7c4"
    with McpTestServer(tokens={old: make_tools(2), new: make_tools(3)}, list_changed=True) as server:
        await api.create(secret("lc-token", {"token": old}))
        await api.create(toolserver("creds", server.url, auth=bearer("lc-token")))
        await waiter.status(TS, "creds", synced, "first sync", operator=operator)
        await server.wait_until_async(lambda s: s.open_listens == 1)

        # A rotated Secret resyncs the resource, and its listener is replaced by one with the new token.
        await api.patch(SECRETS, api.ns, "lc-token", {"data": {"token": base64.b64encode(new.encode()).decode()}})
        obj = await waiter.status(TS, "creds", lambda o: "tool_002" in tool_names(o), "resync after the rotation",
                                  operator=operator)
        assert obj["status"]["lastSync"]["trigger"] == "secret"
        await server.wait_until_async(lambda s: s.listens == 2 and s.open_listens == 1)
        server.tokens = {new: make_tools(4)}     # the old token is revoked; the new listener still delivers
        server.notify_tools_changed()
        await waiter.status(TS, "creds", resynced_with("tool_003"), "list-changed resync", operator=operator)

        await api.patch(TS, api.ns, "creds", {"spec": {"sync": {"suspend": True}}})
        await server.wait_until_async(lambda s: s.open_listens == 0)
        await waiter.status(TS, "creds", lambda o: o["status"]["phase"] == "Suspended", "suspended",
                            operator=operator)
        await api.patch(TS, api.ns, "creds", {"spec": {"sync": {"suspend": False}}})
        await server.wait_until_async(lambda s: s.listens == 3 and s.open_listens == 1)

        await api.delete(TS, api.ns, "creds")
        await server.wait_until_async(lambda s: s.open_listens == 0)
    assert old not in operator.log() and new not in operator.log()


async def test_listeners_beyond_the_limit_are_not_opened(api, start_operator, waiter):
    operator = start_operator({"TOOLCATALOG_MAX_LISTENERS": "1"})
    with McpTestServer(list_changed=True) as first, McpTestServer(list_changed=True) as second:
        await api.create(toolserver("first", first.url))
        await waiter.status(TS, "first", synced, "first sync", operator=operator)
        await first.wait_until_async(lambda s: s.open_listens == 1)
        await api.create(toolserver("second", second.url))
        await waiter.status(TS, "second", synced, "first sync", operator=operator)
        await wait_until(lambda: "second: not listening for tool changes" in operator.log(),
                         what="the warning about the limit", operator=operator)
        assert second.listens == 0 and first.open_listens == 1


# ------------------------------------------------------------- the listener alone, no operator


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_listener_hears_each_notification_and_returns_when_the_server_closes_the_stream(transport):
    heard = asyncio.Queue()
    pool = HttpPool()
    try:
        with McpTestServer(transport=transport, list_changed=True) as server:
            ready = asyncio.Event()
            listening = asyncio.create_task(listen_for_tool_changes(
                Endpoint(url=server.url, transport=transport), pool=pool, on_change=lambda: heard.put_nowait(1),
                ready=ready))
            await asyncio.wait_for(ready.wait(), 10)
            for _ in range(3):
                server.notify_tools_changed()
                await asyncio.wait_for(heard.get(), 10)
        # stop() closes listen streams gracefully; over SSE the session's own stream may break off first.
        ended = (await asyncio.wait_for(asyncio.gather(listening, return_exceptions=True), 10))[0]
        if transport == "sse" and isinstance(ended, FetchError):
            assert ended.reason == "ServerUnavailable" and "was lost" in ended.message
        else:
            assert ended is None
    finally:
        await pool.aclose()


async def test_a_silent_stream_is_a_timeout_and_refused_credentials_never_show_the_token():
    token = "lc-listener-token-7f3e1"
    pool = HttpPool()
    try:
        with McpTestServer(list_changed=True, tokens={token: make_tools(1)}) as server:
            ready = asyncio.Event()
            with pytest.raises(FetchError) as silent:   # the SDK server's keep-alives come every 15 s
                await listen_for_tool_changes(Endpoint(url=server.url, headers={"Authorization": f"Bearer {token}"}),
                                              pool=pool, on_change=lambda: None, ready=ready, idle_timeout=0.5)
            assert ready.is_set() and silent.value.reason == "Timeout" and "silent" in silent.value.message

            wrong = "lc-wrong-token-2b9d4"
            with pytest.raises(FetchError) as refused:
                await listen_for_tool_changes(Endpoint(url=server.url, headers={"Authorization": f"Bearer {wrong}"}),
                                              pool=pool, on_change=lambda: None)
            assert refused.value.reason == "AuthenticationFailed" and wrong not in refused.value.message
    finally:
        await pool.aclose()


async def test_a_handshake_era_server_is_heard_on_the_sessions_own_stream():
    heard = asyncio.Queue()
    pool = HttpPool()
    try:
        with McpTestServer(list_changed=True, legacy=True) as server:
            ready = asyncio.Event()
            listening = asyncio.create_task(listen_for_tool_changes(
                Endpoint(url=server.url), pool=pool, on_change=lambda: heard.put_nowait(1), ready=ready,
                ping_interval=0.2))
            await asyncio.wait_for(ready.wait(), 10)
            # The server learns of the session from its pings: notify until one is heard.
            deadline = asyncio.get_running_loop().time() + 10
            while heard.empty():
                assert asyncio.get_running_loop().time() < deadline, "no notification heard"
                server.notify_tools_changed()
                await asyncio.sleep(0.1)
            assert not listening.done()     # pings keep the session, nothing ends it
        with pytest.raises(FetchError) as gone:     # a ping finds the server gone
            await asyncio.wait_for(listening, 10)
        assert gone.value.reason == "ServerUnavailable"
    finally:
        await pool.aclose()
