"""Which JSON-RPC responses answer which requests (mcp/wire.py): the rule the stateless fetch and the SDK
session's wire watch both apply, so that an answer meant for another request is never cached."""

from __future__ import annotations

import json

import pytest

from toolcatalog.api import constants as c
from toolcatalog.mcp.wire import RequestLedger, answers

URL = "http://127.0.0.1:9/mcp"


@pytest.mark.parametrize(("sent", "got", "same"), [
    (1, 1, True), (1, "1", True), (1, 1.0, True),       # as the mcp SDK correlates them (coerce_request_id)
    ("a", "a", True), (1, 0, False), (1, 2, False), (1, True, False), (1, None, False), (1, "01x", False),
    (1, "\uff11", False), (1, [1], False), (1, {"id": 1}, False), ("a", "b", False),
])
def test_a_response_answers_a_request_with_the_same_id(sent, got, same):
    assert answers(sent, got) is same


def ledger_with(*requests: dict) -> RequestLedger:
    ledger = RequestLedger()
    for request in requests:
        ledger.sent(json.dumps(request).encode())
    return ledger


def test_each_request_is_answered_once_and_nothing_else_is_an_answer():
    ledger = ledger_with({"jsonrpc": "2.0", "id": 0, "method": "initialize"},
                         {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert ledger.received({"jsonrpc": "2.0", "id": 0, "result": {}}, URL, "the MCP handshake") is None
    assert ledger.sent(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()) == 1
    # The handshake's id again (answered already), a made-up one: neither answers tools/list.
    for wrong in (0, 7, "x", None):
        error = ledger.received({"jsonrpc": "2.0", "id": wrong, "result": {"tools": []}}, URL, "tools/list (page 1)")
        assert error is not None and error.reason == c.REASON_PROTOCOL_ERROR
        assert error.message.startswith(f"{URL} answered tools/list (page 1) with a response to another request "
                                        f"(JSON-RPC id {json.dumps(wrong)})")
    # Requests and notifications from the server, and an error about an unreadable request, are no answers.
    for message in ({"jsonrpc": "2.0", "id": 5, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/x"},
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}):
        assert ledger.received(message, URL, "tools/list") is None
    assert ledger.received({"jsonrpc": "2.0", "id": "1", "result": {}}, URL, "tools/list") is None
    assert ledger.received({"jsonrpc": "2.0", "id": 1, "result": {}}, URL, "tools/list") is not None   # twice


def test_the_json_answer_to_a_post_must_answer_that_posts_request():
    ledger = ledger_with({"jsonrpc": "2.0", "id": 3, "method": "ping"}, {"jsonrpc": "2.0", "id": 4, "method": "a"})
    assert ledger.received({"jsonrpc": "2.0", "id": 3, "result": {}}, URL, "a", expected=4) is not None
    assert ledger.received([{"jsonrpc": "2.0", "id": 4, "result": {}}], URL, "a", expected=4) is None


@pytest.mark.parametrize("body", [None, b"", b"not json", b"[]", b'{"jsonrpc": "2.0", "id": 1, "result": {}}'])
def test_a_body_that_holds_no_request_records_none(body):
    ledger = RequestLedger()
    assert ledger.sent(body) is None
    assert ledger.received({"jsonrpc": "2.0", "id": 1, "result": {}}, URL, "x") is not None
