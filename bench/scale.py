"""Scale on the real control plane (a fresh one per run, so nothing of an earlier run is watched):

- convergence: N ToolServers × 20 tools, spread over several servers, created at once while the
  operator runs: time until every one is Synced=True (seen on a watch), syncs per second, the
  operator's peak RSS and CPU seconds, the control plane's and the MCP servers' CPU, and the API
  requests per sync (kube-apiserver's apiserver_request_total);
- memory: RSS at start (one resource synced, settled) and after convergence, per resource;
- idle: then, with nothing due, the operator's CPU and the API requests per minute (watches left out);
- sizes: ConfigMap bytes per tool (raw JSON and gzip), status bytes per resource, etcd bytes per
  resource (its ToolServer, ConfigMap and Events as etcd stores them).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from pathlib import Path
from typing import Any

from bench.common import (
    NAMESPACE,
    TS,
    Backend,
    McpFleet,
    Operator,
    ProcStats,
    create_all,
    log,
    profiled,
    real_cluster,
    request_delta,
    requests_by_verb,
    self_cpu_seconds,
    synced,
    toolserver,
)

SERVERS = 8
TOOLS = 20
SETTLE_SECONDS = 5.0


async def run(count: int, workdir: Path, *, idle_seconds: float, sizes: bool, profile_dir: Path | None,
              servers: int = SERVERS, operator_args: tuple[str, ...] = (),
              sdk_defaults: bool = False) -> dict[str, Any]:
    """`sdk_defaults`: servers as the mcp SDK makes them (ttlMs 0, listChanged): no idle then, since every
    resource resyncs at the 60 s floor; the change-notification streams open are counted instead."""
    log(f"convergence: {count} ToolServers × {TOOLS} tools on a fresh control plane"
        f"{' (servers with the SDK defaults)' if sdk_defaults else ''}")
    async with real_cluster(workdir) as backend:
        with McpFleet([TOOLS] * servers, sdk_defaults=sdk_defaults) as fleet, \
                Operator(backend, workdir, *operator_args) as operator:
            return await _run(backend, fleet, operator, count, idle_seconds=0 if sdk_defaults else idle_seconds,
                              sizes=sizes, profile_dir=profile_dir)


async def _run(backend: Backend, fleet: McpFleet, operator: Operator, count: int, *, idle_seconds: float,
               sizes: bool, profile_dir: Path | None) -> dict[str, Any]:
    stats = operator.stats
    first_synced: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    def on_event(name: str, obj: dict[str, Any]) -> None:
        if name not in first_synced and synced(obj):
            first_synced[name] = loop.time()

    async with backend.watch(TS, NAMESPACE) as stream:
        stream.on_event = on_event
        await backend.client.create(toolserver("canary", fleet.urls[0]))
        await stream.until(lambda: "canary" in first_synced, 120, "the first ToolServer synced")
        await asyncio.sleep(SETTLE_SECONDS)         # a settling period for the figures, not for correctness
        rss_start = stats.rss()
        stats.peak_rss = rss_start
        cpu0, plane0, fleet0, bench0 = (stats.cpu_seconds(), backend.control_plane_cpu(),
                                        fleet.stats.cpu_seconds(), self_cpu_seconds())
        requests0 = backend.request_counts()
        stop = asyncio.Event()
        sampler = loop.create_task(stats.sample_peak(stop))
        names = [f"ts-{index:05d}" for index in range(count)]
        label = f"converge-{count}{'-sdk' if fleet.sdk_defaults else ''}"
        with profiled(operator.pid, profile_dir, label) as profile:
            started = loop.time()
            await create_all(backend.client, [toolserver(name, fleet.urls[index % len(fleet.urls)])
                                              for index, name in enumerate(names)], concurrency=64)
            created = loop.time()
            await stream.until(lambda: len(first_synced) >= count + 1, max(300.0, count * 0.5),
                               f"{count} ToolServers synced")
            finished = loop.time()
        stop.set()
        await sampler
        cpu1, plane1, fleet1, bench1 = (stats.cpu_seconds(), backend.control_plane_cpu(),
                                        fleet.stats.cpu_seconds(), self_cpu_seconds())
        requests1 = backend.request_counts()
        converge = finished - started
        delta = request_delta(requests0, requests1)
        delta[("POST", "toolservers")] = delta.get(("POST", "toolservers"), 0) - count        # the bench's creates
        ours = {key: round(value / count, 2) for key, value in requests_by_verb(delta).items()}
        times = sorted(first_synced[name] - started for name in names)
        result: dict[str, Any] = {
            "resources": count, "servers": len(fleet.urls), "tools_each": TOOLS, "server_behaviour": fleet.behaviour,
            "converge_seconds": round(converge, 1),
            "create_seconds": round(created - started, 1),
            "synced_at_seconds": {"p50": round(times[len(times) // 2], 1), "p90": round(times[int(len(times) * .9)], 1),
                                  "last": round(times[-1], 1)},
            "syncs_per_second": round(count / converge, 1),
            "operator_rss_start_mib": round(rss_start / 2**20, 1),
            "operator_peak_rss_mib": round(stats.peak_rss / 2**20, 1),
            "operator_cpu_seconds": round(cpu1 - cpu0, 2),
            "operator_cpu_ms_per_sync": round((cpu1 - cpu0) * 1000 / count, 2),
            "operator_cpu_share_of_total": round((cpu1 - cpu0) / max(1e-9, (cpu1 - cpu0) + sum(
                plane1[name] - plane0.get(name, 0.0) for name in plane1) + (fleet1 - fleet0) + (bench1 - bench0)), 3),
            "control_plane_cpu_seconds": {name: round(plane1[name] - plane0.get(name, 0.0), 2) for name in plane1},
            "mcp_servers_cpu_seconds": round(fleet1 - fleet0, 2),
            "bench_client_cpu_seconds": round(bench1 - bench0, 2),
            "operator_api_requests_per_sync": ours,
            "tools_list_calls": sum(fleet.list_calls()),
        }
        if profile:
            result["profile"] = profile
        await asyncio.sleep(SETTLE_SECONDS)
        rss_after = stats.rss()
        result["operator_rss_after_mib"] = round(rss_after / 2**20, 1)
        result["operator_kib_per_resource"] = round((rss_after - rss_start) / 1024 / count, 1)
        result["listen_streams_open"] = fleet.open_listens()
        if sizes:
            result["sizes"] = await measure_sizes(backend, stream.objects[names[0]], count)
        if idle_seconds > 0:
            result["idle"] = await idle(backend, stats, idle_seconds)
    return result


async def idle(backend: Backend, stats: ProcStats, seconds: float) -> dict[str, Any]:
    """Nothing due: the operator's CPU and the API requests per minute, watches left out."""
    log(f"idle for {seconds:g}s")
    await asyncio.sleep(SETTLE_SECONDS)
    cpu0, requests0, plane0 = stats.cpu_seconds(), backend.request_counts(), backend.control_plane_cpu()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu1, requests1, plane1 = stats.cpu_seconds(), backend.request_counts(), backend.control_plane_cpu()
    per_minute = 60.0 / elapsed
    delta = request_delta(requests0, requests1)
    ours = requests_by_verb(delta)
    others = requests_by_verb(delta, ours=False)
    return {
        "seconds": round(elapsed, 1),
        "operator_cpu_percent_of_a_core": round(100 * (cpu1 - cpu0) / elapsed, 3),
        "operator_cpu_seconds_per_minute": round((cpu1 - cpu0) * per_minute, 3),
        "api_requests_per_minute_our_resources": round(sum(ours.values()) * per_minute, 2),
        "api_requests_per_minute_our_resources_by_verb": {k: round(v * per_minute, 2) for k, v in ours.items()},
        "api_requests_per_minute_other_clients": round(sum(others.values()) * per_minute, 1),
        "api_requests_per_minute_other_by_verb": {k: round(v * per_minute, 1) for k, v in others.items()},
        "control_plane_cpu_percent": {name: round(100 * (plane1[name] - plane0.get(name, 0.0)) / elapsed, 2)
                                      for name in plane1},
        "operator_rss_mib": round(stats.rss() / 2**20, 1),
    }


