"""Steady state on the real control plane: N ToolServers with a short TTL, left to resync for a while.

RSS over time (does it grow?), the resync spread (syncs per second, per 1 s and per 10 s, against the
mean N / TTL: a herd would show as peaks), the operator's CPU per TTL sync and the API requests per
sync. A sync is counted when a watch sees a resource's status.lastSync.completedAt change.
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


async def run(count: int, ttl: int, seconds: float, workdir: Path, profile_dir: Path | None) -> dict[str, Any]:
    log(f"steady state: {count} ToolServers, ttlSeconds {ttl}, for {seconds:g}s")
    async with real_cluster(workdir) as backend:
        with McpFleet([TOOLS] * SERVERS) as fleet, Operator(backend, workdir) as operator:
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
                await create_all(backend.client, [toolserver(name, fleet.urls[index % SERVERS], ttlSeconds=ttl)
                                                  for index, name in enumerate(names)], concurrency=64)
                await stream.until(lambda: all(synced(stream.objects.get(name)) for name in names),
                                   max(300.0, count * 0.5), f"{count} ToolServers synced")
                log("converged; measuring the steady state")
                started = loop.time()
                first = len(sync_times)
                cpu0, requests0 = stats.cpu_seconds(), backend.request_counts()
                rss: list[tuple[float, float]] = []
                with profiled(operator.pid, profile_dir, f"steady-{count}") as profile:
                    while loop.time() - started < seconds:
                        rss.append((round(loop.time() - started, 1), round(stats.rss() / 2**20, 1)))
                        if operator.exited() is not None:
                            raise RuntimeError(f"the operator exited:\n{operator.log_tail()}")
                        await asyncio.sleep(min(RSS_EVERY_SECONDS, max(0.0, seconds - (loop.time() - started))))
                elapsed = loop.time() - started
                cpu1, requests1 = stats.cpu_seconds(), backend.request_counts()
                rss.append((round(elapsed, 1), round(stats.rss() / 2**20, 1)))
                window = [t - started for t in sync_times[first:] if t >= started]
    syncs = len(window)
    per_second = [0] * (int(elapsed) + 1)
    for moment in window:
        per_second[min(len(per_second) - 1, int(moment))] += 1
    per_ten = [sum(per_second[i:i + 10]) / 10 for i in range(0, len(per_second), 10)]
    delta = requests_by_verb(request_delta(requests0, requests1))
    half = len(rss) // 2
    first_half = [value for _, value in rss[:half]] or [0.0]
    second_half = [value for _, value in rss[half:]] or [0.0]
    result: dict[str, Any] = {
        "resources": count, "ttl_seconds": ttl, "seconds": round(elapsed, 1),
        "syncs": syncs,
        "expected_syncs_per_second": round(count / ttl, 2),
        "syncs_per_second_mean": round(syncs / elapsed, 2),
        "syncs_per_second_peak_1s": max(per_second) if per_second else 0,
        "syncs_per_second_peak_10s_window": round(max(per_ten), 2) if per_ten else 0,
        "syncs_per_minute": [sum(per_second[i:i + 60]) for i in range(0, len(per_second), 60)],
        "operator_cpu_ms_per_sync": round((cpu1 - cpu0) * 1000 / max(1, syncs), 2),
        "operator_cpu_percent_of_a_core": round(100 * (cpu1 - cpu0) / elapsed, 2),
        "operator_api_requests_per_sync": {key: round(value / max(1, syncs), 2) for key, value in delta.items()},
        "rss_mib": {"first": rss[0][1], "last": rss[-1][1], "min": min(v for _, v in rss),
                    "max": max(v for _, v in rss), "mean_first_half": round(sum(first_half) / len(first_half), 1),
                    "mean_second_half": round(sum(second_half) / len(second_half), 1)},
        "rss_series_mib": rss[:: max(1, len(rss) // 60)],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if profile:
        result["profile"] = profile
    return result
