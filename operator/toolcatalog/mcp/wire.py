"""What every MCP exchange checks on the wire, whichever client made it: an answer's status and type, a
byte cap on bodies (compressed and inflated, before buffering), that a JSON-RPC response answers the
request it claims to, transport failures, and secret-free messages. Shared by the stateless fetch, the
SDK session and the listener.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2

from ..api import constants as c
from ..api.endpoint import Endpoint, display_url
from ..api.errors import SyncError

MAX_DETAIL = 200
RETRY_AFTER_MAX_SECONDS = 3600.0
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_CATALOG_BYTES = 32 * 1024 * 1024


@dataclass
class Limits:
    """Byte caps: one answer (on the wire, and inflated), and a whole catalog (every page, inflated)."""

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_catalog_bytes: int = DEFAULT_MAX_CATALOG_BYTES
    catalog_bytes: int = 0          # inflated bytes read so far in this fetch

    def check(self, wire_bytes: int, body_bytes: int, url: str) -> None:
        if wire_bytes > self.max_response_bytes or body_bytes > self.max_response_bytes:
            raise SyncError(c.REASON_PROTOCOL_ERROR,
                            f"{url} sent an answer larger than {self.max_response_bytes} bytes "
                            "(--max-response-bytes); it was not read further")
        if self.catalog_bytes + body_bytes > self.max_catalog_bytes:
            raise SyncError(c.REASON_CACHE_TOO_LARGE,
                            f"{url} sent tool definitions larger than {self.max_catalog_bytes} bytes in all "
                            "(--max-catalog-bytes); narrow spec.toolSelector or raise the limit")

    def spent(self, body_bytes: int) -> None:
        self.catalog_bytes += body_bytes


async def read_capped(response: httpx2.Response, limits: Limits, url: str) -> tuple[bytes, int]:
    """The inflated body and the bytes it took on the wire; SyncError as soon as a cap is passed."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit():
        limits.check(int(declared), 0, url)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():       # httpx2 inflates gzip/deflate in bounded pieces
        size += len(chunk)
        limits.check(response.num_bytes_downloaded, size, url)
        chunks.append(chunk)
    return b"".join(chunks), response.num_bytes_downloaded


def _id_key(request_id: Any) -> tuple[str, Any] | None:
    """A JSON-RPC id as the SDKs correlate it: a number and its decimal string are one id (the mcp SDK's
    coerce_request_id, as the TypeScript SDK does); a boolean, null or anything else is no id at all."""
    if isinstance(request_id, bool):
        return None
    if isinstance(request_id, int) or (isinstance(request_id, float) and request_id.is_integer()):
        return ("number", int(request_id))
    if isinstance(request_id, str):
        return ("number", int(request_id)) if request_id.isascii() and request_id.isdigit() else ("text", request_id)
    return None


def answers(request_id: int | str, response_id: Any) -> bool:
    """Whether a response carrying `response_id` answers the request sent with `request_id`."""
    key = _id_key(response_id)
    return key is not None and key == _id_key(request_id)


def is_response(message: Any) -> bool:
    """A JSON-RPC response (a result or an error), not a request or a notification."""
    return isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)


def wrong_answer(url: str, asked: str, response_id: Any) -> SyncError:
    return SyncError(c.REASON_PROTOCOL_ERROR,
                     f"{url} answered {asked} with a response to another request (JSON-RPC id "
                     f"{short(json.dumps(response_id, default=str))}); nothing from this answer is used")


@dataclass
class RequestLedger:
    """The JSON-RPC requests one session sent and has not seen answered: every response it receives must
    answer one of them. The SDK drops any other response and waits for the real one until its timeout;
    this names the broken server at once instead."""

    _pending: set[tuple[str, Any]] = field(default_factory=set)

    def sent(self, body: bytes | None) -> Any:
        """Record the request(s) in a POST body; the id of a single request, else None."""
        try:
            message = json.loads(body) if body else None
        except ValueError:
            return None
        requests = message if isinstance(message, list) else [message]
        for request in requests:
            if isinstance(request, dict) and "method" in request and (key := _id_key(request.get("id"))):
                self._pending.add(key)
        single = requests[0] if len(requests) == 1 else None
        return single.get("id") if isinstance(single, dict) and "method" in single else None

    def received(self, message: Any, url: str, asked: str, expected: Any = None) -> SyncError | None:
        """The failure a received message means, if it is a response to nothing this session is waiting
        for (or, for the JSON answer to a POST, not to that POST's request)."""
        for item in message if isinstance(message, list) else [message]:
            if not is_response(item):
                continue
            response_id = item.get("id")
            if response_id is None and "error" in item:
                continue        # JSON-RPC: an error about a request whose id could not be read
            key = _id_key(response_id)
            if key is None or key not in self._pending or (expected is not None and not answers(expected,
                                                                                                 response_id)):
                return wrong_answer(url, asked, response_id)
            self._pending.discard(key)
        return None


def retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_SECONDS)
    return None


