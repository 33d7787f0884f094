"""Liveness and readiness that mean something for an operator, and cost no LIST per probe.

The operator's view of its resources is the object cache kopf's watches fill. A probe only reads
what two background tasks found:

- Liveness (kopf's endpoint, `--liveness`; the `watches` probe): `WatchCheck` asks the API server,
  every few seconds, what changed since the last version it checked: a watch from that version that
  the server closes after a second (it answers from its watch cache: only the changes, usually
  none). A change the object cache has not caught up with for `--watch-stall-timeout` seconds (180:
  longer than kopf needs to notice a dead watch stream and reconnect, 70 s) means the watches have
  stalled, and the probe fails (500) until they recover; restarting the operator starts them afresh.
  One metadata LIST of one item at start gives the version to begin from; a full metadata LIST is
  made only when the server has forgotten that version (410: more changes than its watch cache
  holds between two checks). An API server that cannot be asked is no reason to restart: the probe
  says so and passes. Why not compare a LIST's resourceVersion with the newest version the watches
  delivered: a list's version is the whole cluster's latest write (any kind), and kopf hands no
  bookmarks to handlers, so a quiet watch and a stalled one look the same.
- Readiness (`--readiness URL`, our own endpoint): 503 until the caches are warm, then 200; 503 again
  when stopping. Warm: kopf's initial listings are delivered (kopf guarantees, in its documentation
  on indexing, that its indexes are fully populated before any other resource handler is invoked, so
  the first watch event proves the initial listings over;
  with no ToolServer and no ConnectorConfig at all, a LIST of one item says there is nothing to
  wait for), every resource its indexes hold has reached the engine, and each was looked at once.

Other watches (an informer of our own) join through `HealthSource`: what their readiness waits for,
and which of them have stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp.web
import kopf
from prometheus_client import Gauge

from ..api import constants as c
from ..api.resource import ObjectKey, resource_version_newer
from ..engine.runtime import Engine
from ..engine.watchlag import EXAMPLES, Change, Verdict, WatchLag
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
ASK_TIMEOUT = 10.0          # one check's requests, at most
CHANGES_WINDOW = 1          # seconds the API server keeps a check's watch open
READY_POLL = 0.2            # how often readiness looks, until ready
EMPTY_POLL = 2.0            # ... and asks whether there is anything to list at all


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


def exact_namespaces(patterns: Iterable[str]) -> bool:
    """Only exact namespace names (no globs, no negations): kopf need not scan the cluster for them."""
    patterns = list(patterns)
    return bool(patterns) and all(_is_exact(pattern) for pattern in patterns)


class HealthSource(Protocol):
    """A set of watches the probes report on."""

    def waiting_for(self) -> str | None: ...    # None once its initial listing is delivered: what it waits for
    def stalled(self) -> list[str]: ...         # what has stalled (empty: nothing)


class Scopes:
    """Where the operator's resources are: everywhere, or each exact namespace; with patterns everywhere,
    then filtered by kopf's rule. `owns`: a shard's filter on an object's metadata (None: every object)."""

    def __init__(self, namespaces: tuple[str, ...], owns: Callable[[Mapping[str, Any]], bool] | None) -> None:
        self.namespaces, self.owns = namespaces, owns
        self.exact = exact_namespaces(namespaces)

    def lists(self) -> list[tuple[str, str | None]]:
        return [(kind, scope) for kind in KINDS for scope in (self.namespaces if self.exact else (None,))]

    def watched(self, namespace: str) -> bool:
        return self.exact or not self.namespaces or namespace_matches(namespace, self.namespaces)

    def covers(self, kind: str, scope: str | None) -> Callable[[ObjectKey], bool]:
        """Which cached keys a listing of `kind` in `scope` speaks for."""
        return lambda key: key[0] == kind and (key[1] == scope if scope else self.watched(key[1]))


