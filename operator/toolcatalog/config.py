"""Operator settings from the environment (the CLI sets them from its flags before kopf starts)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class OperatorConfig:
    max_concurrent_syncs: int = 10
    # How often each resource's timer checks whether a sync is due (TTL expiry, retry, a watched
    # Secret or ToolServer change). Bounds the delay of those syncs.
    timer_interval: float = 10.0
    context: str | None = None
    metrics_port: int | None = None     # serve Prometheus metrics when set
    metrics_address: str = "0.0.0.0"
    # Open `list-changed` listeners (one long-lived MCP session per resource) at most; resources
    # beyond it are resynced on TTL expiry and refreshes only.
    max_listeners: int = 500

    @classmethod
    def from_env(cls) -> OperatorConfig:
        return cls(
            max_concurrent_syncs=_int("TOOLCATALOG_MAX_CONCURRENT_SYNCS", cls.max_concurrent_syncs),
            timer_interval=_float("TOOLCATALOG_TIMER_INTERVAL", cls.timer_interval),
            context=os.environ.get("TOOLCATALOG_CONTEXT") or None,
            metrics_port=_int("TOOLCATALOG_METRICS_PORT", 0) or None,
            metrics_address=os.environ.get("TOOLCATALOG_METRICS_ADDRESS") or cls.metrics_address,
            max_listeners=_int("TOOLCATALOG_MAX_LISTENERS", cls.max_listeners),
        )
