"""Kubernetes API errors, mapped once, in one table, to what a sync reports and how it retries."""

from __future__ import annotations

import json
from typing import Any

from ..api import constants as c
from ..api.errors import SyncError

RETRY_AFTER_MAX_SECONDS = 300.0


class ApiError(Exception):
    """A failed Kubernetes API call: the HTTP status (0: no answer), the Status reason and message."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after

    @classmethod
    def from_response(cls, status: int, body: bytes, what: str, *, retry_after: str | None = None) -> ApiError:
        """The error for an answer with HTTP `status` >= 300, from its Status object if it has one
        (`retry_after`: its Retry-After header)."""
        reason, detail = "", ""
        try:
            decoded: Any = json.loads(body)
            if isinstance(decoded, dict):
                reason, detail = str(decoded.get("reason") or ""), str(decoded.get("message") or "")
        except ValueError:
            pass
        delay = None
        if retry_after:
            try:
                delay = min(float(retry_after), RETRY_AFTER_MAX_SECONDS)
            except ValueError:
                delay = None
        message = f"{what}: HTTP {status}" + (f" {reason}" if reason else "")
        if detail and status in (400, 403, 409, 413, 422):
            message += f" ({detail[:300]})"
        return cls(status, reason, message, delay)


# status -> (sync reason, what to tell the user); None in the first place: the reason depends on what
# was read (404: the kind of the missing object).
_TABLE: dict[int, tuple[str | None, str]] = {
    400: (c.REASON_WRITE_REJECTED, "the API server refused the request as malformed"),
    401: (c.REASON_FORBIDDEN, "the API server refused the operator's credentials"),
    403: (c.REASON_FORBIDDEN, "the operator's RBAC does not allow this; grant it (see deploy/base/rbac.yaml)"),
    404: (None, "it does not exist"),
    409: (c.REASON_API_UNAVAILABLE, "it changed meanwhile; retrying"),
    413: (c.REASON_CACHE_TOO_LARGE, "the API server refused the request as too large"),
    422: (c.REASON_WRITE_REJECTED, "the API server refused the object (a schema or an admission policy)"),
    429: (c.REASON_API_UNAVAILABLE, "the API server is throttling requests; retrying"),
}
# The Status reasons Kubernetes defines (metav1.StatusReason) by HTTP status, for answers without a
# Status object (a proxy's); with `status_reason`, a bounded set of label values for the metrics.
STATUS_REASONS: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}
KNOWN_REASONS = frozenset(STATUS_REASONS.values()) | {
    "AlreadyExists", "Gone", "ServerTimeout",       # Kubernetes' own, on 409, 410 and 500
    "Timeout", "Unavailable", "BadResponse",        # ours (client.py): no answer in time, none at all, not JSON
}


def status_reason(error: ApiError) -> str:
    """The API server's Status reason when it is one Kubernetes defines, else the one its HTTP status
    stands for, else `Unknown`: a bounded label value (a proxy in between may answer anything)."""
    if error.reason in KNOWN_REASONS:
        return error.reason
    return STATUS_REASONS.get(error.status, "Unknown")


MISSING = {"Secret": c.REASON_SECRET_NOT_FOUND, "ConfigMap": c.REASON_CONFIGMAP_NOT_FOUND,
           "ToolServer": c.REASON_TOOLSERVER_NOT_FOUND}


def api_error(error: ApiError, *, kind: str | None = None) -> SyncError:
    """The SyncError for a failed call about an object of `kind` (for 404: which kind is missing).

    5xx, timeouts and unreachable servers are ApiUnavailable: retried soon, status left as it is.
    """
    reason, hint = _TABLE.get(error.status, (c.REASON_API_UNAVAILABLE, "the API server failed; retrying"))
    if error.status == 404:
        reason = MISSING.get(kind or "", c.REASON_API_UNAVAILABLE)
    assert reason is not None
    return SyncError(reason, f"{error.message}: {hint}", retry_after=error.retry_after,
                     api_reason=status_reason(error))