def redirect_target(request: httpx2.Request, response: httpx2.Response) -> str:
    location = response.headers.get("location", "")
    try:
        return display_url(str(request.url.join(location))) if location else "(no Location header)"
    except httpx2.InvalidURL:
        return "(an invalid Location header)"


def http_status_error(status: int, url: str, retry_after_seconds: float | None = None) -> SyncError:
    hints = {404: "check the path in spec.url", 429: "the server is rate-limiting requests"}
    hint = hints.get(status) or ("the server is failing or overloaded" if status >= 500
                                 else "the server rejected the MCP request")
    return SyncError(c.REASON_SERVER_UNAVAILABLE, f"{url} answered HTTP {status}; {hint}",
                     retry_after=retry_after_seconds)


def status_error(request: httpx2.Request, response: httpx2.Response, endpoint: Endpoint, url: str
                 ) -> SyncError | None:
    """The failure an answer's status means: a redirect (never followed), refused credentials, an error."""
    status = response.status_code
    auth_source = endpoint.auth_source
    if 300 <= status < 400:
        target = redirect_target(request, response)
        return SyncError(c.REASON_PROTOCOL_ERROR,
                         f"{url} redirected (HTTP {status}) to {target}; redirects are not followed: "
                         f"set spec.url to {target} if that is the MCP endpoint")
    if status in (401, 403) and not endpoint.headers:
        return SyncError(c.REASON_AUTH_FAILED,
                         f"server requires credentials (HTTP {status}) at {url}; set {auth_source}.bearerToken "
                         f"or {auth_source}.headers to a Secret key holding them")
    if status in (401, 403):
        return SyncError(c.REASON_AUTH_FAILED,
                         f"server refused the credentials (HTTP {status}) at {url}; check the Secret referenced "
                         f"by {auth_source} (bearerToken/headers) and that it is valid for this server")
    if status >= 400:
        return http_status_error(status, url, retry_after(response) if status in (429, 503) else None)
    return None


def content_type_of(response: httpx2.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def check_response(response: httpx2.Response, endpoint: Endpoint, url: str, *, sse_ok: bool) -> str:
    """Raise the SyncError an answer's status or content type means; else its content type."""
    error = status_error(response.request, response, endpoint, url)
    if error is not None:
        raise error
    content_type = content_type_of(response)
    expected = ("application/json", "text/event-stream") if sse_ok else ("application/json",)
    if content_type not in expected:
        raise SyncError(c.REASON_PROTOCOL_ERROR,
                        f"{url} answered with {content_type or 'no content type'} instead of MCP "
                        f"({' or '.join(expected)}); is spec.url the server's MCP endpoint and "
                        f"spec.transport right?")
    return content_type


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (httpx2 -> httpcore2 -> anyio -> OSError/SSLError)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def transport_error(exc: BaseException, url: str, secrets: Iterable[str]) -> SyncError:
    """A SyncError for a transport failure (no complete answer at all)."""
    if isinstance(exc, SyncError):      # the egress check, from inside the pool's connect
        return exc
    causes = _chain(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return SyncError(c.REASON_TIMEOUT, f"no complete answer from {url} ({type(exc).__name__})")
    tls = next((cause for cause in causes if isinstance(cause, ssl.SSLError)), None)
    if tls is not None:
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or type(tls).__name__
        return SyncError(c.REASON_SERVER_UNAVAILABLE,
                         f"TLS handshake with {url} failed ({short(str(detail), secrets)}); set spec.tls.caBundle "
                         "to the CA that signed the server's certificate")
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return SyncError(c.REASON_SERVER_UNAVAILABLE,
                         f"connection refused by {url}; is the server running and the port right?")
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"cannot resolve the host of {url}; check spec.url")
    if any(isinstance(cause, ConnectionResetError) for cause in causes):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"connection to {url} was reset by the server")
    if isinstance(exc, httpx2.ConnectError):
        return SyncError(c.REASON_SERVER_UNAVAILABLE, f"cannot connect to {url} ({short(str(exc), secrets)})")
    return SyncError(c.REASON_SERVER_UNAVAILABLE,
                     f"connection to {url} failed before a complete answer ({type(exc).__name__})")


def short(text: str, secrets: Iterable[str] = ()) -> str:
    """One line, no header value (scrubbed before cutting, so no secret is left half-shown), bounded length."""
    line = " ".join(scrub(str(text), secrets).split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        for variant in {secret, secret.strip(), secret.partition(" ")[2].strip()}:
            if len(variant) >= 4:
                text = text.replace(variant, "***")
    return text


def header_secrets(endpoint: Endpoint) -> list[str]:
    """Header values to keep out of messages; one the user also wrote into the URL is no secret (static
    headers like X-Tenant: team-a often are), and sparing it keeps the URL readable."""
    return [value for value in endpoint.headers.values() if value and value not in endpoint.url]


def session_secrets(endpoint: Endpoint) -> list[str]:
    """`header_secrets`, and a password written into the URL: what a session's messages must never hold."""
    secrets = header_secrets(endpoint)
    with contextlib.suppress(ValueError):
        secrets += [secret for secret in (urlsplit(endpoint.url).password,) if secret]
    return secrets
