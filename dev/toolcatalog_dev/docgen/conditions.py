"""docs/reference/conditions.md: every condition type and reason, phase, sync trigger and Event reason.

The words come from toolcatalog.api.reasons (next to the names in constants.py); how each failure is
retried, and which failures stall a resource, from toolcatalog.api.errors, which the operator follows.
"""

from __future__ import annotations

from toolcatalog.api import constants as c
from toolcatalog.api import errors, reasons

from .markdown import banner, code, prose, table


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} s"


def retried(reason: str) -> str:
    """How errors.py retries a failed sync with this reason, in words."""
    policy = errors.RETRY_POLICY.get(reason, errors.Retry.BACKOFF)
    if policy is errors.Retry.BACKOFF:
        base = errors.BACKOFF_BASE_SECONDS
        return (f"with exponential backoff: {base:g} s, {2 * base:g} s, {4 * base:g} s, ... up to "
                f"{_minutes(errors.BACKOFF_MAX_SECONDS)}.")
    if policy is errors.Retry.SLOW:
        return f"every {_minutes(errors.SLOW_RETRY_SECONDS.get(reason, errors.BACKOFF_MAX_SECONDS))}."
    if policy is errors.Retry.WATCHED:
        return (f"at once when the missing object appears (it is watched), and every "
                f"{_minutes(errors.WATCHED_RETRY_SECONDS)} as a safety net.")
    if policy is errors.Retry.NEVER:
        return "never: the next change of the spec syncs."
    return "soon, by the work queue's backoff; status is left as it was."


def _reason_block(reason: reasons.Reason) -> str:
    lines = [f"### {reason.reason}\n", f"{reason.condition} **{reason.status}**. {prose(reason.meaning)}\n"]
    facts = []
    if reason.condition == c.COND_SYNCED and reason.reason != c.REASON_SYNC_SUCCEEDED:
        note = f" {reason.retry_note}" if reason.retry_note else ""
        facts.append(f"**Retried** {retried(reason.reason)}{note}")
        stalled = reason.reason in errors.STALLED_REASONS
        facts.append("**Stalled**: " + ("yes: `Stalled=True` with this reason while it lasts (kstatus, Flux and "
                                        "Argo CD read the resource as failed)." if stalled else
                                        "no: a retry may succeed by itself."))
    if reason.action:
        facts.append(f"**What to do**: {prose(reason.action)}")
    if facts:
        lines.append("\n".join(f"- {fact}" for fact in facts) + "\n")
    return "\n".join(lines)


def render() -> str:
    out = [banner("operator/toolcatalog/api/reasons.py, constants.py and errors.py"),
           "# Conditions, reasons and Events\n",
           "What the operator says about each ToolServer and ConnectorConfig, and what to do about it. "
           "Conditions have the `metav1.Condition` shape (`type`, `status`, `reason`, `message`, "
           "`lastTransitionTime`, `observedGeneration`); a condition's `lastTransitionTime` changes only when its "
           "status flips. Start from `kubectl toolcatalog status -A` (one line a resource: Ready, Synced or the "
           "failure reason, tools, pending approvals) and `kubectl describe toolserver NAME` (the conditions with "
           "their messages, and the Events). The [status reference](status.md) describes the rest of `status`.\n",
           "Every failed sync ends as `Synced=False` with one of the reasons below and a message that says what "
           "to fix and when the next attempt is, a `SyncFailed` Warning Event, and `status.lastSync.error`. A "
           "failed sync never changes the cache ConfigMap, `status.tools`, `status.cache` or `status.server`. "
           "Messages never contain a credential.\n",
           "## Condition types\n",
           table(("Type", "Meaning"), [(code(t.type), prose(t.meaning)) for t in reasons.CONDITION_TYPES]),
           "Reasons at a glance:\n",
           table(("Condition", "Status", "Reason", "Stalled"),
                 [(r.condition, r.status, f"[{r.reason}](#{r.reason.lower()})",
                   "yes" if r.condition == c.COND_SYNCED and r.reason in errors.STALLED_REASONS else "")
                  for r in reasons.REASONS]),
           "A ToolAllowlist's reasons are [below](#toolallowlist).\n"]
    for cond in reasons.CONDITION_TYPES:
        out.append(f"## {cond.type}\n")
        out.append(prose(cond.meaning) + "\n")
        if cond.type == c.COND_STALLED:
            stalled = ", ".join(f"[`{name}`](#{name.lower()})" for name in errors.STALLED_REASONS)
            out.append(f"Its reason is the Synced reason of the failure: one of {stalled}. "
                       f"{reasons.STALLED_MEANING}\n")
            out.append("A pending approval is not a failure and never stalls a resource.\n")
            continue
        out += [_reason_block(reason) for reason in reasons.REASONS if reason.condition == cond.type]
        if cond.type == c.COND_SYNCED:
            out.append("### When the Kubernetes API fails\n")
            out.append(f"{reasons.API_UNAVAILABLE_MEANING}\n")
    out.append("## ToolAllowlist\n")
    out.append("A [ToolAllowlist](toolallowlist.md) has a `Ready` condition of its own (every target holds the "
               "current allowlist) and a `Stalled` condition, True with the same reason, while only someone's "
               "change can help. Its Ready reasons:\n")
    out += [_reason_block(reason) for reason in reasons.ALLOWLIST_REASONS]
    out.append("## Phases\n")
    out.append("`status.phase` sums up the Ready condition in one word (`kubectl get -o wide` prints it):\n")
    out.append(table(("Phase", "Meaning"), [(code(p.name), prose(p.meaning)) for p in reasons.PHASES]))
    out.append("## Sync triggers\n")
    out.append("`status.lastSync.trigger` says what ran the last sync (and the `trigger` label of "
               "`toolcatalog_syncs_total`, and the sync's log line):\n")
    out.append(table(("Trigger", "Meaning"), [(code(t.name), prose(t.meaning)) for t in reasons.TRIGGERS]))
    out.append("## Events\n")
    out.append("The operator posts Kubernetes Events on the resource (`kubectl describe`, "
               "`kubectl get events --field-selector involvedObject.name=NAME`):\n")
    out.append(table(("Reason", "Type", "When", "What to do"),
                     [(code(e.name), e.type, prose(e.meaning), prose(e.action)) for e in reasons.EVENTS]))
    return "\n".join(out)
