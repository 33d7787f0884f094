"""The only code that calls the Kubernetes API directly (kopf watches our own resources).

A small async REST client on aiohttp (kopf's own HTTP client; it costs a third of the CPU per request
that httpx2 did), with the credentials kopf logs in with (`login.py`): GET, POST and JSON merge-PATCH
of the few objects a sync reads and writes, and Events; lists and watches of metadata only for the
informers of informer.py. Requests are limited client-side (QPS and burst, as client-go does), a 401
logs in again once (a rotated token), and every failure is one `ApiError`; `api_error` (errors.py)
maps it to a sync reason in one table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import kopf
import yarl

from ..api import constants as c
from .errors import ApiError

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
# Lists of metadata only (names, uids, resourceVersions), with plain JSON as the fallback.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json"
WATCH_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
# Metadata only, and nothing else: the informers never take a Secret's body, whatever the server.
ONLY_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
ONLY_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
OBJECT_METADATA = WATCH_METADATA        # one object's metadata: the same media type
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_LINE_BYTES = 16 * 1024 * 1024      # one watch event; a metadata-only one is about a kilobyte
CORE = "/api/v1"


class TokenBucket:
    """Client-side rate limit: `qps` requests a second on average, bursts of up to `burst`."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.burst, self._clock = qps, max(1, burst), clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.qps)
                self._tokens = 1.0
                self._last = self._clock()
            self._tokens -= 1


def custom_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    parts = ["/apis", c.GROUP, c.VERSION, "namespaces", namespace, c.PLURAL[kind]]
    return "/".join(parts + [p for p in (name, subresource) if p])


def core_path(plural: str, namespace: str, name: str | None = None) -> str:
    return "/".join([CORE, "namespaces", namespace, plural] + ([name] if name else []))


def group_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    """The path of a namespaced object of any API group ("v1" is the core group)."""
    base = CORE if api_version == "v1" else f"/apis/{api_version}"
    return "/".join([base, "namespaces", namespace, plural] + ([name] if name else []))


