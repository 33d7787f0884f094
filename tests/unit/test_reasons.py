"""Every condition type, reason, phase, trigger and Event reason in constants.py has its words in
api/reasons.py (what it means, what to do), which docs/reference/conditions.md is generated from."""

from __future__ import annotations

from toolcatalog.api import constants as c
from toolcatalog.api import errors, reasons


def _names(prefix: str) -> set[str]:
    return {value for name, value in vars(c).items() if name.startswith(prefix) and isinstance(value, str)}


def test_every_condition_type_is_described():
    assert {t.type for t in reasons.CONDITION_TYPES} == _names("COND_")


def test_every_reason_is_described_once_under_its_condition():
    described = [r.reason for r in (*reasons.REASONS, *reasons.ALLOWLIST_REASONS)]
    assert len(described) == len(set(described)), "a reason is described twice"
    # ApiUnavailable is never written to status: the queue retries it (reasons.API_UNAVAILABLE_MEANING).
    assert set(described) == _names("REASON_") - {c.REASON_API_UNAVAILABLE}
    synced = {r.reason for r in reasons.REASONS if r.condition == c.COND_SYNCED}
    assert synced == {c.REASON_SYNC_SUCCEEDED, *c.SYNC_FAILURE_REASONS}
    assert all(r.meaning for r in (*reasons.REASONS, *reasons.ALLOWLIST_REASONS))


def test_every_failure_says_what_to_do_and_has_a_retry_policy():
    for reason in reasons.REASONS:
        if reason.condition == c.COND_SYNCED and reason.reason != c.REASON_SYNC_SUCCEEDED:
            assert reason.action, f"{reason.reason}: no 'what to do'"
            assert reason.reason in errors.RETRY_POLICY, f"{reason.reason}: errors.py does not say how it is retried"


def test_phases_triggers_and_events_are_all_described():
    assert {p.name for p in reasons.PHASES} == _names("PHASE_")
    assert {t.name for t in reasons.TRIGGERS} == set(c.TRIGGERS)
    assert {e.name for e in reasons.EVENTS} == _names("EVENT_")
    assert {e.type for e in reasons.EVENTS} <= {"Normal", "Warning"}
