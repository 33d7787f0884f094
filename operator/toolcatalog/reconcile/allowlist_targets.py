"""What each target of a ToolAllowlist must hold: the objects to write, their content and hashes. Pure.

- `configMap`: one ConfigMap, `data["allowlist.json"]`, the generic document of
  docs/reference/toolallowlist.md (servers by `as`, tools by name; every source is listed, with no
  tools when none is allowed).
- `toolhive`: one MCPToolConfig per source, named `<allowlist>-<as>`, `spec.toolsFilter` = the
  allowed names. ToolHive reads an empty toolsFilter as "every tool", so a source that allows
  nothing gets `NO_TOOL_ALLOWED` (api/toolhive.py) instead (`tools_filter`), never an empty list.
- `toolhiveWebhook` and `contextforge`: nothing in Kubernetes; the engine hands the allowed sets to
  the gateway adapters.

Objects are owned by the allowlist (controller ownerReference, so the garbage collector removes them
with it) and labelled managed-by toolcatalog. An object the allowlist no longer wants (a source
removed, a ConfigMap renamed, a target dropped) is not deleted but *retired*: rewritten to allow
nothing, as a gateway still reading it must then deny, and left to the garbage collector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api import constants as c
from ..api.allowlist import Allowlist, AllowlistTarget, TargetType
from ..api.gateway import GatewayServer
from ..api.toolhive import tools_filter
from .allowlist import SourceView
from .cachedoc import label_value
from .hashing import sha256_of

# MCP tool names are 1-128 characters of A-Z a-z 0-9 _ - . (the specification's tool-name rule),
# so a filter naming only this matches no tool a conforming server can offer; ToolHive accepts any
# non-empty name without commas or newlines. One place to change should a gateway need another form.
NAME_MAX = 253
HASH_SUFFIX_HEX = 10


def object_name(allowlist: str, suffix: str) -> str:
    """`<allowlist>-<suffix>`, cut to a DNS subdomain's 253 characters with a hash of the whole."""
    name = f"{allowlist}-{suffix}"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:HASH_SUFFIX_HEX]
    return f"{name[:NAME_MAX - HASH_SUFFIX_HEX - 1].rstrip('-.')}-{digest}"


def toolconfig_name(allowlist: str, alias: str) -> str:
    return object_name(allowlist, alias)


def owner_reference(allowlist: Allowlist) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND_TOOLALLOWLIST, "name": allowlist.name,
            "uid": allowlist.uid, "controller": True, "blockOwnerDeletion": True}


def _labels(allowlist: Allowlist) -> dict[str, str]:
    return {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_KIND: c.KIND_TOOLALLOWLIST,
            c.LABEL_NAME: label_value(allowlist.name)}


# ------------------------------------------------------------------------- the generic document


def document_servers(views: Sequence[SourceView]) -> list[dict[str, Any]]:
    """The `servers` of allowlist.json: every source, sorted by `as`, its allowed tools by name."""
    return [{"source": {"kind": view.kind, "name": view.name}, "as": view.alias, "url": view.url,
             "tools": [{"name": name, "schemaHash": view.allowed[name]} for name in sorted(view.allowed)]}
            for view in sorted(views, key=lambda view: view.alias)]


def allowlist_document(allowlist: Allowlist, servers: list[dict[str, Any]], generated_at: str) -> str:
    document = {"allowlist": {"namespace": allowlist.namespace, "name": allowlist.name},
                "generatedAt": generated_at, "servers": servers}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def configmap_manifest(allowlist: Allowlist, name: str, servers: list[dict[str, Any]],
                       generated_at: str) -> tuple[dict[str, Any], str]:
    """The target ConfigMap and its content hash (over the servers, not generatedAt: an unchanged allowlist
    is not rewritten)."""
    digest = sha256_of(servers)
    manifest = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": allowlist.namespace, "labels": _labels(allowlist),
                     "annotations": {c.ANN_CONTENT_HASH: digest},
                     "ownerReferences": [owner_reference(allowlist)]},
        "data": {c.ALLOWLIST_DOCUMENT_KEY: allowlist_document(allowlist, servers, generated_at)},
    }
    return manifest, digest


# ------------------------------------------------------------------------- ToolHive


def toolconfig_manifest(allowlist: Allowlist, view: SourceView | None, name: str, api_version: str,
                        known: Sequence[str] = ()) -> tuple[dict[str, Any], str, int]:
    """An MCPToolConfig allowing `view`'s tools (None: a retired one, allowing nothing); with its content hash
    and how many tools it allows."""
    allowed = sorted(view.allowed) if view is not None else []
    spec = {"toolsFilter": tools_filter(allowed, known)}
    digest = sha256_of(spec)
    labels = _labels(allowlist)
    annotations = {c.ANN_CONTENT_HASH: digest, c.ANN_ALLOWS: str(len(allowed)) if allowed else "none"}
    if view is not None:
        labels[c.LABEL_SOURCE] = view.alias
        annotations[c.ANN_SOURCE] = f"{view.kind}/{view.name}"
    else:
        annotations[c.ANN_SOURCE] = ""      # retired: no source of the allowlist uses it any more
    manifest = {
        "apiVersion": api_version, "kind": c.TOOLHIVE_TOOLCONFIG_KIND,
        "metadata": {"name": name, "namespace": allowlist.namespace, "labels": labels, "annotations": annotations,
                     "ownerReferences": [owner_reference(allowlist)]},
        "spec": spec,
    }
    return manifest, digest, len(allowed)


