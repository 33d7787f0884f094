"""Which tools a ToolAllowlist allows, per source, and why the others are withheld. Pure.

A tool is allowed exactly when its source's cache offers it to agents: `available && enabled &&
selected && approved` at its current schemaHash (api.md "ToolAllowlist"). What the operator knows of
a source's cache is a `SourceCatalog`: the tools of its cache document, whether its last sync
failed, and a `ceiling`, the tools a sync that is still writing found usable. A sync that finds a
definition changed, a tool gone or no longer approved lowers the ceiling before it writes anything,
so that the tool is withdrawn at once (fail closed); it is allowed again only once the sync's cache
and status hold it, and the ceiling is lifted.

The source's spec as it is now (`SpecLimits`) limits the cache further: a tool someone disabled or
deselected, or (policy All) whose approval was taken back, is withdrawn at once, even when the sync
that would rewrite the cache fails (the server is down): a cache is only rewritten by a sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..api import constants as c
from ..api.allowlist import (
    CHANGE_NAMES_MAX,
    WITHHELD_NAMES_MAX,
    WITHHELD_REASONS,
    AllowlistSource,
    SourceState,
    ToolAllowlistSpec,
    WithheldReason,
)
from ..api.models import CacheDocument, ToolSelector
from ..api.spec import Spec
from .approval import POLICY_NONE
from .catalog import is_selected, status_name
from .hashing import sha256_of


@dataclass(frozen=True, slots=True)
class CatalogTool:
    """One tool of a source's cache, as much as an allowlist needs: its name, hash and flags."""

    name: str
    schema_hash: str
    available: bool = True
    enabled: bool = True
    selected: bool = True
    approved: bool = True

    @property
    def usable(self) -> bool:
        return self.available and self.enabled and self.selected and self.approved

    def withheld_because(self) -> WithheldReason | None:
        """The one reason a tool is not usable (the first that applies), or None."""
        if not self.available:
            return "Unavailable"
        if not self.enabled:
            return "Disabled"
        if not self.selected:
            return "NotSelected"
        if not self.approved:
            return "Pending"
        return None


Usable = frozenset[tuple[str, str]]     # (tool name, schemaHash)


@dataclass(frozen=True)
class SpecLimits:
    """What a source's current spec still lets through, whatever its cache says."""

    disabled: frozenset[str] = frozenset()
    selector: ToolSelector = field(default_factory=ToolSelector)
    pinned: Mapping[str, str] | None = None     # policy All: name -> the approvedHash the spec holds

    def withholds(self, name: str, digest: str) -> WithheldReason | None:
        if name in self.disabled:
            return "Disabled"
        if not is_selected(name, self.selector):
            return "NotSelected"
        if self.pinned is not None and self.pinned.get(name) != digest:
            return "Pending"
        return None


def limits_of(spec: Spec) -> SpecLimits:
    pinned = {tool.name: tool.approved_hash for tool in spec.tools if tool.approved_hash} \
        if spec.approval.policy == "All" else None
    return SpecLimits(disabled=frozenset(tool.name for tool in spec.tools if not tool.enabled),
                      selector=spec.tool_selector, pinned=pinned)


@dataclass(frozen=True)
class SourceCatalog:
    """What the operator knows of one source's catalog (engine/catalogs.py keeps one per source)."""

    kind: str
    namespace: str
    name: str
    uid: str = ""
    tools: tuple[CatalogTool, ...] | None = None    # None: no cache known (never synced, or not read yet)
    url: str | None = None
    policy: str = POLICY_NONE           # the approval policy the cache was written under
    content_hash: str | None = None     # the cache's, as status.cache.contentHash records it
    failing: bool = False               # the source's last sync failed
    ceiling: Usable | None = None       # a sync still writing: at most these may be allowed
    limits: SpecLimits | None = None    # the source's spec now (None: unknown or invalid, the cache alone)

    def withholds(self, tool: CatalogTool) -> WithheldReason | None:
        """Why `tool` is not allowed now (the first reason that applies), or None."""
        reason = tool.withheld_because()
        if reason is None and self.limits is not None:
            reason = self.limits.withholds(tool.name, tool.schema_hash)
        if reason is None and self.ceiling is not None and (tool.name, tool.schema_hash) not in self.ceiling:
            reason = "Pending"      # found changed or unapproved by a sync that is still writing
        return reason

    def usable(self) -> dict[str, str]:
        """Tool name -> schemaHash of what may be allowed now (nothing when no cache is known)."""
        if self.tools is None:
            return {}
        return {tool.name: tool.schema_hash for tool in self.tools if self.withholds(tool) is None}

    def with_tools(self, tools: tuple[CatalogTool, ...] | None, **changes: object) -> SourceCatalog:
        return replace(self, tools=tools, **changes)  # type: ignore[arg-type]


def catalog_tools(document: CacheDocument) -> tuple[CatalogTool, ...]:
    """The tools of a cache document, as an allowlist reads them."""
    return tuple(CatalogTool(tool.name, tool.schema_hash, tool.available, tool.enabled, tool.selected, tool.approved)
                 for tool in document.tools)


def usable_of(tools: Iterable[CatalogTool]) -> Usable:
    return frozenset((tool.name, tool.schema_hash) for tool in tools if tool.usable)