class KubeClient:
    """Async access to the objects a sync reads and writes; plain JSON dicts in and out."""

    def __init__(self, login: Callable[[], kopf.ConnectionInfo], *, qps: float = 50.0, burst: int = 100,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, connections: int = 100) -> None:
        """`connections`: open at most this many at once (0: no limit; each watch holds one)."""
        self._login = login
        self._timeout = timeout
        self._connections = connections
        self._limit = TokenBucket(qps, burst)
        self._client: aiohttp.ClientSession | None = None
        self._server = ""
        self.requests = 0

    def _connect(self) -> aiohttp.ClientSession:
        info = self._login()
        self._server = info.server.rstrip("/")      # may carry a path (an API server behind a proxy)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(),
                                                                    limit=self._connections),
                                     headers={"Accept": "application/json", **info.as_http_headers()},
                                     timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=False)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def request(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                      what: str = "", accept: str | None = None) -> dict[str, Any]:
        """One request; the decoded JSON object, or ApiError (status 0: no answer at all)."""
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        for attempt in (1, 2):
            if self._client is None:
                self._client = self._connect()
            await self._limit.acquire()
            self.requests += 1
            url = yarl.URL(self._server + path, encoded=True)     # the path is built quoted already
            data = json.dumps(body, separators=(",", ":")) if body is not None else None
            try:
                async with self._client.request(method, url, data=data, headers=headers,
                                                allow_redirects=False) as response:
                    status, answer = response.status, await response.read()
                    retry_after = response.headers.get("Retry-After") if status >= 300 else None
            except TimeoutError:
                raise ApiError(0, "Timeout", f"{what or path}: the API server did not answer in time") from None
            except aiohttp.ClientError as exc:
                raise ApiError(0, "Unavailable", f"{what or path}: cannot reach the API server "
                                                 f"({type(exc).__name__})") from None
            logger.debug("%s %s: HTTP %d", method, path, status)
            if status == 401 and attempt == 1:
                await self.aclose()     # log in again (a rotated ServiceAccount token), once
                continue
            if status >= 300:
                raise ApiError.from_response(status, answer, what or path, retry_after=retry_after)
            try:
                return dict(json.loads(answer))
            except (ValueError, TypeError):
                raise ApiError(status, "BadResponse",
                               f"{what or path}: the API server answered something that is not JSON") from None
        raise AssertionError("unreachable")

    async def get(self, path: str, what: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path, what=what)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def watch(self, path: str, *, what: str, timeout_seconds: int,
                    params: Mapping[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request (`path`, `params`), decoded, until the server ends it after
        `timeout_seconds`; ApiError if it refuses it or the connection fails."""
        if self._client is None:
            self._client = self._connect()
        await self._limit.acquire()
        self.requests += 1
        query = urlencode({"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds,
                           **(params or {})})
        url = yarl.URL(f"{self._server}{path}?{query}", encoded=True)
        try:
            async with self._client.get(url, allow_redirects=False, timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=timeout_seconds + self._timeout)) as response:
                if response.status == 401:
                    await self.aclose()     # log in again on the next request (a rotated token)
                if response.status >= 300:
                    raise ApiError.from_response(response.status, await response.read(), what)
                pending = b""
                async for chunk in response.content.iter_any():     # one JSON object a line, any length
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield dict(json.loads(line))
        except TimeoutError:
            raise ApiError(0, "Timeout", f"{what}: the watch went silent") from None
        except aiohttp.ClientError as exc:
            raise ApiError(0, "Unavailable", f"{what}: cannot reach the API server ({type(exc).__name__})") from None

    # -- the objects a sync reads ----------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret (its data are credentials: never log them or put them into a message)."""
        return await self.get(core_path("secrets", namespace, name), f"Secret {namespace}/{name}")

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(core_path("configmaps", namespace, name), f"ConfigMap {namespace}/{name}")

    async def read_configmap_version(self, namespace: str, name: str) -> str | None:
        """A ConfigMap's resourceVersion (its metadata only: not its content), or None when it does not exist."""
        try:
            answer = await self.request("GET", core_path("configmaps", namespace, name), accept=OBJECT_METADATA,
                                        what=f"ConfigMap {namespace}/{name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return (answer.get("metadata") or {}).get("resourceVersion")

    async def read_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(custom_path(kind, namespace, name), f"{kind} {namespace}/{name}")

    def _collection(self, kind: str, namespace: str | None) -> str:
        return custom_path(kind, namespace) if namespace else "/".join(["/apis", c.GROUP, c.VERSION, c.PLURAL[kind]])

    async def read_statefulset(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The StatefulSet that runs this pod, when sharded by it (handlers/autoshard.py)."""
        return await self.get(group_path("apps/v1", "statefulsets", namespace, name), f"StatefulSet {namespace}/{name}")

    def watch_statefulset(self, namespace: str, name: str, *, resource_version: str,
                          timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        """Changes of that one StatefulSet after `resource_version` (a list/watch by name: RBAC allows it
        with resourceNames)."""
        return self.watch(group_path("apps/v1", "statefulsets", namespace),
                          what=f"a watch of StatefulSet {namespace}/{name}", timeout_seconds=timeout_seconds,
                          params={"fieldSelector": f"metadata.name={name}", "resourceVersion": resource_version})

    async def list_metadata(self, kind: str, namespace: str | None = None,
                            page: int = 500) -> tuple[list[dict[str, Any]], str]:
        """The metadata of every ToolServer or ConnectorConfig (in `namespace`, or everywhere), in pages, and
        the list's resourceVersion.

        Asks for PartialObjectMetadataList: names, uids and resourceVersions, not statuses of 500 tools.
        """
        base = self._collection(kind, namespace)
        items: list[dict[str, Any]] = []
        token, version = "", ""
        while True:
            query = urlencode({"limit": page, **({"continue": token} if token else {})})
            answer = await self.request("GET", f"{base}?{query}", accept=METADATA_LIST,
                                        what=f"{c.PLURAL[kind]} in {namespace or 'every namespace'}")
            items.extend(item.get("metadata") or {} for item in answer.get("items") or [])
            meta = answer.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            token = str(meta.get("continue") or "")
            if not token:
                return items, version

    async def collection_version(self, kind: str, namespace: str | None = None) -> tuple[str, bool]:
        """The collection's resourceVersion now, and whether it holds any object: a LIST of one item's metadata."""
        answer = await self.request("GET", f"{self._collection(kind, namespace)}?limit=1", accept=METADATA_LIST,
                                    what=f"{c.PLURAL[kind]} in {namespace or 'every namespace'}")
        return str((answer.get("metadata") or {}).get("resourceVersion") or ""), bool(answer.get("items"))

    async def changes_since(self, kind: str, namespace: str | None, resource_version: str,
                            seconds: int = 1) -> list[dict[str, Any]]:
        """The watch events (type and metadata) of the collection after `resource_version`: a watch from that
        version, which the API server closes after `seconds`. ApiError 410 when the server no longer holds
        the changes since then (its watch cache moved on)."""
        query = urlencode({"watch": "true", "resourceVersion": resource_version, "timeoutSeconds": seconds,
                           "allowWatchBookmarks": "true"})
        path, what = f"{self._collection(kind, namespace)}?{query}", f"watching {c.PLURAL[kind]}"
        if self._client is None:
            self._client = self._connect()
        await self._limit.acquire()
        self.requests += 1
        events: list[dict[str, Any]] = []
        try:
            async with self._client.get(yarl.URL(self._server + path, encoded=True), allow_redirects=False,
                                        headers={"Accept": WATCH_METADATA},
                                        timeout=aiohttp.ClientTimeout(total=seconds + self._timeout)) as response:
                if response.status >= 300:
                    raise ApiError.from_response(response.status, await response.read(), what,
                                                 retry_after=response.headers.get("Retry-After"))
                answer = await response.read()      # until the server closes the watch, after `seconds`
            for line in answer.splitlines():
                if not line.strip():
                    continue
                event = json.loads(line)
                body = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise ApiError(int(body.get("code") or 500), str(body.get("reason") or ""),
                                   f"{what}: {body.get('message') or 'an error event'}")
                events.append({"type": event.get("type"), "metadata": body.get("metadata") or {}})
        except TimeoutError:
            raise ApiError(0, "Timeout", f"{what}: the API server did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise ApiError(0, "Unavailable", f"{what}: cannot reach the API server ({type(exc).__name__})") from None
        except ValueError:
            raise ApiError(200, "BadResponse", f"{what}: the API server sent something that is not JSON") from None
        return events

    async def served_resources(self, api_version: str) -> set[str] | None:
        """The resources (plurals) the API server serves in a group version; None when it serves none
        (discovery is open to every authenticated client: no RBAC needed)."""
        answer = await self.get(f"/apis/{api_version}", f"API group version {api_version}")
        if answer is None:
            return None
        return {str(item.get("name")) for item in answer.get("resources") or [] if isinstance(item, dict)}

    # -- metadata only, for the informers (informer.py) ----------------------------------------

    async def list_metadata_page(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        """One page of a PartialObjectMetadataList: names, namespaces, resourceVersions, no bodies."""
        return await self.request("GET", f"{path}?{urlencode(query)}", accept=ONLY_METADATA_LIST,
                                  what=f"the list of {path}")

    async def watch_metadata(self, path: str, query: Mapping[str, str], *,
                             idle_timeout: float) -> AsyncIterator[bytes]:
        """The lines of a watch of metadata only (one PartialObjectMetadata event each), as they come.

        Ends when the server ends the stream; ApiError when it cannot start, or when nothing at all came
        for `idle_timeout` seconds (a stream that stalled: the server sends bookmarks every minute).
        """
        what = f"the watch of {path}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=idle_timeout)
        for attempt in (1, 2):
            if self._client is None:
                self._client = self._connect()
            await self._limit.acquire()
            self.requests += 1
            url = yarl.URL(f"{self._server}{path}?{urlencode(query)}", encoded=True)
            try:
                async with self._client.get(url, headers={"Accept": ONLY_METADATA},
                                            timeout=timeout, allow_redirects=False) as response:
                    logger.debug("GET %s (watch): HTTP %d", path, response.status)
                    if response.status == 401 and attempt == 1:
                        await self.aclose()     # log in again (a rotated ServiceAccount token), once
                        continue
                    if response.status >= 300:
                        retry_after = response.headers.get("Retry-After")
                        raise ApiError.from_response(response.status, await response.read(), what,
                                                     retry_after=retry_after)
                    buffered = bytearray()
                    async for chunk in response.content.iter_any():
                        buffered += chunk
                        if b"\n" in chunk:
                            *lines, rest = buffered.split(b"\n")
                            for line in lines:
                                if line.strip():
                                    yield bytes(line)
                            buffered = rest
                        if len(buffered) > MAX_LINE_BYTES:
                            raise ApiError(200, "BadResponse", f"{what}: an event longer than {MAX_LINE_BYTES} bytes")
                    if buffered.strip():
                        yield bytes(buffered)
                    return
            except TimeoutError:
                raise ApiError(0, "Timeout", f"{what}: nothing came for {idle_timeout:g}s") from None
            except aiohttp.ClientError as exc:
                raise ApiError(0, "Unavailable", f"{what}: the stream broke ({type(exc).__name__})") from None

    # -- the objects a sync writes -----------------------------------------------------------

    async def get_object(self, path: str, what: str) -> dict[str, Any] | None:
        """The object at `path` (group_path with a name), or None when it does not exist."""
        return await self.get(path, what)

    async def create_object(self, path: str, manifest: Mapping[str, Any], what: str) -> dict[str, Any]:
        """POST to a collection `path` (group_path without a name)."""
        return await self.request("POST", path, body=manifest, what=what)

    async def patch_object(self, path: str, patch: Mapping[str, Any], what: str) -> dict[str, Any]:
        """A JSON merge-patch of the object at `path`."""
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH, what=what)

    # A cache ConfigMap's writes are answered with its metadata only, where the server can: the catalog just
    # sent (up to a MiB) does not come back to be decoded, and the API server does not encode it again.
    async def create_configmap(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The ConfigMap created: its metadata at least (resourceVersion)."""
        name = manifest["metadata"]["name"]
        return await self.request("POST", core_path("configmaps", namespace), body=manifest, accept=OBJECT_METADATA,
                                  what=f"ConfigMap {namespace}/{name}")

    async def patch_configmap(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """The ConfigMap patched: its metadata at least (resourceVersion)."""
        return await self.request("PATCH", core_path("configmaps", namespace, name), body=patch,
                                  content_type=MERGE_PATCH, accept=OBJECT_METADATA,
                                  what=f"ConfigMap {namespace}/{name}")

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], *,
                           resource_version: str | None = None) -> dict[str, Any]:
        """Status only ever goes through the /status subresource. With `resource_version`, only if the object
        is still at that version (HTTP 409 otherwise), as controller-runtime's MergeFromWithOptimisticLock."""
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.request("PATCH", custom_path(kind, namespace, name, "status"), body=body,
                                  content_type=MERGE_PATCH, what=f"{kind} {namespace}/{name} status")

    async def post_event(self, *, kind: str, namespace: str, name: str, uid: str, type_: str, reason: str,
                         message: str, now: datetime | None = None) -> None:
        """A core v1 Event about one of our resources, as `kubectl describe` shows them."""
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": c.API_VERSION, "kind": kind, "namespace": namespace, "name": name,
                               "uid": uid},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": c.MANAGED_BY}, "reportingComponent": c.MANAGED_BY,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        await self.request("POST", core_path("events", namespace), body=event,
                           what=f"an Event for {kind} {namespace}/{name}")
