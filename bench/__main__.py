"""`make bench`: latency and cost figures of toolcatalog on this machine, printed, not asserted.

- create -> Synced=True and annotation -> lastRefresh answered, for the real operator
  (subprocess) against the API emulator and a real MCP server on loopback;
- fetch_catalog latency and memory with the shared HTTP pool;
- pure merge + render cost for large catalogs.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from tests.support.k8s import CM, TS, condition, toolserver
from toolcatalog.api.endpoint import Endpoint
from toolcatalog.api.models import CacheDocument, CacheSource, ServerInfo, ToolSelector
from toolcatalog.mcp.fetch import fetch_catalog
from toolcatalog.mcp.pool import HttpPool
from toolcatalog.reconcile.cachedoc import render_cache
from toolcatalog.reconcile.catalog import merge_catalog
from toolcatalog_dev.emulator import ApiEmulator
from toolcatalog_dev.mcpserver import McpTestServer, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess


def figures(label: str, samples_ms: list[float]) -> None:
    samples = sorted(samples_ms)
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    print(f"  {label:<52} n={len(samples):<3} p50={statistics.median(samples):7.1f} ms   "
          f"p95={p95:7.1f} ms   max={samples[-1]:7.1f} ms")


async def wait(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.005)
    raise TimeoutError("benchmark condition not met")


async def operator_latencies(rounds: int = 10) -> None:
    print("operator against the API emulator (real kopf, real MCP over HTTP on loopback)")
    async with ApiEmulator() as api:
        workdir = Path(tempfile.mkdtemp(prefix="toolcatalog-bench-"))
        kubeconfig = api.write_kubeconfig(workdir / "kubeconfig")
        operator = OperatorProcess(kubeconfig, workdir / "operator.log",
                                   extra_env={"TOOLCATALOG_TIMER_INTERVAL": "5"}).start()
        try:
            with McpTestServer(tools=make_tools(50)) as server:
                # Warm up: the first sync pays for imports and connection set-up.
                await api.create(toolserver("warmup", server.url))
                await wait(lambda: condition(api.get(TS, "default", "warmup"), "Synced").get("status") == "True", 60)
                create_ms = []
                for index in range(rounds):
                    name = f"bench-{index}"
                    started = time.perf_counter()
                    await api.create(toolserver(name, server.url, sync={"minIntervalSeconds": 0}))
                    await wait(lambda name=name: condition(api.get(TS, "default", name), "Synced").get("status")
                               == "True")
                    create_ms.append((time.perf_counter() - started) * 1000)
                figures("create -> Synced=True (50 tools)", create_ms)
                refresh_ms = []
                for index in range(rounds):
                    server.tools = make_tools(50 + (index % 2))
                    token = f"bench-{index}"
                    started = time.perf_counter()
                    await api.annotate(TS, "default", "bench-0", {"toolcatalog.dev/refresh": token})
                    await wait(lambda token=token: ((api.get(TS, "default", "bench-0").get("status") or {})
                                                    .get("lastRefresh") or {}).get("token") == token)
                    refresh_ms.append((time.perf_counter() - started) * 1000)
                figures("annotation -> lastRefresh answered (50 tools)", refresh_ms)
                print(f"  ConfigMaps written: {len(api.list(CM, 'default'))}")
        finally:
            operator.stop()


async def fetch_figures(rounds: int = 50) -> None:
    print("fetch_catalog (one MCP session: connect, negotiate, every tools/list page)")
    pool = HttpPool()
    cases = [("streamable-http", 50, None, True), ("streamable-http", 500, 100, True), ("sse", 50, None, True),
             ("streamable-http", 50, None, False)]
    for transport, tools, page, nodelay in cases:
        with McpTestServer(transport=transport, tools=make_tools(tools), page_size=page,
                           tcp_nodelay=nodelay) as server:
            endpoint = Endpoint(url=server.url, transport=transport)
            await fetch_catalog(endpoint, pool=pool, timeout=30)
            samples = []
            for _ in range(rounds):
                started = time.perf_counter()
                await fetch_catalog(endpoint, pool=pool, timeout=30)
                samples.append((time.perf_counter() - started) * 1000)
            pages = "" if page is None else f", pages of {page}"
            nagle = "" if nodelay else ", server w/o TCP_NODELAY"
            figures(f"{transport}, {tools} tools{pages}{nagle}", samples)
            if transport == "streamable-http" and tools == 50 and nodelay:
                print(f"  TCP connections the server saw for {rounds + 1} fetches: {server.connections}")
    tracemalloc.start()
    with McpTestServer(tools=make_tools(50)) as server:
        endpoint = Endpoint(url=server.url)
        await fetch_catalog(endpoint, pool=pool, timeout=30)
        before = tracemalloc.take_snapshot()
        for _ in range(20):
            await fetch_catalog(endpoint, pool=pool, timeout=30)
        growth = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    print(f"  Python heap growth over 20 more fetches on the shared pool: {growth / 1024:.0f} KiB")
    await pool.aclose()


def merge_figures() -> None:
    print("pure merge + render (no I/O)")
    for count in (100, 1000, 5000):
        fetched = make_tools(count)
        started = time.perf_counter()
        merged = merge_catalog([], fetched, settings=[], selector=ToolSelector(), now="2026-11-21T12:00:00Z")
        remerged = merge_catalog(merged.tools, fetched, settings=[], selector=ToolSelector(),
                                 now="2026-11-21T13:00:00Z")
        doc = CacheDocument(source=CacheSource(kind="ToolServer", namespace="ns", name="n", url="http://x/mcp"),
                            server=ServerInfo(name="s"), cached_at="t", expires_at="t", tools=remerged.tools)
        rendered = render_cache(doc)
        elapsed = (time.perf_counter() - started) * 1000
        form = "gzip" if rendered.binary_data else "plain"
        print(f"  {count:>5} tools: merge x2 + render {elapsed:7.1f} ms; {rendered.size_bytes / 1024:7.0f} KiB JSON, "
              f"stored {rendered.stored_bytes / 1024:6.0f} KiB ({form})")


async def main() -> int:
    merge_figures()
    await fetch_figures()
    await operator_latencies()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
