"""What the liveness check costs the API server, by the number of resources (real control plane).

The check asks what changed since the version it last checked: a watch from that version, closed by
the server after a second, answered from its watch cache (handlers/health.py). Before, each liveness
probe listed the metadata of every ToolServer and ConnectorConfig, and readiness did so every second
until ready; that full LIST is still what a check makes after a 410. Measured with the operator's own
client, for each size N: the full metadata LIST (time, bytes of the answer), the check's watch of the
changes (time: the one-second window, and what it carried), and the LIST of one item made at start.

    python -m bench.probes [--sizes 100,1000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from bench.common import Backend, create_all, log, real_cluster, summary, toolserver, workdir
from toolcatalog.api import constants as c
from toolcatalog.kube.client import KubeClient
from toolcatalog.kube.login import login


async def measure(backend: Backend, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(backend.operator_kubeconfig)       # the operator's own credentials
    kube = KubeClient(lambda: login(None), qps=0)
    results = []
    created = 0
    try:
        for size in sorted(sizes):
            log(f"probes: {size} ToolServers")
            await create_all(backend.client, [toolserver(f"probe-{index:05d}", "http://127.0.0.1:9/mcp")
                                              for index in range(created, size)])
            created = size
            listing, list_bytes = [], 0
            for _ in range(rounds):
                started = time.perf_counter()
                items, version = await kube.list_metadata(c.KIND_TOOLSERVER)
                listing.append((time.perf_counter() - started) * 1000)
                list_bytes = len(json.dumps(items, separators=(",", ":")))
                assert len(items) == size, (len(items), size)
            watching, events = [], 0
            for _ in range(rounds):
                started = time.perf_counter()
                events += len(await kube.changes_since(c.KIND_TOOLSERVER, None, version, seconds=1))
                watching.append((time.perf_counter() - started) * 1000)
            one = []
            for _ in range(rounds):
                started = time.perf_counter()
                await kube.collection_version(c.KIND_TOOLSERVER)
                one.append((time.perf_counter() - started) * 1000)
            results.append({"resources": size, "full_metadata_list_ms": summary(listing),
                            "full_metadata_list_bytes": list_bytes,
                            "changes_watch_ms": summary(watching), "changes_watch_events": events,
                            "list_of_one_ms": summary(one)})
    finally:
        await kube.aclose()
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = ["liveness check      resources   full LIST p50 ms   bytes     changes watch p50 ms   LIST of one p50 ms"]
    for entry in results:
        lines.append(f"                    {entry['resources']:9d}   {entry['full_metadata_list_ms']['p50']:16.1f}   "
                     f"{entry['full_metadata_list_bytes']:8d}   {entry['changes_watch_ms']['p50']:20.1f}   "
                     f"{entry['list_of_one_ms']['p50']:18.1f}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with real_cluster(workdir()) as backend:
        return await measure(backend, args.sizes, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="numbers of ToolServers, comma-separated")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    args.sizes = [int(part) for part in args.sizes.split(",") if part]
    results = asyncio.run(main_async(args))
    print(table(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