async def measure_sizes(backend: Backend, sample: dict[str, Any], count: int) -> dict[str, Any]:
    """Bytes of one synced resource: its status, its ConfigMap, and etcd's records of ours."""
    name = sample["metadata"]["name"]
    status = sample.get("status") or {}
    configmap = await backend.client.get("v1/configmaps", NAMESPACE, f"toolserver-{name}") or {}
    document = (configmap.get("data") or {}).get("tools.json")
    raw = document.encode() if document is not None else gzip.decompress(
        base64.b64decode((configmap.get("binaryData") or {})["tools.json.gz"]))
    tools = len(json.loads(raw)["tools"])
    assert backend.plane is not None
    etcd = {what: _etcd_bytes(backend, prefix) for what, prefix in (
        ("toolservers", f"/registry/toolcatalog.dev/toolservers/{NAMESPACE}/"),
        ("configmaps", f"/registry/configmaps/{NAMESPACE}/"),
        ("events", f"/registry/events/{NAMESPACE}/"))}
    resources = count + 1       # and the canary
    return {
        "configmap_tools": tools,
        "configmap_bytes_per_tool_raw": round(len(raw) / tools, 1),
        "configmap_bytes_per_tool_gzip": round(len(gzip.compress(raw)) / tools, 1),
        "configmap_object_bytes": len(json.dumps(configmap, separators=(",", ":"))),
        "status_bytes_per_resource": len(json.dumps(status, separators=(",", ":"))),
        "toolserver_object_bytes": len(json.dumps(sample, separators=(",", ":"))),
        "etcd_bytes_per_resource": {what: round(total / resources, 1) for what, (total, _) in etcd.items()},
        "etcd_bytes_per_resource_total": round(sum(total for total, _ in etcd.values()) / resources, 1),
        "etcd_keys": {what: keys for what, (_, keys) in etcd.items()},
    }


def _etcd_bytes(backend: Backend, prefix: str) -> tuple[int, int]:
    """Total value bytes and keys under `prefix` in etcd (its JSON gateway, paged)."""
    assert backend.plane is not None
    start = prefix.encode()
    end = prefix[:-1].encode() + bytes([prefix.encode()[-1] + 1])
    total = keys = 0
    while True:
        answer = backend.plane.etcd_call("/v3/kv/range", {"key": base64.b64encode(start).decode(),
                                                          "range_end": base64.b64encode(end).decode(),
                                                          "limit": 200})
        kvs = answer.get("kvs") or []
        for kv in kvs:
            total += len(base64.b64decode(kv.get("value", "")))
            keys += 1
        if not answer.get("more") or not kvs:
            return total, keys
        start = base64.b64decode(kvs[-1]["key"]) + b"\x00"
