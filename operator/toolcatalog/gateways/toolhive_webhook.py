"""ToolHive's validating-webhook protocol, its HMAC signature, and the allowlist's decision. Pure.

ToolHive's proxy (pkg/webhook, v0.1.0 of the protocol) POSTs every MCP request it receives
(initialize, tools/list, tools/call, ...) to each validating webhook before passing it on:

    {"version": "v0.1.0", "uid": "...", "timestamp": "...", "principal": {...} | null,
     "mcp_request": <the raw JSON-RPC message>,
     "context": {"server_name": "...", "source_ip": "...", "transport": "..."}}

and expects `{"version", "uid", "allowed", "code", "reason", "message"}` with HTTP 200. Any other
answer is an error its failurePolicy decides (`fail` denies, `ignore` lets the request through),
except HTTP 422, which always denies. A denial reaches the agent as HTTP 403 with the JSON-RPC
error "Request denied by policy": ToolHive does not pass our message on, it logs it.

With an HMAC secret, ToolHive signs every call: `X-ToolHive-Timestamp: <unix seconds>` and
`X-ToolHive-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, over the exact
bytes of the body (the secret is a Secret's value as is, a trailing newline included).

The decision: a `tools/call` of a tool that the allowlist does not allow for that server right now
is denied; a server or allowlist the operator does not know denies every `tools/call` (fail
closed); every other method is allowed (ToolHive's tools filter, not the webhook, trims a
tools/list, and an agent must still be able to initialize and list).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_VERSION = "v0.1.0"
SIGNATURE_HEADER = "X-ToolHive-Signature"
TIMESTAMP_HEADER = "X-ToolHive-Timestamp"
SIGNATURE_PREFIX = "sha256="
SIGNATURE_MAX_AGE_SECONDS = 300.0      # a signed call older (or newer) than this is a replay: refused
MAX_BODY_BYTES = 1 << 20               # ToolHive's own limit on what it sends (webhook.MaxRequestSize)

# Reasons in a denial (`reason`), and the answer to what cannot be evaluated at all.
REASON_ALLOWED = "Allowed"
REASON_TOOL_NOT_ALLOWED = "ToolNotAllowed"
REASON_UNKNOWN_SERVER = "UnknownServer"          # no allowlist of that name, or it has no such source
REASON_MALFORMED_CALL = "MalformedToolCall"      # a tools/call without a tool name
REASON_INVALID_SIGNATURE = "InvalidSignature"
REASON_INVALID_REQUEST = "InvalidRequest"

ALWAYS_DENY_STATUS = 422    # ToolHive denies on it whatever the webhook's failurePolicy says


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    server_name: str = ""
    backend_server: str | None = None
    namespace: str | None = None
    source_ip: str | None = None
    transport: str | None = None


class WebhookRequest(BaseModel):
    """What ToolHive sends; fields this module does not use are kept out of the way, not refused."""

    model_config = ConfigDict(extra="ignore")

    version: str
    uid: str
    timestamp: datetime | None = None
    principal: dict[str, Any] | None = None
    mcp_request: Any = None
    context: RequestContext = Field(default_factory=RequestContext)


class WebhookResponse(BaseModel):
    version: str = PROTOCOL_VERSION
    uid: str
    allowed: bool
    code: int | None = None
    reason: str | None = None
    message: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class InvalidWebhookRequest(ValueError):
    """A call this webhook will not evaluate (answered with HTTP 422, which ToolHive always denies)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"version": PROTOCOL_VERSION, "allowed": False, "code": ALWAYS_DENY_STATUS,
                "reason": self.reason, "message": self.message}


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value ToolHive sends for `body` at `timestamp` (for tests and clients)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(secret: bytes, headers: Mapping[str, str], body: bytes, now: float,
                     max_age: float = SIGNATURE_MAX_AGE_SECONDS) -> None:
    """Raise InvalidWebhookRequest unless `headers` carry a fresh, valid signature of `body`.

    `headers` must look names up case-insensitively (aiohttp's do). Compared in constant time.
    """
    signature, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise InvalidWebhookRequest(REASON_INVALID_SIGNATURE,
                                    f"the call is not signed ({SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are "
                                    "required: set hmacSecretRef in the MCPWebhookConfig)")
    try:
        timestamp = int(stamp.strip())
    except ValueError:
        raise InvalidWebhookRequest(REASON_INVALID_SIGNATURE, f"{TIMESTAMP_HEADER} is not unix seconds") from None
    if abs(now - timestamp) > max_age:
        raise InvalidWebhookRequest(REASON_INVALID_SIGNATURE,
                                    f"{TIMESTAMP_HEADER} is {abs(now - timestamp):.0f}s away from now "
                                    f"(more than {max_age:.0f}s: a replay, or a clock out of sync)")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.strip().encode()):
        raise InvalidWebhookRequest(REASON_INVALID_SIGNATURE,
                                    "the signature does not match (a different HMAC secret, or a changed body)")


def parse_request(body: bytes) -> WebhookRequest:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidWebhookRequest(REASON_INVALID_REQUEST, f"the call is larger than {MAX_BODY_BYTES} bytes")
    try:
        return WebhookRequest.model_validate_json(body)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3])
        raise InvalidWebhookRequest(REASON_INVALID_REQUEST,
                                    f"not a ToolHive webhook call ({problems})") from None


def tool_calls(message: Any) -> list[str | None]:
    """The tool names of the tools/call requests in a JSON-RPC message (or batch); None for a call
    without a usable name."""
    messages = message if isinstance(message, list) else [message]
    names: list[str | None] = []
    for item in messages:
        if not isinstance(item, dict) or item.get("method") != "tools/call":
            continue
        params = item.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        names.append(name if isinstance(name, str) and name else None)
    return names


def decide(request: WebhookRequest, allowed: Mapping[str, str] | None, *, allowlist: str) -> WebhookResponse:
    """Allow or deny one call. `allowed`: the tools allowed for the call's server right now (name ->
    schemaHash), None when the operator knows no such allowlist or server. `allowlist` names it in
    messages (NAMESPACE/NAME)."""
    server = request.context.server_name
    for name in tool_calls(request.mcp_request):
        if name is None:
            return WebhookResponse(uid=request.uid, allowed=False, code=403, reason=REASON_MALFORMED_CALL,
                                   message="a tools/call without a tool name")
        if allowed is None:
            return WebhookResponse(uid=request.uid, allowed=False, code=403, reason=REASON_UNKNOWN_SERVER,
                                   message=f"tools/call of {name!r} denied: ToolAllowlist {allowlist} does not "
                                           f"exist or has no source named {server!r}")
        if name not in allowed:
            return WebhookResponse(uid=request.uid, allowed=False, code=403, reason=REASON_TOOL_NOT_ALLOWED,
                                   message=f"tools/call of {name!r} denied: ToolAllowlist {allowlist} does not "
                                           f"allow it for {server!r} (not approved at its current definition, "
                                           "or not offered)")
    return WebhookResponse(uid=request.uid, allowed=True, reason=REASON_ALLOWED)
