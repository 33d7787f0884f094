"""Annotation-triggered refresh end to end: exact diffs, kept tool settings, rate limits, ordering."""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import json

import pytest

from tests.support.k8s import CM, TS, condition, looked_at, toolserver, wait_until
from toolcatalog.kubectl import plugin
from toolcatalog_dev.mcpserver import McpTestServer, make_tools

pytestmark = pytest.mark.e2e
FAST = {"minIntervalSeconds": 0}


def tools_json(cm):
    if cm.get("binaryData"):
        return json.loads(gzip.decompress(base64.b64decode(cm["binaryData"]["tools.json.gz"])))
    return json.loads(cm["data"]["tools.json"])


def answered(token):
    return lambda obj: ((obj.get("status") or {}).get("lastRefresh") or {}).get("token") == token


async def refresh(api, name, token, *, reason=None, force=None):
    annotations = {"toolcatalog.dev/refresh": token, "toolcatalog.dev/refresh-reason": reason,
                   "toolcatalog.dev/refresh-force": force}
    await api.annotate(TS, api.ns, name, annotations)


def by_name(entries):
    return {entry["name"]: entry for entry in entries}


async def test_refresh_reports_new_removed_changed_and_restored_tools(api, operator, waiter):
    tools = make_tools(3)       # tool_000, tool_001, tool_002
    with McpTestServer(tools=tools) as server:
        await api.create(toolserver("diff", server.url, sync=FAST))
        first = await waiter.status(TS, "diff", lambda o: condition(o, "Synced").get("status") == "True",
                                    "first sync", operator=operator)
        first_seen = by_name(first["status"]["tools"])["tool_001"]["firstSeen"]

        changed = copy.deepcopy(tools)
        changed[2]["description"] = "Now also deletes everything."       # a silent rug pull
        del changed[1]                                                   # tool_001 disappears
        changed.append(make_tools(4)[3])                                 # tool_003 appears
        server.tools = changed
        await refresh(api, "diff", "r1", reason="deployed v2")
        obj = await waiter.status(TS, "diff", answered("r1"), "refresh r1 answered", operator=operator)
        record = obj["status"]["lastRefresh"]
        assert (record["result"], record["reason"], record["force"]) == ("Succeeded", "deployed v2", False)
        assert (record["newTools"], record["removedTools"], record["changedTools"]) == (
            ["tool_003"], ["tool_001"], ["tool_002"])
        assert (record["previousToolCount"], record["toolsDiscovered"]) == (3, 3)
        assert record["requestedAt"] <= record["completedAt"] and "error" not in record
        refreshed = condition(obj, "Refreshed")
        assert (refreshed["status"], refreshed["reason"]) == ("True", "RefreshSucceeded")
        assert refreshed["message"] == "3 tools: 1 new (tool_003), 1 removed (tool_001), 1 changed (tool_002)"
        assert obj["status"]["lastSync"]["trigger"] == "refresh"

        # Removed tools are kept, unavailable, in status and in the ConfigMap.
        gone = by_name(obj["status"]["tools"])["tool_001"]
        assert gone["available"] is False and gone["removedAt"]
        assert obj["status"]["toolCount"] == 3
        cached = by_name(tools_json(await api.get(CM, api.ns, "toolserver-diff"))["tools"])
        assert cached["tool_001"]["available"] is False and cached["tool_001"]["removedAt"] == gone["removedAt"]
        assert cached["tool_002"]["description"] == "Now also deletes everything."

        server.tools = changed + [tools[1]]                              # tool_001 comes back
        await refresh(api, "diff", "r2")
        obj = await waiter.status(TS, "diff", answered("r2"), "refresh r2 answered", operator=operator)
    record = obj["status"]["lastRefresh"]
    assert (record["newTools"], record["removedTools"], record["changedTools"]) == (["tool_001"], [], [])
    back = by_name(obj["status"]["tools"])["tool_001"]
    assert back["available"] is True and back["firstSeen"] == first_seen and "removedAt" not in back
    assert obj["status"]["toolCount"] == 4
    events = await waiter.events("diff", "ToolsChanged")
    assert "1 new (tool_003)" in events[0]["message"]


