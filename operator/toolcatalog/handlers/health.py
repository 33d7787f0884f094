"""Liveness and readiness that mean something for an operator.

The operator's view of its resources is the object cache the watches fill. Whether the watches
work is told by comparing that view with the API server's: `WatchHealth.check` lists the
ToolServers and ConnectorConfigs the operator serves (metadata only) and finds those whose version
in the cache is older than the API server's, absent from it, or gone from the server but not from
the cache. A difference is normal for a moment (a watch event is on its way); one that lasts
`--watch-stall-timeout` seconds (default 180: longer than kopf needs to notice a dead watch stream
and reconnect, 70 s) means the watches have stalled.

The metadata informers of Secrets and ConfigMaps (kube/references.py) are our own, not kopf's:
each knows when the API server last told it anything, and hears from it at least every third of the
stall timeout when all is well (its watches end that often), so one silent for the whole stall
timeout has stalled too.

- Liveness (kopf's endpoint, `--liveness`): the `watches` probe fails, and the endpoint answers 500,
  while a change the API server holds has not come through the watches for that long, or an
  informer has been silent that long. Restarting the operator starts its watches afresh. An API
  server that cannot be reached is no reason to restart: the probe then says so and passes.
- Readiness (`--readiness URL`, our own endpoint): 503 until the caches are warm, then 200. Warm:
  the informers have listed the Secrets and ConfigMaps (the engine's workers start only then), the
  watches have delivered every resource the API server listed, and the work queue has taken each
  of them once (its backlog emptied after that). During shutdown it is 503 again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp.web
import kopf
from prometheus_client import Gauge

from ..api import constants as c
from ..api.resource import ObjectKey, resource_version_newer
from ..engine.objects import ObjectCache
from ..kube.client import KubeClient
from ..kube.errors import ApiError

logger = logging.getLogger(__name__)

# Served on --metrics-port with the engine's metrics: what the last check found, and readiness.
BEHIND = Gauge("toolcatalog_watch_behind_resources",
               "Resources whose latest change or deletion had not come through the watches at the last check")
STALLED = Gauge("toolcatalog_watch_stalled_resources",
                "Resources behind for longer than --watch-stall-timeout at the last check (liveness fails)")
OPERATOR_READY = Gauge("toolcatalog_operator_ready", "1 once the watches delivered every resource and each was "
                       "looked at (the readiness endpoint answers 200), else 0")

KINDS = (c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG)
LIST_TIMEOUT = 5.0          # a probe must answer before the kubelet's timeout
READY_POLL = 1.0            # how often readiness looks, until ready
EXAMPLES = 5


class Informers(Protocol):
    """The metadata informers' side of health (kube/references.py)."""

    def synced(self) -> bool: ...
    def silent(self, longer_than: float) -> list[str]: ...


def namespace_matches(namespace: str, patterns: Iterable[str]) -> bool:
    """Whether kopf watches `namespace` for these `-n` patterns, by kopf's own rule (its matcher is private):
    comma-separated globs read left to right; the first inclusive glob makes the match (a catch-all is
    implied before a leading `!`), a `!glob` unmatches, and a later inclusive glob only re-matches a
    namespace the first one had matched."""
    for pattern in patterns:
        globs = [glob.strip() for glob in pattern.split(",")]
        if globs[0].startswith("!"):
            globs.insert(0, "*")
        matches = first = fnmatch.fnmatch(namespace, globs[0])
        for glob in globs[1:]:
            if glob.startswith("!"):
                matches = matches and not fnmatch.fnmatch(namespace, glob.lstrip("!"))
            else:
                matches = matches or (first and fnmatch.fnmatch(namespace, glob))
        if matches:
            return True
    return False


def _is_exact(pattern: str) -> bool:
    return not any(char in pattern for char in "*?[],!")


@dataclass
class Verdict:
    """One comparison of the watches' view with the API server's."""

    listed: int = 0
    behind: int = 0             # listed objects the cache has at an older version (or not at all)
    missing: int = 0            # ... not at all (the initial listing has not delivered them yet)
    gone: int = 0               # cached objects the server no longer has
    stalled: list[str] = field(default_factory=list)    # behind for longer than the stall timeout
    silent: list[str] = field(default_factory=list)     # informers silent for longer than the stall timeout
    error: str | None = None    # the API server could not be asked: nothing is known

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"listed": self.listed, "behind": self.behind, "missing": self.missing,
                                  "gone": self.gone}
        if self.stalled:
            result["stalled"] = self.stalled[:EXAMPLES]
        if self.silent:
            result["silent"] = self.silent
        if self.error:
            result["error"] = self.error
        return result


