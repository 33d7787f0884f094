"""Changes that resync resources nobody touched: Secret rotation and referenced ToolServers.

kopf indexes map each Secret and each ToolServer to the resources that use them; the Secret
watch and ToolServer changes ask the engine for a sync, which the resource's own timer runs
(its handler is the one allowed to write its status). Only hashes of Secret data are kept
in memory, never values.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import kopf

from .. import constants as c
from ..resolve import SyncProblem, parse_spec, secret_uses_of
from ..sync import SyncEngine

def _secret_users(kind: str, namespace: str, name: str,
                  spec: Any) -> dict[tuple[str, str], tuple[str, str, tuple[str, ...]]]:
    """(namespace, Secret) -> (kind, name, what uses it: "auth" and/or "tls")."""
    try:
        parsed = parse_spec(kind, spec or {})
    except SyncProblem:
        return {}
    return {(namespace, secret): (kind, name, uses) for secret, uses in secret_uses_of(parsed).items()}


@kopf.index(c.GROUP, c.VERSION, c.PLURAL[c.KIND_TOOLSERVER], id="secret_users_toolservers")
def secret_users_toolservers(namespace: str, name: str, spec: Any, **_: Any) -> dict:
    return _secret_users(c.KIND_TOOLSERVER, namespace, name, spec)


@kopf.index(c.GROUP, c.VERSION, c.PLURAL[c.KIND_CONNECTORCONFIG], id="secret_users_connectorconfigs")
def secret_users_connectorconfigs(namespace: str, name: str, spec: Any, **_: Any) -> dict:
    return _secret_users(c.KIND_CONNECTORCONFIG, namespace, name, spec)


@kopf.index(c.GROUP, c.VERSION, c.PLURAL[c.KIND_CONNECTORCONFIG], id="toolserver_users")
def toolserver_users(namespace: str, name: str, spec: Any, **_: Any) -> dict:
    """ConnectorConfigs by the ToolServer they reference, with what they bring of their own.

    A ConnectorConfig inherits the ToolServer's auth unless it has its own, and its tls (whose CA
    bundle may come from a Secret) unless it has its own.
    """
    ref = ((spec or {}).get("toolServerRef") or {}).get("name")
    if not ref:
        return {}
    own = tuple(part for part in ("auth", "tls") if (spec or {}).get(part))
    return {(namespace, ref): (name, own)}


def _want_users_of_toolserver(engine: SyncEngine, index: kopf.Index, namespace: str, server: str,
                              trigger: str, *, secret_uses: tuple[str, ...] | None = None) -> None:
    """Resync the ConnectorConfigs of a ToolServer; with `secret_uses`, only those inheriting one
    of those parts (a rotated Secret the ToolServer uses for its auth and/or tls)."""
    for cc_name, own in index.get((namespace, server), []):
        if secret_uses is not None and all(part in own for part in secret_uses):
            continue
        engine.want(c.KIND_CONNECTORCONFIG, namespace, cc_name, trigger)


def _secret_digest(body: kopf.Body) -> str:
    data = {**(body.get("data") or {}), **(body.get("stringData") or {})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@kopf.on.event("", "v1", "secrets", id="resync-on-secret-change")
async def on_secret(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: Any,
                    secret_users_toolservers: kopf.Index, secret_users_connectorconfigs: kopf.Index,
                    toolserver_users: kopf.Index, **_: Any) -> None:
    """Resync every user of a Secret whose data changed (async: kopf would run a plain function in
    a thread, and the engine is only touched from the event loop)."""
    engine: SyncEngine | None = getattr(memo, "engine", None)
    digests: dict[tuple[str, str], str | None] = memo.setdefault("secret_digests", {})
    key = (namespace, name)
    kind_of_event = event.get("type")
    if kind_of_event == "DELETED":     # forget it: a Secret that comes back is a change again
        before, digest = digests.pop(key, None), None
    else:
        before, digest = digests.get(key), _secret_digest(body)
        digests[key] = digest
    if engine is None or kind_of_event is None or before == digest:
        return      # the initial listing, or nothing that matters changed
    # An index lookup gives a kopf Store (iterable, not a list): no `+` between two of them.
    users = [*secret_users_toolservers.get(key, ()), *secret_users_connectorconfigs.get(key, ())]
    for kind, user, uses in users:
        engine.want(kind, namespace, user, c.TRIGGER_SECRET)
        if kind == c.KIND_TOOLSERVER:
            _want_users_of_toolserver(engine, toolserver_users, namespace, user, c.TRIGGER_SECRET,
                                      secret_uses=uses)


@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL[c.KIND_TOOLSERVER], id="resync-referrers-on-create")
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL[c.KIND_TOOLSERVER], field="spec", id="resync-referrers-on-change")
async def on_toolserver_change(namespace: str, name: str, memo: Any, toolserver_users: kopf.Index,
                               **_: Any) -> None:
    """A ConnectorConfig inherits url, transport, headers, tls and maybe auth: resync it."""
    engine: SyncEngine | None = getattr(memo, "engine", None)
    if engine is not None:
        _want_users_of_toolserver(engine, toolserver_users, namespace, name, c.TRIGGER_UPDATE)


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL[c.KIND_TOOLSERVER], id="resync-referrers-on-delete")
async def on_toolserver_deleted(event: kopf.RawEvent, namespace: str, name: str, memo: Any,
                                toolserver_users: kopf.Index, **_: Any) -> None:
    """A deleted ToolServer: its ConnectorConfigs report ToolServerNotFound at once, not at their TTL.

    Not kopf.on.delete: without a finalizer (ToolServers have none) kopf never calls it.
    """
    engine: SyncEngine | None = getattr(memo, "engine", None)
    if engine is not None and event.get("type") == "DELETED":
        _want_users_of_toolserver(engine, toolserver_users, namespace, name, c.TRIGGER_UPDATE)
