"""The catalogs of the sources ToolAllowlists name, in memory: what allowlists and the webhook answer from.

The source reconciler tells it, for every sync of a source some allowlist names:

- `narrow`, as soon as a sync has merged its catalog and before it writes anything: the tools the
  new catalog offers become a ceiling, so a drifted, removed or no longer approved tool is
  withdrawn at once (fail closed), even should the sync's writes then fail;
- `commit`, once the cache ConfigMap and the status hold the sync's outcome: the new catalog (or
  that the sync failed) replaces the old one and the ceiling is lifted. Tools are added only here.

Either, when it changes what may be allowed, wakes the allowlists that name the source (through
kopf's index of allowlists by source, never a scan), with priority, recording when the sync began:
the exposure window is measured from there.

After a restart nothing is known until an allowlist's reconcile reads a source's cache ConfigMap
(`fill`); until then `state` says the source is not loaded and the webhook lookup fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..api.models import CacheDocument
from ..api.resource import ObjectKey, Resource
from ..reconcile.allowlist import SourceCatalog, Usable, catalog_tools, limits_of
from ..reconcile.approval import POLICY_NONE
from ..reconcile.plan import Plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    catalog: SourceCatalog
    loaded: bool            # its tools come from a commit or a read of its cache (not only a narrowing)


class SourceCatalogs:
    def __init__(self, referrers: Callable[[ObjectKey], set[ObjectKey]] = lambda key: set()) -> None:
        self._referrers = referrers
        self._entries: dict[ObjectKey, _Entry] = {}
        # Told of each change: (the source, when the sync that made it began (monotonic), or None).
        self.on_change: Callable[[ObjectKey, set[ObjectKey], float | None], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def state(self, key: ObjectKey) -> tuple[SourceCatalog | None, bool]:
        """The catalog known for a source, and whether it is loaded (False: fail closed)."""
        entry = self._entries.get(key)
        if entry is None:
            return None, False
        return entry.catalog, entry.loaded

    # -- from the source reconciler --------------------------------------------------------------

    def narrow(self, resource: Resource, usable: Usable, started: float) -> None:
        """A sync found `usable` and is about to write it: nothing beyond it may be allowed from now on."""
        referrers = self._referrers(resource.key)
        if not referrers:
            return
        entry = self._entries.get(resource.key)
        if entry is None or entry.catalog.uid not in ("", resource.uid):
            entry = _Entry(_empty(resource), loaded=False)
        before = entry.catalog.usable()
        narrowed = replace(entry.catalog, ceiling=usable)
        self._entries[resource.key] = _Entry(narrowed, entry.loaded)
        if narrowed.usable() != before:
            withdrawn = sorted(set(before.items()) - set(narrowed.usable().items()))
            logger.info("%s: withdrawn at once from %d allowlist(s), before this sync writes anything: %s",
                        resource.describe(), len(referrers), ", ".join(name for name, _ in withdrawn),
                        extra={"withdrawn": [name for name, _ in withdrawn]})
            self._changed(resource.key, referrers, started)

    def commit(self, resource: Resource, plan: Plan, started: float | None,
               load: Callable[[], CacheDocument | None] | None = None) -> None:
        """Cache and status hold this sync's outcome: the catalog allowlists read is this one now. A sync that
        found the catalog unchanged wrote nothing: the catalog held already stays (its ceiling lifted), or, when
        none is held, the cache's document is parsed (`load`)."""
        referrers = self._referrers(resource.key)
        if not referrers:
            self._entries.pop(resource.key, None)
            return
        entry = self._entries.get(resource.key)
        previous = entry.catalog if entry is not None and entry.catalog.uid in ("", resource.uid) else None
        failing = plan.status.last_sync is not None and plan.status.last_sync.result == "Failed"
        limits = limits_of(resource.spec) if resource.spec is not None else None
        catalog: SourceCatalog | None = None
        loaded = False
        if not failing and (plan.cache is not None or plan.kept is not None):
            if plan.cache is not None:
                document: CacheDocument | None = plan.cache.document
                digest = plan.cache.rendered.content_hash
            else:
                assert plan.kept is not None
                document, digest = plan.kept.document, plan.kept.content_hash
                if document is None and previous is not None and entry is not None and entry.loaded \
                        and previous.content_hash == digest:
                    catalog, loaded = replace(previous, failing=False, ceiling=None, limits=limits), True
                elif document is None and load is not None:
                    document = load()
            if catalog is None and document is not None:
                catalog = SourceCatalog(kind=resource.kind, namespace=resource.namespace, name=resource.name,
                                        uid=resource.uid, tools=catalog_tools(document), url=document.source.url,
                                        policy=document.approval.policy, content_hash=digest, limits=limits)
                loaded = True
        if catalog is None and previous is not None:
            # Failed: the previous cache stays; a ceiling a failed write left stays too (known drift stays out),
            # and what the spec now takes away is out at once.
            catalog = replace(previous, failing=True, limits=limits or previous.limits)
            loaded = bool(entry and entry.loaded)
        elif catalog is None:
            catalog, loaded = replace(_empty(resource), failing=True, limits=limits), False
        self._entries[resource.key] = _Entry(catalog, loaded)
        before = previous.usable() if previous is not None else {}
        # A tool the sync found but did not allow (new, changed, pending) changes no usable set, yet wakes the
        # allowlists too: their status lists it as withheld, and a gateway that discovers tools on its own
        # (ContextForge refreshes itself on the server's notification) must have it deactivated now.
        if catalog.usable() != before or previous is None or previous.failing != catalog.failing \
                or previous.url != catalog.url or previous.tools != catalog.tools:
            self._changed(resource.key, referrers, started if catalog.usable() != before else None)

    def spec_changed(self, resource: Resource) -> None:
        """The source's spec changed: what it takes away (a tool disabled, deselected, an approval taken back
        under policy All) is withdrawn at once, before its sync runs, let alone succeeds."""
        entry = self._entries.get(resource.key)
        if entry is None or resource.spec is None or entry.catalog.uid != resource.uid:
            return
        limits = limits_of(resource.spec)
        if limits == entry.catalog.limits:
            return
        before = entry.catalog.usable()
        limited = replace(entry.catalog, limits=limits)
        self._entries[resource.key] = _Entry(limited, entry.loaded)
        if limited.usable() != before:
            self._changed(resource.key, self._referrers(resource.key), None)

    def forget(self, key: ObjectKey) -> None:
        """The source was deleted: nothing of it is allowed any more."""
        if self._entries.pop(key, None) is not None:
            self._changed(key, self._referrers(key), None)

    # -- from the allowlist reconciler --------------------------------------------------------

    def fill(self, catalog: SourceCatalog) -> SourceCatalog:
        """A source's catalog read from its cache ConfigMap (after a restart, or a source newly named), unless
        a sync committed one meanwhile; a ceiling a running sync set is kept. Returns what is known now."""
        key: ObjectKey = (catalog.kind, catalog.namespace, catalog.name)
        entry = self._entries.get(key)
        if entry is not None and entry.loaded and entry.catalog.uid == catalog.uid:
            return entry.catalog
        ceiling = entry.catalog.ceiling if entry is not None and entry.catalog.uid in ("", catalog.uid) else None
        filled = replace(catalog, ceiling=ceiling)
        self._entries[key] = _Entry(filled, loaded=True)
        return filled

    def drop(self, key: ObjectKey) -> None:
        """No allowlist names this source any more (memory only: nothing is withdrawn by it)."""
        self._entries.pop(key, None)

    def _changed(self, key: ObjectKey, referrers: set[ObjectKey], started: float | None) -> None:
        if self.on_change is not None and referrers:
            self.on_change(key, referrers, started)


def _empty(resource: Resource) -> SourceCatalog:
    return SourceCatalog(kind=resource.kind, namespace=resource.namespace, name=resource.name, uid=resource.uid,
                         policy=resource.spec.approval.policy if resource.spec is not None else POLICY_NONE,
                         limits=limits_of(resource.spec) if resource.spec is not None else None)

