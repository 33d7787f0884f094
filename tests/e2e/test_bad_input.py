"""Bad input never leaves a resource without a condition (issue 15, item 5), end to end on both API servers.

Every case here once ended as an exception retried forever with nothing in status: a host written
in full-width digits, a bearer token with a non-ASCII character. Each now ends as a condition that
names what to fix, or is refused before it is stored. And two answers of a server that breaks the
protocol (a response to another request, tools without an inputSchema) fail the sync closed: the
previous cache ConfigMap stays byte for byte, status.tools as it was.

Full-width hosts here only ever spell loopback addresses: if one were ever resolved, IDNA mapping
would make it 127.0.0.x, never a name to look up.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.test_admission import review, served, webhook  # noqa: F401 - webhook is a fixture
from tests.support.k8s import CM, SECRETS, TS, condition, secret, toolserver, wait_until
from toolcatalog.api import constants as c
from toolcatalog_dev.cluster import ApiError
from toolcatalog_dev.mcpserver import McpTestServer, make_tools

pytestmark = pytest.mark.e2e

TOKEN = "tok\u00fc-Bad-Input-5521"             # "tokü...": no HTTP header can carry it


def failed_with(reason: str):
    return lambda obj: condition(obj, "Synced").get("status") == "False" and \
        condition(obj, "Synced").get("reason") == reason


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


def refresh_answered(token: str):
    return lambda obj: (obj["status"].get("lastRefresh") or {}).get("token") == token


async def forced_refresh(api, name: str, token: str) -> None:
    await api.annotate(TS, api.ns, name, {c.ANN_REFRESH: token, c.ANN_REFRESH_FORCE: token})


def full_width(text: str) -> str:
    """ASCII digits and letters as their full-width forms (U+FF10..): what IDNA's UTS-46 maps back."""
    return "".join(chr(ord(char) - 0x21 + 0xFF01) if "!" <= char <= "~" and char not in ".:" else char
                   for char in text)


# ------------------------------------------------------------------ hosts the HTTP client would refuse


@pytest.mark.parametrize("host", [full_width("127.0.0.1"), full_width("localhost")])
async def test_a_host_in_full_width_characters_is_refused_or_an_invalid_spec_never_a_retry_loop(
        api, operator, waiter, host):
    """The API server refuses it (the CRD's CEL rule); the emulator, which checks no schema, stores it, and
    the operator reports InvalidSpec naming spec.url and the character, without one request sent."""
    with McpTestServer() as server:
        manifest = toolserver("wide", f"http://{host}:{server.port}/mcp")
        if api.backend == "cluster":
            with pytest.raises(ApiError) as refused:
                await api.create(manifest)
            assert refused.value.status == 422
            assert "spec.url" in str(refused.value) and "A-label" in str(refused.value)
            assert await api.get(TS, api.ns, "wide") is None
            return
        await api.create(manifest)
        obj = await waiter.status(TS, "wide", failed_with("InvalidSpec"), "Synced=False InvalidSpec",
                                  operator=operator)
        assert server.requests == 0
    message = condition(obj, "Synced")["message"]
    assert "spec.url host has a character that is not ASCII (U+FF" in message and "FULLWIDTH" in message
    assert condition(obj, "Stalled")["status"] == "True" and obj["status"].get("nextSyncAt") is None
    assert await api.get(CM, api.ns, "toolserver-wide") is None
    assert "Traceback" not in operator.log()


async def test_full_width_digits_do_not_reach_an_address_the_egress_policy_denies(api, start_operator, waiter):
    """Under IDNA's UTS-46 mapping １２７.０.０.２ is 127.0.0.2: with that address denied, neither spelling
    gets a request through (tested on a denied loopback address, as no test may send elsewhere)."""
    operator = start_operator(args=["--egress-deny", "127.0.0.2/32"])
    with McpTestServer(host="127.0.0.2") as server:
        wide = toolserver("wide", f"http://{full_width('127.0.0.2')}:{server.port}/mcp")
        if api.backend == "cluster":
            with pytest.raises(ApiError) as refused:
                await api.create(wide)
            assert refused.value.status == 422 and "spec.url" in str(refused.value)
        else:
            await api.create(wide)
            await waiter.status(TS, "wide", failed_with("InvalidSpec"), "Synced=False InvalidSpec", operator=operator)
        await api.create(toolserver("plain", f"http://127.0.0.2:{server.port}/mcp"))
        obj = await waiter.status(TS, "plain", failed_with("EgressDenied"), "Synced=False EgressDenied",
                                  operator=operator)
        assert server.requests == 0
    assert "127.0.0.2 is in denied network 127.0.0.2/32" in condition(obj, "Synced")["message"]


@pytest.mark.emulator_only("the emulator calls no webhooks: the test sends the AdmissionReview itself (on the real "
                            "server the CRD's CEL rule refuses such a host before any webhook)")
async def test_the_webhook_says_when_a_host_reads_as_a_denied_address_under_idna_mapping(api, start_operator,
                                                                                       webhook):  # noqa: F811
    operator = start_operator(args=[*webhook["args"], "--egress-deny", "127.0.0.2/32"])
    await wait_until(lambda: served(webhook), timeout=20, what="the webhook serving", operator=operator)
    answer = await review(webhook, toolserver("wide", f"http://{full_width('127.0.0.2')}:9/mcp"))
    assert answer["allowed"] is False and answer["status"]["code"] == 422
    message = answer["status"]["message"]
    assert "spec.url host has a character that is not ASCII (U+FF11 FULLWIDTH DIGIT ONE)" in message
    assert "its host reads as 127.0.0.2 under IDNA mapping, and the operator may not connect there" in message
    answer = await review(webhook, toolserver("headers", "http://127.0.0.1:9/mcp", headers={"X-Tenant": "caf\u00e9"}))
    assert answer["allowed"] is False and "spec.headers.X-Tenant has a character that is not ASCII" in \
        answer["status"]["message"]


