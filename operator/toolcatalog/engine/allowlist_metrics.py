"""Prometheus metrics of ToolAllowlists, served with the engine's on --metrics-port.

- `toolcatalog_allowlist_allowed_tools{namespace,name}`: tools allowed now, per allowlist;
- `toolcatalog_allowlist_targets{type,state}`: targets by type and state, over every allowlist;
- `toolcatalog_allowlist_exposure_seconds`: the exposure window, from the start of the source sync that
  changed what is usable to the last target written (api.md), and per target type;
- `toolcatalog_allowlist_withdrawal_failures_total{type}`: attempts to withdraw tools from a target that
  failed (each is retried until it holds).
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

from ..api.allowlist import TARGET_TYPES
from ..api.resource import ObjectKey

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
STATES = ("Published", "Pending", "Unavailable", "Conflict", "Failed")

ALLOWED = Gauge("toolcatalog_allowlist_allowed_tools", "Tools a ToolAllowlist allows now", ["namespace", "name"])
TARGETS = Gauge("toolcatalog_allowlist_targets", "ToolAllowlist targets by type and state", ["type", "state"])
EXPOSURE = Histogram("toolcatalog_allowlist_exposure_seconds",
                     "From the start of the source sync that changed a usable set to the last target written",
                     buckets=BUCKETS)
TARGET_EXPOSURE = Histogram("toolcatalog_allowlist_target_exposure_seconds",
                            "From the start of the source sync that changed a usable set to this target holding it "
                            "(toolhiveWebhook: to the operator's answers changing)", ["type"], buckets=BUCKETS)
WITHDRAWAL_FAILURES = Counter("toolcatalog_allowlist_withdrawal_failures_total",
                              "Attempts to withdraw tools from a target that failed (retried until it holds)",
                              ["type"])

_states: dict[ObjectKey, list[tuple[str, str]]] = {}


def record(key: ObjectKey, allowed: int, targets: list[tuple[str, str]]) -> None:
    """One reconcile's outcome: its allowed count, and (type, state) of each of its targets."""
    ALLOWED.labels(key[1], key[2]).set(allowed)
    _states[key] = targets
    _refresh_targets()


def forget(key: ObjectKey) -> None:
    if _states.pop(key, None) is not None:
        _refresh_targets()
    try:
        ALLOWED.remove(key[1], key[2])
    except KeyError:
        pass


def _refresh_targets() -> None:
    tally = Tally(pair for pairs in _states.values() for pair in pairs)
    for type_ in TARGET_TYPES:
        for state in STATES:
            TARGETS.labels(type_, state).set(tally.get((type_, state), 0))
