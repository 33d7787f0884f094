"""ConnectorConfig end to end: personal credentials, own caches, inherited endpoints, propagation.

The real operator against the API emulator, with real MCP servers on loopback that require a
bearer token and give each token its own tool list (as a server scoping tools to a user does).
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import CC, CM, SECRETS, TS, condition, connectorconfig, looked_at, secret, toolserver
from toolcatalog_dev.mcpserver import McpTestServer, make_self_signed_cert, make_tools

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

# Distinctive enough to grep for in everything the emulator holds and in the operator's log.
SERVER_TOKEN = "tcT0K-shared-5e1d9a7c3b2f"
ALICE_TOKEN = "tcT0K-alice-8c4e2a6f0d91"
BOB_TOKEN = "tcT0K-bob-3f7b1d5e9a02"
WRONG_TOKEN = "tcT0K-wrong-6a0c8e2b4d17"
ROTATED_TOKEN = "tcT0K-rotated-1b9f3c7d5e64"
LEAKY_TOKEN = "tcT0K-leaky-9d2e6b0f4a38"

SHARED_TOOLS = make_tools(2, prefix="shared")
ALICE_TOOLS = make_tools(3, prefix="alice")
BOB_TOOLS = make_tools(1, prefix="bob")
FAST = {"minIntervalSeconds": 0}


# ------------------------------------------------------------------------------ helpers

def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


def synced_reason(reason: str) -> Any:
    return lambda obj: condition(obj, "Synced").get("reason") == reason


def tool_names(obj: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in obj["status"]["tools"]]


def usable_tools(obj: dict[str, Any]) -> list[str]:
    return [e["name"] for e in obj["status"]["tools"] if e["available"] and e["enabled"] and e["selected"]]


def tools_json(cm: dict[str, Any]) -> dict[str, Any]:
    if cm.get("binaryData"):
        return json.loads(gzip.decompress(base64.b64decode(cm["binaryData"]["tools.json.gz"])))
    return json.loads(cm["data"]["tools.json"])


def bearer(secret_name: str, key: str = "token") -> dict[str, Any]:
    return {"bearerToken": {"secretKeyRef": {"name": secret_name, "key": key}}}


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def base64_forms(token: str) -> set[str]:
    """The base64 text of `token` at each of the three byte alignments inside a longer blob."""
    raw = token.encode()
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        first = -(-8 * offset // 6)                  # first character made of token bits only
        last = 8 * (offset + len(raw)) // 6          # one past the last such character
        forms.add(encoded[first:last])
    return forms


async def make_secret(api: Any, name: str, token: str, namespace: str | None = None) -> None:
    await api.create(secret(name, {"token": token}, namespace=namespace))


def token_server(**kwargs: Any) -> McpTestServer:
    """One server, three credentials, three different tool lists; unknown tokens get 401."""
    tokens = {SERVER_TOKEN: SHARED_TOOLS, ALICE_TOKEN: ALICE_TOOLS, BOB_TOKEN: BOB_TOOLS}
    # Cacheable for a day: spec.sync.ttlSeconds (an hour by default) decides, not the server's hint.
    return McpTestServer(tokens=tokens, **{"ttl_ms": 86_400_000, **kwargs})


async def shared_toolserver(api: Any, url: str, name: str = "shared", **spec: Any) -> None:
    await make_secret(api, f"{name}-token", SERVER_TOKEN)
    await api.create(toolserver(name, url, auth=bearer(f"{name}-token"), **spec))




async def settled_toolserver(api: Any, waiter: Any, operator: Any, url: str, name: str = "shared") -> None:
    """A synced ToolServer: a ConnectorConfig created afterwards syncs once, for its own reasons."""
    await shared_toolserver(api, url, name)
    await waiter.status(TS, name, synced, "ToolServer created and synced", operator=operator)


# ------------------------------------------------------------------------------ tests

async def test_each_connectorconfig_sees_its_own_tools_in_its_own_cache(api, operator, waiter):
    with token_server() as server:
        await shared_toolserver(api, server.url)
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await make_secret(api, "bob-token", BOB_TOKEN)
        await api.create(connectorconfig("alice", toolServerRef={"name": "shared"}, owner="alice@example.com",
                                         auth=bearer("alice-token")))
        await api.create(connectorconfig("bob", toolServerRef={"name": "shared"}, owner="bob@example.com",
                                         auth=bearer("bob-token")))
        ts = await waiter.status(TS, "shared", synced, "ToolServer synced", operator=operator)
        alice = await waiter.status(CC, "alice", synced, "alice synced", operator=operator)
        bob = await waiter.status(CC, "bob", synced, "bob synced", operator=operator)

    assert tool_names(ts) == ["shared_000", "shared_001"]
    assert tool_names(alice) == ["alice_000", "alice_001", "alice_002"] and alice["status"]["toolCount"] == 3
    assert tool_names(bob) == ["bob_000"] and bob["status"]["toolCount"] == 1
    for cc, owner in ((alice, "alice@example.com"), (bob, "bob@example.com")):
        status = cc["status"]
        assert status["owner"] == owner
        assert status["url"] == server.url                          # inherited from the ToolServer
        assert status["lastSync"]["trigger"] == "create" and status["phase"] == "Ready"
        assert status["cache"]["configMap"] == f"connectorconfig-{cc['metadata']['name']}"
        assert condition(cc, "Ready")["reason"] == "CacheFresh"
        cache = status["cache"]                                     # sync.ttlSeconds defaults to 3600
        assert parse_time(cache["expiresAt"]) - parse_time(cache["verifiedAt"]) == timedelta(seconds=3600)

    # Each ConnectorConfig has its own ConfigMap, owned by it, never by the ToolServer.
    for cc, expected in ((alice, ALICE_TOOLS), (bob, BOB_TOOLS)):
        name = cc["metadata"]["name"]
        cm = await api.get(CM, api.ns, f"connectorconfig-{name}")
        owners = cm["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners] == [
            ("ConnectorConfig", name, cc["metadata"]["uid"], True)]
        assert ts["metadata"]["uid"] not in json.dumps(owners)
        assert cm["metadata"]["labels"]["toolcatalog.dev/kind"] == "ConnectorConfig"
        assert cm["metadata"]["labels"]["toolcatalog.dev/name"] == name
        doc = tools_json(cm)
        assert doc["source"] == {"kind": "ConnectorConfig", "namespace": api.ns, "name": name,
                                 "url": server.url}
        assert [t["name"] for t in doc["tools"]] == [t["name"] for t in expected]
    shared_cm = tools_json(await api.get(CM, api.ns, "toolserver-shared"))
    assert [t["name"] for t in shared_cm["tools"]] == ["shared_000", "shared_001"]


async def test_selector_and_disabled_tool_on_a_connectorconfig(api, operator, waiter):
    names = ["task_create", "task_delete", "task_list", "admin_reset"]
    tools = [dict(make_tools(1)[0], name=name) for name in names]
    with McpTestServer(tokens={ALICE_TOKEN: tools}) as server:
        await api.create(toolserver("tasks", server.url))            # no auth of its own
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await api.create(connectorconfig("alice-tasks", toolServerRef={"name": "tasks"}, auth=bearer("alice-token"),
                                         toolSelector={"include": ["task_*"], "exclude": ["*_delete"]},
                                         tools=[{"name": "task_list", "enabled": False}]))
        obj = await waiter.status(CC, "alice-tasks", synced, "synced", operator=operator)
    entries = {entry["name"]: entry for entry in obj["status"]["tools"]}
    assert set(entries) == set(names)
    assert (entries["task_create"]["selected"], entries["task_create"]["enabled"]) == (True, True)
    assert entries["task_delete"]["selected"] is False
    assert entries["admin_reset"]["selected"] is False
    assert (entries["task_list"]["selected"], entries["task_list"]["enabled"]) == (True, False)
    assert obj["status"]["toolCount"] == 1
    cached = {t["name"]: t for t in tools_json(await api.get(CM, api.ns, "connectorconfig-alice-tasks"))["tools"]}
    assert cached["task_list"]["enabled"] is False and cached["task_delete"]["selected"] is False


async def test_wrong_token_fails_once_then_secret_rotation_fixes_it(api, operator, waiter):
    with token_server() as server:
        await settled_toolserver(api, waiter, operator, server.url)
        ts_requests = server.requests
        await make_secret(api, "carol-token", WRONG_TOKEN)
        await api.create(connectorconfig("carol", toolServerRef={"name": "shared"}, auth=bearer("carol-token")))
        obj = await waiter.status(CC, "carol", synced_reason("AuthenticationFailed"), "AuthenticationFailed",
                                  operator=operator)
        synced_cond, ready = condition(obj, "Synced"), condition(obj, "Ready")
        assert synced_cond["status"] == "False"
        assert "refused the credentials" in synced_cond["message"] and "401" in synced_cond["message"]
        assert WRONG_TOKEN not in json.dumps(obj)
        assert (ready["status"], ready["reason"]) == ("False", "NoCache")
        assert obj["status"]["phase"] == "Failed"
        assert await api.get(CM, api.ns, "connectorconfig-carol") is None

        # No retry loop against a server that refuses the credentials: one refused request, then
        # more looks at the resource without another one.
        assert server.requests - ts_requests == 1
        await looked_at(api, operator, CC, "carol")
        assert server.requests - ts_requests == 1
        assert (await api.get(CC, api.ns, "carol"))["status"]["lastSync"]["startedAt"] == \
            obj["status"]["lastSync"]["startedAt"]

        # Rotating the Secret, not touching the ConnectorConfig, resyncs it.
        server.tokens = {**server.tokens, ROTATED_TOKEN: ALICE_TOOLS}
        await api.patch(SECRETS, api.ns, "carol-token", {"data": {"token": b64(ROTATED_TOKEN)}})
        obj = await waiter.status(CC, "carol", synced, "Synced=True after the rotation", operator=operator)
    assert obj["status"]["lastSync"]["trigger"] == "secret"
    assert obj["metadata"]["generation"] == 1
    assert tool_names(obj) == ["alice_000", "alice_001", "alice_002"]
    assert condition(obj, "Ready")["status"] == "True"
    await waiter.events("carol", "Recovered")


async def test_missing_secret_is_reported_then_resolved_when_it_appears(api, operator, waiter):
    with token_server() as server:
        await settled_toolserver(api, waiter, operator, server.url)
        await api.create(connectorconfig("dave", toolServerRef={"name": "shared"}, auth=bearer("dave-token")))
        obj = await waiter.status(CC, "dave", synced_reason("SecretNotFound"), "SecretNotFound",
                                  operator=operator)
        message = condition(obj, "Synced")["message"]
        assert "dave-token" in message and "'token'" in message and "spec.auth.bearerToken" in message
        assert condition(obj, "Ready")["reason"] == "NoCache"

        await make_secret(api, "dave-token", BOB_TOKEN)
        obj = await waiter.status(CC, "dave", synced, "resolved once the Secret exists", operator=operator)
    assert obj["status"]["lastSync"]["trigger"] == "secret"
    assert tool_names(obj) == ["bob_000"] and obj["metadata"]["generation"] == 1


async def test_missing_toolserver_is_reported_then_resolved_when_it_is_created(api, operator, waiter):
    with token_server() as server:
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await api.create(connectorconfig("early", toolServerRef={"name": "later"}, auth=bearer("alice-token")))
        obj = await waiter.status(CC, "early", synced_reason("ToolServerNotFound"), "ToolServerNotFound",
                                  operator=operator)
        message = condition(obj, "Synced")["message"]
        assert f"ToolServer {api.ns}/later does not exist" in message
        assert condition(obj, "Ready")["reason"] == "NoCache"

        await shared_toolserver(api, server.url, name="later")
        obj = await waiter.status(CC, "early", synced, "resolved once the ToolServer exists", operator=operator)
        assert obj["status"]["url"] == server.url and tool_names(obj) == ["alice_000", "alice_001", "alice_002"]
        assert obj["metadata"]["generation"] == 1

        # The ToolServer goes away again: the ConnectorConfig says so, and keeps serving its cache.
        await api.delete(TS, api.ns, "later")
        obj = await waiter.status(CC, "early", synced_reason("ToolServerNotFound"), "ToolServerNotFound again",
                                  operator=operator)
    assert obj["status"]["phase"] == "Stale" and condition(obj, "Ready")["reason"] == "CacheStale"
    assert tool_names(obj) == ["alice_000", "alice_001", "alice_002"]
    assert await api.get(CM, api.ns, "connectorconfig-early") is not None


async def test_toolserver_url_change_propagates_to_its_connectorconfigs(api, operator, waiter):
    with token_server() as old, McpTestServer(tokens={ALICE_TOKEN: make_tools(2, prefix="v2"),
                                                       SERVER_TOKEN: SHARED_TOOLS}) as new:
        assert old.port != new.port
        await shared_toolserver(api, old.url)
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await api.create(connectorconfig("alice", toolServerRef={"name": "shared"}, auth=bearer("alice-token")))
        before = await waiter.status(CC, "alice", synced, "first sync", operator=operator)
        assert before["status"]["url"] == old.url

        await api.patch_spec(TS, api.ns, "shared", {"url": new.url})
        obj = await waiter.status(CC, "alice", lambda o: o["status"].get("url") == new.url and synced(o),
                                  "the new url, synced", operator=operator)
    assert tool_names(obj)[-2:] == ["v2_000", "v2_001"] and obj["status"]["toolCount"] == 2
    assert obj["metadata"]["generation"] == 1 and obj["status"]["lastSync"]["trigger"] == "update"
    doc = tools_json(await api.get(CM, api.ns, "connectorconfig-alice"))
    assert doc["source"]["url"] == new.url
    usable = sorted(t["name"] for t in doc["tools"] if t["available"])
    assert usable == ["v2_000", "v2_001"]


async def test_inline_endpoint_over_sse_needs_no_toolserver(api, operator, waiter):
    with McpTestServer(transport="sse", tokens={ALICE_TOKEN: ALICE_TOOLS}) as server:
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await api.create(connectorconfig("alice-direct", url=server.url, transport="sse",
                                         owner="alice@example.com", auth=bearer("alice-token")))
        obj = await waiter.status(CC, "alice-direct", synced, "synced over SSE", operator=operator)
        assert server.last_headers.get("authorization") == f"Bearer {ALICE_TOKEN}"
    assert await api.list(TS) == []
    assert obj["status"]["url"] == server.url and obj["status"]["owner"] == "alice@example.com"
    assert tool_names(obj) == ["alice_000", "alice_001", "alice_002"]
    assert await api.get(CM, api.ns, "connectorconfig-alice-direct") is not None


async def test_no_cross_namespace_toolserver_reference(api, operator, waiter):
    with token_server() as server:
        await shared_toolserver(api, server.url)                    # in the test's namespace only
        team_b = await api.make_namespace("team-b")
        await make_secret(api, "alice-token", ALICE_TOKEN, namespace=team_b)
        await api.create(connectorconfig("alice", namespace=team_b, toolServerRef={"name": "shared"},
                                         auth=bearer("alice-token")))
        await waiter.status(TS, "shared", synced, "the ToolServer in its namespace synced", operator=operator)
        obj = await waiter.status(CC, "alice", synced_reason("ToolServerNotFound"), "ToolServerNotFound",
                                  namespace=team_b, operator=operator)
        assert server.list_calls == 1                                # the ToolServer's sync only
    assert f"ToolServer {team_b}/shared does not exist" in condition(obj, "Synced")["message"]
    assert await api.get(CM, team_b, "connectorconfig-alice") is None


@pytest.mark.emulator_only("a real server's CEL rule refuses this spec at admission (tests/e2e/test_cluster.py)")
async def test_both_toolserverref_and_url_is_invalid_spec(api, operator, waiter):
    with token_server() as server:
        await shared_toolserver(api, server.url)
        await api.create(connectorconfig("both", toolServerRef={"name": "shared"}, url=server.url))
        obj = await waiter.status(CC, "both", synced_reason("InvalidSpec"), "InvalidSpec", operator=operator)
    message = condition(obj, "Synced")["message"]
    assert "exactly one of spec.toolServerRef and spec.url" in message
    assert obj["status"]["phase"] == "Failed" and "nextSyncAt" not in obj["status"]
    assert "retrying" not in message


async def test_no_token_leaks_anywhere(api, operator, waiter):
    tokens = {SERVER_TOKEN: SHARED_TOOLS, ALICE_TOKEN: ALICE_TOOLS, ROTATED_TOKEN: BOB_TOOLS}
    with McpTestServer(tokens=tokens) as server, \
            McpTestServer(tokens={LEAKY_TOKEN: SHARED_TOOLS}, mode="leaky-error") as leaky:
        await shared_toolserver(api, server.url)
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await make_secret(api, "bob-token", WRONG_TOKEN)
        await make_secret(api, "leaky-token", LEAKY_TOKEN)
        await api.create(connectorconfig("alice", toolServerRef={"name": "shared"}, auth=bearer("alice-token")))
        await api.create(connectorconfig("bob", toolServerRef={"name": "shared"}, auth=bearer("bob-token")))
        # A careless server that quotes the caller's Authorization header in its error.
        await api.create(connectorconfig("leaky", url=leaky.url, auth=bearer("leaky-token")))
        await waiter.status(CC, "alice", synced, "alice synced", operator=operator)
        await waiter.status(CC, "bob", synced_reason("AuthenticationFailed"), "bob refused", operator=operator)
        await waiter.status(CC, "leaky", synced_reason("ProtocolError"), "the leaky server's error",
                            operator=operator)
        await api.patch(SECRETS, api.ns, "bob-token", {"data": {"token": b64(ROTATED_TOKEN)}})
        await waiter.status(CC, "bob", synced, "bob synced after the rotation", operator=operator)
        await waiter.status(TS, "shared", synced, "ToolServer synced", operator=operator)
        # Events are posted asynchronously: wait for the last ones the scenario causes.
        await waiter.events("bob", "Recovered")
        await waiter.events("leaky", "SyncFailed")

    # Everything the operator writes to (Secrets hold the tokens, rightly, and are left out).
    held = {name: await api.list(name, api.ns) for name in (TS, CC, CM, "v1/events")}
    assert held[CC] and held[TS] and held[CM] and held["v1/events"]
    assert not any(k.startswith("kopf.") for obj in held[CC] + held[TS]
                   for k in obj["metadata"].get("annotations", {}))  # no bookkeeping of kopf's on our objects
    everything = json.dumps(held)
    log = operator.log()
    assert ": status patched (" in log                                # the full DEBUG log
    for token in (SERVER_TOKEN, ALICE_TOKEN, WRONG_TOKEN, ROTATED_TOKEN, LEAKY_TOKEN):
        for form in {token} | base64_forms(token):
            assert form not in everything, f"a token ({form[:8]}...) is in the emulator's objects"
            assert form not in log, f"a token ({form[:8]}...) is in the operator's log"


async def test_refresh_annotation_on_a_connectorconfig(api, operator, waiter):
    with token_server() as server:
        await shared_toolserver(api, server.url)
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await api.create(connectorconfig("alice", toolServerRef={"name": "shared"}, auth=bearer("alice-token"),
                                         sync=FAST))
        await waiter.status(CC, "alice", synced, "first sync", operator=operator)
        server.tokens = {**server.tokens, ALICE_TOKEN: ALICE_TOOLS[1:] + make_tools(4, prefix="alice")[3:]}
        await api.annotate(CC, api.ns, "alice", {"toolcatalog.dev/refresh": "r1",
                                                    "toolcatalog.dev/refresh-reason": "new plan"})
        obj = await waiter.status(CC, "alice", lambda o: (o["status"].get("lastRefresh") or {}).get("token") == "r1",
                                  "refresh r1 answered", operator=operator)
    record = obj["status"]["lastRefresh"]
    assert (record["result"], record["reason"]) == ("Succeeded", "new plan")
    assert (record["newTools"], record["removedTools"], record["changedTools"]) == (
        ["alice_003"], ["alice_000"], [])
    assert condition(obj, "Refreshed")["reason"] == "RefreshSucceeded"
    assert obj["status"]["lastSync"]["trigger"] == "refresh"
    gone = {e["name"]: e for e in obj["status"]["tools"]}["alice_000"]
    assert gone["available"] is False and gone["removedAt"]


async def test_a_connectorconfig_cannot_take_over_the_toolservers_cache(api, operator, waiter):
    with token_server() as server:
        await settled_toolserver(api, waiter, operator, server.url)
        before = await api.get(CM, api.ns, "toolserver-shared")
        await make_secret(api, "alice-token", ALICE_TOKEN)
        await api.create(connectorconfig("thief", toolServerRef={"name": "shared"}, auth=bearer("alice-token"),
                                         cache={"configMapName": "toolserver-shared"}))
        obj = await waiter.status(CC, "thief", synced_reason("CacheConflict"), "CacheConflict", operator=operator)
    assert "toolserver-shared" in condition(obj, "Synced")["message"]
    after = await api.get(CM, api.ns, "toolserver-shared")
    assert after["data"] == before["data"] and after["metadata"]["ownerReferences"] == \
        before["metadata"]["ownerReferences"]


async def test_rotating_the_toolservers_secrets_resyncs_the_connectorconfigs_inheriting_them(
        api, operator, waiter, tmp_path):
    try:
        cert = make_self_signed_cert(str(tmp_path))
    except RuntimeError:
        pytest.skip("openssl CLI not available to make a test certificate")
    tokens = {SERVER_TOKEN: SHARED_TOOLS, ALICE_TOKEN: ALICE_TOOLS}
    with McpTestServer(cert=cert, tokens=tokens) as server:
        await make_secret(api, "shared-token", SERVER_TOKEN)
        await api.create(secret("shared-ca", {"ca.crt": cert.pem}))
        tls = {"caBundle": {"secretKeyRef": {"name": "shared-ca", "key": "ca.crt"}}}
        await api.create(toolserver("shared", server.url, auth=bearer("shared-token"), tls=tls))
        await waiter.status(TS, "shared", synced, "ToolServer synced over https", operator=operator)
        await make_secret(api, "alice-token", ALICE_TOKEN)
        # "team" inherits everything; alice brings her own token and inherits the CA bundle.
        await api.create(connectorconfig("team", toolServerRef={"name": "shared"}))
        await api.create(connectorconfig("alice", toolServerRef={"name": "shared"}, auth=bearer("alice-token")))
        team = await waiter.status(CC, "team", synced, "team synced", operator=operator)
        alice = await waiter.status(CC, "alice", synced, "alice synced", operator=operator)
        assert tool_names(team) == ["shared_000", "shared_001"] and tool_names(alice)[0] == "alice_000"

        # The ToolServer's token rotates: the ToolServer and "team" resync; alice's token did not change.
        server.tokens = {ROTATED_TOKEN: BOB_TOOLS, ALICE_TOKEN: ALICE_TOOLS}
        await api.patch(SECRETS, api.ns, "shared-token", {"data": {"token": b64(ROTATED_TOKEN)}})
        team = await waiter.status(CC, "team", lambda o: usable_tools(o) == ["bob_000"] and synced(o),
                                   "team resynced with the rotated token", operator=operator)
        assert team["status"]["lastSync"]["trigger"] == "secret"
        await waiter.status(TS, "shared", lambda o: o["status"]["lastSync"]["trigger"] == "secret" and synced(o),
                            "ToolServer resynced", operator=operator)
        await looked_at(api, operator, CC, "alice")
        assert (await api.get(CC, api.ns, "alice"))["status"]["lastSync"] == alice["status"]["lastSync"]

        # The CA bundle Secret rotates (same CA, re-issued text): alice inherits it, so she resyncs.
        await api.patch(SECRETS, api.ns, "shared-ca", {"data": {"ca.crt": b64(cert.pem + "\n")}})
        alice = await waiter.status(CC, "alice", lambda o: o["status"]["lastSync"]["trigger"] == "secret",
                                    "alice resynced after the CA rotation", operator=operator)
    assert synced(alice) and alice["metadata"]["generation"] == 1
