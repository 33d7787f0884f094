"""The versions of the Secrets and ConfigMaps resources may reference, from metadata-only informers.

One `MetadataInformer` (informer.py) per kind and scope, as the operator's namespaces say: every
namespace (one cluster-wide informer each), exact namespaces (one each per namespace: a
namespace-scoped install lists no Secret outside them), or namespace patterns (`-n 'team-*'`): then
the namespaces themselves are followed by a metadata informer too, and each matching namespace gets
its own pair, as kopf does for its own watches. The engine asks `secret` and `configmap` (its
`Versions`); every change goes to `on_change` as (kind, namespace, name). For the probes
(handlers/health.py's `HealthSource`): what readiness waits for until each has listed, and which
informers the API server has told nothing for `stall_after` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from .informer import WATCH_TIMEOUT, Change, MetadataInformer, Scope, Transport, VersionStore

logger = logging.getLogger(__name__)

PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps"}
OnReferenceChange = Callable[[str, str, str], None]     # kind, namespace, name


class ReferenceInformers:
    """Metadata informers of Secrets and ConfigMaps: `namespaces` empty: every namespace; else those
    names, or, with `matching`, every namespace it accepts (followed as they come and go).
    `selectors`: kind -> (labelSelector, fieldSelector), applied by the API server."""

    def __init__(self, transport: Transport, *, on_change: OnReferenceChange | None = None,
                 namespaces: Sequence[str] = (),
                 matching: Callable[[str], bool] | None = None,
                 selectors: Mapping[str, tuple[str, str]] | None = None,
                 watch_timeout: float = WATCH_TIMEOUT, stall_after: float = 180.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transport, self.on_change, self.matching = transport, on_change, matching
        self.namespaces = tuple(namespaces)
        self.selectors = dict(selectors or {})
        self.watch_timeout, self.stall_after, self.clock = watch_timeout, stall_after, clock
        self.stores = {kind: VersionStore() for kind in PLURALS}
        self._informers: dict[tuple[str, str | None], MetadataInformer] = {}
        self._tasks: dict[tuple[str, str | None], asyncio.Task[None]] = {}
        self._namespaces: MetadataInformer | None = None

    # -- the engine's Versions ---------------------------------------------------------------------

    def secret(self, namespace: str, name: str) -> str | None:
        return self.stores["Secret"].get(namespace, name)

    def configmap(self, namespace: str, name: str) -> str | None:
        return self.stores["ConfigMap"].get(namespace, name)

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self.matching is not None:
            self._namespaces = MetadataInformer(self.transport, Scope("namespaces"), VersionStore(),
                                                self._namespace_changed, report_initial=True,
                                                watch_timeout=self.watch_timeout, clock=self.clock)
            self._spawn(("Namespace", None), self._namespaces)
        else:
            for namespace in self.namespaces or (None,):
                self._watch_namespace(namespace)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_synced(self) -> None:
        """Until every informer has listed once (with patterns: the namespaces, then each matching one's)."""
        if self._namespaces is not None:
            await self._namespaces.synced.wait()
        while not self.synced():
            await asyncio.gather(*(informer.synced.wait() for informer in list(self._informers.values())))

    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self._all())

    def silent(self, longer_than: float) -> list[str]:
        """The informers the API server has told nothing for longer than that (their watches have stalled,
        or cannot be made), described for the liveness probe."""
        return [f"the watch of {informer.scope.describe()} ({informer.silent_for():.0f}s silent)"
                for informer in self._all() if informer.silent_for() > longer_than]

    # -- the probes' HealthSource -------------------------------------------------------------------

    def waiting_for(self) -> str | None:
        return None if self.synced() else "waiting for the initial listing of Secrets and ConfigMaps (metadata)"

    def stalled(self) -> list[str]:
        return self.silent(self.stall_after)

    def describe(self) -> str:
        scope = ("namespaces matching the patterns" if self.matching is not None
                 else ", ".join(self.namespaces) if self.namespaces else "every namespace")
        return f"metadata of Secrets and ConfigMaps in {scope}"

    # -- inside ----------------------------------------------------------------------------------

    def _all(self) -> list[MetadataInformer]:
        return [*([self._namespaces] if self._namespaces is not None else []), *self._informers.values()]

    def _spawn(self, key: tuple[str, str | None], informer: MetadataInformer) -> None:
        task = asyncio.get_running_loop().create_task(informer.run(), name=f"informer of {informer.scope.describe()}")
        task.add_done_callback(_report_crash)
        self._tasks[key] = task

    def _watch_namespace(self, namespace: str | None) -> None:
        for kind, plural in PLURALS.items():
            labels, fields = self.selectors.get(kind, ("", ""))
            informer = MetadataInformer(self.transport, Scope(plural, namespace, labels, fields), self.stores[kind],
                                        self._changed(kind), watch_timeout=self.watch_timeout, clock=self.clock)
            self._informers[(kind, namespace)] = informer
            self._spawn((kind, namespace), informer)

    def _forget_namespace(self, namespace: str) -> None:
        for kind in PLURALS:
            self._informers.pop((kind, namespace), None)
            task = self._tasks.pop((kind, namespace), None)
            if task is not None:
                task.cancel()
            self.stores[kind].drop(namespace)

    def _namespace_changed(self, change: Change) -> None:
        type_, _, namespace = change        # namespaces are cluster-scoped: the name is the namespace
        followed = ("Secret", namespace) in self._informers
        if type_ == "DELETED" and followed:
            logger.debug("namespace %s is gone: no longer watching its Secrets and ConfigMaps", namespace)
            self._forget_namespace(namespace)
        elif type_ != "DELETED" and not followed and self.matching is not None and self.matching(namespace):
            logger.debug("namespace %s matches: watching its Secrets and ConfigMaps", namespace)
            self._watch_namespace(namespace)

    def _changed(self, kind: str) -> Callable[[Change], None]:
        def changed(change: Change) -> None:
            _, namespace, name = change
            if self.on_change is not None:
                self.on_change(kind, namespace, name)
        return changed


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped on an unexpected error; the liveness probe reports it silent", task.get_name(),
                     exc_info=task.exception())
