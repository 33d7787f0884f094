"""Sync triggers for ToolServer and ConnectorConfig: create, spec change, resume, refresh, timer.

Thin: build a Target from kopf's body, ask the engine, write what it reports through kopf's
patch (status) and post its Events. Nothing is returned (kopf would store it in status).
"""

from __future__ import annotations

from typing import Any

import asyncio
import dataclasses

import kopf

from .. import constants as c
from .. import metrics
from ..config import OperatorConfig
from ..sync import Report, SyncEngine, Target, TransientKubeError, utcnow
from ..status import merge_patch

CONFIG = OperatorConfig.from_env()
EVENT_MESSAGE_MAX = 1000


def target_of(kind: str, body: kopf.Body) -> Target:
    meta = body.get("metadata", {})
    return Target(
        kind=kind, namespace=meta.get("namespace", ""), name=meta.get("name", ""), uid=meta.get("uid", ""),
        generation=meta.get("generation"), spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}), annotations=dict(meta.get("annotations") or {}),
    )


def status_body(report: Report, live_status: dict[str, Any]) -> dict[str, Any]:
    """The merge-patch for /status: the new status, with None for every key it no longer has."""
    assert report.status is not None
    return merge_patch(live_status, report.status.dump())


def apply_report(report: Report, body: kopf.Body, patch: kopf.Patch) -> None:
    if report.status is not None:
        live = dict(body.get("status") or {})
        remembered = patch.get("status") or {}
        patch.status.update(status_body(report, {**live, **remembered}))
    for event in report.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:EVENT_MESSAGE_MAX])


async def run_sync(kind: str, body: kopf.Body, patch: kopf.Patch, memo: Any, trigger: str, *,
                   explicit_refresh: bool = False) -> None:
    engine: SyncEngine = memo.engine
    requested_at = utcnow()
    target = target_of(kind, body)
    try:
        report = await engine.sync(target, trigger, requested_at=requested_at, explicit_refresh=explicit_refresh)
    except TransientKubeError as exc:
        raise kopf.TemporaryError(f"cannot read or write the cache ConfigMap: {exc}", delay=10) from None
    apply_report(report, body, patch)
    metrics.observe(target, report)


def timer_without_finalizer(plural: str, *, interval: float, id: str) -> Any:
    """kopf.timer, minus the finalizer kopf always adds for timers.

    The timer only decides whether a sync is due; nothing must happen before deletion, and a
    finalizer would leave resources stuck in deletion whenever the operator is not running.
    kopf has no flag for this, so the registered handler is replaced with a copy.
    """
    def decorator(fn: Any) -> Any:
        kopf.timer(c.GROUP, c.VERSION, plural, interval=interval, id=id)(fn)
        registry = kopf.get_default_registry()._spawning
        registry._handlers = [  # noqa: SLF001 (kopf has no public switch)
            dataclasses.replace(h, requires_finalizer=False) if h.fn is fn else h for h in registry._handlers]
        return fn
    return decorator


def register(kind: str) -> None:
    """Register one set of handlers per kind: same code, one sync path."""
    plural = c.PLURAL[kind]
    refresh_field = ("metadata", "annotations", c.ANN_REFRESH)

    @kopf.on.create(c.GROUP, c.VERSION, plural, id="sync-on-create")
    async def on_create(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
        await run_sync(kind, body, patch, memo, c.TRIGGER_CREATE)

    @kopf.on.update(c.GROUP, c.VERSION, plural, field="spec", id="sync-on-spec-change")
    async def on_spec_change(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
        await run_sync(kind, body, patch, memo, c.TRIGGER_UPDATE)

    @kopf.on.resume(c.GROUP, c.VERSION, plural, id="sync-on-resume")
    async def on_resume(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
        await run_sync(kind, body, patch, memo, c.TRIGGER_RESUME)

    @kopf.on.field(c.GROUP, c.VERSION, plural, field=refresh_field, id="refresh-on-annotation")
    async def on_refresh(body: kopf.Body, patch: kopf.Patch, memo: Any, new: Any, **_: Any) -> None:
        if not new:
            return      # removing the annotation does nothing
        await run_sync(kind, body, patch, memo, c.TRIGGER_REFRESH, explicit_refresh=True)

    @timer_without_finalizer(plural, interval=CONFIG.timer_interval, id="sync-when-due")
    async def on_timer(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
        engine: SyncEngine = memo.engine
        target = target_of(kind, body)
        if engine.is_deleted(target):
            # kopf stops timers only on a deletion it saw through a finalizer, which we do not
            # add; cancelling is kopf's sanctioned way for a timer to end itself.
            raise asyncio.CancelledError(f"{kind} {target.namespace}/{target.name} was deleted")
        wanted = engine.take_wanted(target)
        trigger = wanted or engine.scheduled_trigger(target)
        if trigger is None:
            return
        try:
            await run_sync(kind, body, patch, memo, trigger)
        except kopf.TemporaryError:
            if wanted is not None:     # keep the request for the next tick
                engine.want(kind, target.namespace, target.name, wanted)
            raise

    @kopf.on.event(c.GROUP, c.VERSION, plural, id="forget-on-delete")
    async def on_deleted(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
        """Drop what the engine remembers of a deleted resource (an event: no finalizer needed)."""
        engine: SyncEngine | None = getattr(memo, "engine", None)
        if engine is not None and event.get("type") == "DELETED":
            engine.forget(target_of(kind, body))
            metrics.forget(target_of(kind, body))


for _kind in (c.KIND_TOOLSERVER, c.KIND_CONNECTORCONFIG):
    register(_kind)
