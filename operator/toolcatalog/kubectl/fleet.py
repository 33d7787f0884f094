"""The pure half of `search` and `status`: across every resource the user can read. No I/O.

Matching a search pattern, kubectl's short ages, the search and status tables, and the notes
about namespaces RBAC did not let us read. cluster.py lists the resources (falling back from a
cluster-wide list to one namespace at a time when RBAC forbids the former).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api import constants as c
from ..api.models import CachedTool
from ..reconcile.catalog import is_usable
from .format import (
    NONE,
    NOT_APPLICABLE,
    POLICY_NONE,
    ResourceRef,
    approval_cell,
    find_condition,
    format_table,
    printable,
)

GLOB_CHARS = "*?["
KIND_ORDER = {c.KIND_TOOLSERVER: 0, c.KIND_CONNECTORCONFIG: 1}


@dataclass(frozen=True)
class Found:
    """One ToolServer or ConnectorConfig a list returned."""

    ref: ResourceRef
    namespace: str
    obj: dict[str, Any]

    @property
    def sort_key(self) -> tuple[str, int, str]:
        return self.namespace, KIND_ORDER[self.ref.kind], self.ref.name


def found_in(kind: str, items: Sequence[dict[str, Any]]) -> list[Found]:
    return [Found(ResourceRef(kind, item["metadata"]["name"]), item["metadata"].get("namespace") or "", item)
            for item in items if isinstance(item, dict) and (item.get("metadata") or {}).get("name")]


# ---------------------------------------------------------------------------- search


def matcher(pattern: str) -> Callable[[str | None], bool]:
    """Case-insensitive: a glob over the whole text when the pattern has * ? or [, else a substring."""
    folded = pattern.casefold()
    if any(char in pattern for char in GLOB_CHARS):
        return lambda text: text is not None and fnmatch.fnmatchcase(text.casefold(), folded)
    return lambda text: text is not None and folded in text.casefold()


def tool_matches(tool: CachedTool, match: Callable[[str | None], bool]) -> bool:
    return match(tool.name) or match(tool.description)


@dataclass(frozen=True)
class Hit:
    namespace: str
    ref: ResourceRef
    tool: CachedTool
    policy: str             # the approval policy the cache was written under

    @property
    def usable(self) -> bool:
        """What agents may offer: listed, enabled, selected and approved."""
        return is_usable(self.tool)

    @property
    def approval(self) -> str:
        return approval_cell(self.tool, self.policy)


def search_hits(found: Found, tools: Sequence[CachedTool], policy: str, pattern: str) -> list[Hit]:
    match = matcher(pattern)
    return [Hit(found.namespace, found.ref, tool, policy) for tool in tools if tool_matches(tool, match)]


def format_search_table(hits: Sequence[Hit], *, terminal_width: int | None = None) -> str:
    headers = ["NAMESPACE", "RESOURCE", "TOOL", "USABLE", "APPROVAL"]
    rows = [[hit.namespace, hit.ref.short, printable(hit.tool.name), "true" if hit.usable else "false",
             hit.approval] for hit in hits]
    return format_table(headers, rows, descriptions=[hit.tool.description for hit in hits],
                        terminal_width=terminal_width)


def search_json(hits: Sequence[Hit]) -> str:
    """`-o json`: each match with where it is, whether agents may use it, and its whole cache entry."""
    return json.dumps([{"namespace": hit.namespace, "kind": hit.ref.kind, "name": hit.ref.name,
                        "resource": hit.ref.short, "usable": hit.usable, "approval": hit.approval,
                        "tool": hit.tool.document()} for hit in hits], indent=2, ensure_ascii=False)


def sorted_hits(hits: Sequence[Hit]) -> list[Hit]:
    return sorted(hits, key=lambda hit: (hit.namespace, KIND_ORDER[hit.ref.kind], hit.ref.name, hit.tool.name))


# ---------------------------------------------------------------------------- status


def short_age(seconds: float) -> str:
    """kubectl's short human duration (the AGE column): 5s, 3m, 2h, 4d, 2y."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"     # in the future beyond clock skew, as kubectl says
    if whole < 60:
        return f"{max(whole, 0)}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 24 * 3600:
        return f"{whole // 3600}h"
    if whole < 365 * 24 * 3600:
        return f"{whole // (24 * 3600)}d"
    return f"{whole // (365 * 24 * 3600)}y"


def age_since(timestamp: Any, now: datetime) -> str:
    """The age of an RFC 3339 timestamp, or <none> when there is none (or it is not readable)."""
    if not isinstance(timestamp, str) or not timestamp:
        return NONE
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return NONE
    if moment.tzinfo is None:
        return NONE
    return short_age((now - moment).total_seconds())


def pending_count(obj: Mapping[str, Any]) -> str:
    """Tools awaiting approval, from status (listed and Pending); "-" without an approval policy.

    status.tools keeps listed tools first when it is cut to 500, so the count is exact unless
    every kept entry is a listed tool: then it is shown as a lower bound ("3+").
    """
    status = obj.get("status") or {}
    policy = ((obj.get("spec") or {}).get("approval") or {}).get("policy") or POLICY_NONE
    entries = [tool for tool in status.get("tools") or [] if isinstance(tool, dict)]
    governed = policy != POLICY_NONE or find_condition(dict(obj), c.COND_APPROVED) is not None \
        or any(tool.get("approval") for tool in entries)
    if not governed:
        return NOT_APPLICABLE
    count = sum(1 for tool in entries if tool.get("approval") == "Pending" and tool.get("available", True))
    cut = status.get("toolsTruncated") and all(tool.get("available", True) for tool in entries)
    return f"{count}+" if cut else str(count)


def _condition_cell(obj: dict[str, Any], type_: str, *, reason_when_false: bool) -> str:
    cond = find_condition(obj, type_)
    if cond is None:
        return "Unknown"
    if cond.status == "False" and reason_when_false:
        return cond.reason
    return cond.status


def status_row(found: Found, now: datetime) -> list[str]:
    status = found.obj.get("status") or {}
    tool_count = status.get("toolCount")
    return [
        found.namespace,
        found.ref.short,
        _condition_cell(found.obj, c.COND_READY, reason_when_false=False),
        _condition_cell(found.obj, c.COND_SYNCED, reason_when_false=True),
        str(tool_count) if isinstance(tool_count, int) else "0",
        pending_count(found.obj),
        age_since((status.get("lastSync") or {}).get("completedAt"), now),
        age_since((status.get("cache") or {}).get("cachedAt"), now),
    ]


STATUS_HEADERS = ["NAMESPACE", "RESOURCE", "READY", "SYNCED", "TOOLS", "PENDING", "LAST SYNC", "CACHE AGE"]


def format_status_table(found: Sequence[Found], now: datetime) -> str:
    rows = [status_row(item, now) for item in sorted(found, key=lambda item: item.sort_key)]
    return format_table(STATUS_HEADERS, rows)


ALLOWLIST_HEADERS = ["NAMESPACE", "ALLOWLIST", "READY", "TOOLS", "SOURCES", "TARGETS"]


def allowlist_row(item: Mapping[str, Any]) -> list[str]:
    """One ToolAllowlist: ready (or why not), tools allowed, its sources' `as` names, each target's state."""
    meta, status = item.get("metadata") or {}, item.get("status") or {}
    targets = ", ".join(f"{target.get('type')}={target.get('state')}" for target in status.get("targets") or []
                        if isinstance(target, dict))
    tool_count = status.get("toolCount")
    return [str(meta.get("namespace") or ""), f"{c.SHORT_NAMES[c.KIND_TOOLALLOWLIST][0]}/{meta.get('name')}",
            _condition_cell(dict(item), c.COND_READY, reason_when_false=True),
            str(tool_count) if isinstance(tool_count, int) else "0",
            printable(str(status.get("sourceNames") or NONE)), printable(targets or NONE)]


def format_allowlist_table(items: Sequence[Mapping[str, Any]]) -> str:
    rows = [allowlist_row(item) for item in sorted(items, key=lambda item: (
        (item.get("metadata") or {}).get("namespace") or "", (item.get("metadata") or {}).get("name") or ""))]
    return format_table(ALLOWLIST_HEADERS, rows)


# ---------------------------------------------------------------------------- what RBAC hid


def skip_notes(forbidden: Mapping[str, Sequence[str]], plurals: Sequence[str]) -> list[str]:
    """One note per namespace we could not read: the whole namespace, or the kinds in it."""
    notes = []
    for namespace in sorted(forbidden):
        kinds = [plural for plural in plurals if plural in forbidden[namespace]]
        if set(kinds) >= set(plurals):
            notes.append(f"note: skipped namespace {namespace}: forbidden")
        else:
            notes.append(f"note: skipped {' and '.join(kinds)} in namespace {namespace}: forbidden")
    return notes


def cache_skip_note(found: Found, configmap: str) -> str:
    return (f"note: skipped the tools of {found.ref.short} in namespace {found.namespace}: reading ConfigMap"
            f" {configmap} is forbidden")
