"""A metadata-only informer: the resourceVersion of every Secret (or ConfigMap) in a scope, never a body.

kopf lists and watches whole objects and has no metadata-only watch, so with it every Secret of the
cluster streamed through the operator with its data. This informer does what controller-runtime's
metadata informers (`WatchesMetadata`) and cert-manager's informers of Secrets it does not own do:

- LIST with `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`, in pages, then
  WATCH from the list's resourceVersion with `as=PartialObjectMetadata`, `allowWatchBookmarks=true`:
  the API server sends names, namespaces and versions (and the rest of `metadata`), no `data`;
- a BOOKMARK only moves the resourceVersion on; a stream the server ends (`timeoutSeconds`) is
  watched again from there; a stream still silent a while after that timeout has stalled: it is
  dropped and watched again;
- 410 Gone (an ERROR event, or the answer itself: the version is too old) lists again, and the
  difference between what was known and the new listing is reported as changes: nothing that
  happened meanwhile is missed;
- any other failure is retried with exponential backoff and jitter, capped at 30 s (as client-go's
  reflector does).

Only `VersionStore` is kept: per namespace, name -> resourceVersion. The first listing of a scope
reports nothing (who needs a version asks for it); later changes go to `on_change` as
(type, namespace, name), type one of ADDED, MODIFIED, DELETED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .client import CORE
from .errors import ApiError

logger = logging.getLogger(__name__)

Change = tuple[str, str, str]           # ADDED | MODIFIED | DELETED, namespace, name
OnChange = Callable[[Change], None]

PAGE_SIZE = 500
WATCH_TIMEOUT = 60.0            # the server ends each watch after this long, plus up to half as much jitter
RECONNECT_PAUSE = 0.1           # between a stream the server ended and the next watch (kopf's pause too)


class Transport(Protocol):
    """The two requests an informer makes (KubeClient; a fake in the unit tests)."""

    async def list_metadata_page(self, path: str, query: Mapping[str, str]) -> dict[str, Any]: ...
    def watch_metadata(self, path: str, query: Mapping[str, str], *,
                       idle_timeout: float) -> AsyncIterator[bytes]: ...


class VersionStore:
    """name -> resourceVersion, per namespace: all an informer keeps (a few hundred bytes an object)."""

    def __init__(self) -> None:
        self._namespaces: dict[str, dict[str, str]] = {}

    def get(self, namespace: str, name: str) -> str | None:
        names = self._namespaces.get(namespace)
        return names.get(name) if names is not None else None

    def __len__(self) -> int:
        return sum(len(names) for names in self._namespaces.values())

    def apply(self, type_: str, namespace: str, name: str, version: str) -> Change | None:
        """One watch event; the change it makes, or None (a version already known, an unknown deletion)."""
        names = self._namespaces.get(namespace)
        if type_ == "DELETED":
            if names is None or names.pop(name, None) is None:
                return None
            if not names:
                del self._namespaces[namespace]
            return ("DELETED", namespace, name)
        if names is None:
            names = self._namespaces[sys.intern(namespace)] = {}
        before = names.get(name)
        if before == version:
            return None
        names[name] = version
        return ("ADDED" if before is None else "MODIFIED", namespace, name)

    def replace(self, namespace: str | None, listed: Mapping[str, Mapping[str, str]]) -> list[Change]:
        """A fresh listing of one namespace (None: of every namespace) instead of what was known of it;
        returns what differs between the two."""
        scope = {namespace} if namespace is not None else {*self._namespaces, *listed}
        changes: list[Change] = []
        for each in sorted(scope):
            old, new = self._namespaces.get(each, {}), dict(listed.get(each, {}))
            changes += [("DELETED", each, name) for name in old if name not in new]
            changes += [("ADDED" if name not in old else "MODIFIED", each, name)
                        for name, version in new.items() if old.get(name) != version]
            if new:
                self._namespaces[sys.intern(each)] = new
            else:
                self._namespaces.pop(each, None)
        return changes

    def drop(self, namespace: str) -> None:
        """Forget a namespace no longer watched."""
        self._namespaces.pop(namespace, None)


@dataclass(frozen=True)
class Scope:
    """What one informer watches: a core resource, in one namespace or all, with the server-side selectors."""

    plural: str                         # secrets, configmaps, namespaces
    namespace: str | None = None        # None: every namespace (or a cluster-scoped resource)
    label_selector: str = ""
    field_selector: str = ""

    @property
    def path(self) -> str:
        return f"{CORE}/namespaces/{self.namespace}/{self.plural}" if self.namespace else f"{CORE}/{self.plural}"

    def describe(self) -> str:
        return f"{self.plural} in {self.namespace}" if self.namespace else f"{self.plural} (every namespace)"

    def selectors(self) -> dict[str, str]:
        return {key: value for key, value in (("labelSelector", self.label_selector),
                                              ("fieldSelector", self.field_selector)) if value}


@dataclass(frozen=True)
class Backoff:
    """Exponential, with jitter (half to all of it), capped: 0.8 s, 1.6 s, ... 30 s, as client-go's reflector."""

    base: float = 0.8
    cap: float = 30.0

    def delay(self, failures: int, jitter: float) -> float:
        return min(self.cap, self.base * 2 ** max(0, failures - 1)) * (0.5 + jitter / 2)


class Expired(Exception):
    """410 Gone: the resourceVersion to watch from is no longer kept; list again."""


