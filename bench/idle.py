"""Idle cost: N synced ToolServers and nothing due; the operator's CPU seconds and the API requests it
causes per minute (kube-apiserver's own apiserver_request_total, watches left out), on the real
control plane.

    python -m bench.idle [--resources 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from bench.common import TS, Backend, ProcStats, real_cluster, start_operator, until, workdir
from toolcatalog_dev.mcpserver import McpTestServer, make_tools

SERVERS = 4


async def create_synced(backend: Backend, count: int, urls: list[str], operator: Any, tools_per_server: int,
                        timeout: float = 600.0) -> float:
    """Create `count` ToolServers spread over `urls`, all at once; seconds until every one is Synced=True."""
    api = backend.client
    loop = asyncio.get_running_loop()
    started = loop.time()
    semaphore = asyncio.Semaphore(32)

    async def create(index: int) -> None:
        async with semaphore:
            await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer",
                              "metadata": {"name": f"ts-{index:05d}"},
                              "spec": {"url": urls[index % len(urls)], "sync": {"ttlSeconds": 86400}}})
    await asyncio.gather(*(create(index) for index in range(count)))

    async def all_synced() -> bool:
        items = await api.list(TS, api.ns)
        done = sum(1 for obj in items if any(
            cond.get("type") == "Synced" and cond.get("status") == "True"
            for cond in (obj.get("status") or {}).get("conditions") or []))
        return done >= count
    await until(all_synced, timeout, f"{count} ToolServers synced", process=operator, interval=0.5)
    return loop.time() - started


def non_watch(counts: dict[tuple[str, str], float]) -> float:
    return sum(value for (verb, _), value in counts.items() if verb not in ("WATCH", "CONNECT"))


async def run(resources: int, seconds: float) -> dict[str, Any]:
    directory = workdir()
    async with real_cluster(directory) as backend:
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(McpTestServer(tools=make_tools(20))) for _ in range(SERVERS)]
            operator = start_operator(backend, directory)
            try:
                assert operator.pid is not None
                stats = ProcStats(operator.pid)
                converged = await create_synced(backend, resources, [s.url for s in servers], operator, 20)
                await asyncio.sleep(5)          # let the last status writes and Events settle
                cpu0, requests0 = stats.cpu_seconds(), backend.request_counts()
                await asyncio.sleep(seconds)
                cpu1, requests1 = stats.cpu_seconds(), backend.request_counts()
                rss = stats.rss()
            finally:
                operator.stop()
    per_minute = 60.0 / seconds
    delta = {key: requests1.get(key, 0) - requests0.get(key, 0) for key in requests1}
    by_resource = {f"{verb} {resource}": round(value * per_minute, 1)
                   for (verb, resource), value in delta.items() if value and verb not in ("WATCH", "CONNECT")}
    return {"resources": resources, "converge_seconds": round(converged, 1),
            "operator_cpu_seconds_per_minute": round((cpu1 - cpu0) * per_minute, 3),
            "api_requests_per_minute_all_clients": round((non_watch(requests1) - non_watch(requests0)) * per_minute, 1),
            "api_requests_per_minute_by_resource": by_resource, "operator_rss_mib": round(rss / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.resources, args.seconds))
    for key, value in result.items():
        print(f"{key:<40} {value}")


if __name__ == "__main__":
    main()