# ------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ObjectWrite:
    """One Kubernetes object a target holds: the manifest to create (or merge into an existing one)."""

    kind: str                   # ConfigMap | MCPToolConfig
    name: str
    manifest: dict[str, Any]
    content_hash: str
    published: int
    retired: bool = False       # no longer wanted: rewritten to allow nothing


@dataclass(frozen=True)
class TargetPlan:
    """What one entry of spec.targets must hold."""

    index: int
    type: TargetType
    target: AllowlistTarget
    content_hash: str
    published: int
    writes: list[ObjectWrite] = field(default_factory=list)     # configMap, toolhive
    servers: list[GatewayServer] = field(default_factory=list)  # contextforge, toolhiveWebhook

    @property
    def objects(self) -> list[str]:
        return [write.name for write in self.writes if not write.retired]


def _known(view: SourceView) -> list[str]:
    return [name for names in view.withheld.values() for name in names] + list(view.allowed)


def plan_targets(allowlist: Allowlist, views: Sequence[SourceView], *, generated_at: str,
                 toolhive_version: str = f"{c.TOOLHIVE_GROUP}/{c.TOOLHIVE_VERSIONS[0]}",
                 previously: Mapping[str, Sequence[str]] | None = None) -> list[TargetPlan]:
    """Every target's content. `previously`: per object kind, the names earlier reconciles wrote (from status):
    those no target wants any more are retired."""
    assert allowlist.spec is not None
    servers = document_servers(views)
    total = sum(len(view.allowed) for view in views)
    digest = sha256_of(servers)
    known = {view.alias: sorted(_known(view)) for view in views}
    gateway = [GatewayServer(view.alias, view.url if view.state in ("Current", "Kept", "Withdrawn") else None,
                             dict(view.allowed)) for view in sorted(views, key=lambda view: view.alias)]
    plans: list[TargetPlan] = []
    wanted: dict[str, set[str]] = {"ConfigMap": set(), c.TOOLHIVE_TOOLCONFIG_KIND: set()}
    for index, target in enumerate(allowlist.spec.targets):
        kind = target.type
        if target.config_map is not None:
            manifest, content = configmap_manifest(allowlist, target.config_map.name, servers, generated_at)
            write = ObjectWrite("ConfigMap", target.config_map.name, manifest, content, total)
            wanted["ConfigMap"].add(write.name)
            plans.append(TargetPlan(index, kind, target, content, total, writes=[write]))
        elif target.toolhive is not None:
            writes = []
            for view in sorted(views, key=lambda view: view.alias):
                name = toolconfig_name(allowlist.name, view.alias)
                manifest, content, count = toolconfig_manifest(allowlist, view, name, toolhive_version, _known(view))
                writes.append(ObjectWrite(c.TOOLHIVE_TOOLCONFIG_KIND, name, manifest, content, count))
                wanted[c.TOOLHIVE_TOOLCONFIG_KIND].add(name)
            plans.append(TargetPlan(index, kind, target, sha256_of([w.content_hash for w in writes]), total,
                                    writes=writes))
        elif target.contextforge is not None:
            # Published again when a source knows a tool more or less, allowed or not: ContextForge may have
            # discovered it on its own (active), and a publish deactivates it.
            plans.append(TargetPlan(index, kind, target, sha256_of([digest, known]), total, servers=gateway))
        else:
            plans.append(TargetPlan(index, kind, target, digest, total, servers=gateway))
    emptied = [{**server, "tools": []} for server in servers]
    _add_retirements(allowlist, plans, wanted, previously or {}, emptied, generated_at, toolhive_version)
    return plans


def _add_retirements(allowlist: Allowlist, plans: list[TargetPlan], wanted: Mapping[str, set[str]],
                     previously: Mapping[str, Sequence[str]], emptied: list[dict[str, Any]], generated_at: str,
                     toolhive_version: str) -> None:
    """Objects written before that no target wants any more: rewritten to allow nothing, by the first target
    of their type (or a plan of their own when no target of that type is left)."""
    for kind, names in previously.items():
        for name in sorted(set(names) - wanted.get(kind, set())):
            if kind == "ConfigMap":
                manifest, content = configmap_manifest(allowlist, name, emptied, generated_at)
                type_: TargetType = "configMap"
            else:
                manifest, content, _ = toolconfig_manifest(allowlist, None, name, toolhive_version)
                type_ = "toolhive"
            write = ObjectWrite(kind, name, manifest, content, 0, retired=True)
            owner = next((plan for plan in plans if plan.type == type_), None)
            if owner is not None:
                owner.writes.append(write)
            else:
                plans.append(TargetPlan(-1, type_, AllowlistTarget.model_validate({type_: _empty_target(type_, name)}),
                                        content, 0, writes=[write]))


def _empty_target(type_: TargetType, name: str) -> dict[str, Any]:
    return {"name": name} if type_ == "configMap" else {}
