"""Whether a resync that found nothing changed is worth a status write. Pure.

The kubelet's rule for node status (`nodeStatusReportFrequency`): write when anything changed, and
otherwise only often enough to say "still here". A verification that found the server listing exactly
what the cache holds moves only its times (`lastSync`'s, `nextSyncAt`, `cache.verifiedAt` and
`cache.expiresAt`); writing them every minute on servers that say `ttlMs: 0` would be a status write and a
watch event for every watcher, per resource per minute, telling nobody anything new. So such a sync is
recorded when the last recorded verification is at least `interval` seconds old, or when anything but
those times would change: a condition, the trigger, a refresh answered, an Event to post, the server's
identity, the generation (docs/reference/freshness.md, "How often a verification is written").
"""

from __future__ import annotations

from datetime import datetime

from ..api.models import Status
from .conditions import parse_time


def _without_times(status: Status) -> Status:
    update: dict[str, object] = {"next_sync_at": None}
    if status.last_sync is not None:
        update["last_sync"] = status.last_sync.model_copy(update={"started_at": "", "completed_at": "",
                                                                  "duration_ms": 0})
    if status.cache is not None:
        update["cache"] = status.cache.model_copy(update={"verified_at": None, "expires_at": None})
    return status.model_copy(update=update)


def only_times_moved(recorded: Status, planned: Status) -> bool:
    """Whether `planned` differs from `recorded` in the times of a verification only."""
    return _without_times(recorded) == _without_times(planned)


def verification_unreported(recorded: Status, planned: Status, *, now: datetime, interval: float) -> bool:
    """Whether the verification `planned` records may go unwritten: only its times moved and the recorded
    one is younger than `interval` seconds (0: every verification is written)."""
    if interval <= 0 or recorded.cache is None:
        return False
    verified = parse_time(recorded.cache.verified_at)
    if verified is None or (now - verified).total_seconds() >= interval:
        return False
    return only_times_moved(recorded, planned)
