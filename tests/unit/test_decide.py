"""What a reconcile decides from the object alone: every trigger, the refresh rate limit, suspension."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.resource import Resource
from toolcatalog.reconcile.decide import Observed, decide

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SYNCED = {"observedGeneration": 1, "phase": "Ready", "nextSyncAt": "2026-11-21T13:00:00Z",
          "lastSync": {"trigger": "create", "startedAt": "2026-11-21T11:00:00Z", "completedAt": "2026-11-21T11:00:00Z",
                       "durationMs": 5, "result": "Succeeded"},
          "cache": {"configMap": "toolserver-x", "cachedAt": "2026-11-21T11:00:00Z",
                    "expiresAt": "2026-11-21T13:00:00Z"}}


def resource(status: dict[str, Any] | None = None, *, generation: int = 1, spec: dict[str, Any] | None = None,
             annotations: dict[str, str] | None = None, deleting: bool = False,
             kind: str = c.KIND_TOOLSERVER) -> Resource:
    meta: dict[str, Any] = {"name": "x", "namespace": "ns", "uid": "u", "generation": generation,
                            "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-21T12:00:00Z"
    return Resource.from_body(kind, {"metadata": meta, "spec": spec or {"url": "http://127.0.0.1/mcp"},
                                     "status": status if status is not None else {}})


def with_status(**changes: Any) -> dict[str, Any]:
    return {**SYNCED, **changes}


@pytest.mark.parametrize(("obj", "trigger"), [
    (resource(), "create"),
    (resource(SYNCED, generation=2), "update"),
    (resource(with_status(nextSyncAt="2026-11-21T11:59:00Z")), "schedule"),
])
def test_the_trigger_comes_from_the_object(obj, trigger):
    decision = decide(obj, Observed(now=NOW))
    assert (decision.action, decision.trigger) == ("sync", trigger)


def test_nothing_to_do_waits_until_the_next_sync_is_due():
    decision = decide(resource(SYNCED), Observed(now=NOW))
    assert decision.action == "wait" and decision.due == datetime(2026, 11, 21, 13, tzinfo=UTC)


def test_a_changed_secret_or_inherited_toolserver_or_ca_configmap_resyncs():
    refs = [{"kind": "Secret", "name": "s", "resourceVersion": "7"},
            {"kind": "ConfigMap", "name": "ca", "resourceVersion": "8"},
            {"kind": "ToolServer", "name": "srv", "uid": "t", "generation": 2}]
    obj = resource(with_status(references=refs), kind=c.KIND_CONNECTORCONFIG,
                   spec={"toolServerRef": {"name": "srv"}})
    same = Observed(now=NOW, secrets={"s": "7"}, configmaps={"ca": "8"}, toolserver=("t", 2))
    assert decide(obj, same).action == "wait"
    assert decide(obj, Observed(**{**same.__dict__, "secrets": {"s": "9"}})).trigger == "secret"
    assert decide(obj, Observed(**{**same.__dict__, "secrets": {"s": None}})).trigger == "secret"   # deleted
    assert decide(obj, Observed(**{**same.__dict__, "configmaps": {"ca": "9"}})).trigger == "update"
    assert decide(obj, Observed(**{**same.__dict__, "toolserver": ("t", 3)})).trigger == "update"
    assert decide(obj, Observed(**{**same.__dict__, "toolserver": ("t2", 1)})).trigger == "update"  # recreated
    assert decide(obj, Observed(**{**same.__dict__, "toolserver": None})).trigger == "update"       # deleted


def test_a_missing_secret_recorded_as_absent_resyncs_when_it_appears():
    obj = resource(with_status(references=[{"kind": "Secret", "name": "s"}]))
    assert decide(obj, Observed(now=NOW, secrets={"s": None})).action == "wait"
    assert decide(obj, Observed(now=NOW, secrets={"s": "1"})).trigger == "secret"


def test_list_changed_and_resume():
    notifying = resource(with_status(server={"listChanged": True}))
    assert decide(notifying, Observed(now=NOW, list_changed=True)).trigger == "list-changed"
    assert decide(notifying, Observed(now=NOW, first_since_start=True)).trigger == "resume"
    # A server that does not notify is on its TTL schedule: a restart changes nothing for it.
    assert decide(resource(SYNCED), Observed(now=NOW, first_since_start=True)).action == "wait"


def test_a_refresh_is_rate_limited_against_the_last_sync_before_it_unless_forced():
    token = {c.ANN_REFRESH: "t1"}
    recent = with_status(lastSync={**SYNCED["lastSync"], "completedAt": "2026-11-21T11:59:55Z"})
    limited = decide(resource(recent, annotations=token), Observed(now=NOW))
    assert limited.action == "rate-limited" and "sync.minIntervalSeconds=10" in limited.message
    forced = decide(resource(recent, annotations={**token, c.ANN_REFRESH_FORCE: "t1"}), Observed(now=NOW))
    assert (forced.action, forced.trigger, forced.refresh.force) == ("sync", "refresh", True)
    assert decide(resource(SYNCED, annotations=token), Observed(now=NOW)).trigger == "refresh"   # an hour ago
    # Seen 20 s after the sync that had ended before it: runs, whatever ended meanwhile.
    seen = Observed(now=NOW, token_seen_at=NOW, completed_before_token=NOW - timedelta(seconds=20))
    assert decide(resource(recent, annotations=token), seen).action == "sync"


def test_an_answered_or_removed_refresh_asks_for_nothing():
    answered = with_status(lastRefresh={"token": "t1", "requestedAt": "x", "completedAt": "x",
                                        "result": "Succeeded"})
    assert decide(resource(answered, annotations={c.ANN_REFRESH: "t1"}), Observed(now=NOW)).action == "wait"
    assert decide(resource(answered), Observed(now=NOW)).action == "wait"


def test_a_refresh_rides_on_a_sync_that_is_due_anyway():
    decision = decide(resource(SYNCED, generation=2, annotations={c.ANN_REFRESH: "t1"}), Observed(now=NOW))
    assert (decision.action, decision.trigger, decision.refresh.token) == ("sync", "update", "t1")


def test_suspended_is_written_once_and_refreshes_are_answered():
    spec = {"url": "http://127.0.0.1/mcp", "sync": {"suspend": True}}
    assert decide(resource(SYNCED, generation=2, spec=spec), Observed(now=NOW)).action == "suspend"
    suspended = with_status(phase="Suspended", observedGeneration=2)
    assert decide(resource(suspended, generation=2, spec=spec), Observed(now=NOW)).action == "wait"
    refresh = decide(resource(suspended, generation=2, spec=spec, annotations={c.ANN_REFRESH: "t"}), Observed(now=NOW))
    assert refresh.action == "suspend" and refresh.refresh is not None


def test_an_invalid_spec_is_reported_once_per_generation():
    bad = {"url": "http://127.0.0.1/mcp", "transport": "carrier-pigeon"}
    assert decide(resource(spec=bad), Observed(now=NOW)).trigger == "create"
    reported = {"observedGeneration": 1, "lastSync": {"trigger": "create", "startedAt": "x", "completedAt": "x",
                                                      "durationMs": 0, "result": "Failed",
                                                      "error": {"reason": "InvalidSpec", "message": "m"}}}
    assert decide(resource(reported, spec=bad), Observed(now=NOW)).action == "wait"
    assert decide(resource(reported, spec=bad, generation=2), Observed(now=NOW)).trigger == "update"


def test_a_resource_being_deleted_is_left_alone():
    assert decide(resource(deleting=True), Observed(now=NOW)).action == "wait"