class WatchHealth:
    def __init__(self, objects: ObjectCache, kube: KubeClient, informers: Informers | None = None, *,
                 namespaces: tuple[str, ...] = (), stall_after: float = 180.0,
                 owns: Callable[[Mapping[str, Any]], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.objects, self.kube, self.informers = objects, kube, informers
        self.namespaces, self.stall_after = namespaces, stall_after
        self.owns = owns            # a shard's filter on an object's metadata (None: every object)
        self.clock = clock
        self._behind_since: dict[ObjectKey, tuple[str | None, float]] = {}
        self._lock = asyncio.Lock()
        self.last: Verdict | None = None

    def _scopes(self) -> list[str | None]:
        """Where to list: everywhere, or each exact namespace; with patterns everywhere, then filtered."""
        if not self.namespaces or not all(_is_exact(pattern) for pattern in self.namespaces):
            return [None]
        return list(self.namespaces)

    async def listed(self) -> tuple[dict[ObjectKey, str], set[ObjectKey]]:
        """The resourceVersion of every resource this operator serves, as the API server has it now; and
        the keys of every resource listed (a shard serves only some)."""
        versions: dict[ObjectKey, str] = {}
        every: set[ObjectKey] = set()
        filtered = bool(self.namespaces) and self._scopes() == [None]
        for kind in KINDS:
            for scope in self._scopes():
                for meta in await self.kube.list_metadata(kind, scope):
                    namespace = str(meta.get("namespace") or "")
                    if filtered and not namespace_matches(namespace, self.namespaces):
                        continue
                    key = (kind, namespace, str(meta.get("name") or ""))
                    every.add(key)
                    if self.owns is None or self.owns(meta):
                        versions[key] = str(meta.get("resourceVersion") or "")
        return versions, every

    async def check(self) -> Verdict:
        async with self._lock:
            try:
                listed, every = await asyncio.wait_for(self.listed(), timeout=LIST_TIMEOUT)
            except (ApiError, TimeoutError) as error:
                message = error.message if isinstance(error, ApiError) else f"no answer within {LIST_TIMEOUT:g}s"
                self.last = Verdict(error=f"cannot list the resources to compare: {message}")
                return self.last
            now = self.clock()
            behind: dict[ObjectKey, str | None] = {}
            missing = 0
            for key, version in listed.items():
                if key not in self.objects:
                    missing += 1
                    behind[key] = version
                    continue
                cached_version = self.objects.version(key)
                if cached_version != version and not resource_version_newer(cached_version, version):
                    behind[key] = version
            gone = [key for key in self.objects.keys() if key not in every]
            for key in gone:
                behind[key] = None
            # A key lags since the first check that found it behind at this same version.
            since_before, self._behind_since = self._behind_since, {}
            for key, lagging in behind.items():
                previous, since = since_before.get(key, (lagging, now))
                self._behind_since[key] = (lagging, since if previous == lagging else now)
            stalled = sorted((now - since, key) for key, (_, since) in self._behind_since.items()
                             if now - since >= self.stall_after)
            self.last = Verdict(listed=len(listed), behind=len(behind) - len(gone), missing=missing, gone=len(gone),
                                stalled=[f"{kind} {namespace}/{name} ({age:.0f}s)"
                                         for age, (kind, namespace, name) in reversed(stalled)],
                                silent=self.informers.silent(self.stall_after) if self.informers else [])
            BEHIND.set(len(behind))
            STALLED.set(len(stalled))
            return self.last


class Readiness:
    """Ready once the caches are warm (see the module's docstring); not ready again when stopping."""

    def __init__(self, health: WatchHealth, backlog: Callable[[], int], poll: float = READY_POLL) -> None:
        self.health, self.backlog, self.poll = health, backlog, poll
        self.state = "waiting for the initial listing"
        self.ready = False
        self.stopping = False

    async def run(self) -> None:
        while True:
            verdict = await self.health.check()
            informers = self.health.informers
            if verdict.error is None and verdict.missing == 0 and (informers is None or informers.synced()):
                break
            self.state = (verdict.error if verdict.error is not None else
                          f"waiting for the initial listing: {verdict.missing} of {verdict.listed} resources not "
                          "delivered by the watches yet" if verdict.missing else
                          "waiting for the initial listing of Secrets and ConfigMaps (metadata)")
            await asyncio.sleep(self.poll)
        self.state = "taking every resource once"
        while self.backlog() > 0:
            await asyncio.sleep(min(self.poll, 0.2))
        self.state, self.ready = "ready", True
        OPERATOR_READY.set(1)
        logger.info("ready: the watches delivered all %d resources and each was looked at", verdict.listed)

    def answer(self) -> tuple[int, dict[str, Any]]:
        if self.stopping:
            return 503, {"ready": False, "state": "shutting down"}
        return (200 if self.ready else 503), {"ready": self.ready, "state": self.state}


async def serve_readiness(url: str, readiness: Readiness) -> aiohttp.web.AppRunner:
    """`--readiness http://ADDR:PORT/PATH`: 200 when ready, 503 before (a JSON body says why)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.port:
        raise ValueError(f"--readiness {url}: expected http://ADDRESS:PORT/PATH")

    async def answer(_: aiohttp.web.Request) -> aiohttp.web.Response:
        status, body = readiness.answer()
        return aiohttp.web.json_response(body, status=status)

    app = aiohttp.web.Application()
    app.router.add_get(parts.path or "/", answer)
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port).start()
    logger.info("serving readiness at %s", url)
    return runner


def register(registry: kopf.OperatorRegistry) -> None:

    @kopf.on.probe(id="watches", registry=registry)
    async def watches(memo: Any, **_: Any) -> dict[str, Any]:
        """Fails (kopf's liveness endpoint answers 500) while the watches have stalled."""
        health: WatchHealth | None = getattr(memo, "health", None)
        if health is None:
            return {"state": "starting"}
        verdict = await health.check()
        if verdict.stalled:
            raise kopf.PermanentError(
                f"the watches have stalled: {len(verdict.stalled)} change(s) the API server holds have not come "
                f"through for over {health.stall_after:g}s: {', '.join(verdict.stalled[:EXAMPLES])}")
        if verdict.silent:
            raise kopf.PermanentError(f"the watches have stalled: {', '.join(verdict.silent[:EXAMPLES])}")
        readiness: Readiness | None = getattr(memo, "readiness", None)
        return {**verdict.as_dict(), **({"ready": readiness.ready} if readiness is not None else {})}


def exact_namespaces(patterns: Iterable[str]) -> bool:
    """Only exact namespace names (no globs, no negations): kopf need not scan the cluster for them."""
    patterns = list(patterns)
    return bool(patterns) and all(_is_exact(pattern) for pattern in patterns)


async def start(memo: Any, objects: ObjectCache, kube: KubeClient, informers: Informers | None, *,
                backlog: Callable[[], int],
                namespaces: tuple[str, ...], stall_after: float, readiness_url: str | None,
                owns: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
    """The watches' health check (for the liveness probe), readiness (the toolcatalog_operator_ready gauge)
    and, with a URL, the readiness endpoint."""
    memo.health = WatchHealth(objects, kube, informers, namespaces=namespaces, stall_after=stall_after, owns=owns)
    memo.readiness = Readiness(memo.health, backlog)
    if readiness_url:
        memo.readiness_runner = await serve_readiness(readiness_url, memo.readiness)
    memo.readiness_task = asyncio.get_running_loop().create_task(memo.readiness.run(), name="readiness")


async def stop(memo: Any) -> None:
    readiness: Readiness | None = getattr(memo, "readiness", None)
    if readiness is not None:
        readiness.stopping = True
        OPERATOR_READY.set(0)
        memo.readiness_task.cancel()
        await asyncio.gather(memo.readiness_task, return_exceptions=True)


async def close(memo: Any) -> None:
    runner: aiohttp.web.AppRunner | None = getattr(memo, "readiness_runner", None)
    if runner is not None:
        await runner.cleanup()
