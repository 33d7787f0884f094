"""Pure catalog logic: definition hashes, the tool selector, and merging a fetched tool list
into the previous catalog (diff, removed-kept-unavailable, per-tool settings). No I/O.

Semantics follow api.md "Catalog semantics" and "Refresh semantics": tools are never
deleted, a tool that comes back keeps its firstSeen and counts as new, and `enabled` /
`selected` always come from the current spec, never from the server.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic

from ..api import constants
from ..api.models import CachedTool, ToolSelector, ToolSetting, ToolStatus
from .hashing import (
    HASH_VERSION,
    KNOWN_FIELDS,
    UnhashableToolError,
    definition_fields,
    definition_hash,
    definition_of,
    stored_definition,
)


def is_selected(name: str, selector: ToolSelector) -> bool:
    """Case-sensitive glob match: empty include means every tool; exclude wins over include."""
    if selector.include and not any(fnmatch.fnmatchcase(name, p) for p in selector.include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in selector.exclude)


class InvalidToolError(ValueError):
    """The server sent a tool entry we cannot store (no name, wrong field types)."""


class DuplicateToolError(InvalidToolError):
    """The server listed the same tool name twice: the catalog would be ambiguous."""


@dataclass(frozen=True)
class CatalogDiff:
    """What a merge changed, as sorted tool names."""

    new: list[str]
    removed: list[str]
    changed: list[str]

    def is_empty(self) -> bool:
        return not (self.new or self.removed or self.changed)

    def summary(self, tool_count: int, limit: int = 5) -> str:
        """One line for a condition message or an Event, e.g.
        `8 tools: 2 new (a, b), 0 removed, 0 changed`."""
        noun = "tool" if tool_count == 1 else "tools"
        parts = [_count_with_names(len(names), label, names, limit)
                 for label, names in (("new", self.new), ("removed", self.removed),
                                      ("changed", self.changed))]
        return f"{tool_count} {noun}: " + ", ".join(parts)


def _count_with_names(count: int, label: str, names: list[str], limit: int) -> str:
    if not names:
        return f"{count} {label}"
    shown = ", ".join(status_name(name) for name in names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return f"{count} {label} ({shown})"


@dataclass(frozen=True)
class MergeResult:
    tools: list[CachedTool]  # sorted by name
    diff: CatalogDiff
    tool_count: int  # usable: available, enabled, selected and approved
    previous: Mapping[str, CachedTool] = field(default_factory=dict)    # the previous catalog, rebased


def _index_fetched(fetched: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    by_name: dict[str, Mapping[str, Any]] = {}
    for position, raw in enumerate(fetched):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidToolError(f"tools/list entry #{position} has no tool name")
        if name in by_name:
            raise DuplicateToolError(f"the server listed the tool {status_name(name)!r} more than once")
        by_name[name] = raw
    _check_input_schemas(by_name)
    return by_name


def _check_input_schemas(by_name: Mapping[str, Mapping[str, Any]]) -> None:
    """MCP requires every tool's inputSchema to be a JSON Schema object. An entry without one would reach
    agents as `"inputSchema": null`, which the MCP SDKs refuse (they reject the whole tools/list answer),
    so the sync fails closed too, like for any other malformed tool: nothing from the answer is used."""
    missing = sorted(name for name, raw in by_name.items() if not isinstance(raw.get("inputSchema"), Mapping))
    if missing:
        shown = ", ".join(repr(status_name(name)) for name in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        subject = f"tool {shown} has" if len(missing) == 1 else f"tools {shown}{more} have"
        raise InvalidToolError(f"{subject} no inputSchema object (MCP requires one: {{\"type\": \"object\"}} "
                               "for a tool without arguments)")


def _fetched_entry(name: str, definition: dict[str, Any], *, digest: str, first_seen: str,
                   old: CachedTool | None) -> CachedTool:
    carried = {"approvedHash": old.approved_hash, "approvedDefinition": old.approved_definition} if old else {}
    try:
        return CachedTool.model_validate({
            "name": name, **definition_fields(definition), "available": True, "schemaHash": digest,
            "firstSeen": first_seen, "removedAt": None, **carried,
        })
    except pydantic.ValidationError as error:
        wire = {attr: key for key, attr in KNOWN_FIELDS.items()}
        fields = sorted({".".join(wire.get(str(p), str(p)) for p in e["loc"]) for e in error.errors()})
        raise InvalidToolError(
            f"the server sent tool {status_name(str(name))!r} with invalid fields: {', '.join(fields)}") from None


def rebase(old: CachedTool, version: int, fresh: Mapping[str, Any] | None = None) -> CachedTool:
    """A cached tool written under hash `version`, in this release's terms.

    Its hash and approval baseline are re-hashed from the definitions the cache holds. When the
    server still sends a definition that is unchanged in the old version's meaning (`fresh`), that
    definition's hash is used instead: an earlier release may not have stored every field it hashes.
    """
    if version == HASH_VERSION:
        return old
    stored = stored_definition(old)
    unchanged = fresh is not None and definition_hash(fresh, version) == old.schema_hash
    digest = definition_hash(fresh if unchanged and fresh is not None else stored)
    if old.approved_hash is None:
        approved_hash, approved_definition = None, None
    elif old.approved_hash == old.schema_hash:
        approved_hash, approved_definition = digest, None
    elif old.approved_definition is not None:
        approved_hash, approved_definition = definition_hash(old.approved_definition), old.approved_definition
    else:
        approved_hash, approved_definition = None, None
    return old.model_copy(update={"schema_hash": digest, "approved_hash": approved_hash,
                                  "approved_definition": approved_definition})


def merge_catalog(previous: Sequence[CachedTool], fetched: Sequence[Mapping[str, Any]], *,
                  settings: Sequence[ToolSetting], selector: ToolSelector, now: str,
                  previous_version: int = HASH_VERSION) -> MergeResult:
    """Merge a fresh tools/list result (raw tool JSON) into the previous catalog.

    A previous catalog written under an older hash version is first re-hashed (`rebase`), so an
    upgrade flags exactly the tools the older release would have flagged, and nothing more.
    """
    fetched_by_name = _index_fetched(fetched)
    definitions: dict[str, dict[str, Any]] = {}
    digests: dict[str, str] = {}
    for name, raw in fetched_by_name.items():
        definitions[name] = definition_of(raw)
        try:
            digests[name] = definition_hash(definitions[name])
        except UnhashableToolError as error:
            raise InvalidToolError(f"the definition of tool {status_name(name)!r} cannot be canonicalized "
                                   f"({error})") from None
    previous_by_name = {tool.name: rebase(tool, previous_version, definitions.get(tool.name)) for tool in previous}
    tools: list[CachedTool] = []
    new: list[str] = []
    changed: list[str] = []
    removed: list[str] = []

    for name, definition in definitions.items():
        old = previous_by_name.get(name)
        if old is None or not old.available:
            new.append(name)  # first sighting, or back after being removed
        elif old.schema_hash != digests[name]:
            changed.append(name)
        first_seen = now if old is None else old.first_seen
        tools.append(_fetched_entry(name, definition, digest=digests[name], first_seen=first_seen, old=old))

    for name, old in previous_by_name.items():
        if name in fetched_by_name:
            continue
        if old.available:
            removed.append(name)
            tools.append(old.model_copy(update={"available": False, "removed_at": now}))
        else:
            tools.append(old)

    tools = apply_settings(tools, settings=settings, selector=selector)
    diff = CatalogDiff(new=sorted(new), removed=sorted(removed), changed=sorted(changed))
    return MergeResult(tools=tools, diff=diff, tool_count=count_usable(tools), previous=previous_by_name)


def apply_settings(tools: Iterable[CachedTool], *, settings: Sequence[ToolSetting],
                   selector: ToolSelector) -> list[CachedTool]:
    """Recompute `enabled` (spec.tools, default true) and `selected` (spec.toolSelector).

    Used by every merge, and alone when only the spec changed, so no fetch is needed.
    A name listed twice in spec.tools takes its last setting.
    """
    enabled_by_name = {setting.name: setting.enabled for setting in settings}
    result = []
    for tool in tools:
        enabled = enabled_by_name.get(tool.name, True)
        selected = is_selected(tool.name, selector)
        if tool.enabled != enabled or tool.selected != selected:
            tool = tool.model_copy(update={"enabled": enabled, "selected": selected})
        result.append(tool)
    return sorted(result, key=lambda tool: tool.name)


def is_usable(tool: CachedTool) -> bool:
    """What toolCount counts and agents may offer: the server lists it, the spec lets it through, and
    (under an approval policy) its definition is approved."""
    return tool.available and tool.enabled and tool.selected and tool.approved


def count_usable(tools: Iterable[CachedTool]) -> int:
    return sum(1 for tool in tools if is_usable(tool))


def cut(names: list[str], limit: int = constants.REFRESH_LIST_MAX) -> list[str]:
    """The first `limit` names, for lastRefresh lists (the *Count fields carry the full size)."""
    return [status_name(name) for name in names[:limit]]


def status_name(name: str) -> str:
    """A tool's name as status shows it: MCP names are 1 to 128 characters; a longer one is cut and ends in
    a hash of the whole (still unique; the cache ConfigMap holds the full name), so status stays small."""
    if len(name) <= constants.STATUS_NAME_MAX:
        return name
    return f"{name[: constants.STATUS_NAME_MAX - 18]}~{hashlib.sha256(name.encode()).hexdigest()[:17]}"


def status_tools(tools: Sequence[CachedTool], limit: int = constants.STATUS_MAX_TOOLS, *,
                 with_approval: bool = False) -> tuple[list[ToolStatus], bool]:
    """Compact status.tools entries and whether some were left out.

    Over the limit, available tools are kept before unavailable ones (then by name),
    since those are the ones a user looks for; the result is sorted by name.
    """
    truncated = len(tools) > limit
    kept = list(tools)
    if truncated:
        kept = sorted(kept, key=lambda tool: (not tool.available, tool.name))[:limit]
    kept.sort(key=lambda tool: tool.name)
    entries = [ToolStatus(name=status_name(tool.name), available=tool.available, enabled=tool.enabled,
                          selected=tool.selected, schema_hash=tool.schema_hash,
                          approval=None if not with_approval else "Approved" if tool.approved else "Pending",
                          approved_hash=tool.approved_hash if with_approval else None,
                          first_seen=tool.first_seen, removed_at=tool.removed_at)
               for tool in kept]
    return entries, truncated
