"""ToolServer sync end to end: the real operator, kmock's API emulator, real MCP servers on loopback."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from tests.support.k8s import CM, SECRETS, TS, condition, secret, toolserver, wait_until
from toolcatalog_dev.mcpserver import McpTestServer, closed_port, make_tools

pytestmark = pytest.mark.e2e


def synced(obj):
    return condition(obj, "Synced").get("status") == "True"


def synced_reason(reason):
    return lambda obj: condition(obj, "Synced").get("reason") == reason


def tools_json(cm):
    if "binaryData" in cm and cm["binaryData"]:
        return json.loads(gzip.decompress(base64.b64decode(cm["binaryData"]["tools.json.gz"])))
    return json.loads(cm["data"]["tools.json"])


async def test_sync_writes_status_configmap_and_event(api, operator, waiter):
    tools = make_tools(3)
    tools[0]["annotations"] = {"readOnlyHint": True}
    tools[1]["outputSchema"] = {"type": "object", "properties": {"id": {"type": "string"}}}
    with McpTestServer(tools=list(reversed(tools)), server_name="tasks-mcp", server_version="1.4.0") as server:
        await api.create(toolserver("tasks", server.url))
        obj = await waiter.status(TS, "tasks", synced, "Synced=True", operator=operator)
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"] == 1
    assert status["phase"] == "Ready" and status["url"] == server.url
    assert status["server"]["name"] == "tasks-mcp" and status["server"]["version"] == "1.4.0"
    assert status["server"]["protocolVersion"]
    assert status["toolCount"] == 3 and status["toolsTruncated"] is False
    assert [t["name"] for t in status["tools"]] == ["tool_000", "tool_001", "tool_002"]
    for entry in status["tools"]:
        assert entry["available"] is True and entry["enabled"] is True
        assert entry["schemaHash"].startswith("sha256:") and entry["firstSeen"].endswith("Z")
        assert "description" not in entry and "inputSchema" not in entry
    assert status["cache"]["configMap"] == "toolserver-tasks"
    assert status["cache"]["contentHash"].startswith("sha256:")
    assert status["lastSync"]["trigger"] == "create" and status["lastSync"]["result"] == "Succeeded"
    assert "error" not in status["lastSync"] and status["lastSync"]["durationMs"] >= 0
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "CacheFresh")
    assert condition(obj, "Synced")["reason"] == "SyncSucceeded"
    # kopf keeps its bookkeeping out of status, and under our annotation prefix only.
    assert set(status) <= {"observedGeneration", "phase", "url", "owner", "server", "toolCount", "tools",
                           "toolsTruncated", "cache", "lastSync", "lastRefresh", "consecutiveFailures",
                           "nextSyncAt", "conditions", "references", "fetchedWith"}
    assert not [k for k in obj["metadata"].get("annotations", {}) if "kopf.zalando.org" in k]
    assert not obj["metadata"].get("finalizers")

    cm = await api.get(CM, api.ns, "toolserver-tasks")
    labels = cm["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "toolcatalog", "toolcatalog.dev/kind": "ToolServer",
                      "toolcatalog.dev/name": "tasks"}
    annotations = cm["metadata"]["annotations"]
    assert annotations["toolcatalog.dev/cached-at"] == status["cache"]["cachedAt"] == status["cache"]["verifiedAt"]
    assert annotations["toolcatalog.dev/content-hash"] == status["cache"]["contentHash"]
    assert "toolcatalog.dev/expires-at" not in annotations
    assert status["cache"]["expiresAt"] > status["cache"]["cachedAt"]
    owner = cm["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ToolServer", "tasks", obj["metadata"]["uid"], True)
    assert "binaryData" not in cm or not cm["binaryData"]
    doc = tools_json(cm)
    assert doc["source"] == {"kind": "ToolServer", "namespace": api.ns, "name": "tasks", "url": server.url}
    assert doc["server"]["name"] == "tasks-mcp"
    assert [t["name"] for t in doc["tools"]] == ["tool_000", "tool_001", "tool_002"]
    first, second = doc["tools"][0], doc["tools"][1]
    assert first["annotations"] == {"readOnlyHint": True} and first["description"] == tools[0]["description"]
    assert first["inputSchema"] == tools[0]["inputSchema"]
    assert second["outputSchema"] == tools[1]["outputSchema"]
    assert {"title", "outputSchema", "annotations", "available", "enabled", "schemaHash", "firstSeen",
            "removedAt"} <= set(first)

    events = await waiter.events("tasks", "Synced")
    assert events[0]["type"] == "Normal" and "3 usable tools" in events[0]["message"]


async def test_sse_transport_and_pagination(api, operator, waiter):
    with McpTestServer(transport="sse", tools=make_tools(23), page_size=5) as server:
        await api.create(toolserver("paged", server.url, transport="sse"))
        obj = await waiter.status(TS, "paged", synced, "Synced=True over SSE", operator=operator)
        assert server.list_calls == 5
    assert obj["status"]["toolCount"] == 23
    assert [t["name"] for t in obj["status"]["tools"]] == [f"tool_{i:03}" for i in range(23)]


async def test_bearer_token_from_secret_never_leaks(api, operator, waiter):
    token = "s3cr3t-token-value-4711"
    with McpTestServer(tokens={token: make_tools(2, prefix="private")}) as server:
        await api.create(secret("tasks-mcp", {"token": token}))
        await api.create(toolserver("private", server.url,
                                    auth={"bearerToken": {"secretKeyRef": {"name": "tasks-mcp", "key": "token"}}}))
        obj = await waiter.status(TS, "private", synced, "Synced=True with a bearer token", operator=operator)
        assert server.last_headers.get("authorization") == f"Bearer {token}"
    assert [t["name"] for t in obj["status"]["tools"]] == ["private_000", "private_001"]
    encoded = base64.b64encode(token.encode()).decode()
    everything = json.dumps([await api.get(TS, api.ns, "private"), await api.get(CM, api.ns, "toolserver-private"),
                             await api.events(api.ns)])
    assert token not in everything and encoded not in everything
    assert token not in operator.log() and encoded not in operator.log()


async def test_server_down_then_up_recovers(api, operator, waiter):
    with closed_port() as port:
        server = McpTestServer(port=port)
        await api.create(toolserver("flaky", server.url))
        obj = await waiter.status(TS, "flaky", synced_reason("ServerUnavailable"), "ServerUnavailable",
                                  operator=operator)
        assert obj["status"]["phase"] == "Failed"
        ready = condition(obj, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "NoCache")
        assert "retrying in" in condition(obj, "Synced")["message"]
        assert obj["status"]["lastSync"]["error"]["reason"] == "ServerUnavailable"
        assert await api.get(CM, api.ns, "toolserver-flaky") is None
        failed = await waiter.events("flaky", "SyncFailed", operator=operator)
        assert failed[0]["type"] == "Warning"
    with server:   # the server comes up on that port: the backoff retry picks it up
        obj = await waiter.status(TS, "flaky", synced, "recovery", timeout=30, operator=operator)
    assert obj["status"]["phase"] == "Ready" and obj["status"]["lastSync"]["trigger"] == "schedule"
    await waiter.events("flaky", "Recovered")


async def test_failed_sync_keeps_previous_cache_and_status(api, operator, waiter):
    with McpTestServer(tools=make_tools(4)) as server:
        await api.create(toolserver("keep", server.url))
        before = await waiter.status(TS, "keep", synced, "first sync", operator=operator)
        cm_before = await api.get(CM, api.ns, "toolserver-keep")
        server.mode = "garbage"
        await api.patch_spec(TS, api.ns, "keep", {"headers": {"X-Tenant": "team-a"}})
        after = await waiter.status(TS, "keep", synced_reason("ProtocolError"), "ProtocolError",
                                    operator=operator)
    assert after["status"]["tools"] == before["status"]["tools"]
    assert after["status"]["cache"] == before["status"]["cache"]
    assert after["status"]["toolCount"] == 4 and after["status"]["phase"] == "Stale"
    assert after["status"]["observedGeneration"] == 2
    ready = condition(after, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "CacheStale")
    assert ready["lastTransitionTime"] == condition(before, "Ready")["lastTransitionTime"]
    cm_after = await api.get(CM, api.ns, "toolserver-keep")
    assert cm_after["data"] == cm_before["data"]
    assert cm_after["metadata"]["annotations"] == cm_before["metadata"]["annotations"]


async def test_timeout_bounds_the_whole_sync(api, operator, waiter):
    with McpTestServer(delay=30) as server:
        await api.create(toolserver("slow", server.url, sync={"timeoutSeconds": 1}))
        obj = await waiter.status(TS, "slow", synced_reason("Timeout"), "Timeout", timeout=15, operator=operator)
    assert "1s" in condition(obj, "Synced")["message"]
    assert obj["status"]["lastSync"]["durationMs"] < 5000


async def test_ttl_expiry_resyncs_on_schedule(api, operator, waiter):
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("ttl", server.url, sync={"ttlSeconds": 2}))
        first = await waiter.status(TS, "ttl", synced, "first sync", operator=operator)
        server.tools = make_tools(3)
        obj = await waiter.status(TS, "ttl", lambda o: o["status"].get("toolCount") == 3,
                                  "resync after ttlSeconds", timeout=20, operator=operator)
    assert obj["status"]["lastSync"]["trigger"] == "schedule"
    assert obj["status"]["cache"]["cachedAt"] >= first["status"]["cache"]["cachedAt"]
    assert [t["name"] for t in tools_json(await api.get(CM, api.ns, "toolserver-ttl"))["tools"]] == [
        "tool_000", "tool_001", "tool_002"]
    changed = await waiter.events("ttl", "ToolsChanged")
    assert "1 new (tool_002)" in changed[0]["message"]


async def test_a_resync_that_finds_the_catalog_unchanged_writes_no_configmap(api, start_operator, waiter):
    # Verifications are recorded in status every 2 s here (the default is every 5 minutes: see below).
    operator = start_operator(args=["--status-report-interval", "2"])
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("same", server.url, sync={"ttlSeconds": 1}))
        first = await waiter.status(TS, "same", synced, "first sync", operator=operator)
        cm = await api.get(CM, api.ns, "toolserver-same")
        verified = first["status"]["cache"]["verifiedAt"]
        # Two resyncs later (verifiedAt has second precision), the server still lists the same tools.
        later = await waiter.status(TS, "same", lambda o: o["status"]["cache"]["verifiedAt"] > verified
                                    and o["status"]["lastSync"]["trigger"] == "schedule", "an unchanged resync",
                                    timeout=20, operator=operator)
        unchanged = await api.get(CM, api.ns, "toolserver-same")
        assert unchanged["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
        assert later["status"]["cache"]["cachedAt"] == first["status"]["cache"]["cachedAt"]
        assert later["status"]["cache"]["contentHash"] == first["status"]["cache"]["contentHash"]
        assert later["status"]["cache"]["expiresAt"] > first["status"]["cache"]["expiresAt"]
        assert condition(later, "Ready") == condition(first, "Ready")      # nothing an agent reads moved
        # A change is written at once by the next resync, with a new cachedAt.
        server.tools = make_tools(3)
        changed = await waiter.status(TS, "same", lambda o: o["status"].get("toolCount") == 3, "the changed resync",
                                      timeout=20, operator=operator)
        rewritten = await api.get(CM, api.ns, "toolserver-same")
    assert rewritten["metadata"]["resourceVersion"] != cm["metadata"]["resourceVersion"]
    assert changed["status"]["cache"]["cachedAt"] > first["status"]["cache"]["cachedAt"]
    assert rewritten["metadata"]["annotations"]["toolcatalog.dev/cached-at"] == changed["status"]["cache"]["cachedAt"]
    assert [t["name"] for t in tools_json(rewritten)["tools"]] == ["tool_000", "tool_001", "tool_002"]


async def test_unchanged_resyncs_leave_status_alone_between_reports(api, operator, waiter):
    """With the default --status-report-interval (5 minutes), a resync that finds the catalog unchanged
    writes nothing at all: no ConfigMap, no status, so no watch event for anyone."""
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("quiet", server.url, sync={"ttlSeconds": 1}))
        recorded = await waiter.status(TS, "quiet", lambda o: (o["status"].get("lastSync") or {}).get("trigger")
                                       == "schedule", "the first resync (a new trigger: written)",
                                       operator=operator)
        cm = await api.get(CM, api.ns, "toolserver-quiet")
        calls = server.list_calls
        await server.wait_until_async(lambda s: s.list_calls >= calls + 3, timeout=20)     # three more resyncs
        now = await api.get(TS, api.ns, "quiet")
        assert now["metadata"]["resourceVersion"] == recorded["metadata"]["resourceVersion"]
        assert now["status"] == recorded["status"]
        assert (await api.get(CM, api.ns, "toolserver-quiet"))["metadata"]["resourceVersion"] == \
            cm["metadata"]["resourceVersion"]
        # A change is written by the next resync, report interval or not.
        server.tools = make_tools(3)
        changed = await waiter.status(TS, "quiet", lambda o: o["status"].get("toolCount") == 3, "the change",
                                      timeout=20, operator=operator)
    assert changed["status"]["cache"]["cachedAt"] > recorded["status"]["cache"]["cachedAt"]


async def test_invalid_spec_is_reported_then_fixed(api, operator, waiter):
    with McpTestServer() as server:
        # The CRD's schema admits this URL (a real server refuses ftp:// at admission); the operator does not.
        await api.create(toolserver("bad", "http://user:pass@127.0.0.1/mcp"))
        obj = await waiter.status(TS, "bad", synced_reason("InvalidSpec"), "InvalidSpec", operator=operator)
        message = condition(obj, "Synced")["message"]
        assert "spec.url" in message and "pass" not in message
        assert "nextSyncAt" not in obj["status"] and obj["status"]["phase"] == "Failed"
        await api.patch_spec(TS, api.ns, "bad", {"url": server.url})
        obj = await waiter.status(TS, "bad", synced, "fixed spec syncs", operator=operator)
    assert obj["status"]["observedGeneration"] == 2 and obj["status"]["lastSync"]["trigger"] == "update"
    assert obj["status"]["consecutiveFailures"] == 0


async def test_suspend_stops_syncing(api, operator, waiter):
    with McpTestServer() as server:
        await api.create(toolserver("paused", server.url, sync={"ttlSeconds": 1}))
        await waiter.status(TS, "paused", synced, "first sync", operator=operator)
        await api.patch_spec(TS, api.ns, "paused", {"sync": {"suspend": True, "ttlSeconds": 1}})
        obj = await waiter.status(TS, "paused", lambda o: o["status"]["phase"] == "Suspended", "Suspended",
                                  operator=operator)
        calls = server.list_calls
        looked = operator.log().count(f"ToolServer {api.ns}/paused: nothing to do")
        # Several TTLs and watch events later (each one makes the operator look again), still no fetch.
        for touch in range(3):
            await api.annotate(TS, api.ns, "paused", {"example.com/touch": str(touch)})
        await wait_until(lambda: operator.log().count(f"ToolServer {api.ns}/paused: nothing to do") >= looked + 3,
                         what="the operator to look at it again", operator=operator)
        assert server.list_calls == calls
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")
    assert await api.get(CM, api.ns, "toolserver-paused") is not None


async def test_an_operator_restart_resyncs_what_notifications_kept_fresh_and_loses_nothing(api, operator, waiter):
    """After a restart, a resource whose server notifies of changes is resynced (trigger resume): those
    notifications went unheard meanwhile. One on the TTL schedule is not; a refresh set while the
    operator was down is answered."""
    with McpTestServer(list_changed=True) as notifying, McpTestServer() as plain:
        await api.create(toolserver("notified", notifying.url))
        await api.create(toolserver("scheduled", plain.url, sync={"minIntervalSeconds": 0}))
        for name in ("notified", "scheduled"):
            await waiter.status(TS, name, synced, f"{name} synced", operator=operator)
        plain_calls = plain.list_calls
        operator.stop()
        await api.annotate(TS, api.ns, "scheduled", {"toolcatalog.dev/refresh": "while-down"})
        operator.start()
        obj = await waiter.status(TS, "notified", lambda o: o["status"]["lastSync"]["trigger"] == "resume",
                                  "a sync on resume", operator=operator)
        assert synced(obj)
        scheduled = await waiter.status(TS, "scheduled", lambda o: (o["status"].get("lastRefresh") or {}).get(
            "token") == "while-down", "the refresh set while it was down", operator=operator)
        assert scheduled["status"]["lastSync"]["trigger"] == "refresh" and plain.list_calls == plain_calls + 1


async def test_foreign_configmap_is_never_overwritten(api, operator, waiter):
    await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "toolserver-taken", "namespace": api.ns}, "data": {"mine": "yes"}})
    with McpTestServer() as server:
        await api.create(toolserver("taken", server.url))
        obj = await waiter.status(TS, "taken", synced_reason("CacheConflict"), "CacheConflict", operator=operator)
    assert "spec.cache.configMapName" in condition(obj, "Synced")["message"]
    assert (await api.get(CM, api.ns, "toolserver-taken"))["data"] == {"mine": "yes"}


async def test_large_catalog_is_gzipped_and_custom_name_used(api, operator, waiter):
    tools = make_tools(400)
    for index, tool in enumerate(tools):
        tool["description"] = f"{index} " + " ".join(f"word{(index * 7 + k) % 997}" for k in range(250))
    with McpTestServer(tools=tools, page_size=100) as server:
        await api.create(toolserver("big", server.url, cache={"configMapName": "big-tools"}))
        obj = await waiter.status(TS, "big", synced, "Synced=True", operator=operator)
    assert obj["status"]["cache"]["configMap"] == "big-tools"
    cm = await api.get(CM, api.ns, "big-tools")
    assert not (cm.get("data") or {}).get("tools.json")
    doc = tools_json(cm)
    assert len(doc["tools"]) == 400 and doc["tools"][5]["description"] == tools[5]["description"]


async def test_secret_missing_is_reported(api, operator, waiter):
    with McpTestServer() as server:
        await api.create(toolserver("nosecret", server.url,
                                    auth={"bearerToken": {"secretKeyRef": {"name": "absent", "key": "token"}}}))
        obj = await waiter.status(TS, "nosecret", synced_reason("SecretNotFound"), "SecretNotFound",
                                  operator=operator)
    assert "absent" in condition(obj, "Synced")["message"]
    assert await api.get(SECRETS, api.ns, "absent") is None


async def test_a_deleted_resource_needs_no_finalizer_and_is_never_synced_again(api, operator, waiter):
    with McpTestServer() as stays_server, McpTestServer() as gone_server:
        await api.create(toolserver("stays", stays_server.url, sync={"ttlSeconds": 1}))
        await api.create(toolserver("gone", gone_server.url, sync={"ttlSeconds": 1}))
        for name in ("stays", "gone"):
            await waiter.status(TS, name, synced, f"{name} synced", operator=operator)
        assert not (await api.get(TS, api.ns, "gone"))["metadata"].get("finalizers")
        await api.delete(TS, api.ns, "gone")
        assert await api.get(TS, api.ns, "gone") is None      # gone at once: nothing blocks deletion
        await wait_until(lambda: f"ToolServer {api.ns}/gone: forgotten" in operator.log(),
                         what="the operator to forget it", operator=operator)
        # A sync that was already running when the deletion arrived may still finish; none starts after.
        gone_calls, stays_calls = gone_server.list_calls, stays_server.list_calls
        await stays_server.wait_until_async(lambda s: s.list_calls >= stays_calls + 3, timeout=20)
        assert gone_server.list_calls <= gone_calls + 1
