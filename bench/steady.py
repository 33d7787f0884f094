"""Steady state on the real control plane: N ToolServers with a short TTL, left to resync for a while.

RSS over time (does it grow?), the resync spread (syncs per second, per 1 s and per 10 s, against the
mean N / TTL: a herd would show as peaks), the operator's CPU per TTL sync, the API requests and the
bytes sent per sync, the API writes per second, and what etcd wrote (its write-ahead log's bytes and
its puts, per minute). A sync is counted when a watch sees a resource's status.lastSync.completedAt
change. Every sync of the steady state finds the catalog unchanged.

Two kinds of servers: tuned ones (a day's `ttlMs`, so the resource's `ttlSeconds` sets the pace), and
servers as the mcp SDK makes them by default (`sdk_defaults`: `ttlMs: 0`, so every resource resyncs at
the operator's 60 s floor, and `listChanged`, so the operator listens: the streams open are counted).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import (
    NAMESPACE,
    TS,
    McpFleet,
    Operator,
    api_writes,
    create_all,
    log,
    profiled,
    real_cluster,
    request_delta,
    requests_by_verb,
    synced,
    toolserver,
)

SERVERS = 8
TOOLS = 20
RSS_EVERY_SECONDS = 10.0


SDK_FLOOR_SECONDS = 60       # the operator's --min-server-ttl: what ttlMs 0 comes to


async def run(count: int, ttl: int | None, seconds: float, workdir: Path, profile_dir: Path | None, *,
              tools: int = TOOLS, servers: int = SERVERS, sdk_defaults: bool = False) -> dict[str, Any]:
    """`ttl`: spec.sync.ttlSeconds (None: its default, so that the server's ttlMs decides)."""
    period = ttl if ttl is not None else SDK_FLOOR_SECONDS
    label = f"steady-{count}x{tools}{'-sdk' if sdk_defaults else ''}"
    log(f"steady state: {count} ToolServers × {tools} tools on {servers} servers "
        f"({'SDK defaults' if sdk_defaults else 'tuned'}), ttlSeconds {ttl or 'default'}, for {seconds:g}s")
    sync = {"ttlSeconds": ttl} if ttl is not None else {"ttlSeconds": 3600}
    async with real_cluster(workdir) as backend:
        with McpFleet([tools] * servers, sdk_defaults=sdk_defaults) as fleet, \
                Operator(backend, workdir) as operator:
            stats = operator.stats
            loop = asyncio.get_running_loop()
            completions: dict[str, str] = {}
            sync_times: list[float] = []

            def on_event(name: str, obj: dict[str, Any]) -> None:
                completed = (((obj.get("status") or {}).get("lastSync")) or {}).get("completedAt")
                if completed and completions.get(name) != completed:
                    completions[name] = completed
                    sync_times.append(loop.time())

            async with backend.watch(TS, NAMESPACE) as stream:
                stream.on_event = on_event
                names = [f"ts-{index:05d}" for index in range(count)]
                await create_all(backend.client, [toolserver(name, fleet.urls[index % servers], **sync)
                                                  for index, name in enumerate(names)], concurrency=64)
                await stream.until(lambda: all(synced(stream.objects.get(name)) for name in names),
                                   max(300.0, count * 0.5), f"{count} ToolServers synced")
                # One resync period first: each resource's first resync is written to status (its trigger is
                # news); what follows is the steady state, whose status reports come every
                # --status-report-interval (a window of at least that plus a period holds one of each).
                log(f"converged; one resync period ({period} s) before measuring the steady state")
                await asyncio.sleep(period * 1.1)
                started = loop.time()
                first = len(sync_times)
                syncs0, fetches0 = operator.metric_total("toolcatalog_syncs_total"), sum(fleet.list_calls())
                cpu0, requests0 = stats.cpu_seconds(), backend.request_counts()
                bodies0, etcd0 = backend.request_body_bytes(), backend.etcd_counters()
                rss: list[tuple[float, float]] = []
                with profiled(operator.pid, profile_dir, label) as profile:
                    while loop.time() - started < seconds:
                        rss.append((round(loop.time() - started, 1), round(stats.rss() / 2**20, 1)))
                        if operator.exited() is not None:
                            raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
                        await asyncio.sleep(min(RSS_EVERY_SECONDS, max(0.0, seconds - (loop.time() - started))))
                elapsed = loop.time() - started
                cpu1, requests1 = stats.cpu_seconds(), backend.request_counts()
                syncs1, fetches1 = operator.metric_total("toolcatalog_syncs_total"), sum(fleet.list_calls())
                bodies1, etcd1 = backend.request_body_bytes(), backend.etcd_counters()
                rss.append((round(elapsed, 1), round(stats.rss() / 2**20, 1)))
                streams = fleet.open_listens()
                window = [t - started for t in sync_times[first:] if t >= started]
    # Every sync, from the operator's own count: a verification status does not record (its
    # --status-report-interval) is invisible to a watch. The watch sees the recorded ones.
    syncs = round(syncs1 - syncs0)
    recorded = len(window)
    per_second = [0] * (int(elapsed) + 1)
    for moment in window:
        per_second[min(len(per_second) - 1, int(moment))] += 1
    per_ten = [sum(per_second[i:i + 10]) / 10 for i in range(0, len(per_second), 10)]
    changes = request_delta(requests0, requests1)
    delta = requests_by_verb(changes)
    bodies = requests_by_verb(request_delta(bodies0, bodies1))
    per_minute = 60.0 / elapsed
    half = len(rss) // 2
    first_half = [value for _, value in rss[:half]] or [0.0]
    second_half = [value for _, value in rss[half:]] or [0.0]
    result: dict[str, Any] = {
        "resources": count, "tools_each": tools, "servers": servers, "server_behaviour": fleet.behaviour,
        "ttl_seconds": period, "seconds": round(elapsed, 1),
        "syncs": syncs,
        "syncs_recorded_in_status": recorded,
        "mcp_fetches": fetches1 - fetches0,
        "mcp_fetches_per_sync": round((fetches1 - fetches0) / max(1, syncs), 3),
        "expected_syncs_per_second": round(count / period, 2),
        "syncs_per_second_mean": round(syncs / elapsed, 2),
        "syncs_per_second_peak_1s": max(per_second) if per_second else 0,
        "syncs_per_second_peak_10s_window": round(max(per_ten), 2) if per_ten else 0,
        "syncs_per_minute": [sum(per_second[i:i + 60]) for i in range(0, len(per_second), 60)],
        "operator_cpu_ms_per_sync": round((cpu1 - cpu0) * 1000 / max(1, syncs), 2),
        "operator_cpu_percent_of_a_core": round(100 * (cpu1 - cpu0) / elapsed, 2),
        "operator_api_requests_per_sync": {key: round(value / max(1, syncs), 2) for key, value in delta.items()},
        "api_writes_per_second": round(api_writes(changes) / elapsed, 2),
        "request_body_bytes_per_sync": {key: round(value / max(1, syncs)) for key, value in bodies.items()},
        "etcd_wal_bytes_per_minute": round((etcd1.get("wal_bytes", 0) - etcd0.get("wal_bytes", 0)) * per_minute),
        "etcd_puts_per_minute": round((etcd1.get("puts", 0) - etcd0.get("puts", 0)) * per_minute, 1),
        "listen_streams_open": streams,
        "rss_mib": {"first": rss[0][1], "last": rss[-1][1], "min": min(v for _, v in rss),
                    "max": max(v for _, v in rss), "mean_first_half": round(sum(first_half) / len(first_half), 1),
                    "mean_second_half": round(sum(second_half) / len(second_half), 1)},
        "rss_series_mib": rss[:: max(1, len(rss) // 60)],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if profile:
        result["profile"] = profile
    return result