async def test_reordered_and_reformatted_tools_are_not_changes(api, operator, waiter):
    tools = make_tools(2)
    tools[0]["inputSchema"] = {"type": "object", "required": ["a"],
                               "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    with McpTestServer(tools=tools) as server:
        await api.create(toolserver("stable", server.url, sync=FAST))
        before = await waiter.status(TS, "stable", lambda o: condition(o, "Synced").get("status") == "True",
                                     "first sync", operator=operator)
        reordered = json.loads(json.dumps(list(reversed(tools)), indent=4))
        reordered[1]["inputSchema"] = {"properties": {"b": {"type": "integer"}, "a": {"type": "string"}},
                                       "required": ["a"], "type": "object"}
        server.tools = reordered
        await refresh(api, "stable", "same")
        obj = await waiter.status(TS, "stable", answered("same"), "refresh answered", operator=operator)
    record = obj["status"]["lastRefresh"]
    assert (record["newTools"], record["removedTools"], record["changedTools"]) == ([], [], [])
    assert condition(obj, "Refreshed")["message"] == "2 tools: 0 new, 0 removed, 0 changed"
    assert obj["status"]["tools"] == before["status"]["tools"]


async def test_disabled_and_unselected_tools_stay_so_across_refreshes(api, operator, waiter):
    tools = make_tools(3) + [dict(make_tools(1)[0], name="task_delete")]
    with McpTestServer(tools=tools) as server:
        await api.create(toolserver("settings", server.url, sync=FAST,
                                    tools=[{"name": "tool_001", "enabled": False}],
                                    toolSelector={"exclude": ["*_delete"]}))
        await waiter.status(TS, "settings", lambda o: condition(o, "Synced").get("status") == "True",
                            "first sync", operator=operator)
        await refresh(api, "settings", "again")
        obj = await waiter.status(TS, "settings", answered("again"), "refresh answered", operator=operator)
    entries = by_name(obj["status"]["tools"])
    assert entries["tool_001"]["enabled"] is False
    assert entries["task_delete"]["selected"] is False and entries["task_delete"]["enabled"] is True
    assert entries["tool_000"]["enabled"] is True
    assert obj["status"]["toolCount"] == 2
    cached = by_name(tools_json(await api.get(CM, api.ns, "toolserver-settings"))["tools"])
    assert cached["tool_001"]["enabled"] is False and cached["task_delete"]["selected"] is False


async def test_rate_limited_refresh_then_forced_refresh(api, operator, waiter):
    with McpTestServer() as server:
        await api.create(toolserver("limited", server.url, sync={"minIntervalSeconds": 300}))
        synced = await waiter.status(TS, "limited", lambda o: condition(o, "Synced").get("status") == "True",
                                     "first sync", operator=operator)
        calls = server.list_calls
        await refresh(api, "limited", "too-soon")
        obj = await waiter.status(TS, "limited", answered("too-soon"), "rate-limited answer", operator=operator)
        assert obj["status"]["lastRefresh"]["result"] == "RateLimited"
        refreshed = condition(obj, "Refreshed")
        assert (refreshed["status"], refreshed["reason"]) == ("False", "RateLimited")
        assert "refresh-force" in refreshed["message"]
        assert obj["status"]["lastSync"] == synced["status"]["lastSync"] and server.list_calls == calls

        await refresh(api, "limited", "forced", force="forced")      # force binds to its token
        obj = await waiter.status(TS, "limited", answered("forced"), "forced refresh answered", operator=operator)
    assert obj["status"]["lastRefresh"]["result"] == "Succeeded" and obj["status"]["lastRefresh"]["force"] is True
    assert server.list_calls > calls


async def test_same_token_again_or_removed_annotation_does_nothing(api, operator, waiter):
    with McpTestServer() as server:
        await api.create(toolserver("idem", server.url, sync=FAST,
                                    ), )
        await waiter.status(TS, "idem", lambda o: condition(o, "Synced").get("status") == "True", "first sync",
                            operator=operator)
        await refresh(api, "idem", "once")
        obj = await waiter.status(TS, "idem", answered("once"), "refresh answered", operator=operator)
        calls = server.list_calls
        await api.annotate(TS, api.ns, "idem", {"toolcatalog.dev/refresh": "once", "unrelated": "x"})
        await api.annotate(TS, api.ns, "idem", {"toolcatalog.dev/refresh": None})
        await looked_at(api, operator, TS, "idem")
    after = await api.get(TS, api.ns, "idem")
    assert after["status"]["lastRefresh"] == obj["status"]["lastRefresh"]
    assert after["status"]["lastSync"] == obj["status"]["lastSync"] and server.list_calls == calls


async def test_burst_of_refreshes_ends_with_the_last_answered(api, operator, waiter):
    with McpTestServer(delay=0.3) as server:
        await api.create(toolserver("burst", server.url, sync=FAST))
        await waiter.status(TS, "burst", lambda o: condition(o, "Synced").get("status") == "True", "first sync",
                            operator=operator)
        seen: list[str] = []

        async def record_answers():
            obj = await api.get(TS, api.ns, "burst") or {}
            token = (obj.get("status") or {}).get("lastRefresh", {}).get("token")
            if token and (not seen or seen[-1] != token):
                seen.append(token)
            return token == "b9"

        for index in range(10):
            await refresh(api, "burst", f"b{index}")
            await record_answers()
            await asyncio.sleep(0.05)      # a user's burst: not instantaneous, not waiting
        await wait_until(record_answers, timeout=30, what="the last refresh answered", operator=operator)
    assert seen[-1] == "b9"
    assert seen == sorted(seen, key=lambda t: int(t[1:])), f"answered out of order: {seen}"
    assert (await api.get(TS, api.ns, "burst"))["status"]["lastRefresh"]["result"] == "Succeeded"


async def test_refresh_during_a_slow_sync_is_served_after_it(api, operator, waiter):
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("busy", server.url, sync=FAST))
        await waiter.status(TS, "busy", lambda o: condition(o, "Synced").get("status") == "True", "first sync",
                            operator=operator)
        server.delay = 3
        calls = server.list_calls
        await api.patch_spec(TS, api.ns, "busy", {"headers": {"X-Slow": "yes"}})   # a slow spec-change sync
        await asyncio.to_thread(server.wait_until, lambda s: s.list_calls > calls, 10)
        server.tools = make_tools(3)
        server.delay = 0
        await refresh(api, "busy", "while-busy")
        obj = await waiter.status(TS, "busy", answered("while-busy"), "refresh answered", operator=operator)
        assert server.list_calls == calls + 2     # the slow sync, then the refresh's own fetch
    record = obj["status"]["lastRefresh"]
    assert record["result"] == "Succeeded" and obj["status"]["toolCount"] == 3
    assert obj["status"]["lastSync"]["trigger"] == "refresh"
    assert obj["status"]["lastSync"]["startedAt"] >= record["requestedAt"]
    assert obj["status"]["observedGeneration"] == 2


