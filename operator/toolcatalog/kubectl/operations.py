"""What each plugin command does against the API server, for the command line and for callers.

I/O, on a cluster.Cluster; every decision and every line printed is in the pure modules
(format.py, approval.py, fleet.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from ..api import constants as c
from ..api.models import CacheDocument, CachedTool
from .approval import ApprovalPlan, DiffResult, diff_tool, plan_approval
from .cluster import Cluster, Listing, cache_name, list_resources, parse_document, read_cache, read_each
from .fleet import Found, Hit, cache_skip_note, search_hits, sorted_hits
from .format import (
    POLICY_NONE,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PluginError,
    RefreshOutcome,
    ResourceRef,
    answer_in,
    new_refresh_token,
    parse_resource_ref,
    reason_note,
    refresh_patch,
)

POLL_FIRST_SECONDS = 0.2  # first re-read of the status; grows to POLL_MAX_SECONDS
POLL_MAX_SECONDS = 0.5
DEFAULT_WAIT_SECONDS = 60.0


def _ref(ref: ResourceRef | str) -> ResourceRef:
    return parse_resource_ref(ref) if isinstance(ref, str) else ref


# ---------------------------------------------------------------------------- refresh


def request_refresh(cluster: Cluster, ref: ResourceRef | str, *, reason: str | None = None,
                    force: bool = False, namespace: str | None = None,
                    token: str | None = None, notes: list[str] | None = None) -> str:
    """Set the refresh annotations with a fresh token; returns the token the operator will echo.

    `notes` (if given) gets a note when the operator will not record `reason` (see reason_note).
    """
    ref = _ref(ref)
    token = token or new_refresh_token()
    stored = cluster.patch(ref, refresh_patch(token, reason=reason, force=force), namespace)
    note = reason_note(reason, token, stored)
    if note is not None and notes is not None:
        notes.append(note)
    return token


def wait_for_refresh(cluster: Cluster, ref: ResourceRef | str, token: str, *,
                     timeout: float = DEFAULT_WAIT_SECONDS,
                     namespace: str | None = None) -> RefreshOutcome:
    """Re-read the resource until status.lastRefresh answers `token`, at most `timeout` seconds.

    Polling with a short, growing interval: one GET per step works with every API server
    and proxy, and a refresh is usually answered within a second or two.
    """
    ref = _ref(ref)
    namespace = namespace or cluster.namespace
    deadline = time.monotonic() + timeout
    interval = POLL_FIRST_SECONDS
    while True:
        outcome = answer_in(cluster.get(ref, namespace), ref, namespace, token)
        if outcome is not None:
            return outcome
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return RefreshOutcome(ref=ref, namespace=namespace, token=token)
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, POLL_MAX_SECONDS)


def run_refresh(cluster: Cluster, ref: ResourceRef | str, *, reason: str | None = None,
                force: bool = False, wait: bool = True, timeout: float = DEFAULT_WAIT_SECONDS,
                namespace: str | None = None) -> RefreshOutcome:
    """Request a refresh and (by default) wait for the operator's answer."""
    ref = _ref(ref)
    namespace = namespace or cluster.namespace
    token = request_refresh(cluster, ref, reason=reason, force=force, namespace=namespace)
    if not wait:
        return RefreshOutcome(ref=ref, namespace=namespace, token=token)
    return wait_for_refresh(cluster, ref, token, timeout=timeout, namespace=namespace)


# ---------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class ToolListing:
    ref: ResourceRef
    namespace: str
    configmap: str
    tools: list[CachedTool]  # sorted by name, as the cache stores them
    policy: str = POLICY_NONE  # the approval policy the cache was written under


def list_tools(cluster: Cluster, ref: ResourceRef | str, *,
               namespace: str | None = None) -> ToolListing:
    """Every tool in the resource's cache ConfigMap, removed and deselected ones included."""
    ref = _ref(ref)
    namespace = namespace or cluster.namespace
    cm_name, document = read_cache(cluster, ref, cluster.get(ref, namespace), namespace)
    return ToolListing(ref=ref, namespace=namespace, configmap=cm_name,
                       tools=sorted(document.tools, key=lambda tool: tool.name), policy=document.approval.policy)


# ---------------------------------------------------------------------------- approve, diff


@dataclass(frozen=True)
class ApproveOutcome:
    plan: ApprovalPlan
    configmap: str
    written: bool           # spec.tools was patched
    retried: bool           # the first patch met a concurrent edit (409), the second went through


