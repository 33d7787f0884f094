"""kopf as the watch and index layer: every handler here only remembers and enqueues.

- `on.event` of ToolServers and ConnectorConfigs: the body goes into the object cache, the key into
  the work queue (a ToolServer also wakes the ConnectorConfigs that inherit from it).
- `index`es: which resources reference which Secret, ConfigMap or ToolServer (from the spec, and
  from what the last sync recorded in status.references). Only names: never a value.

Secrets and ConfigMaps are not kopf's: kopf would list and watch their whole bodies. The operator's
own metadata-only informers (kube/references.py) hold their resourceVersions, and `waker` turns
each change they see into the keys of the resources that reference the object; their reconcile
compares the resourceVersion it recorded with the one the informer holds now.

No finalizers, no handler progress, no diff-base annotations: `on.event` and `index` need none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from ..api import constants as c
from ..api.errors import SyncError
from ..api.resource import ObjectKey
from ..api.spec import names_of, parse_spec
from ..engine.runtime import Engine
from .sharding import Shard, identity_and_spec

# Index ids: also the names kopf passes them to handlers under.
REFERRERS = ("toolserver_referrers", "connectorconfig_referrers")
KEYS = ("toolserver_keys", "connectorconfig_keys")      # this shard's resources: what readiness waits for

RefKey = tuple[str, str, str]       # namespace, kind (Secret | ConfigMap | ToolServer), name


def referenced(kind: str, namespace: str, name: str, spec: Mapping[str, Any] | None,
               status: Mapping[str, Any] | None) -> dict[RefKey, ObjectKey]:
    """The objects a resource reads (spec) or read last time (status.references), mapped to it."""
    keys: set[RefKey] = set()
    try:
        named = names_of(parse_spec(kind, spec or {}))
    except SyncError:
        named = None
    if named is not None:
        keys.update((namespace, "Secret", secret) for secret in named.secrets)
        keys.update((namespace, "ConfigMap", configmap) for configmap in named.configmaps)
        if named.toolserver:
            keys.add((namespace, "ToolServer", named.toolserver))
    for ref in (status or {}).get("references") or []:
        if isinstance(ref, Mapping) and ref.get("kind") and ref.get("name"):
            keys.add((namespace, str(ref["kind"]), str(ref["name"])))
    return {key: (kind, namespace, name) for key in keys}


def referrers(indexes: Iterable[kopf.Index[RefKey, ObjectKey]], key: RefKey) -> set[ObjectKey]:
    found: set[ObjectKey] = set()
    for index in indexes:
        found.update(index.get(key, ()))
    return found


def _engine(memo: Any) -> Engine | None:
    return getattr(memo, "engine", None)


def register(registry: kopf.OperatorRegistry, shard: Shard | None = None) -> None:
    """`shard`: take only the resources whose uid hashes to it (sharding.py); None: every resource."""
    for kind, index_id, keys_id in zip((c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG), REFERRERS, KEYS, strict=True):
        _register_kind(registry, kind, index_id, keys_id, shard or Shard())


def waker(engine: Engine, indexes: Mapping[str, Any]) -> Callable[[str, str, str], None]:
    """What the Secret and ConfigMap informers call on a change: enqueue the resources referencing it
    (kopf's referrer indexes are live views; the informers run in the same event loop)."""
    referrer_indexes = [indexes[index_id] for index_id in REFERRERS]

    def wake(kind: str, namespace: str, name: str) -> None:
        for referrer in referrers(referrer_indexes, (namespace, kind, name)):
            engine.enqueue(referrer)
    return wake


def _register_kind(registry: kopf.OperatorRegistry, kind: str, index_id: str, keys_id: str, shard: Shard) -> None:
    plural = c.PLURAL[kind]

    # Every handler here is a coroutine: kopf runs plain functions in a thread pool, a thread hop per event.
    @kopf.index(c.GROUP, c.VERSION, plural, id=keys_id, registry=registry)
    async def index_keys(namespace: str | None, name: str, uid: str | None, **_: Any) -> dict[tuple[str, str], bool]:
        """Every resource of this shard: complete, for kopf's initial listing, before any handler runs."""
        return {(namespace or "", name): True} if shard.owns(uid) else {}

    @kopf.index(c.GROUP, c.VERSION, plural, id=index_id, registry=registry)
    async def index_references(namespace: str | None, name: str, spec: Any, status: Any, uid: str | None,
                               **_: Any) -> dict[RefKey, ObjectKey]:
        if not shard.owns(uid):     # another shard's: what it references must wake nothing here
            return {}
        return referenced(kind, namespace or "", name, spec, status)

    @kopf.on.event(c.GROUP, c.VERSION, plural, id=f"reconcile-{plural}", registry=registry)
    async def on_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, namespace: str | None, name: str,
                       **indexes: Any) -> None:
        engine = _engine(memo)
        if engine is None:
            return
        engine.watching = True
        deleted = event.get("type") == "DELETED"
        if shard.owns(body.get("metadata", {}).get("uid")):
            engine.observe(kind, body, deleted=deleted)
        elif kind == c.KIND_TOOLSERVER:     # another shard's; this shard's ConnectorConfigs may inherit from it
            foreign = identity_and_spec(body)
            if deleted:
                engine.objects.forget((kind, namespace or "", name), foreign["metadata"].get("uid"))
            else:
                engine.objects.observe(kind, foreign)
        else:
            return
        if kind == c.KIND_TOOLSERVER:
            for referrer in referrers((indexes[REFERRERS[1]],), (namespace or "", "ToolServer", name)):
                engine.enqueue(referrer)
