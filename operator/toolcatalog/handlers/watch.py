"""kopf as the watch and index layer: every handler here only remembers and enqueues.

- `on.event` of ToolServers and ConnectorConfigs: the body goes into the object cache, the key into
  the work queue (a ToolServer also wakes the ConnectorConfigs that inherit from it).
- `on.event` of Secrets and ConfigMaps: the resources that reference one are enqueued; their
  reconcile compares the resourceVersion it recorded with the one the index holds now.
- `index`es: which resources reference which Secret, ConfigMap or ToolServer (from the spec, and
  from what the last sync recorded in status.references), and the resourceVersion of every Secret
  and ConfigMap. Only names and versions: never a value.
- ToolAllowlists: `on.event` remembers and enqueues them like the sources; an index maps each
  source (and each token Secret) to the allowlists naming it, so that a source's sync wakes exactly
  those (engine/catalogs.py), never a scan.

No finalizers, no handler progress, no diff-base annotations: `on.event` and `index` need none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from ..api import constants as c
from ..api.allowlist import parse_allowlist_spec
from ..api.errors import SyncError
from ..api.resource import ObjectKey
from ..api.spec import names_of, parse_spec
from ..engine.runtime import Engine
from .sharding import Shard, identity_and_spec

# Index ids: also the names kopf passes them to handlers under.
REFERRERS = ("toolserver_referrers", "connectorconfig_referrers")
KEYS = ("toolserver_keys", "connectorconfig_keys")      # this shard's resources: what readiness waits for
ALLOWLISTS = "allowlist_sources"         # (namespace, kind, name) of a source or Secret -> allowlist keys
SECRET_VERSIONS = "secret_versions"
CONFIGMAP_VERSIONS = "configmap_versions"

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


def allowlist_references(namespace: str, name: str, spec: Mapping[str, Any] | None) -> dict[RefKey, ObjectKey]:
    """The sources and token Secrets a ToolAllowlist names, mapped to it."""
    try:
        parsed = parse_allowlist_spec(spec or {})
    except SyncError:
        return {}
    keys: set[RefKey] = {(namespace, source.kind, source.name) for source in parsed.sources}
    keys.update((namespace, "Secret", target.contextforge.token_secret_ref.name) for target in parsed.targets
                if target.contextforge is not None)
    return {key: (c.KIND_TOOLALLOWLIST, namespace, name) for key in keys}


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

    # Every handler here is a coroutine: kopf runs plain functions in a thread pool, a thread hop per event.
    @kopf.index("secrets", id=SECRET_VERSIONS, registry=registry)
    async def secret_versions(namespace: str | None, name: str, meta: kopf.Meta,
                              **_: Any) -> dict[tuple[str, str], str]:
        return {(namespace or "", name): str(meta.get("resourceVersion") or "")}

    @kopf.index("configmaps", id=CONFIGMAP_VERSIONS, registry=registry)
    async def configmap_versions(namespace: str | None, name: str, meta: kopf.Meta,
                                 **_: Any) -> dict[tuple[str, str], str]:
        return {(namespace or "", name): str(meta.get("resourceVersion") or "")}

    @kopf.on.event("secrets", id="wake-secret-users", registry=registry)
    async def on_secret(event: kopf.RawEvent, namespace: str | None, name: str, memo: Any,
                        **indexes: Any) -> None:
        _wake(memo, event, (namespace or "", "Secret", name), [indexes[id_] for id_ in (*REFERRERS, ALLOWLISTS)])

    @kopf.on.event("configmaps", id="wake-configmap-users", registry=registry)
    async def on_configmap(event: kopf.RawEvent, namespace: str | None, name: str, memo: Any,
                           **indexes: Any) -> None:
        _wake(memo, event, (namespace or "", "ConfigMap", name), [indexes[id_] for id_ in REFERRERS])

    _register_allowlists(registry, shard or Shard())


def _wake(memo: Any, event: kopf.RawEvent, key: RefKey, indexes: Iterable[kopf.Index]) -> None:
    engine = _engine(memo)
    if engine is None or event.get("type") is None:     # the initial listing: the indexes know it all
        return
    for referrer in referrers(indexes, key):
        engine.enqueue(referrer)


def _register_kind(registry: kopf.OperatorRegistry, kind: str, index_id: str, keys_id: str, shard: Shard) -> None:
    plural = c.PLURAL[kind]

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
        else:
            # Another shard's: this shard's allowlists read its status and cache themselves.
            for referrer in referrers((indexes[ALLOWLISTS],), (namespace or "", kind, name)):
                engine.enqueue(referrer)
            if kind != c.KIND_TOOLSERVER:
                return
            # This shard's ConnectorConfigs may inherit from it.
            foreign = identity_and_spec(body)
            if deleted:
                engine.objects.forget((kind, namespace or "", name), foreign["metadata"].get("uid"))
            else:
                engine.objects.observe(kind, foreign)
        if kind == c.KIND_TOOLSERVER:
            for referrer in referrers((indexes[REFERRERS[1]],), (namespace or "", "ToolServer", name)):
                engine.enqueue(referrer)


def _register_allowlists(registry: kopf.OperatorRegistry, shard: Shard) -> None:
    plural = c.PLURAL[c.KIND_TOOLALLOWLIST]

    @kopf.index(c.GROUP, c.VERSION, plural, id=ALLOWLISTS, registry=registry)
    async def index_sources(namespace: str | None, name: str, spec: Any, uid: str | None,
                            **_: Any) -> dict[RefKey, ObjectKey]:
        if not shard.owns(uid):
            return {}
        return allowlist_references(namespace or "", name, spec)

    @kopf.on.event(c.GROUP, c.VERSION, plural, id=f"reconcile-{plural}", registry=registry)
    async def on_allowlist(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
        engine = _engine(memo)
        if engine is not None and shard.owns(body.get("metadata", {}).get("uid")):
            engine.observe(c.KIND_TOOLALLOWLIST, body, deleted=event.get("type") == "DELETED")
