"""Hostile servers and hostile specs, end to end on both API servers (issue: hardening).

Each test is one finding of the red-team run: a server that quotes the credentials back, answers of
hundreds of megabytes, a catalog too big for status, servers that accept and never answer, odd IP
literals, Retry-After, a password in a URL, and a status write the API server refuses.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.k8s import CM, TS, condition, secret, toolserver, wait_until
from toolcatalog.api import constants as c
from toolcatalog.reconcile.plan import RETRY_JITTER_FRACTION
from toolcatalog_dev.cluster import ApiError
from toolcatalog_dev.mcpserver import McpTestServer, make_tools, silent_port

pytestmark = pytest.mark.e2e

TOKEN = "h0stile-Echo-Token-7781"
FORMS = (TOKEN, base64.b64encode(TOKEN.encode()).decode().rstrip("="), quote(TOKEN, safe=""))


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


def failed_with(reason: str):
    return lambda obj: condition(obj, "Synced").get("reason") == reason and \
        condition(obj, "Synced").get("status") == "False"


def cache_text(cm: dict[str, Any]) -> str:
    """Everything a reader of the ConfigMap can see: the raw object and the inflated document."""
    raw = json.dumps(cm)
    if cm.get("binaryData"):
        return raw + gzip.decompress(base64.b64decode(cm["binaryData"]["tools.json.gz"])).decode()
    return raw


def document(cm: dict[str, Any]) -> dict[str, Any]:
    if cm.get("binaryData"):
        return dict(json.loads(gzip.decompress(base64.b64decode(cm["binaryData"]["tools.json.gz"]))))
    return dict(json.loads(cm["data"]["tools.json"]))


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def assert_nowhere(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for form in FORMS:
            assert form not in text, f"a form of the credential ({form!r}) is in the {where}"


async def everything_visible(api, name: str, operator) -> dict[str, str]:
    obj = await api.get(TS, api.ns, name)
    cm = await api.get(CM, api.ns, f"toolserver-{name}")
    events = await api.events(api.ns, name)
    return {"status": json.dumps(obj), "ConfigMap": cache_text(cm) if cm else "",
            "Events": json.dumps(events), "operator log": operator.log()}


async def forced_refresh(api, name: str, token: str) -> None:
    await api.annotate(TS, api.ns, name, {c.ANN_REFRESH: token, c.ANN_REFRESH_FORCE: token})


async def with_token(api, name: str, url: str, **spec: Any) -> None:
    await api.create(secret("echo-auth", {"token": TOKEN}))
    await api.create(toolserver(name, url, auth={"bearerToken": {"secretKeyRef": {"name": "echo-auth",
                                                                                    "key": "token"}}}, **spec))


# ------------------------------------------------------------------ credentials echoed back


async def test_a_server_quoting_the_token_back_gets_it_masked_in_status_cache_events_and_logs(api, operator,
                                                                                            waiter):
    with McpTestServer(tokens={TOKEN: make_tools(1)}, mode="echo-token") as server:
        await with_token(api, "echo", server.url)
        obj = await waiter.status(TS, "echo", synced, "Synced=True", operator=operator)
        visible = await everything_visible(api, "echo", operator)
    assert obj["status"]["server"]["name"] == "srv-***"
    cm = await api.get(CM, api.ns, "toolserver-echo")
    (tool,) = document(cm)["tools"]
    assert tool["title"] == "Token ***" and tool["description"].startswith("Send *** along; or ***")
    assert list(tool["inputSchema"]["properties"]) == ["***"]
    assert_nowhere(visible)


async def test_a_token_inside_a_tool_name_fails_the_sync_closed_and_keeps_the_previous_catalog(api, operator,
                                                                                             waiter):
    with McpTestServer(tokens={TOKEN: make_tools(2)}) as server:
        await with_token(api, "named", server.url)
        before = await waiter.status(TS, "named", synced, "Synced=True", operator=operator)
        cm_before = await api.get(CM, api.ns, "toolserver-named")
        server.mode = "echo-token-name"
        await forced_refresh(api, "named", "after-echo")
        obj = await waiter.status(TS, "named", lambda o: (o["status"].get("lastRefresh") or {}).get("token")
                                  == "after-echo", "refresh answered", operator=operator)
        visible = await everything_visible(api, "named", operator)
    assert obj["status"]["lastRefresh"]["result"] == "Failed"
    assert condition(obj, "Synced")["reason"] == "ProtocolError"
    assert "contains a credential" in condition(obj, "Synced")["message"]
    assert obj["status"]["tools"] == before["status"]["tools"]
    cm_after = await api.get(CM, api.ns, "toolserver-named")
    assert cm_after["data"] == cm_before["data"]
    assert_nowhere(visible)


async def test_a_handshake_era_server_quoting_the_token_in_a_malformed_answer_leaks_nothing(api, operator,
                                                                                          waiter):
    """The mcp SDK's own ERROR and DEBUG lines (pydantic quoting the answer, SSE message dumps)."""
    with McpTestServer(tokens={TOKEN: make_tools(1)}, mode="echo-token", legacy=True) as server:
        await with_token(api, "legacy", server.url)
        obj = await waiter.status(TS, "legacy", failed_with("ProtocolError"), "Synced=False ProtocolError",
                                  operator=operator)
        visible = await everything_visible(api, "legacy", operator)
    assert "tools" not in obj["status"]
    assert "***" in visible["operator log"]         # it was there, and masked
    assert_nowhere(visible)


