"""A ToolAllowlist's status, conditions and Events, from what its reconcile found and wrote. Pure.

Ready is True when every target holds the current allowed set (reason Published); otherwise its
reason names the worst problem: TargetConflict (an object of that name is not ours), TargetFailed
(a gateway or the API server refused a write), TargetUnavailable (ToolHive's CRDs are not
installed, a gateway cannot be reached), SourceNotFound. Stalled is True while only someone's
change can help (a conflict, a rejected write, an invalid spec). A target that cannot be written
keeps what it last had: a withdrawal is only as fast as the target is reachable, so a failed
withdrawal is loud (a Warning Event once per failure, the condition, a metric) and retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..api import constants as c
from ..api.allowlist import (
    Allowlist,
    AllowlistSourceStatus,
    AllowlistStatus,
    AllowlistTargetStatus,
    LastChange,
    TargetState,
    TargetType,
    WithheldTools,
)
from ..api.errors import SyncError
from .allowlist import Change, SourceView, names_shown, withheld_names
from .allowlist_targets import TargetPlan
from .conditions import remove_condition, rfc3339, set_condition
from .events import Event

EVENT_MESSAGE_MAX = 1000
# Target problems, worst first: the Ready reason is the first that applies.
PROBLEM_ORDER: tuple[tuple[TargetState, str], ...] = (
    ("Conflict", c.REASON_TARGET_CONFLICT), ("Failed", c.REASON_TARGET_FAILED),
    ("Unavailable", c.REASON_TARGET_UNAVAILABLE), ("Pending", c.REASON_TARGET_UNAVAILABLE))
# What only a change by someone fixes: a conflict, a write the API server or gateway refused for good.
STALLING = (c.REASON_TARGET_CONFLICT, c.REASON_WRITE_REJECTED, c.REASON_FORBIDDEN)


@dataclass(frozen=True)
class TargetResult:
    """What a reconcile did to one target."""

    plan: TargetPlan
    state: TargetState
    message: str = ""
    reason: str | None = None           # why it is not Published (a Ready reason, or WriteRejected/Forbidden)
    written: bool = False               # its content changed in this reconcile
    withdrawing: bool = False           # what it should hold withdraws tools it holds now
    objects: list[str] = field(default_factory=list)
    object: str | None = None
    endpoint: str | None = None

    @property
    def type(self) -> TargetType:
        return self.plan.type


def _previous_target(prev: AllowlistStatus, result: TargetResult) -> AllowlistTargetStatus | None:
    index = result.plan.index
    if 0 <= index < len(prev.targets) and prev.targets[index].type == result.type:
        return prev.targets[index]
    return None


def target_status(prev: AllowlistStatus, result: TargetResult, now: str) -> AllowlistTargetStatus:
    before = _previous_target(prev, result)
    common: dict[str, object] = {
        "type": result.type, "state": result.state, "message": result.message or None,
        "reason": result.reason if result.state != "Published" else None,
        "object": result.object, "objects": result.objects, "endpoint": result.endpoint}
    if result.state == "Published":
        unchanged = before is not None and before.content_hash == result.plan.content_hash and not result.written
        published_at = before.last_published_at if unchanged and before is not None else now
        return AllowlistTargetStatus.model_validate({**common, "published": result.plan.published,
                                                     "content_hash": result.plan.content_hash,
                                                     "last_published_at": published_at})
    # Not written: the target still holds what it last had.
    return AllowlistTargetStatus.model_validate({
        **common, "published": before.published if before else 0,
        "content_hash": before.content_hash if before else None,
        "last_published_at": before.last_published_at if before else None})


def source_status(view: SourceView) -> AllowlistSourceStatus:
    withheld = [WithheldTools(reason=reason, count=len(names), tools=withheld_names(names))
                for reason, names in view.withheld.items()]
    return AllowlistSourceStatus.model_validate({
        "kind": view.kind, "name": view.name, "as": view.alias, "state": view.state, "message": view.message,
        "url": view.url, "approvalPolicy": view.policy, "allowed": len(view.allowed), "withheld": withheld})


def plan_status(allowlist: Allowlist, views: Sequence[SourceView], results: Sequence[TargetResult], change: Change,
                now: datetime) -> AllowlistStatus:
    prev = allowlist.status
    stamp = rfc3339(now)
    status = prev.model_copy(deep=True)
    status.observed_generation = allowlist.generation
    status.tool_count = sum(len(view.allowed) for view in views)
    status.sources = [source_status(view) for view in views]
    status.source_names = summary([view.alias for view in views])
    # Targets of the spec, in its order; retirements (index -1) only while they have not held.
    status.targets = [target_status(prev, result, stamp) for result in results
                      if result.plan.index >= 0 or result.state != "Published"]
    status.target_types = summary([result.type for result in results if result.plan.index >= 0])
    if change:
        status.last_change = LastChange(at=stamp, added=names_shown(change.added),
                                        withdrawn=names_shown(change.withdrawn), added_count=len(change.added),
                                        withdrawn_count=len(change.withdrawn))
    status.conditions = _conditions(prev, allowlist.generation, views, results, stamp)
    return status


def _conditions(prev: AllowlistStatus, generation: int, views: Sequence[SourceView],
                results: Sequence[TargetResult], now: str) -> list:
    problems = [(reason, result) for state, reason in PROBLEM_ORDER for result in results if result.state == state]
    missing = [view for view in views if view.state == "NotFound"]
    conditions = prev.conditions
    tools = sum(len(view.allowed) for view in views)
    if problems:
        reason = problems[0][0]
        message = "; ".join(f"target {_label(result)}: {result.message}" for _, result in problems)
        ready = False
    elif missing:
        reason, ready = c.REASON_SOURCE_NOT_FOUND, False
        message = "; ".join(view.message for view in missing) + \
            f"; the other sources' {tools} allowed tools are published to every target"
    else:
        reason, ready = c.REASON_PUBLISHED, True
        message = f"{tools} {'tool' if tools == 1 else 'tools'} allowed from {len(views)} " \
                  f"source{'' if len(views) == 1 else 's'}, held by every target"
    conditions = set_condition(conditions, type_=c.COND_READY, status=ready, reason=reason, message=message,
                               generation=generation, now=now)
    stalled = [(reason, result) for reason, result in problems
               if reason in STALLING or (result.reason or "") in STALLING]
    if stalled:
        reason = stalled[0][1].reason or stalled[0][0]
        message = "; ".join(f"target {_label(result)}: {result.message}" for _, result in stalled)
        conditions = set_condition(conditions, type_=c.COND_STALLED, status=True, reason=reason, message=message,
                                   generation=generation, now=now)
    else:
        conditions = remove_condition(conditions, c.COND_STALLED)
    return conditions


def summary(names: Sequence[str], limit: int = 64) -> str:
    """Names for a kubectl column: comma-separated, cut with a count of the rest."""
    text = ",".join(names)
    if len(text) <= limit:
        return text
    shown: list[str] = []
    for name in names:
        if len(",".join([*shown, name])) > limit - 8:
            break
        shown.append(name)
    return ",".join(shown) + f",+{len(names) - len(shown)}"


def plan_invalid(allowlist: Allowlist, error: SyncError, now: datetime) -> AllowlistStatus:
    """An invalid spec (an API server that did not enforce the CRD's rules): nothing is written."""
    status = allowlist.status.model_copy(deep=True)
    status.observed_generation = allowlist.generation
    stamp = rfc3339(now)
    for type_ in (c.COND_READY, c.COND_STALLED):
        status.conditions = set_condition(status.conditions, type_=type_, status=type_ == c.COND_STALLED,
                                          reason=c.REASON_INVALID_SPEC, message=error.message,
                                          generation=allowlist.generation, now=stamp)
    return status


def _label(result: TargetResult) -> str:
    where = result.object or result.endpoint or ", ".join(result.objects) or ""
    return f"{result.type}" + (f" ({where})" if where else "")


# ------------------------------------------------------------------------- Events


def _event(type_: str, reason: str, message: str) -> Event:
    return Event(type_, reason, message[:EVENT_MESSAGE_MAX])


def _why(name: str, views: Sequence[SourceView]) -> str:
    alias, _, tool = name.partition("/")
    view = next((v for v in views if v.alias == alias), None)
    if view is None:
        return "source removed from the allowlist"
    if tool in view.allowed:
        return "definition changed"
    for reason, names in view.withheld.items():
        if tool in names:
            return {"Pending": "awaits approval", "Unavailable": "no longer listed by the server",
                    "Disabled": "disabled", "NotSelected": "not selected"}[reason]
    return {"NotFound": "source not found", "Withdrawn": "source failing (onSourceFailure: Withdraw)",
            "NoCatalog": "source has no catalog"}.get(view.state, "no longer usable")


def allowlist_events(prev: AllowlistStatus, views: Sequence[SourceView], results: Sequence[TargetResult],
                     change: Change) -> list[Event]:
    events: list[Event] = []
    if change.withdrawn:
        shown = ", ".join(f"{name} ({_why(name, views)})" for name in change.withdrawn[:20])
        more = f" and {len(change.withdrawn) - 20} more" if len(change.withdrawn) > 20 else ""
        events.append(_event("Normal", c.EVENT_TOOLS_WITHDRAWN, f"withdrawn from every target: {shown}{more}"))
    if change.added:
        shown = ", ".join(change.added[:20]) + (f" and {len(change.added) - 20} more" if len(change.added) > 20
                                                else "")
        events.append(_event("Normal", c.EVENT_TOOLS_ALLOWED, f"allowed: {shown}"))
    for result in results:
        before = _previous_target(prev, result)
        if result.state == "Published":
            if before is not None and before.state != "Published":
                events.append(_event("Normal", c.EVENT_TARGET_RECOVERED,
                                     f"target {_label(result)} holds the allowlist again"))
            continue
        if before is not None and before.state == result.state and (before.reason or "") == (result.reason or "") \
                and not (result.withdrawing and change.withdrawn):
            continue        # the same failure as last time: not on every retry
        if result.withdrawing:
            events.append(_event("Warning", c.EVENT_WITHDRAWAL_FAILED,
                                 f"target {_label(result)} still allows tools that are withdrawn: {result.message}; "
                                 "retrying until it holds"))
        else:
            events.append(_event("Warning", _event_reason(result.state), f"target {_label(result)}: {result.message}"))
    return events


def _event_reason(state: TargetState) -> str:
    return {"Conflict": c.REASON_TARGET_CONFLICT, "Unavailable": c.REASON_TARGET_UNAVAILABLE,
            "Pending": c.REASON_TARGET_UNAVAILABLE}.get(state, c.REASON_TARGET_FAILED)
