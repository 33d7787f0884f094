"""Refresh requests: which annotation-triggered refresh is waiting for an answer, and its rate limit.

Pure. A refresh is pending while `toolcatalog.dev/refresh` holds a value that
`status.lastRefresh.token` has not answered yet; removing the annotation asks for nothing.

Force and reason apply to the refresh they were given with, never to a later one, without the
operator ever writing the annotations back: `toolcatalog.dev/refresh-force` forces only when its
value is the refresh token itself (as Flux's `reconcile.fluxcd.io/forceAt` must equal
`requestedAt`), and `toolcatalog.dev/refresh-reason` is recorded only when it is not the reason
the last answered refresh already recorded (a reason left behind belongs to that refresh).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..api import constants as c
from ..api.models import Status


@dataclass(frozen=True)
class RefreshRequest:
    """An annotation-triggered refresh: the token it answers and what the user asked for."""

    token: str
    reason: str | None
    force: bool
    requested_at: datetime


def pending_refresh(annotations: Mapping[str, str], status: Status, *, requested_at: datetime
                    ) -> RefreshRequest | None:
    """The refresh the annotations ask for and status has not answered yet, if any."""
    token = annotations.get(c.ANN_REFRESH)
    if not token:
        return None
    if status.last_refresh is not None and status.last_refresh.token == token:
        return None
    force = annotations.get(c.ANN_REFRESH_FORCE, "").strip() == token.strip()
    reason = annotations.get(c.ANN_REFRESH_REASON) or None
    if reason is not None and status.last_refresh is not None and status.last_refresh.reason == reason:
        reason = None       # left behind by the refresh that recorded it
    return RefreshRequest(token=token, reason=reason, force=force, requested_at=requested_at)


def rate_limit_message(request: RefreshRequest, *, last_completed: datetime | None,
                       min_interval_seconds: int) -> str | None:
    """Why this refresh is not run (the last sync that ended before it was requested is too recent),
    or None when it may run. A forced refresh always runs."""
    if request.force or last_completed is None:
        return None
    age = (request.requested_at - last_completed).total_seconds()
    if age >= min_interval_seconds:
        return None
    return (f"refresh {request.token!r} not run: the last sync ended {max(age, 0):.1f}s before it was "
            f"requested, less than sync.minIntervalSeconds={min_interval_seconds}; to bypass the limit, set "
            f"{c.ANN_REFRESH_FORCE} to the refresh token (kubectl toolcatalog refresh --force does)")
