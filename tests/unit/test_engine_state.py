"""The sync engine's per-resource bookkeeping (no I/O): due checks, requested syncs, forgetting."""

from datetime import datetime, timedelta, timezone

from toolcatalog.models import Status
from toolcatalog.sync import SyncEngine, Target

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def target(status=None, spec=None, name="x", uid="u1"):
    return Target(kind="ToolServer", namespace="default", name=name, uid=uid, generation=1,
                  spec=spec or {"url": "http://127.0.0.1/mcp"}, status=status or {}, annotations={})


def engine():
    return SyncEngine(kube=None, pool=None, clock=lambda: NOW)  # type: ignore[arg-type]


def last_sync(at):
    return {"trigger": "create", "startedAt": at, "completedAt": at, "durationMs": 1, "result": "Succeeded"}


def test_never_synced_is_left_to_the_create_or_resume_handler():
    assert engine().scheduled_trigger(target()) is None


def test_due_when_next_sync_at_has_passed():
    status = {"lastSync": last_sync("2026-11-21T11:00:00Z"), "nextSyncAt": "2026-11-21T11:59:59Z"}
    assert engine().scheduled_trigger(target(status)) == "schedule"
    status["nextSyncAt"] = "2026-11-21T12:00:01Z"
    assert engine().scheduled_trigger(target(status)) is None


def test_no_retry_scheduled_means_not_due():
    status = {"lastSync": last_sync("2026-11-21T11:00:00Z")}
    assert engine().scheduled_trigger(target(status)) is None


def test_suspended_is_never_due():
    status = {"phase": "Suspended", "lastSync": last_sync("2026-11-21T11:00:00Z"),
              "nextSyncAt": "2026-11-21T11:00:00Z"}
    spec = {"url": "http://127.0.0.1/mcp", "sync": {"suspend": True}}
    assert engine().scheduled_trigger(target(status, spec)) is None


def test_remembered_status_wins_over_a_lagging_body():
    sync = engine()
    sync._statuses["u1"] = Status.model_validate({"lastSync": last_sync("2026-11-21T11:59:00Z"),
                                                  "nextSyncAt": "2026-11-21T13:00:00Z"})
    stale_body = {"lastSync": last_sync("2026-11-21T10:00:00Z"), "nextSyncAt": "2026-11-21T11:00:00Z"}
    assert sync.scheduled_trigger(target(stale_body)) is None
    assert sync.last_completed(target(stale_body)) == NOW - timedelta(minutes=1)


def test_requested_syncs_are_taken_once_and_dropped_on_delete():
    sync = engine()
    sync.want("ToolServer", "default", "x", "secret")
    assert sync.take_wanted(target()) == "secret"
    assert sync.take_wanted(target()) is None
    sync.want("ToolServer", "default", "x", "secret")
    sync.lock("u1")
    sync.forget(target())
    assert sync.take_wanted(target()) is None and "u1" not in sync._locks


def test_a_spec_change_kopf_folded_away_is_caught_up_as_an_update():
    status = {"lastSync": last_sync("2026-11-21T11:00:00Z"), "observedGeneration": 1,
              "nextSyncAt": "2026-11-21T13:00:00Z"}
    behind = Target(kind="ToolServer", namespace="default", name="x", uid="u1", generation=2,
                    spec={"url": "http://127.0.0.1/mcp"}, status=status, annotations={})
    assert engine().scheduled_trigger(behind) == "update"


def test_deleted_resources_are_never_due_again():
    sync = engine()
    status = {"lastSync": last_sync("2026-11-21T11:00:00Z"), "nextSyncAt": "2026-11-21T11:00:00Z"}
    sync.forget(target(status))
    assert sync.is_deleted(target(status)) and sync.scheduled_trigger(target(status)) is None
