"""When a verification that found nothing changed is written to status (reconcile/report.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from toolcatalog.api.models import CacheStatus, Condition, LastSync, Status
from toolcatalog.reconcile.report import only_times_moved, verification_unreported

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def verified(at: datetime, *, trigger: str = "schedule", reason: str = "CacheFresh") -> Status:
    return Status(
        phase="Ready", tool_count=2,
        cache=CacheStatus(config_map="cm", cached_at=stamp(T0), verified_at=stamp(at),
                          expires_at=stamp(at + timedelta(seconds=60)), content_hash="sha256:x"),
        last_sync=LastSync(trigger=trigger, started_at=stamp(at), completed_at=stamp(at), duration_ms=4,
                           result="Succeeded"),
        next_sync_at=stamp(at + timedelta(seconds=60)),
        conditions=[Condition(type="Ready", status="True", reason=reason, message="served",
                              last_transition_time=stamp(T0))])


def test_a_later_verification_moves_only_times() -> None:
    later = T0 + timedelta(seconds=61)
    assert only_times_moved(verified(T0), verified(later))
    assert not only_times_moved(verified(T0), verified(later, trigger="list-changed"))
    assert not only_times_moved(verified(T0), verified(later, reason="CacheStale"))
    assert not only_times_moved(verified(T0), verified(later).model_copy(update={"tool_count": 3}))


def test_it_goes_unwritten_only_while_the_recorded_one_is_younger_than_the_interval() -> None:
    recorded = verified(T0)
    for seconds, unwritten in ((61, True), (299, True), (300, False), (361, False)):
        now = T0 + timedelta(seconds=seconds)
        assert verification_unreported(recorded, verified(now), now=now, interval=300) is unwritten, seconds
    now = T0 + timedelta(seconds=61)
    assert not verification_unreported(recorded, verified(now), now=now, interval=0)      # 0: every one written
    assert not verification_unreported(Status(), verified(now), now=now, interval=300)    # nothing recorded yet
