"""Prometheus metrics: what syncs and refreshes did, served on --metrics-port.

Recorded from the outcome of each reconcile (an observer of the Reconciler), so the reconcile
itself stays free of this concern. Label values are kinds, triggers, results and reasons
(bounded sets), plus namespace/name on the per-resource gauges.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from ..api import constants as c
from ..api.resource import ObjectKey
from ..reconcile.conditions import get_condition, parse_time
from .reconciler import Outcome

logger = logging.getLogger(__name__)

SYNCS = Counter("toolcatalog_syncs_total", "Syncs by kind, trigger, result and failure reason",
                ["kind", "trigger", "result", "reason"])
SYNC_SECONDS = Histogram("toolcatalog_sync_duration_seconds", "Duration of one sync (resolve, fetch, merge, write)",
                         ["kind"], buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
REFRESHES = Counter("toolcatalog_refreshes_total", "Annotation-triggered refreshes by kind and result",
                    ["kind", "result"])
TOOL_CHANGES = Counter("toolcatalog_tool_changes_total", "Tools that appeared, disappeared or changed in syncs",
                       ["kind", "change"])
TOOLS = Gauge("toolcatalog_tools", "Usable tools (available, enabled, selected and approved) per resource",
              ["kind", "namespace", "name"])
READY = Gauge("toolcatalog_ready", "1 when the resource has a usable cache (Ready=True), else 0",
              ["kind", "namespace", "name"])
# Every verification sets it, also those status does not record (--status-report-interval): what to alert on
# when a catalog must never go unverified for long.
VERIFIED = Gauge("toolcatalog_catalog_verified_timestamp_seconds", "When a sync last found the server listing "
                 "exactly the cached catalog, or wrote it (Unix time), recorded in status or not",
                 ["kind", "namespace", "name"])
FAILURES = Gauge("toolcatalog_consecutive_sync_failures", "Syncs of the resource that failed in a row since its "
                 "last success (status.consecutiveFailures): 0 while it syncs", ["kind", "namespace", "name"])

# Status writes refused because the object changed since the reconcile read it (HTTP 409 on its
# resourceVersion): another process wrote it (two shards owning it for a moment), or someone changed
# it meanwhile. Each is retried on the fresh object; a steady rate means two processes own the same shard.
STATUS_CONFLICTS = Counter("toolcatalog_status_conflicts_total",
                           "Status writes refused because the object had changed meanwhile (HTTP 409)", ["kind"])


_serving: set[tuple[str, int]] = set()


def serve(port: int, address: str) -> None:
    """Once a process: the operator may start again in it (autosharding), the metrics server goes on."""
    if (address, port) in _serving:
        return
    start_http_server(port, addr=address)
    _serving.add((address, port))
    logger.info("serving Prometheus metrics on http://%s:%d/metrics", address, port)


def observe(outcome: Outcome) -> None:
    """Count what one reconcile did; a reconcile that only answered a rate-limited refresh is no sync."""
    kind, namespace, name = outcome.key
    if outcome.conflicts:
        STATUS_CONFLICTS.labels(kind).inc(outcome.conflicts)
    plan = outcome.plan
    if plan is None:
        return
    status = plan.status
    if plan.synced and status.last_sync is not None:
        last = status.last_sync
        reason = last.error.reason if last.error else ""
        SYNCS.labels(kind, last.trigger, last.result, reason).inc()
        SYNC_SECONDS.labels(kind).observe(last.duration_ms / 1000)
    if plan.refreshed and status.last_refresh is not None:
        REFRESHES.labels(kind, status.last_refresh.result).inc()
    if plan.diff is not None:
        for change, names in (("new", plan.diff.new), ("removed", plan.diff.removed),
                              ("changed", plan.diff.changed)):
            if names:
                TOOL_CHANGES.labels(kind, change).inc(len(names))
    TOOLS.labels(kind, namespace, name).set(status.tool_count)
    ready = get_condition(status.conditions, c.COND_READY)
    READY.labels(kind, namespace, name).set(1 if ready and ready.status == "True" else 0)
    FAILURES.labels(kind, namespace, name).set(status.consecutive_failures)
    verified = parse_time(status.cache.verified_at) if plan.succeeded and status.cache is not None else None
    if verified is not None:
        VERIFIED.labels(kind, namespace, name).set(verified.timestamp())


def forget_all() -> None:
    """Drop every per-resource series (the engine that reported them stopped)."""
    for gauge in (TOOLS, READY, FAILURES, VERIFIED):
        gauge.clear()


def forget(key: ObjectKey) -> None:
    for gauge in (TOOLS, READY, FAILURES, VERIFIED):
        try:
            gauge.remove(*key)
        except KeyError:
            pass
