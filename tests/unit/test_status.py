"""Status policy: conditions, phases, retries, refresh records, merge patches."""

from datetime import UTC, datetime, timedelta

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.errors import STALLED_REASONS, retry_delay
from toolcatalog.api.models import CacheStatus, ErrorInfo, ServerInfo, Status, ToolStatus
from toolcatalog.reconcile.catalog import CatalogDiff
from toolcatalog.reconcile.conditions import get_condition, rfc3339, set_condition
from toolcatalog.reconcile.refresh import RefreshRequest
from toolcatalog.reconcile.status import (
    SyncFailure,
    SyncSuccess,
    after_failure,
    after_success,
    after_suspend,
    merge_patch,
    with_refresh,
)

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def success(at: datetime = T0, tools: int = 2) -> SyncSuccess:
    entries = [ToolStatus(name=f"t{i}", schema_hash="sha256:x", first_seen=rfc3339(at)) for i in range(tools)]
    return SyncSuccess(
        trigger="create", started_at=at, completed_at=at + timedelta(milliseconds=41),
        url="http://127.0.0.1:9/mcp", server=ServerInfo(name="s", version="1", protocol_version="2025-06-18"),
        tool_count=tools, tools=entries, tools_truncated=False,
        cache=CacheStatus(config_map="toolserver-x", cached_at=rfc3339(at),
                          expires_at=rfc3339(at + timedelta(hours=1)), content_hash="sha256:abc"),
        next_sync_at=at + timedelta(hours=1), tools_listed=tools)


def failure(at: datetime, reason: str = c.REASON_SERVER_UNAVAILABLE) -> SyncFailure:
    completed = at + timedelta(seconds=1)
    delay = retry_delay(reason, 1)
    return SyncFailure(trigger="schedule", started_at=at, completed_at=completed,
                       url="http://127.0.0.1:9/mcp", error=ErrorInfo(reason=reason, message="connection refused"),
                       next_sync_at=None if delay is None else completed + timedelta(seconds=delay))


def test_condition_transition_time_moves_only_when_status_flips():
    conds = set_condition([], type_="Ready", status=True, reason="A", message="m", generation=1, now="t1")
    conds = set_condition(conds, type_="Ready", status=True, reason="B", message="n", generation=2, now="t2")
    ready = get_condition(conds, "Ready")
    assert (ready.reason, ready.message, ready.last_transition_time, ready.observed_generation) == ("B", "n", "t1", 2)
    conds = set_condition(conds, type_="Ready", status=False, reason="C", message="o", generation=2, now="t3")
    assert get_condition(conds, "Ready").last_transition_time == "t3"


def test_first_success_is_ready_and_synced():
    status = after_success(Status(), success(), generation=3)
    assert status.phase == "Ready" and status.observed_generation == 3 and status.tool_count == 2
    assert get_condition(status.conditions, "Ready").reason == "CacheFresh"
    assert get_condition(status.conditions, "Synced").status == "True"
    assert status.last_sync.duration_ms == 41 and status.last_sync.result == "Succeeded"
    assert status.next_sync_at == "2026-11-21T13:00:00Z"
    assert get_condition(status.conditions, "Synced").message.startswith("listed 2 tools from")


def test_failure_after_success_keeps_cache_and_tools_and_goes_stale():
    ok = after_success(Status(), success(), generation=1)
    failed = after_failure(ok, failure(T0 + timedelta(hours=1)), generation=1)
    assert failed.tools == ok.tools and failed.cache == ok.cache and failed.server == ok.server
    assert failed.phase == "Stale"
    ready, synced = get_condition(failed.conditions, "Ready"), get_condition(failed.conditions, "Synced")
    assert (ready.status, ready.reason) == ("True", "CacheStale")
    assert ready.last_transition_time == get_condition(ok.conditions, "Ready").last_transition_time
    assert (synced.status, synced.reason) == ("False", "ServerUnavailable")
    assert "connection refused" in synced.message and "retrying in 5s" in synced.message
    assert failed.last_sync.error.reason == "ServerUnavailable"


