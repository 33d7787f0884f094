"""The gateways' pure parts: ToolHive's fail-closed tools filter, its validating-webhook protocol (HMAC,
the decision), and the ContextForge plan. The real gateways run in tests/gateways."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolcatalog.api.toolhive import NO_TOOL_ALLOWED, tools_filter
from toolcatalog.gateways.contextforge_plan import (
    ForgeTool,
    owner_tag,
    plan_gateway,
    plan_virtual_server,
    same_upstream,
    tag_ids,
)
from toolcatalog.gateways.toolhive_webhook import (
    InvalidWebhookRequest,
    decide,
    parse_request,
    sign,
    tool_calls,
    verify_signature,
)

HASH = "sha256:" + "a" * 64
names = st.text(alphabet="abcdefghij_-./", min_size=1, max_size=12)

# ------------------------------------------------------------------------------------------ ToolHive filter


def test_allowed_names_are_the_filter_sorted_and_once() -> None:
    assert tools_filter(["b", "a", "b"]) == ["a", "b"]


def test_nothing_allowed_is_never_an_empty_filter() -> None:
    """An empty toolsFilter means every tool to ToolHive."""
    assert tools_filter([]) == [NO_TOOL_ALLOWED]
    assert "," not in NO_TOOL_ALLOWED and "\n" not in NO_TOOL_ALLOWED     # thv-operator refuses those


@given(allowed=st.sets(names, max_size=5), offered=st.sets(names, max_size=5))
def test_the_filter_never_lets_through_an_offered_tool_that_is_not_allowed(allowed: set[str],
                                                                         offered: set[str]) -> None:
    written = tools_filter(allowed, known=offered | allowed)
    assert written, "an empty filter fails open"
    assert set(written) & (offered - allowed) == set()


def test_a_server_offering_the_sentinels_name_gets_another_sentinel() -> None:
    assert tools_filter([], known=[NO_TOOL_ALLOWED, f"{NO_TOOL_ALLOWED}-2"]) == [f"{NO_TOOL_ALLOWED}-3"]


# ------------------------------------------------------------------------------------------ ToolHive webhook


def call_body(method: str = "tools/call", name: Any = "create_issue", server: str = "github", **extra: Any) -> bytes:
    params = {"name": name, "arguments": {}} if name is not None else {"arguments": {}}
    return json.dumps({"version": "v0.1.0", "uid": "uid-1", "timestamp": "2026-12-06T10:00:00.123456789Z",
                       "principal": {"sub": "local-user"},
                       "mcp_request": {"jsonrpc": "2.0", "id": 7, "method": method, "params": params},
                       "context": {"server_name": server, "source_ip": "127.0.0.1:5555",
                                   "transport": "streamable-http"},
                       **extra}).encode()


def test_a_tool_call_of_an_allowed_tool_is_allowed_and_echoes_the_uid() -> None:
    answer = decide(parse_request(call_body()), {"create_issue": HASH}, allowlist="team-a/gw")
    assert answer.body() == {"version": "v0.1.0", "uid": "uid-1", "allowed": True, "reason": "Allowed"}


def test_a_tool_call_of_a_tool_not_allowed_is_denied_with_a_reason() -> None:
    answer = decide(parse_request(call_body(name="delete_repo")), {"create_issue": HASH}, allowlist="team-a/gw")
    assert not answer.allowed and answer.code == 403 and answer.reason == "ToolNotAllowed"
    assert answer.message is not None and "'delete_repo'" in answer.message and "team-a/gw" in answer.message


def test_an_unknown_server_denies_tool_calls_and_allows_everything_else() -> None:
    assert decide(parse_request(call_body()), None, allowlist="a/b").reason == "UnknownServer"
    for method in ("initialize", "tools/list", "notifications/initialized", "ping", "resources/read"):
        assert decide(parse_request(call_body(method=method)), None, allowlist="a/b").allowed


def test_a_tool_call_without_a_name_is_denied() -> None:
    answer = decide(parse_request(call_body(name=None)), {"create_issue": HASH}, allowlist="a/b")
    assert not answer.allowed and answer.reason == "MalformedToolCall"


def test_a_batch_is_denied_when_any_call_in_it_is_not_allowed() -> None:
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "create_issue"}},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_repo"}}]
    assert tool_calls(batch) == ["create_issue", "delete_repo"]
    body = json.loads(call_body())
    body["mcp_request"] = batch
    answer = decide(parse_request(json.dumps(body).encode()), {"create_issue": HASH}, allowlist="a/b")
    assert not answer.allowed and "'delete_repo'" in (answer.message or "")


def test_unknown_fields_are_ignored_and_garbage_is_refused() -> None:
    assert decide(parse_request(call_body(future_field={"x": 1})), {"create_issue": HASH}, allowlist="a/b").allowed
    for garbage in (b"", b"not json", b"[]", json.dumps({"uid": "u"}).encode()):
        with pytest.raises(InvalidWebhookRequest) as refused:
            parse_request(garbage)
        assert refused.value.reason == "InvalidRequest"
        assert refused.value.body()["allowed"] is False


SECRET = b"shared secret\n"     # a Secret's bytes as they are, a trailing newline included


def headers_for(body: bytes, at: int, secret: bytes = SECRET) -> dict[str, str]:
    return {"X-ToolHive-Timestamp": str(at), "X-ToolHive-Signature": sign(secret, at, body)}


def test_the_signed_message_is_the_timestamp_a_dot_and_the_body() -> None:
    # The value ToolHive's webhook.SignPayload computes for these inputs (pkg/webhook/signing.go).
    expected = hmac.new(b"secret", b'1700000000.{"a":1}', "sha256").hexdigest()
    assert sign(b"secret", 1700000000, b'{"a":1}') == f"sha256={expected}"


def test_a_fresh_valid_signature_passes() -> None:
    body, now = call_body(), int(time.time())
    verify_signature(SECRET, headers_for(body, now), body, now + 5)


@pytest.mark.parametrize("tamper", ["no headers", "other secret", "changed body", "stale", "future", "bad stamp",
                                    "no prefix"])
def test_anything_but_a_fresh_valid_signature_is_refused(tamper: str) -> None:
    body, now = call_body(), 1_800_000_000
    headers = headers_for(body, now)
    checked_body, at = body, now
    if tamper == "no headers":
        headers = {}
    elif tamper == "other secret":
        headers = headers_for(body, now, b"shared secret")       # the same without its newline
    elif tamper == "changed body":
        checked_body = call_body(name="delete_repo")
    elif tamper == "stale":
        at = now + 301
    elif tamper == "future":
        at = now - 301
    elif tamper == "bad stamp":
        headers["X-ToolHive-Timestamp"] = "yesterday"
    elif tamper == "no prefix":
        headers["X-ToolHive-Signature"] = headers["X-ToolHive-Signature"].removeprefix("sha256=")
    with pytest.raises(InvalidWebhookRequest) as refused:
        verify_signature(SECRET, headers, checked_body, at)
    assert refused.value.reason == "InvalidSignature"
    assert SECRET.decode().strip() not in refused.value.message


# ------------------------------------------------------------------------------------------ ContextForge plan


def tool(name: str, enabled: bool = True, id_: str | None = None) -> ForgeTool:
    return ForgeTool(id=id_ or f"id-{name}", name=f"gw-{name.replace('_', '-')}", original_name=name, enabled=enabled)


def test_the_plan_withdraws_what_is_not_allowed_and_activates_what_is() -> None:
    plan = plan_gateway([tool("a"), tool("b", enabled=False), tool("c"), tool("d", enabled=False)],
                        {"a": HASH, "b": HASH, "gone": HASH})
    assert [t.original_name for t in plan.deactivate] == ["c"]
    assert [t.original_name for t in plan.activate] == ["b"]
    assert plan.allowed_ids == ("id-a", "id-b")
    assert plan.missing == ("gone",)


@given(states=st.dictionaries(names, st.booleans(), max_size=8), allowed=st.sets(names, max_size=8))
def test_after_the_plan_exactly_the_allowed_tools_are_active(states: dict[str, bool], allowed: set[str]) -> None:
    plan = plan_gateway([tool(name, enabled) for name, enabled in states.items()], {n: HASH for n in allowed})
    after = dict(states)
    after.update({t.original_name: False for t in plan.deactivate})
    after.update({t.original_name: True for t in plan.activate})
    assert {name for name, active in after.items() if active} == allowed & set(states)


def test_a_virtual_server_is_written_only_when_its_tools_differ() -> None:
    assert plan_virtual_server(["b", "a"], ["a", "b", "a"]).associated is None
    assert plan_virtual_server(["a", "x"], ["b", "a"]).associated == ("a", "b")
    assert plan_virtual_server([], []).associated is None


def test_owner_tags_are_valid_contextforge_tags() -> None:
    assert owner_tag("team-a/Gateway") == "toolcatalog.dev:team-a:gateway"
    assert owner_tag("") == "toolcatalog.dev:managed"        # a tag must end with a letter or digit
    long = owner_tag("n" * 63 + "/" + "x" * 200)
    assert len(long) <= 100 and long.startswith("toolcatalog.dev:sha256.")
    assert owner_tag("team-a/gw") in tag_ids({"tags": [{"id": "toolcatalog.dev:team-a:gw", "label": "x"}, "other"]})


@pytest.mark.parametrize(("registered", "upstream", "same"), [
    ("http://localhost:8000/mcp", "http://127.0.0.1:8000/mcp", True),        # ContextForge stores 127.0.0.1 so
    ("http://github-mcp.team-a.svc/mcp/", "http://GitHub-MCP.team-a.svc:80/mcp", True),
    ("https://example.com/mcp", "http://example.com/mcp", False),
    ("http://github-mcp:8000/mcp", "http://github-mcp:8001/mcp", False),
    ("http://github-mcp:8000/mcp", "http://github-mcp:8000/sse", False),
])
def test_a_gateway_is_the_upstream_when_scheme_host_port_and_path_match(registered: str, upstream: str,
                                                                         same: bool) -> None:
    assert same_upstream(registered, upstream) is same