async def test_a_password_in_the_url_is_invalid_and_never_logged(api, operator, waiter):
    password = "url-Pa55word-3141"
    with McpTestServer() as server:
        url = server.url.replace("://", f"://admin:{password}@", 1)
        await api.create(toolserver("userinfo", url))
        obj = await waiter.status(TS, "userinfo", failed_with("InvalidSpec"), "InvalidSpec", operator=operator)
    assert "must not carry credentials" in condition(obj, "Synced")["message"]
    assert server.requests == 0
    assert password not in operator.log() and "admin:***" not in operator.log()
    assert password not in json.dumps(await api.events(api.ns, "userinfo"))


# ------------------------------------------------------------------ memory bounded


@pytest.mark.parametrize("mode", ["huge", "gzip-bomb", "huge-sse"])
async def test_a_huge_answer_or_a_gzip_bomb_fails_before_it_is_buffered(api, start_operator, waiter, mode):
    operator = start_operator()
    with McpTestServer(mode=mode) as server:
        await api.create(toolserver("big", server.url))
        obj = await waiter.status(TS, "big", failed_with("ProtocolError"), "ProtocolError", timeout=60,
                                  operator=operator)
        peak = peak_rss_mib(operator.pid)
    assert "larger than" in condition(obj, "Synced")["message"]
    assert await api.get(CM, api.ns, "toolserver-big") is None
    # 200 MB on the wire (or inflated): the operator reads at most --max-response-bytes (8 MiB) of it.
    assert peak < 200, f"operator peak RSS {peak:.0f} MiB"


async def test_long_tool_names_keep_status_and_cache_in_step(api, operator, waiter):
    """400 tools with 10,000-character names: status lists each under a name cut to 128 characters, the
    cache holds the full names, and the refresh is answered."""
    tools = [{"name": f"{i:04d}" + "n" * 9996, "description": f"tool {i}", "inputSchema": {"type": "object"}}
             for i in range(400)]
    with McpTestServer(tools=tools) as server:
        await api.create(toolserver("long", server.url, annotations={c.ANN_REFRESH: "long-1"}))
        obj = await waiter.status(TS, "long", lambda o: (o["status"].get("lastRefresh") or {}).get("token")
                                  == "long-1", "refresh answered", timeout=60, operator=operator)
    assert synced(obj) and obj["status"]["lastRefresh"]["result"] == "Succeeded", condition(obj, "Synced")
    names = [entry["name"] for entry in obj["status"]["tools"]]
    assert len(names) == len(set(names)) == 400 and max(map(len, names)) == 128
    cm = await api.get(CM, api.ns, "toolserver-long")
    cached = document(cm)["tools"]
    assert sorted(t["name"] for t in cached) == sorted(t["name"] for t in tools)
    assert obj["status"]["toolCount"] == 400
    assert obj["status"]["cache"]["contentHash"] == cm["metadata"]["annotations"][c.ANN_CONTENT_HASH]


# ------------------------------------------------------------------ no tenant starves the others


async def test_servers_that_never_answer_do_not_starve_a_healthy_one(api, start_operator, waiter):
    operator = start_operator(args=["--max-concurrent-syncs", "2"])
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(silent_port()) for _ in range(12)]
        for index, port in enumerate(ports):
            await api.create(toolserver(f"hung-{index:02d}", f"http://127.0.0.1:{port}/mcp",
                                        sync={"timeoutSeconds": 300}))
        with McpTestServer() as healthy:
            # Every worker is taken by a hung server first; the healthy one comes after all of them.
            await waiter.status(TS, "hung-11", lambda o: True, "seen", operator=operator)
            await api.create(toolserver("healthy", healthy.url))
            obj = await waiter.status(TS, "healthy", synced, "Synced=True despite 12 hung servers",
                                      timeout=20, operator=operator)
    assert obj["status"]["toolCount"] == 3


async def test_a_hung_server_is_cut_at_the_operators_timeout_cap(api, start_operator, waiter):
    operator = start_operator(args=["--max-sync-timeout", "3"])
    with silent_port() as port:
        await api.create(toolserver("capped", f"http://127.0.0.1:{port}/mcp", sync={"timeoutSeconds": 300}))
        obj = await waiter.status(TS, "capped", failed_with("Timeout"), "Timeout after the 3 s cap", timeout=30,
                                  operator=operator)
    assert obj["status"]["lastSync"]["durationMs"] < 30_000