class MetadataInformer:
    """List, then watch, one `Scope` for ever (`run`), keeping `store` up to date and telling `on_change`.

    `watch_timeout`: the server ends each watch after this long (with up to half as much again of
    jitter), so that even a quiet, healthy informer hears from the server that often (`silent_for`);
    `report_initial`: report the first listing's objects as ADDED too (for following namespaces).
    """

    def __init__(self, transport: Transport, scope: Scope, store: VersionStore, on_change: OnChange | None = None,
                 *, report_initial: bool = False, watch_timeout: float = WATCH_TIMEOUT, page_size: int = PAGE_SIZE,
                 backoff: Backoff = Backoff(), clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.transport, self.scope, self.store, self.on_change = transport, scope, store, on_change
        self.report_initial, self.watch_timeout, self.page_size = report_initial, watch_timeout, page_size
        self.backoff, self.clock, self.sleep, self.jitter = backoff, clock, sleep, jitter
        self.synced = asyncio.Event()       # set once the first listing is in the store
        self.version: str | None = None     # the resourceVersion to watch from; None: list first
        self.lists = 0                      # listings done (the first, and one after each 410)
        self.last_heard = clock()           # the last time the server answered anything, an error included
        self._received = 0                  # pages and events received: progress, for the backoff

    def silent_for(self) -> float:
        """Seconds since the API server last answered this informer anything (a page, an event, a stream's
        end, an error status): a stalled or unreachable watch, not one the server refuses (403)."""
        return self.clock() - self.last_heard

    async def run(self) -> None:
        """Until cancelled: list when there is no version to watch from, else watch; retry what fails."""
        failures = 0
        while True:
            received = self._received
            try:
                if self.version is None:
                    await self.list_all()
                await self.watch_once()
                failures = 0
                await self.sleep(RECONNECT_PAUSE)
            except Expired:
                logger.debug("%s: resourceVersion %s expired; listing again", self.scope.describe(), self.version)
                self.version = None
            except ApiError as error:
                if error.status:        # an answer, if not the one wanted
                    self.last_heard = self.clock()
                if error.status == 410:
                    self.version = None
                    continue
                failures = 1 if self._received > received else failures + 1     # a new run of failures
                delay = max(self.backoff.delay(failures, self.jitter()), error.retry_after or 0.0)
                # The first failure of a run of them is a warning; the rest are repeats until it recovers.
                (logger.warning if failures == 1 else logger.debug)(
                    "%s: %s; trying again in %.1fs", self.scope.describe(), error.message, delay)
                await self.sleep(delay)

    async def list_all(self) -> None:
        """Every object's metadata, in pages; then the store holds that listing instead of what it had."""
        listed: dict[str, dict[str, str]] = {}
        query = {"limit": str(self.page_size), **self.scope.selectors()}
        version = ""
        while True:
            page = await self.transport.list_metadata_page(self.scope.path, query)
            self.last_heard, self._received = self.clock(), self._received + 1
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                listed.setdefault(str(meta.get("namespace") or ""), {})[str(meta.get("name") or "")] = \
                    str(meta.get("resourceVersion") or "")
            page_meta = page.get("metadata") or {}
            version = str(page_meta.get("resourceVersion") or version)
            if not page_meta.get("continue"):
                break
            query["continue"] = str(page_meta["continue"])
        changes = self.store.replace(self.scope.namespace, listed)
        first = not self.synced.is_set()
        self.version, self.lists = version, self.lists + 1
        self.synced.set()
        if first:
            logger.debug("%s: %d listed", self.scope.describe(), sum(len(names) for names in listed.values()))
        if not first or self.report_initial:
            self._tell(changes)

    async def watch_once(self) -> None:
        """One watch stream from `version`, until the server ends it. Raises Expired on 410 Gone."""
        assert self.version is not None
        timeout = int(self.watch_timeout * (1 + self.jitter() / 2)) or 1
        query = {"watch": "true", "resourceVersion": self.version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout), **self.scope.selectors()}
        idle = timeout + max(5.0, timeout / 4)     # the server ends the stream by then, whatever happens
        stream = self.transport.watch_metadata(self.scope.path, query, idle_timeout=idle)
        try:
            async for line in stream:
                self.last_heard, self._received = self.clock(), self._received + 1
                self._handle(line)
        finally:
            await _aclose(stream)
        self.last_heard = self.clock()

    def _handle(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            type_, obj = str(event["type"]), event.get("object") or {}
        except (ValueError, TypeError, KeyError):
            raise ApiError(200, "BadResponse", f"{self.scope.describe()}: a watch event that is not JSON") from None
        if type_ == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise ApiError(int(obj.get("code") or 0), str(obj.get("reason") or ""),
                           f"{self.scope.describe()}: the watch failed: {obj.get('message') or obj.get('reason')}")
        meta = obj.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        if version:
            self.version = version
        if type_ in ("ADDED", "MODIFIED", "DELETED"):
            change = self.store.apply(type_, str(meta.get("namespace") or ""), str(meta.get("name") or ""), version)
            if change is not None:
                self._tell([change])

    def _tell(self, changes: list[Change]) -> None:
        if self.on_change is None:
            return
        for change in changes:
            try:
                self.on_change(change)
            except Exception:       # a listener's bug must not stop the informer
                logger.exception("%s: handling %s failed", self.scope.describe(), change)


async def _aclose(stream: AsyncIterator[bytes]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