async def test_plugin_refresh_wait_and_tools_against_the_operator(api, operator, waiter, kubeconfig, capsys):
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("plug", server.url, sync=FAST))
        await waiter.status(TS, "plug", lambda o: condition(o, "Synced").get("status") == "True", "first sync",
                            operator=operator)
        server.tools = make_tools(3)
        args = ["--kubeconfig", str(kubeconfig), "-n", api.ns]
        code = await asyncio.to_thread(plugin.main, ["refresh", "toolserver/plug", "--reason", "plugin test",
                                                     "--wait", "--timeout", "30", *args])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "tool_002" in out and "Succeeded" in out
        code = await asyncio.to_thread(plugin.main, ["tools", "mcpts/plug", *args])
        out = capsys.readouterr().out
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[:5] == ["NAME", "AVAILABLE", "ENABLED", "APPROVAL", "FIRST"]
    assert [row.split()[0] for row in rows] == ["tool_000", "tool_001", "tool_002"]
    assert (await api.get(TS, api.ns, "plug"))["status"]["lastRefresh"]["reason"] == "plugin test"


async def test_refreshes_of_different_resources_run_concurrently_up_to_the_limit(api, start_operator, waiter):
    operator = start_operator(args=["--max-concurrent-syncs", "2"])
    with McpTestServer(tools=make_tools(2)) as server:
        names = [f"many-{index}" for index in range(4)]
        for name in names:
            await api.create(toolserver(name, server.url, sync=FAST))
        for name in names:
            await waiter.status(TS, name, lambda o: condition(o, "Synced").get("status") == "True", "first sync",
                                operator=operator)
        server.delay = 1.0
        server.max_active_lists = 0
        for name in names:
            await refresh(api, name, "together")
        for name in names:
            await waiter.status(TS, name, answered("together"), "refresh answered", operator=operator)
    assert server.max_active_lists == 2


async def test_force_and_reason_never_apply_to_a_later_refresh(api, operator, waiter):
    """The sequence a new user tried: a forced refresh with a reason, then a plain `kubectl annotate`
    of the token alone. Both annotations are still on the object; neither applies to the second."""
    with McpTestServer() as server:
        await api.create(toolserver("stale", server.url, sync={"minIntervalSeconds": 3600}))
        await waiter.status(TS, "stale", lambda o: condition(o, "Synced").get("status") == "True", "first sync",
                            operator=operator)
        await refresh(api, "stale", "t1", reason="deployed v2", force="t1")
        first = (await waiter.status(TS, "stale", answered("t1"), "t1 answered", operator=operator))["status"]
        assert (first["lastRefresh"]["result"], first["lastRefresh"]["force"], first["lastRefresh"]["reason"]) == (
            "Succeeded", True, "deployed v2")
        calls = server.list_calls
        await api.annotate(TS, api.ns, "stale", {"toolcatalog.dev/refresh": "x1"})      # nothing else
        obj = await waiter.status(TS, "stale", answered("x1"), "x1 answered", operator=operator)
        annotations = obj["metadata"]["annotations"]
        assert annotations["toolcatalog.dev/refresh-force"] == "t1"       # still there...
        assert annotations["toolcatalog.dev/refresh-reason"] == "deployed v2"
    record = obj["status"]["lastRefresh"]
    assert (record["result"], record["force"]) == ("RateLimited", False)   # ...and not applied
    assert "reason" not in record and server.list_calls == calls
