"""Refresh latency: the `toolcatalog.dev/refresh` annotation set, until `status.lastRefresh.token` answers
it (seen on a watch), against one API server; the server's catalog changes before every refresh, so
each one must fetch afresh, write the ConfigMap and report a diff. Also the operator's CPU and (on the
real control plane) the API requests per refresh.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from bench.common import (
    NAMESPACE,
    TS,
    Backend,
    McpFleet,
    Operator,
    create_all,
    profiled,
    request_delta,
    requests_by_verb,
    summary,
    synced,
    toolserver,
)

WARMUP = 3


def _answered(stream: Any, name: str, token: str) -> Any:
    last = ((stream.objects.get(name) or {}).get("status") or {}).get("lastRefresh") or {}
    return last if last.get("token") == token else None


async def api_write_floor(backend: Backend, rounds: int) -> dict[str, float]:
    """One merge PATCH of a small ConfigMap from here, answered: what each write of a refresh costs at least
    (a refresh makes three in a row: the annotation, the cache ConfigMap, the status)."""
    await backend.client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-floor"},
                                 "data": {"n": "0"}})
    samples = []
    for index in range(WARMUP + rounds):
        started = time.perf_counter()
        await backend.client.patch("v1/configmaps", NAMESPACE, "bench-floor", {"data": {"n": str(index)}})
        if index >= WARMUP:
            samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


async def measure(backend: Backend, fleet: McpFleet, catalogs: list[int], rounds: int, workdir: Path,
                  profile_dir: Path | None = None, label: str = "refresh") -> dict[str, Any]:
    """`profile_dir`: a py-spy profile of the operator over each catalog size's measured rounds
    (`<label>-<tools>.txt`)."""
    results: dict[str, Any] = {"api_patch_ms": await api_write_floor(backend, rounds)}
    with Operator(backend, workdir) as operator:
        names = [f"refresh-{count}" for count in catalogs]
        async with backend.watch(TS, NAMESPACE) as stream:
            await create_all(backend.client, [toolserver(name, url)
                                              for name, url in zip(names, fleet.urls, strict=True)])
            await stream.until(lambda: all(synced(stream.objects.get(name)) for name in names), 120,
                               "the refresh ToolServers synced")
            serial = 0
            for index, (count, name) in enumerate(zip(catalogs, names, strict=True)):
                samples: list[float] = []
                cpu = requests = None
                profile: dict[str, Any] = {}
                with contextlib.ExitStack() as profiling:       # py-spy stops however the rounds end
                    for round_ in range(-WARMUP, rounds):
                        if round_ == 0:
                            assert operator.pid is not None
                            profile = profiling.enter_context(profiled(operator.pid, profile_dir, f"{label}-{count}"))
                            cpu, requests = operator.stats.cpu_seconds(), _counts(backend)
                        serial += 1
                        listed = count + serial % 2             # the catalog changes before every refresh
                        fleet.set_tools(index, listed)
                        token = f"bench-{serial}"
                        started = time.perf_counter()
                        await backend.client.annotate(TS, NAMESPACE, name, {"toolcatalog.dev/refresh": token})
                        last = await stream.until(lambda name=name, token=token: _answered(stream, name, token), 60,
                                                  f"refresh {token} of {name} answered")
                        if round_ >= 0:
                            samples.append((time.perf_counter() - started) * 1000)
                        if last.get("result") != "Succeeded" or last.get("toolsDiscovered") != listed:
                            raise RuntimeError(f"refresh {token} of {name}: {last} (expected {listed} tools)\n"
                                               f"{operator.log_tail()}")
                assert cpu is not None
                figures: dict[str, Any] = {
                    "latency_ms": summary(samples),
                    "operator_cpu_ms_per_refresh": round((operator.stats.cpu_seconds() - cpu) * 1000 / rounds, 2),
                }
                if profile:
                    figures["profile"] = profile
                if requests is not None:
                    delta = request_delta(requests, backend.request_counts())
                    delta[("PATCH", "toolservers")] = delta.get(("PATCH", "toolservers"), 0) - rounds  # the bench's
                    figures["operator_api_requests_per_refresh"] = {
                        key: round(value / rounds, 2) for key, value in requests_by_verb(delta).items()}
                results[str(count)] = figures
        figures_rss = operator.stats.rss()
    results["operator_rss_mib_after"] = round(figures_rss / 2**20, 1)
    return results


def _counts(backend: Backend) -> dict[tuple[str, str], float] | None:
    return backend.request_counts() if backend.plane is not None else None