def approve_tools(cluster: Cluster, ref: ResourceRef | str, names: Sequence[str], *,
                  all_pending: bool = False, dry_run: bool = False, namespace: str | None = None,
                  current: dict[str, Any] | None = None) -> ApproveOutcome:
    """Approve the current definitions of `names` (and every pending tool): one merge patch of
    spec.tools guarded by the resourceVersion read, retried once on a conflict. A name may be
    pinned, `TOOL@sha256:HEX`: when that is not its current definition, nothing is written (exit 4).

    The hashes are those of the cache document as read at the start; on a conflict only the
    object is read again (a concurrent edit of spec.tools is kept, never overwritten). `current`
    is the object as already read, if the caller has it.
    """
    ref = _ref(ref)
    namespace = namespace or cluster.namespace
    obj = current if current is not None else cluster.get(ref, namespace)
    cm_name, document = read_cache(cluster, ref, obj, namespace)
    for attempt in (1, 2):
        plan = plan_approval(ref, namespace, obj, document, names, all_pending=all_pending)
        if dry_run or not plan.writes:
            return ApproveOutcome(plan, cm_name, written=False, retried=attempt > 1)
        try:
            cluster.patch(ref, plan.patch(), namespace)
            return ApproveOutcome(plan, cm_name, written=True, retried=attempt > 1)
        except ConflictError as conflict:
            if attempt > 1:
                raise ConflictError(f"{ref} changed again while approving (the API server answered 409 twice);"
                                    f" nothing was written, run the command again ({conflict.message})") from None
        obj = cluster.get(ref, namespace)
    raise AssertionError("unreachable")


def diff_of(cluster: Cluster, ref: ResourceRef | str, tool: str, *, namespace: str | None = None) -> DiffResult:
    """The current definition of `tool` against its approved one, from the cache document."""
    ref = _ref(ref)
    namespace = namespace or cluster.namespace
    _, document = read_cache(cluster, ref, cluster.get(ref, namespace), namespace)
    return diff_tool(ref, document, tool, namespace=namespace)


# ---------------------------------------------------------------------------- search, status


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    notes: list[str]        # what RBAC hid, and caches that could not be read
    resources: int          # resources listed


def search_tools(cluster: Cluster, pattern: str, *, all_namespaces: bool = False,
                 namespace: str | None = None) -> SearchResult:
    """Tools whose name or description matches `pattern`, in every cache the user can read.

    The caches are read a few at a time (cluster.READ_CONCURRENCY), and the notes come in the
    order of the resources, as when they were read one after another.
    """
    listing = list_resources(cluster, all_namespaces=all_namespaces, namespace=namespace)
    notes = listing.all_notes()
    hits: list[Hit] = []

    def read(found: Found) -> CacheDocument | None:
        name = cache_name(found.ref, found.obj)
        configmap = cluster.read_configmap(name, found.namespace)
        return None if configmap is None else parse_document(name, configmap)

    with closing(read_each(read, listing.found)) as answers:
        for found, answer in answers:
            if isinstance(answer, ForbiddenError):
                notes.append(cache_skip_note(found, cache_name(found.ref, found.obj)))
            elif isinstance(answer, PluginError):
                notes.append(f"note: skipped the tools of {found.ref.short} in namespace {found.namespace}:"
                             f" {answer.message}")
            elif answer is not None:        # None: not synced yet, no tools to search
                hits += search_hits(found, answer.tools, answer.approval.policy, pattern)
    return SearchResult(sorted_hits(hits), notes, len(listing.found))


def list_status(cluster: Cluster, *, all_namespaces: bool = False, namespace: str | None = None) -> Listing:
    """Every ToolServer and ConnectorConfig the user can read, with its status."""
    return list_resources(cluster, all_namespaces=all_namespaces, namespace=namespace)


def list_allowlists(cluster: Cluster, *, all_namespaces: bool = False,
                    namespace: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The ToolAllowlists the user can read, and notes on what could not be read (never an error: `status`
    is about the sources first; an older install without the kind has none)."""
    scope = None if all_namespaces else namespace or cluster.namespace
    try:
        return cluster.list_objects(c.KIND_TOOLALLOWLIST, scope), []
    except NotFoundError:
        return [], []
    except ForbiddenError:
        where = "in all namespaces" if all_namespaces else f"in namespace {scope}"
        return [], [f"note: skipped toolallowlists: RBAC forbids listing them {where}"]
