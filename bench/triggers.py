"""Trigger latencies: a Secret rotated, or a server notifying that its tool list changed, until the
resource's status shows the sync that answered it (real control plane by default).

    python -m bench.triggers [--rounds 10] [--backend emulator|real]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from typing import Any

from bench.common import TS, Backend, Operator, emulator, real_cluster, summary, until, workdir
from toolcatalog_dev.mcpserver import McpTestServer, make_tools


async def secret_rotation(backend: Backend, rounds: int) -> dict[str, float]:
    api = backend.client
    samples = []
    with McpTestServer(tools=make_tools(5), tokens=None) as server:
        await api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rotating"},
                          "stringData": {"token": "token-0"}})
        await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer",
                          "metadata": {"name": "rotating"},
                          "spec": {"url": server.url, "auth": {"bearerToken": {"secretKeyRef": {
                              "name": "rotating", "key": "token"}}}}})
        await until(lambda: _synced(api, "rotating"), 60, "first sync")
        for index in range(1, rounds + 1):
            started = time.perf_counter()
            patched = await api.patch("v1/secrets", api.ns, "rotating",
                                      {"data": {"token": base64.b64encode(f"token-{index}".encode()).decode()}})
            version = patched["metadata"]["resourceVersion"]

            async def answered(version: str = version) -> bool:
                status = ((await api.get(TS, api.ns, "rotating")) or {}).get("status") or {}
                return (status.get("lastSync") or {}).get("result") == "Succeeded" and any(
                    ref.get("kind") == "Secret" and ref.get("resourceVersion") == version
                    for ref in status.get("references") or [])
            await until(answered, 30, f"the resync after rotation {index}")
            samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


async def list_changed(backend: Backend, rounds: int) -> dict[str, float]:
    api = backend.client
    samples = []
    with McpTestServer(tools=make_tools(5), list_changed=True, notify_on_change=True) as server:
        await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer",
                          "metadata": {"name": "notifying"}, "spec": {"url": server.url}})
        await until(lambda: _synced(api, "notifying"), 60, "first sync")
        await server.wait_until_async(lambda s: s.open_listens == 1, timeout=30)
        for index in range(rounds):
            count = 6 + index
            started = time.perf_counter()
            server.tools = make_tools(count)         # notifies

            async def answered(count: int = count) -> bool:
                obj = await api.get(TS, api.ns, "notifying") or {}
                return (obj.get("status") or {}).get("toolCount") == count
            await until(answered, 30, f"the list-changed resync {index}")
            samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


async def _synced(api: Any, name: str) -> bool:
    obj = await api.get(TS, api.ns, name) or {}
    return any(c.get("type") == "Synced" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def run(backend_name: str, rounds: int) -> dict[str, Any]:
    directory = workdir()
    backend_cm = real_cluster(directory) if backend_name == "real" else emulator(directory)
    async with backend_cm as backend:
        return await measure(backend, rounds, directory)


async def measure(backend: Backend, rounds: int, directory: Any) -> dict[str, Any]:
    with Operator(backend, directory):
        return {"secret_rotation_ms": await secret_rotation(backend, rounds),
                "list_changed_ms": await list_changed(backend, rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.triggers", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backend", choices=["real", "emulator"], default="real")
    args = parser.parse_args()
    results = asyncio.run(run(args.backend, args.rounds))
    for name, figures in results.items():
        print(f"{name:<24} p50 {figures['p50']:8.1f}  p95 {figures['p95']:8.1f}  (n={figures['n']})")


if __name__ == "__main__":
    main()
