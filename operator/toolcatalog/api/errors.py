"""The one error a sync can end with: a Synced reason, a message for humans, and how to retry.

Everything that can fail on the way (the spec, a referenced object, the Kubernetes API, the MCP
server, the cache ConfigMap) raises `SyncError`; `retry_policy` says, per reason, whether and how
soon a retry may help. Messages never hold a credential.
"""

from __future__ import annotations

import enum

from . import constants as c


class Retry(enum.Enum):
    """How a failed sync is retried."""

    BACKOFF = "backoff"        # exponential: 5 s, 10 s, 20 s, ... up to 5 minutes
    SLOW = "slow"              # a fixed, long delay: something has to change first
    WATCHED = "watched"        # a missing object: its watch resyncs at once, a slow retry as a safety net
    NEVER = "never"            # only a change of the spec helps, and that causes a sync by itself
    TRANSIENT = "transient"    # the Kubernetes API failed: retry soon, leave status as it is


RETRY_POLICY: dict[str, Retry] = {
    c.REASON_SERVER_UNAVAILABLE: Retry.BACKOFF,
    c.REASON_TIMEOUT: Retry.BACKOFF,
    c.REASON_PROTOCOL_ERROR: Retry.BACKOFF,
    c.REASON_AUTH_FAILED: Retry.SLOW,
    c.REASON_EGRESS_DENIED: Retry.SLOW,
    c.REASON_CACHE_TOO_LARGE: Retry.SLOW,
    c.REASON_CACHE_CONFLICT: Retry.SLOW,
    c.REASON_WRITE_REJECTED: Retry.SLOW,
    c.REASON_FORBIDDEN: Retry.SLOW,
    c.REASON_SECRET_NOT_FOUND: Retry.WATCHED,
    c.REASON_CONFIGMAP_NOT_FOUND: Retry.WATCHED,
    c.REASON_TOOLSERVER_NOT_FOUND: Retry.WATCHED,
    c.REASON_INVALID_SPEC: Retry.NEVER,
    c.REASON_API_UNAVAILABLE: Retry.TRANSIENT,
    c.REASON_INTERNAL_ERROR: Retry.BACKOFF,     # maybe a passing state; if not, the retries stay visible
}

# Failures that retrying alone cannot fix: they make the resource Stalled (kstatus: Failed).
STALLED_REASONS = tuple(sorted(reason for reason, policy in RETRY_POLICY.items()
                               if policy in (Retry.NEVER, Retry.SLOW)))

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0
SLOW_RETRY_SECONDS = {
    c.REASON_AUTH_FAILED: 600.0,          # a server refusing credentials: no fast loop
    c.REASON_EGRESS_DENIED: 1800.0,
    c.REASON_CACHE_TOO_LARGE: 1800.0,
    c.REASON_CACHE_CONFLICT: 300.0,
    c.REASON_WRITE_REJECTED: 600.0,       # a policy or schema refused what we wrote: someone has to look
    c.REASON_FORBIDDEN: 300.0,
}
WATCHED_RETRY_SECONDS = 300.0


def retry_delay(reason: str, consecutive_failures: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next attempt after the n-th consecutive failure (n >= 1); None: no retry.

    A server's Retry-After (429, 503) is honoured when it asks for longer than the backoff, up to
    the backoff's cap.
    """
    policy = RETRY_POLICY.get(reason, Retry.BACKOFF)
    if policy is Retry.NEVER:
        return None
    if policy is Retry.SLOW:
        return SLOW_RETRY_SECONDS.get(reason, BACKOFF_MAX_SECONDS)
    if policy is Retry.WATCHED:
        return WATCHED_RETRY_SECONDS
    exponent = max(0, min(consecutive_failures - 1, 10))
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2 ** exponent))
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_MAX_SECONDS))
    return delay


class SyncError(Exception):
    """A sync that cannot go on: `reason` is a Synced condition reason, `message` is for humans.

    `retry_after` carries a server's Retry-After (seconds), when it sent one; `api_reason` the
    Kubernetes API's Status reason (TooManyRequests, Conflict, ...) when the API server failed.
    """

    def __init__(self, reason: str, message: str, *, retry_after: float | None = None,
                 api_reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.api_reason = api_reason

    @property
    def retry(self) -> Retry:
        return RETRY_POLICY.get(self.reason, Retry.BACKOFF)

    def __repr__(self) -> str:
        return f"SyncError({self.reason!r}, {self.message!r})"

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
