"""What a reconcile should do with one resource now, decided from the resource alone. Pure.

Level-triggered: whatever woke the reconcile (a watch event, a referenced object, a notification,
a due time) is only a hint. The decision reads the object and what the watches know of the objects
it references, and answers one of: sync (and why: the lastSync.trigger), suspend, answer a refresh
as rate limited, or wait (until when). Everything it needs is in the object, so a restart or a
missed event loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..api import constants as c
from ..api.models import Trigger
from ..api.resource import Resource
from .conditions import parse_time
from .refresh import RefreshRequest, pending_refresh, rate_limit_message

Action = Literal["sync", "suspend", "rate-limited", "wait"]
ToolServerVersion = tuple[str, int]     # uid, generation


@dataclass(frozen=True)
class Observed:
    """What the engine knows beyond the object, as plain data.

    `secrets` and `configmaps` map the names status recorded to the resourceVersion the watches hold
    now (None: absent); `toolserver` is the referenced ToolServer's (uid, generation), None if absent.
    """

    now: datetime
    secrets: Mapping[str, str | None] = field(default_factory=dict)
    configmaps: Mapping[str, str | None] = field(default_factory=dict)
    toolserver: ToolServerVersion | None = None
    list_changed: bool = False          # the server said its tool list changed since the last sync
    first_since_start: bool = False     # the first reconcile of this resource since the operator started
    token_seen_at: datetime | None = None           # when the current refresh token was first seen
    completed_before_token: datetime | None = None  # when the last sync before that had ended
    # When the next sync is due after a verification status does not record (report.py): it supersedes
    # the recorded nextSyncAt, which it followed.
    verified_due: datetime | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    trigger: Trigger | None = None
    refresh: RefreshRequest | None = None
    due: datetime | None = None         # "wait": when the resource needs another look (None: only on change)
    message: str = ""                   # "rate-limited": why


def changed_reference(resource: Resource, observed: Observed) -> Trigger | None:
    """The trigger for a referenced object that changed since the last sync recorded it, if any:
    `secret` for a Secret, `update` for the ToolServer a ConnectorConfig inherits from or a CA
    bundle's ConfigMap."""
    for ref in resource.status.references:
        if ref.kind == "Secret" and ref.name in observed.secrets \
                and observed.secrets[ref.name] != ref.resource_version:
            return c.TRIGGER_SECRET
    for ref in resource.status.references:
        if ref.kind == "ConfigMap" and ref.name in observed.configmaps \
                and observed.configmaps[ref.name] != ref.resource_version:
            return c.TRIGGER_UPDATE
        if ref.kind == "ToolServer":
            recorded = (ref.uid, ref.generation) if ref.uid is not None else None
            if recorded != observed.toolserver:
                return c.TRIGGER_UPDATE
    return None


def next_due(resource: Resource, verified_due: datetime | None = None) -> datetime | None:
    """When the schedule wants the next sync: after an unrecorded verification, the one it planned; else
    nextSyncAt, else the cache's expiry."""
    if verified_due is not None:
        return verified_due
    status = resource.status
    due = parse_time(status.next_sync_at)
    if due is None and status.last_sync is not None and status.last_sync.result == "Succeeded" \
            and status.cache is not None:
        due = parse_time(status.cache.expires_at)
    return due


def _already_invalid(resource: Resource) -> bool:
    """An invalid spec whose failure status already answers this generation: nothing more to say."""
    last = resource.status.last_sync
    return (resource.status.observed_generation == resource.generation and last is not None
            and last.error is not None and last.error.reason == c.REASON_INVALID_SPEC)


def sync_trigger(resource: Resource, observed: Observed) -> Trigger | None:
    """Why the resource needs a sync now, apart from a refresh request; None if it does not."""
    status = resource.status
    if resource.spec is None:
        if _already_invalid(resource):
            return None
        return c.TRIGGER_CREATE if status.last_sync is None else c.TRIGGER_UPDATE
    if status.last_sync is None:
        return c.TRIGGER_CREATE
    if status.observed_generation is None or resource.generation > status.observed_generation:
        return c.TRIGGER_UPDATE
    changed = changed_reference(resource, observed)
    if changed is not None:
        return changed
    if observed.list_changed:
        return c.TRIGGER_LIST_CHANGED
    if observed.first_since_start and status.server is not None and status.server.list_changed \
            and status.last_sync.result == "Succeeded":
        return c.TRIGGER_RESUME     # its change notifications went unheard while the operator was down
    due = next_due(resource, observed.verified_due)
    if due is not None and observed.now >= due:
        return c.TRIGGER_SCHEDULE
    return None


def decide(resource: Resource, observed: Observed) -> Decision:
    if resource.deleting:
        return Decision("wait")
    request = pending_refresh(resource.annotations, resource.status,
                              requested_at=observed.token_seen_at or observed.now)
    spec = resource.spec
    if spec is not None and spec.sync.suspend:
        status = resource.status
        if request is not None or status.phase != c.PHASE_SUSPENDED \
                or status.observed_generation != resource.generation:
            return Decision("suspend", refresh=request)
        return Decision("wait")
    trigger = sync_trigger(resource, observed)
    if trigger is not None:
        return Decision("sync", trigger=trigger, refresh=request)
    if request is not None:
        if spec is not None:
            last_completed = observed.completed_before_token
            if last_completed is None and resource.status.last_sync is not None:
                last_completed = parse_time(resource.status.last_sync.completed_at)
            message = rate_limit_message(request, last_completed=last_completed,
                                         min_interval_seconds=spec.sync.min_interval_seconds)
            if message is not None:
                return Decision("rate-limited", refresh=request, message=message)
        return Decision("sync", trigger=c.TRIGGER_REFRESH, refresh=request)
    return Decision("wait", due=next_due(resource, observed.verified_due) if spec is not None else None)