@dataclass(frozen=True)
class SourceInput:
    """One source of an allowlist as the reconcile found it: whether it exists, and its catalog."""

    source: AllowlistSource
    exists: bool
    catalog: SourceCatalog | None = None     # None (or without tools): no cache known
    loading: bool = False                    # its cache and status disagree (a sync is writing): read again


@dataclass(frozen=True)
class SourceView:
    """What one source contributes to an allowlist, and why."""

    kind: str
    name: str
    alias: str
    state: SourceState
    message: str
    url: str | None = None
    policy: str | None = None
    allowed: Mapping[str, str] = field(default_factory=dict)      # name -> schemaHash
    withheld: Mapping[WithheldReason, tuple[str, ...]] = field(default_factory=dict)


def view_source(source: SourceInput, on_source_failure: str) -> SourceView:
    """What `source` contributes, by the contract's rules."""
    spec = source.source
    catalog = source.catalog

    def view(state: SourceState, message: str, **more: object) -> SourceView:
        return SourceView(spec.kind, spec.name, spec.alias, state, message, **more)  # type: ignore[arg-type]

    if not source.exists:
        return view("NotFound", f"{spec.kind} {spec.name} does not exist: nothing of it is allowed")
    if source.loading:
        return view("Loading", "its cache is being written: read again shortly; nothing of it is allowed meanwhile")
    if catalog is None or catalog.tools is None:
        return view("NoCatalog", "it has no catalog yet (no successful sync): nothing of it is allowed",
                    url=catalog.url if catalog else None)
    withheld = _withheld(catalog)
    policy = catalog.policy
    if catalog.failing and on_source_failure == c.ON_SOURCE_FAILURE_WITHDRAW:
        return view("Withdrawn", "its last sync failed and onSourceFailure is Withdraw: nothing of it is allowed "
                    "until it syncs again", url=catalog.url, policy=policy, withheld=withheld)
    allowed = catalog.usable()
    if catalog.failing:
        state: SourceState = "Kept"
        message = "its last sync failed; onSourceFailure is Keep: the tools of its last catalog stay allowed"
    else:
        state, message = "Current", "allowed: the usable tools of its catalog"
    if policy == POLICY_NONE:
        message += "; it has no approval policy, so every usable tool is allowed without review"
    return view(state, message, url=catalog.url, policy=policy, allowed=allowed, withheld=withheld)


def _withheld(catalog: SourceCatalog) -> dict[WithheldReason, tuple[str, ...]]:
    found: dict[WithheldReason, list[str]] = {}
    for tool in catalog.tools or ():
        reason = catalog.withholds(tool)
        if reason is not None:
            found.setdefault(reason, []).append(tool.name)
    return {reason: tuple(sorted(found[reason])) for reason in WITHHELD_REASONS if reason in found}


def view_allowlist(spec: ToolAllowlistSpec, sources: Sequence[SourceInput]) -> list[SourceView]:
    """Every source's contribution, in the order of spec.sources."""
    return [view_source(source, spec.on_source_failure) for source in sources]


def allowed_names(views: Iterable[SourceView]) -> frozenset[tuple[str, str, str]]:
    """(as, tool, schemaHash) of everything allowed."""
    return frozenset((view.alias, name, digest) for view in views for name, digest in view.allowed.items())


def allowed_digest(views: Sequence[SourceView]) -> str:
    """A hash of the allowed set itself (servers by `as`, tools by name): equal sets, equal digests."""
    return sha256_of([{"as": view.alias, "kind": view.kind, "name": view.name, "url": view.url,
                       "tools": sorted(view.allowed.items())} for view in sorted(views, key=lambda v: v.alias)])


@dataclass(frozen=True)
class Change:
    """What a reconcile added to and withdrew from the allowed set, as `<as>/<tool>` names."""

    added: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.withdrawn)


def change_between(before: frozenset[tuple[str, str, str]] | None,
                   after: frozenset[tuple[str, str, str]]) -> Change:
    """The difference of two allowed sets; a tool whose hash changed is withdrawn (and added if allowed
    again at its new hash, which needs a new approval unless its source has no policy)."""
    if before is None:
        return Change()
    added = sorted({f"{alias}/{name}" for alias, name, _ in after - before})
    withdrawn = sorted({f"{alias}/{name}" for alias, name, _ in before - after})
    return Change(tuple(added), tuple(withdrawn))


def names_shown(names: Sequence[str], limit: int = CHANGE_NAMES_MAX) -> list[str]:
    return [status_name(name) for name in names[:limit]]


def withheld_names(names: Sequence[str]) -> list[str]:
    return names_shown(names, WITHHELD_NAMES_MAX)


def lookup(spec: ToolAllowlistSpec, alias: str, exists: bool, catalog: SourceCatalog | None,
           loaded: bool) -> Mapping[str, str] | None:
    """What a gateway asking about server `alias` of this allowlist may call now (name -> schemaHash), or
    None when the allowlist does not know that server or its state is not rebuilt yet (deny: fail closed)."""
    source = next((s for s in spec.sources if s.alias == alias), None)
    if source is None or (exists and not loaded):
        return None
    view = view_source(SourceInput(source, exists, catalog), spec.on_source_failure)
    return dict(view.allowed)