# ------------------------------------------------------------------ smaller ones


@pytest.mark.parametrize("host", ["0177.0.0.01", "127.000.000.001", "0x7f.1", "2130706433"])
async def test_an_odd_ipv4_literal_is_an_invalid_spec_before_any_connection(api, operator, waiter, host):
    with McpTestServer() as server:
        await api.create(toolserver("odd", f"http://{host}:{server.port}/mcp"))
        obj = await waiter.status(TS, "odd", failed_with("InvalidSpec"), "InvalidSpec", operator=operator)
    assert "non-standard form" in condition(obj, "Synced")["message"]
    assert server.requests == 0
    assert obj["status"].get("nextSyncAt") is None           # not retried: only a spec change helps


async def test_retry_after_is_honoured_up_to_the_cap(api, operator, waiter):
    with McpTestServer(mode="http429") as server:          # Retry-After: 3600
        await api.create(toolserver("throttled", server.url))
        obj = await waiter.status(TS, "throttled", failed_with("ServerUnavailable"), "ServerUnavailable",
                                  operator=operator)
    status = obj["status"]
    completed = datetime.fromisoformat(status["lastSync"]["completedAt"])
    delay = (datetime.fromisoformat(status["nextSyncAt"]) - completed).total_seconds()
    # The 300 s cap, less up to a fifth of jitter; both times are stored to the whole second.
    assert 300 * (1 - RETRY_JITTER_FRACTION) - 1 <= delay <= 300 + 1, \
        f"next attempt {delay:.0f} s after a 429 with Retry-After: 3600"


# ------------------------------------------------------------------ a status write refused


@pytest.mark.cluster_only("a ValidatingAdmissionPolicy refuses the write: the emulator has no admission")
@pytest.mark.parametrize(("refusal", "reason"), [("RequestEntityTooLarge", "CacheTooLarge"),
                                                  ("Invalid", "WriteRejected")])
async def test_a_refused_status_write_puts_the_previous_cache_back(api, operator, waiter, refusal, reason):
    with McpTestServer(tools=make_tools(3)) as server:
        await api.create(toolserver("refused", server.url))
        before = await waiter.status(TS, "refused", synced, "Synced=True", operator=operator)
        cm_before = await api.get(CM, api.ns, "toolserver-refused")
        async with status_refused_above(api, "refused", 3, refusal):
            server.tools = make_tools(6)
            await forced_refresh(api, "refused", "refused-1")
            obj = await waiter.status(TS, "refused", lambda o: (o["status"].get("lastRefresh") or {}).get("token")
                                      == "refused-1", "refresh answered", operator=operator)
    status = obj["status"]
    assert status["lastRefresh"]["result"] == "Failed" and failed_with(reason)(obj)
    assert status["tools"] == before["status"]["tools"] and status["toolCount"] == 3
    assert condition(obj, "Stalled")["status"] == "True"
    cm_after = await api.get(CM, api.ns, "toolserver-refused")
    assert cm_after["data"] == cm_before["data"] and cm_after.get("binaryData") == cm_before.get("binaryData")
    assert cm_after["metadata"]["annotations"][c.ANN_CONTENT_HASH] == status["cache"]["contentHash"]
    assert "put back as it was" in operator.log()


VAP = "admissionregistration.k8s.io/v1/validatingadmissionpolicies"
VAP_BINDING = "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


@contextlib.asynccontextmanager
async def status_refused_above(api, name: str, tools: int, refusal: str):
    """A status write that records more than `tools` tools is refused with `refusal` (413 or 422) until the
    block ends, by a ValidatingAdmissionPolicy for the test's namespace (in force once a dry run is refused)."""
    policy = f"{api.ns}-max-tools"
    await api.create({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{
                     "apiGroups": [c.GROUP], "apiVersions": ["*"], "operations": ["UPDATE"],
                     "resources": ["toolservers/status"]}]},
                 "validations": [{"expression": f"!has(object.status.toolCount) || object.status.toolCount <= {tools}",
                                  "reason": refusal, "message": f"at most {tools} tools"}]}})
    await api.create({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": api.ns}}}}})

    async def in_force() -> bool:
        try:
            await api.request("PATCH", api.path(TS, api.ns, name, "status"), {"status": {"toolCount": tools + 1}},
                              "application/merge-patch+json", params={"dryRun": "All"})
        except ApiError as error:
            return error.status in (413, 422)
        return False

    try:
        await wait_until(in_force, timeout=20, what="the admission policy in force")
        yield
    finally:
        await api.delete(VAP_BINDING, None, policy)
        await api.delete(VAP, None, policy)