# ------------------------------------------------------------------ a credential HTTP cannot carry


async def test_a_token_with_a_non_ascii_character_is_an_invalid_spec_naming_the_secret_never_the_value(
        api, operator, waiter):
    with McpTestServer(tokens={"good-token-7719": make_tools(2)}) as server:
        await api.create(secret("bad-auth", {"token": TOKEN}))
        await api.create(toolserver("accented", server.url,
                                    auth={"bearerToken": {"secretKeyRef": {"name": "bad-auth", "key": "token"}}}))
        obj = await waiter.status(TS, "accented", failed_with("InvalidSpec"), "Synced=False InvalidSpec",
                                  operator=operator)
        assert server.requests == 0
        message = condition(obj, "Synced")["message"]
        assert message.startswith(f"spec.auth.bearerToken: Secret {api.ns}/bad-auth key 'token' holds a character "
                                  "that is not ASCII")
        assert condition(obj, "Stalled")["status"] == "True"
        events = await waiter.events("accented", "SyncFailed", operator=operator)
        visible = {"status": json.dumps(obj), "Events": json.dumps(events), "operator log": operator.log()}
        for where, text in visible.items():
            for form in (TOKEN, TOKEN.encode().decode("latin-1"), "Bad-Input-5521"):
                assert form not in text, f"the token is in the {where}"
        # Not retried in a loop, but the Secret's watch syncs it again as soon as the Secret is fixed.
        await api.patch(SECRETS, api.ns, "bad-auth", {"data": {"token": base64.b64encode(b"good-token-7719").decode()}})
        obj = await waiter.status(TS, "accented", synced, "Synced=True after the Secret was fixed", operator=operator)
    assert obj["status"]["toolCount"] == 2 and obj["status"]["lastSync"]["trigger"] == "secret"


# ------------------------------------------------------------------ a server breaking the protocol


async def synced_then_broken(api, operator, waiter, server: McpTestServer, mode: str, name: str
                             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Sync once, break the server, force a refresh: (status before, cache before, status after, cache after)."""
    await api.create(toolserver(name, server.url))
    before = await waiter.status(TS, name, synced, "Synced=True", operator=operator)
    cm_before = await api.get(CM, api.ns, f"toolserver-{name}")
    server.mode = mode
    await forced_refresh(api, name, f"{mode}-1")
    after = await waiter.status(TS, name, refresh_answered(f"{mode}-1"), "refresh answered", operator=operator)
    return before, cm_before, after, await api.get(CM, api.ns, f"toolserver-{name}")


def assert_kept(before: dict[str, Any], cm_before: dict[str, Any], after: dict[str, Any],
                cm_after: dict[str, Any]) -> None:
    """A failed sync changed neither the cache ConfigMap (byte for byte) nor what status says of it."""
    assert after["status"]["lastRefresh"]["result"] == "Failed"
    for key in ("data", "binaryData"):
        assert cm_after.get(key) == cm_before.get(key)
    assert cm_after["metadata"]["annotations"] == cm_before["metadata"]["annotations"]
    assert cm_after["metadata"]["resourceVersion"] == cm_before["metadata"]["resourceVersion"]
    for key in ("tools", "toolCount", "cache", "server"):
        assert after["status"].get(key) == before["status"].get(key), key


@pytest.mark.parametrize("legacy", [False, True], ids=["stateless", "sdk-session"])
async def test_an_answer_to_another_request_fails_the_sync_and_keeps_the_cache(api, operator, waiter, legacy):
    with McpTestServer(tools=make_tools(2), legacy=legacy) as server:
        before, cm_before, after, cm_after = await synced_then_broken(api, operator, waiter, server, "wrong-id",
                                                                      "wrongid")
    assert failed_with("ProtocolError")(after), condition(after, "Synced")
    assert "with a response to another request (JSON-RPC id" in condition(after, "Synced")["message"]
    assert_kept(before, cm_before, after, cm_after)
    assert "smuggled" not in json.dumps(cm_after)


async def test_tools_without_an_input_schema_fail_the_sync_closed(api, operator, waiter):
    with McpTestServer(tools=make_tools(2)) as server:
        before, cm_before, after, cm_after = await synced_then_broken(api, operator, waiter, server, "null-schema",
                                                                      "schemaless")
        events = await waiter.events("schemaless", "SyncFailed", operator=operator)
        # A new resource on such a server gets no cache at all.
        await api.create(toolserver("fresh", server.url))
        fresh = await waiter.status(TS, "fresh", failed_with("ProtocolError"), "Synced=False ProtocolError",
                                    operator=operator)
    message = condition(after, "Synced")["message"]
    assert failed_with("ProtocolError")(after)
    assert "tools 'no_schema', 'null_schema' have no inputSchema object" in message
    assert any("no inputSchema object" in event["message"] for event in events)
    assert_kept(before, cm_before, after, cm_after)
    assert "null_schema" not in json.dumps(cm_after) and '"inputSchema": null' not in json.dumps(cm_after)
    assert "tools" not in fresh["status"] and await api.get(CM, api.ns, "toolserver-fresh") is None