def test_failure_without_cache_is_failed_not_ready():
    failed = after_failure(Status(), failure(T0), generation=1)
    assert failed.phase == "Failed"
    assert get_condition(failed.conditions, "Ready").reason == "NoCache"


def test_retry_backoff_grows_and_invalid_spec_is_not_retried():
    assert [retry_delay(c.REASON_TIMEOUT, n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay(c.REASON_SERVER_UNAVAILABLE, 50) == 300
    assert retry_delay(c.REASON_INVALID_SPEC, 1) is None
    assert retry_delay(c.REASON_AUTH_FAILED, 1) >= 300
    failed = after_failure(Status(), failure(T0, c.REASON_INVALID_SPEC), generation=1)
    assert failed.next_sync_at is None


def test_consecutive_failures_count_and_reset():
    status = Status()
    for n in range(3):
        status = after_failure(status, failure(T0 + timedelta(minutes=n)), generation=1)
    assert status.consecutive_failures == 3
    assert after_success(status, success(), generation=1).consecutive_failures == 0


def test_suspended_keeps_cache_and_says_so():
    ok = after_success(Status(), success(), generation=1)
    suspended = after_suspend(ok, generation=2, now=T0)
    assert suspended.phase == "Suspended" and suspended.tools == ok.tools and suspended.next_sync_at is None
    ready = get_condition(suspended.conditions, "Ready")
    assert (ready.status, ready.reason) == ("True", "Suspended")


def test_refresh_record_cuts_long_lists_and_keeps_counts():
    diff = CatalogDiff(new=[f"n{i:03}" for i in range(150)], removed=["r"], changed=[])
    request = RefreshRequest(token="tok", reason="deployed v2", force=False, requested_at=T0)
    status = with_refresh(Status(), request, completed_at=T0, result="Succeeded", generation=1, diff=diff,
                          previous_tool_count=6, tools_discovered=155)
    record = status.last_refresh
    assert len(record.new_tools) == 100 and record.new_tools_count == 150 and record.removed_tools == ["r"]
    refreshed = get_condition(status.conditions, "Refreshed")
    assert refreshed.reason == "RefreshSucceeded" and refreshed.message.startswith("155 tools: 150 new")


@pytest.mark.parametrize("old,new,expected", [
    ({"a": 1, "b": {"c": 1, "d": 2}}, {"a": 1, "b": {"c": 1}}, {"b": {"d": None}}),
    ({"lastSync": {"error": {"reason": "X"}}}, {"lastSync": {}}, {"lastSync": {"error": None}}),
    ({"tools": [1, 2]}, {"tools": [1]}, {"tools": [1]}),
    ({}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ({"a": 1}, {"a": 1}, {}),
])
def test_merge_patch(old, new, expected):
    assert merge_patch(old, new) == expected


@pytest.mark.parametrize("reason", STALLED_REASONS)
def test_a_failure_no_retry_can_fix_is_stalled_until_a_sync_succeeds(reason):
    failed = after_failure(Status(), failure(T0, reason), generation=1)
    stalled = get_condition(failed.conditions, "Stalled")
    assert (stalled.status, stalled.reason) == ("True", reason)
    assert stalled.message.startswith("syncing cannot succeed until this is fixed: ")
    recovered = after_success(failed, success(T0 + timedelta(minutes=1)), generation=2)
    assert get_condition(recovered.conditions, "Stalled") is None


@pytest.mark.parametrize("reason", [c.REASON_SERVER_UNAVAILABLE, c.REASON_TIMEOUT, c.REASON_SECRET_NOT_FOUND,
                                    c.REASON_TOOLSERVER_NOT_FOUND, c.REASON_PROTOCOL_ERROR])
def test_a_failure_a_retry_may_fix_is_not_stalled(reason):
    stalled = after_failure(Status(), failure(T0, c.REASON_INVALID_SPEC), generation=1)
    transient = after_failure(stalled, failure(T0 + timedelta(minutes=1), reason), generation=2)
    assert get_condition(transient.conditions, "Stalled") is None
    assert get_condition(after_suspend(stalled, generation=2, now=T0).conditions, "Stalled") is None
