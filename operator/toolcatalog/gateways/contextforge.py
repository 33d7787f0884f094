"""The IBM ContextForge target: make a ContextForge serve exactly the allowed tools, through its REST API.

`ContextForgeClient.publish` takes, per source, the name of its gateway in ContextForge (the
source's `as`), the upstream URL the operator reads it at, and the allowed tools, and then:

1. finds each gateway by name (it must exist: the platform team registers it, with the upstream's
   credentials, team and visibility, which the operator neither holds nor decides; a gateway of that
   name registered for another URL is a conflict, never touched);
2. withdraws first: deactivates every active tool of it that is not allowed;
3. refreshes it (ContextForge re-lists the upstream) and, when that changed anything, deactivates
   what the refresh brought in that is not allowed (new tools arrive active);
4. makes the virtual server, if one is named, hold exactly the allowed tools of all sources (creating
   it, tagged as the operator's, when missing; one of that name without the tag is a conflict);
5. activates the allowed tools last.

Idempotent, and cheap when nothing changed: one read of the gateways, then per source one read of
its tools and one refresh, and one read of the virtual server's tools (its id is remembered between
calls; gateway ids are read every time, as a stale one would silently match no tool). A failure
raises ContextForgeError with a reason and a message that never holds the token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import httpx2

from ..api.errors import SyncError
from ..api.gateway import GatewayRejected, GatewayUnavailable
from ..api.redact import Redactor
from .contextforge_plan import (
    ForgeTool,
    PublishResult,
    ids_of,
    owner_tag,
    plan_gateway,
    plan_virtual_server,
    same_upstream,
    tag_ids,
)

logger = logging.getLogger(__name__)

PAGE_SIZE = 500                 # ContextForge's largest page (pagination_max_page_size)
REQUEST_TIMEOUT_SECONDS = 15.0  # a refresh lists the upstream server: allow it a moment

# ContextForgeError reasons.
UNREACHABLE = "Unreachable"             # connection refused, timed out, TLS failed, egress policy
UNAUTHORIZED = "Unauthorized"           # 401: the token is wrong or expired
FORBIDDEN = "Forbidden"                 # 403: the token's user may not do this
GATEWAY_NOT_FOUND = "GatewayNotFound"   # no gateway of that name: register it in ContextForge
NOT_FOUND = "NotFound"                  # 404 on anything else (a tool or server removed meanwhile)
CONFLICT = "Conflict"                   # a gateway registered for another URL, a virtual server not ours
BUSY = "Busy"                           # 409: a refresh of that gateway is already under way
REFRESH_FAILED = "RefreshFailed"        # ContextForge could not re-list the upstream server
REJECTED = "Rejected"                   # 400/422: ContextForge refused what was sent
UNAVAILABLE = "Unavailable"             # 5xx, 429
PROTOCOL_ERROR = "ProtocolError"        # an answer that is not what its API documents
RETRYABLE = frozenset({UNREACHABLE, UNAVAILABLE, REFRESH_FAILED, BUSY, NOT_FOUND, PROTOCOL_ERROR})


class ContextForgeError(Exception):
    """A publish that could not complete; what it did before failing stays done (each step is safe alone)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Whether retrying (with backoff) may help without anyone changing anything."""
        return self.reason in RETRYABLE

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ContextForgeUnavailable(ContextForgeError, GatewayUnavailable):
    """Unreachable, failing, or busy: retry with backoff."""


class ContextForgeRejected(ContextForgeError, GatewayRejected):
    """It refused what was asked (its token, a name that is not there, an object that is not ours)."""


def _fail(reason: str, message: str) -> ContextForgeError:
    return (ContextForgeUnavailable if reason in RETRYABLE else ContextForgeRejected)(reason, message)


class Server(Protocol):
    """One source as ContextForge knows it: `name`, its gateway's name there (the source's `as`); the
    upstream URL the gateway must be registered for (None when the operator does not know it: then
    none of its tools is allowed); `allowed`, the tools allowed right now (name -> schemaHash)."""

    @property
    def name(self) -> str: ...
    @property
    def upstream_url(self) -> str | None: ...
    @property
    def allowed(self) -> Mapping[str, str]: ...


class ContextForgeClient:
    """ContextForge's REST API at `base_url`, with a bearer token (read from a Secret by the caller).

    `http` is the caller's client (the operator's egress-checked pool); the token is registered with
    `redactor` so that no log line or message can carry it.
    """

    def __init__(self, base_url: str, token: str, http: httpx2.AsyncClient, *, redactor: Redactor | None = None,
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._http = http
        self._timeout = timeout
        self._redactor = redactor if redactor is not None else Redactor()   # an empty one is falsy
        self._redactor.add(token)
        self._server_ids: dict[str, str] = {}
        self.requests = 0               # every request sent, for the caller's metrics and tests

    # ----------------------------------------------------------------------------- publish

    async def publish(self, servers: Sequence[Server], virtual_server: str | None = None, *,
                      owner: str = "") -> PublishResult:
        """Make ContextForge serve exactly the allowed tools of `servers`; see the module docstring.
        `owner` (NAMESPACE/NAME of the allowlist) tags the virtual server the operator creates, so that
        two allowlists never share one."""
        result = PublishResult()
        started = self.requests
        registered = await self._list("/gateways")
        gateways = {server.name: self._gateway_id(registered, server) for server in servers}
        result.gateway_ids = dict(gateways)
        allowed_ids: list[str] = []
        activate: list[tuple[str, ForgeTool]] = []
        for server in servers:
            gateway_id = gateways[server.name]
            allowed = server.allowed if server.upstream_url is not None else {}
            plan = plan_gateway(await self._tools(gateway_id), allowed)
            await self._set_active(server.name, plan.deactivate, False, result.deactivated)   # withdraw first
            counts = await self._refresh(server.name, gateway_id)
            if any(counts.get(key) for key in ("toolsAdded", "toolsUpdated", "toolsRemoved")):
                plan = plan_gateway(await self._tools(gateway_id), allowed)
                await self._set_active(server.name, plan.deactivate, False, result.deactivated)
            allowed_ids.extend(plan.allowed_ids)
            activate.extend((server.name, tool) for tool in plan.activate)
            result.allowed[server.name] = sorted(name for name in allowed if name not in plan.missing)
            result.missing[server.name] = list(plan.missing)
        if virtual_server:
            await self._sync_virtual_server(virtual_server, owner, allowed_ids, result)
        for gateway, tool in activate:                                                          # add last
            await self._set_active(gateway, (tool,), True, result.activated)
        result.requests = self.requests - started
        if result.changed:
            logger.info("ContextForge %s: deactivated %s, activated %s%s", self.base_url,
                        _names(result.deactivated), _names(result.activated),
                        f", virtual server {virtual_server} set" if result.virtual_server_changed else "")
        return result

    # ----------------------------------------------------------------------------- steps

    def _gateway_id(self, registered: Sequence[Mapping[str, Any]], server: Server) -> str:
        for gateway in registered:
            if gateway.get("name") != server.name:
                continue
            url = str(gateway.get("url") or "")
            if server.upstream_url is not None and not same_upstream(url, server.upstream_url):
                raise _fail(CONFLICT, f"gateway {server.name!r} in ContextForge is registered for "
                                                  f"{url}, not {server.upstream_url}: not touched")
            return str(gateway["id"])
        raise _fail(GATEWAY_NOT_FOUND, f"ContextForge has no gateway named {server.name!r}: "
                                                   "register the server there under that name (POST /gateways)")

    async def _tools(self, gateway_id: str) -> list[ForgeTool]:
        return [ForgeTool.from_api(item) for item in await self._list("/tools", {"gateway_id": gateway_id})]

    async def _refresh(self, gateway: str, gateway_id: str) -> Mapping[str, Any]:
        answer = await self._request("POST", f"/gateways/{quote(gateway_id, safe='')}/tools/refresh")
        if not isinstance(answer, Mapping):
            raise _fail(PROTOCOL_ERROR, f"refreshing gateway {gateway!r} answered no object")
        if answer.get("success") is False:
            raise _fail(REFRESH_FAILED, f"ContextForge could not refresh gateway {gateway!r}: "
                                                    f"{self._clean(str(answer.get('error') or 'no reason given'))}")
        return answer

    async def _set_active(self, gateway: str, tools: Sequence[ForgeTool], active: bool,
                          done: dict[str, list[str]]) -> None:
        names = done.setdefault(gateway, [])
        for tool in tools:
            await self._request("POST", f"/tools/{quote(tool.id, safe='')}/state",
                                params={"activate": "true" if active else "false"})
            names.append(tool.original_name)

    async def _sync_virtual_server(self, name: str, owner: str, allowed_ids: list[str],
                                   result: PublishResult) -> None:
        server_id = self._server_ids.get(name)
        current: list[str] | None = None
        if server_id is not None:
            try:
                current = ids_of(await self._get_list(f"/servers/{quote(server_id, safe='')}/tools",
                                                      {"include_inactive": "true"}))
            except ContextForgeError as error:
                if error.reason not in (NOT_FOUND, FORBIDDEN):    # ContextForge answers 403 for an unknown id
                    raise
                server_id = None
                self._server_ids.pop(name, None)
        if server_id is None:
            server_id = await self._find_server(name, owner)
            if server_id is None:
                created = await self._request("POST", "/servers", json={"server": {
                    "name": name, "description": f"The tools ToolAllowlist {owner} allows (managed by toolcatalog)",
                    "associated_tools": sorted(set(allowed_ids)), "tags": [owner_tag(owner)]}})
                if not isinstance(created, Mapping) or "id" not in created:
                    raise _fail(PROTOCOL_ERROR, f"creating virtual server {name!r} answered no id")
                self._server_ids[name] = result.virtual_server_id = str(created["id"])
                result.virtual_server_created = True
                return
            self._server_ids[name] = server_id
            current = ids_of(await self._get_list(f"/servers/{quote(server_id, safe='')}/tools",
                                                  {"include_inactive": "true"}))
        result.virtual_server_id = server_id
        plan = plan_virtual_server(current or [], allowed_ids)
        if plan.associated is not None:
            await self._request("PUT", f"/servers/{quote(server_id, safe='')}",
                                json={"associated_tools": list(plan.associated)})
            result.virtual_server_changed = True

    async def _find_server(self, name: str, owner: str) -> str | None:
        for server in await self._list("/servers"):
            if server.get("name") != name:
                continue
            if owner_tag(owner) not in tag_ids(server):
                raise _fail(CONFLICT, f"virtual server {name!r} in ContextForge was not created by "
                                                  f"ToolAllowlist {owner} (no tag {owner_tag(owner)}): not touched")
            return str(server["id"])
        return None

    # ----------------------------------------------------------------------------- HTTP

    async def _list(self, path: str, params: Mapping[str, str] | None = None) -> list[Mapping[str, Any]]:
        """Every item of a paginated collection, inactive ones included."""
        items: list[Mapping[str, Any]] = []
        query = {**(params or {}), "include_inactive": "true", "include_pagination": "true", "limit": str(PAGE_SIZE)}
        key = path.strip("/").split("/")[-1]
        for _ in range(1000):
            answer = await self._request("GET", path, params=query)
            page = answer.get(key) if isinstance(answer, Mapping) else None
            if not isinstance(page, list):
                raise _fail(PROTOCOL_ERROR, f"GET {path} answered no {key!r} list")
            items.extend(item for item in page if isinstance(item, Mapping))
            cursor = answer.get("nextCursor")
            if not cursor:
                return items
            query["cursor"] = str(cursor)
        raise _fail(PROTOCOL_ERROR, f"GET {path} did not end after 1000 pages")

    async def _get_list(self, path: str, params: Mapping[str, str]) -> list[Mapping[str, Any]]:
        answer = await self._request("GET", path, params=params)
        if not isinstance(answer, list):
            raise _fail(PROTOCOL_ERROR, f"GET {path} answered no list")
        return [item for item in answer if isinstance(item, Mapping)]

    async def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                       json: Any = None) -> Any:
        self.requests += 1
        what = f"{method} {path}"
        try:
            response = await self._http.request(method, self.base_url + path, params=params, json=json,
                                                headers=self._headers, timeout=self._timeout)
        except SyncError as error:         # the egress policy refused the address
            raise _fail(UNREACHABLE, f"ContextForge at {self.base_url}: {error.message}") from None
        except httpx2.TimeoutException:
            raise _fail(UNREACHABLE, f"ContextForge at {self.base_url} did not answer {what} "
                                                 f"within {self._timeout:g}s") from None
        except httpx2.HTTPError as error:
            raise _fail(UNREACHABLE, f"ContextForge at {self.base_url}: {what} failed: "
                                                 f"{self._clean(type(error).__name__ + ': ' + str(error))}") from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise _fail(PROTOCOL_ERROR, f"{what} answered HTTP {response.status_code} "
                                                        "that is not JSON") from None
        raise _fail(_reason_of(response.status_code),
                                f"ContextForge {what}: HTTP {response.status_code}: {self._detail(response)}")

    def _detail(self, response: httpx2.Response) -> str:
        try:
            body = response.json()
            detail = body.get("detail", body.get("message", body)) if isinstance(body, Mapping) else body
        except ValueError:
            detail = response.text
        return self._clean(str(detail))

    def _clean(self, text: str, limit: int = 300) -> str:
        text = self._redactor.redact(" ".join(text.split()))
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason_of(status: int) -> str:
    if status == 401:
        return UNAUTHORIZED
    if status == 403:
        return FORBIDDEN
    if status == 404:
        return NOT_FOUND
    if status == 409:
        return BUSY
    if status in (400, 422):
        return REJECTED
    if status == 429 or status >= 500:
        return UNAVAILABLE
    return PROTOCOL_ERROR


def _names(by_gateway: Mapping[str, list[str]]) -> str:
    listed = [f"{gateway}/{name}" for gateway, names in sorted(by_gateway.items()) for name in names]
    return ", ".join(listed) if listed else "none"