class WatchCheck:
    """The liveness check: asks the API server what changed since it last asked (see the module's docstring)."""

    def __init__(self, engine: Engine, kube: KubeClient, scopes: Scopes, *, stall_after: float = 180.0,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.objects, self.kube, self.scopes = engine.objects, kube, scopes
        self.stall_after = stall_after
        self.interval = interval if interval is not None else min(30.0, max(1.0, stall_after / 4))
        self.lag = WatchLag(engine.objects, stall_after=stall_after, clock=clock)
        self._checked: dict[tuple[str, str | None], str] = {}     # the version each listing was checked up to
        self.last: Verdict | None = None
        self.checked_at: float | None = None

    async def _collections(self) -> dict[tuple[str, str | None], tuple[str, bool]]:
        """Each collection's resourceVersion now, and whether it holds anything: a LIST of one item each."""
        return {(kind, scope): await self.kube.collection_version(kind, scope) for kind, scope in self.scopes.lists()}

    async def begin(self) -> None:
        """Note where the collections are now, before kopf lists them: the changes after that are checked."""
        for where, (version, _) in (await self._collections()).items():
            self._checked[where] = version

    async def anything(self) -> bool:
        """Whether there is any ToolServer or ConnectorConfig to list at all."""
        return any(some for _, some in (await self._collections()).values())

    async def check(self) -> Verdict:
        try:
            async with asyncio.timeout(ASK_TIMEOUT + CHANGES_WINDOW):
                outcomes = await asyncio.gather(*(self._check(kind, scope) for kind, scope in self.scopes.lists()),
                                                return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except (ApiError, TimeoutError) as error:
            message = error.message if isinstance(error, ApiError) else f"no answer within {ASK_TIMEOUT:g}s"
            verdict = self.lag.verdict()
            verdict.stalled, verdict.error = [], f"cannot ask the API server what changed: {message}"
        else:
            verdict = self.lag.verdict()
        self.last, self.checked_at = verdict, time.monotonic()
        BEHIND.set(verdict.behind)
        STALLED.set(len(verdict.stalled))
        return verdict

    async def _check(self, kind: str, scope: str | None) -> None:
        since = self._checked.get((kind, scope))
        events = None
        if since:
            try:
                events = await self.kube.changes_since(kind, scope, since, seconds=CHANGES_WINDOW)
            except ApiError as error:
                if error.status != 410:
                    raise
                logger.debug("%s in %s: the API server no longer holds the changes since %s; listing them",
                             c.PLURAL[kind], scope or "every namespace", since)
        if events is None:
            await self._compare_all(kind, scope)
            return
        changes = []
        for event in events:
            meta = event["metadata"]
            version = str(meta.get("resourceVersion") or "")
            if version and resource_version_newer(version, since):
                since = version
            if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                continue                # a BOOKMARK: only the version
            namespace = str(meta.get("namespace") or "")
            if self.scopes.watched(namespace) and (self.scopes.owns is None or self.scopes.owns(meta)):
                changes.append(Change((kind, namespace, str(meta.get("name") or "")), version,
                                      deleted=event["type"] == "DELETED"))
        self.lag.reported(changes)
        if since:
            self._checked[(kind, scope)] = since

    async def _compare_all(self, kind: str, scope: str | None) -> None:
        """Every object's version against the cache's: at start, if need be, and after a 410."""
        items, version = await self.kube.list_metadata(kind, scope)
        listed: dict[ObjectKey, str] = {}
        every: set[ObjectKey] = set()
        for meta in items:
            namespace = str(meta.get("namespace") or "")
            if not self.scopes.watched(namespace):
                continue
            key = (kind, namespace, str(meta.get("name") or ""))
            every.add(key)
            if self.scopes.owns is None or self.scopes.owns(meta):
                listed[key] = str(meta.get("resourceVersion") or "")
        self.lag.compared(listed, every, within=self.scopes.covers(kind, scope))
        if version:
            self._checked[(kind, scope)] = version

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:       # a bug must not leave the probe reading an old verdict for ever
                logger.exception("the watch check failed; trying again in %.0fs", self.interval)
            await asyncio.sleep(self.interval)

    # -- HealthSource ----------------------------------------------------------------------------

    def waiting_for(self) -> str | None:
        return None

    def stalled(self) -> list[str]:
        return self.last.stalled if self.last is not None else []


class Readiness:
    """Ready once the caches are warm (see the module's docstring); not ready again when stopping."""

    def __init__(self, engine: Engine, expected: Callable[[], list[ObjectKey]], anything: Callable[[], Any],
                 sources: Sequence[HealthSource] = (), poll: float = READY_POLL) -> None:
        self.engine, self.expected, self.anything = engine, expected, anything
        self.sources, self.poll = sources, poll
        self.state = "waiting for the initial listing"
        self.ready = False
        self.stopping = False

    async def _listed(self) -> None:
        """Until kopf's initial listings are over: its first watch event, or nothing to list at all."""
        asked = -EMPTY_POLL
        while not self.engine.watching:
            if time.monotonic() - asked >= EMPTY_POLL:
                asked = time.monotonic()
                try:
                    if not await self.anything():
                        return
                except (ApiError, TimeoutError) as error:
                    self.state = f"waiting for the initial listing: {getattr(error, 'message', error)}"
                    continue
            await asyncio.sleep(self.poll)

    async def run(self) -> None:
        await self._listed()
        while True:
            expected = self.expected()
            missing = sum(1 for key in expected if key not in self.engine.objects)
            unseen = sum(1 for key in expected if not self.engine.reconciler.looked_at(key))
            waiting = [reason for source in self.sources if (reason := source.waiting_for())]
            if missing:
                self.state = (f"waiting for the initial listing: {missing} of {len(expected)} resources not "
                              "delivered by the watches yet")
            elif unseen:
                self.state = f"taking every resource once: {unseen} of {len(expected)} not looked at yet"
            elif waiting:
                self.state = "; ".join(waiting)
            else:
                break
            await asyncio.sleep(self.poll)
        self.state, self.ready = "ready", True
        OPERATOR_READY.set(1)
        logger.info("ready: the watches delivered all %d resources and each was looked at", len(expected))

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
        """Fails (kopf's liveness endpoint answers 500) while the watches have stalled: reads the last check."""
        check: WatchCheck | None = getattr(memo, "watch_check", None)
        if check is None or check.last is None or check.checked_at is None:
            return {"state": "starting"}
        stalled = [item for source in (check, *getattr(memo, "health_sources", ())) for item in source.stalled()]
        if stalled:
            raise kopf.PermanentError(
                f"the watches have stalled: {len(stalled)} change(s) the API server holds have not come through "
                f"for over {check.stall_after:g}s: {', '.join(stalled[:EXAMPLES])}")
        readiness: Readiness | None = getattr(memo, "readiness", None)
        return {**check.last.as_dict(), "checkedSecondsAgo": round(time.monotonic() - check.checked_at, 1),
                **({"ready": readiness.ready} if readiness is not None else {})}


def indexed_keys(indexes: Mapping[str, kopf.Index]) -> Callable[[], list[ObjectKey]]:
    """The resources kopf's key indexes hold (kind -> its index of (namespace, name))."""
    def keys() -> list[ObjectKey]:
        return [(kind, namespace, name) for kind, index in indexes.items() for namespace, name in list(index)]
    return keys


async def start(memo: Any, engine: Engine, kube: KubeClient, *, keys: Mapping[str, kopf.Index],
                namespaces: tuple[str, ...], stall_after: float, readiness_url: str | None,
                owns: Callable[[Mapping[str, Any]], bool] | None = None,
                sources: Sequence[HealthSource] = ()) -> None:
    """The watch check (for the liveness probe), readiness (the toolcatalog_operator_ready gauge) and, with a
    URL, the readiness endpoint. Called from the startup handler: before kopf's watches list anything."""
    check = WatchCheck(engine, kube, Scopes(namespaces, owns), stall_after=stall_after)
    try:
        await asyncio.wait_for(check.begin(), timeout=ASK_TIMEOUT)
    except (ApiError, TimeoutError) as error:     # the first check lists everything instead
        logger.warning("cannot note where the resources' collections are: %s", getattr(error, "message", error))
    memo.watch_check, memo.health_sources = check, tuple(sources)
    memo.readiness = Readiness(engine, indexed_keys(keys), check.anything, sources=(check, *sources))
    if readiness_url:
        memo.readiness_runner = await serve_readiness(readiness_url, memo.readiness)
    loop = asyncio.get_running_loop()
    memo.health_tasks = [loop.create_task(memo.readiness.run(), name="readiness"),
                         loop.create_task(check.run(), name="watch check")]


async def stop(memo: Any) -> None:
    readiness: Readiness | None = getattr(memo, "readiness", None)
    if readiness is not None:
        readiness.stopping = True
        OPERATOR_READY.set(0)
    for task in getattr(memo, "health_tasks", ()):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def close(memo: Any) -> None:
    runner: aiohttp.web.AppRunner | None = getattr(memo, "readiness_runner", None)
    if runner is not None:
        await runner.cleanup()
