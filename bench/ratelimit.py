"""The operator's client-side rate limit (--kube-qps, --kube-burst) on and off, on the real control plane.

controller-runtime now turns its client-side limit off and leaves the API server's protection to API
Priority and Fairness (APF). Whether that suits this operator is measured here: N ToolServers created at
once on a fresh control plane, converged once with the default limit and once without (--kube-qps 0),
recording for each

- the time until every one is Synced=True (on a watch), and the operator's API requests a second;
- the API server's answers 429 (what APF sends when it sheds load) and APF's own rejections and queueing
  of the operator's requests (kube-apiserver's apiserver_flowcontrol_* metrics);
- kube-apiserver's and etcd's CPU over the convergence, as a share of one core;
- how long another client's requests take meanwhile (a GET every 50 ms by another ServiceAccount, as
  another controller would send them): the cost a burst of the operator's writes puts on its neighbours.
"""

from __future__ import annotations

import asyncio
import re
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
    log,
    percentile,
    real_cluster,
    request_delta,
    requests_by_verb,
    synced,
    toolserver,
)
from toolcatalog_dev.cluster import Cluster

SERVERS = 8
TOOLS = 20
NEIGHBOUR = "bench-neighbour"
NEIGHBOUR_INTERVAL = 0.05
# (label, the operator's flags): the default limit, and none at all.
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (("default limit (--kube-qps 100 --kube-burst 200)", ()),
                                                  ("no limit (--kube-qps 0)", ("--kube-qps", "0")))
_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>[0-9.e+-]+)$')


def apf_figures(metrics: str) -> dict[str, Any]:
    """From kube-apiserver's /metrics: 429 answers, APF rejections, and the requests APF dispatched and
    the seconds they waited in its queues, by priority level (counters: compare two readings)."""
    figures: dict[str, Any] = {"answers_429": 0.0, "apf_rejected": 0.0, "dispatched": {}, "wait_seconds": {},
                               "waited": {}}
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        name, value, level = match["name"], float(match["value"]), labels.get("priority_level", "")
        if name == "apiserver_request_total" and labels.get("code") == "429":
            figures["answers_429"] += value
        elif name == "apiserver_flowcontrol_rejected_requests_total":
            figures["apf_rejected"] += value
        elif name == "apiserver_flowcontrol_dispatched_requests_total":
            figures["dispatched"][level] = figures["dispatched"].get(level, 0.0) + value
        elif name == "apiserver_flowcontrol_request_wait_duration_seconds_sum" and labels.get("execute") == "true":
            figures["wait_seconds"][level] = figures["wait_seconds"].get(level, 0.0) + value
        elif name == "apiserver_flowcontrol_request_wait_duration_seconds_count" and labels.get("execute") == "true":
            figures["waited"][level] = figures["waited"].get(level, 0.0) + value
    return figures


def apf_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    levels = {level for level, count in after["dispatched"].items() if count - before["dispatched"].get(level, 0) > 0}
    mean_wait = {}
    for level in sorted(levels):
        waited = after["waited"].get(level, 0.0) - before["waited"].get(level, 0.0)
        seconds = after["wait_seconds"].get(level, 0.0) - before["wait_seconds"].get(level, 0.0)
        mean_wait[level] = round(1000 * seconds / waited, 3) if waited else 0.0
    return {"answers_429": round(after["answers_429"] - before["answers_429"]),
            "apf_rejected": round(after["apf_rejected"] - before["apf_rejected"]),
            "dispatched_by_priority_level": {level: round(after["dispatched"][level]
                                                          - before["dispatched"].get(level, 0.0))
                                             for level in sorted(levels)},
            "mean_queue_wait_ms_by_priority_level": mean_wait}


def neighbour_token(backend: Backend) -> str:
    """A ServiceAccount that may read ConfigMaps in the bench namespace: another controller, whose
    requests APF classifies and queues as it does the operator's (the admin would be exempt)."""
    assert backend.plane is not None
    plane = backend.plane
    plane.kubectl("create", "serviceaccount", NEIGHBOUR, "-n", NAMESPACE)
    plane.kubectl("create", "role", NEIGHBOUR, "--verb=get", "--resource=configmaps", "-n", NAMESPACE)
    plane.kubectl("create", "rolebinding", NEIGHBOUR, f"--role={NEIGHBOUR}",
                  f"--serviceaccount={NAMESPACE}:{NEIGHBOUR}", "-n", NAMESPACE)
    return str(plane.service_account_token(NAMESPACE, NEIGHBOUR))


async def neighbour(backend: Backend, token: str, stop: asyncio.Event, latencies: list[float],
                    failures: list[str]) -> None:
    """Another client, with a connection and an identity of its own: a GET of one ConfigMap every
    NEIGHBOUR_INTERVAL seconds until `stop`."""
    assert backend.plane is not None
    async with Cluster(backend.url, namespace=NAMESPACE, ca=backend.plane.pki.ca_cert, token=token) as client:
        path = client.path("v1/configmaps", NAMESPACE, NEIGHBOUR)
        while not stop.is_set():
            began = time.perf_counter()
            try:
                await client.request("GET", path)
                latencies.append((time.perf_counter() - began) * 1000)
            except Exception as error:      # a refusal (429) or a failure is a figure here, not a crash
                failures.append(f"{type(error).__name__}: {error}"[:200])
            try:
                await asyncio.wait_for(stop.wait(), NEIGHBOUR_INTERVAL)
            except TimeoutError:
                pass


async def run(count: int, workdir: Path) -> list[dict[str, Any]]:
    results = []
    for label, flags in RUNS:
        log(f"rate limit: {count} ToolServers × {TOOLS} tools, {label}, on a fresh control plane")
        async with real_cluster(workdir) as backend:
            with McpFleet([TOOLS] * SERVERS) as fleet, Operator(backend, workdir, *flags) as operator:
                entry = await _converge(backend, fleet, operator, count)
        results.append({"limit": label, "operator_flags": " ".join(flags), **entry})
    return results


async def _converge(backend: Backend, fleet: McpFleet, operator: Operator, count: int) -> dict[str, Any]:
    assert backend.plane is not None
    loop = asyncio.get_running_loop()
    first_synced: dict[str, float] = {}

    def on_event(name: str, obj: dict[str, Any]) -> None:
        if name not in first_synced and synced(obj):
            first_synced[name] = loop.time()

    await backend.client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NEIGHBOUR},
                                 "data": {"a": "b"}})
    token = await asyncio.to_thread(neighbour_token, backend)
    async with backend.watch(TS, NAMESPACE) as stream:
        stream.on_event = on_event
        await backend.client.create(toolserver("canary", fleet.urls[0]))
        await stream.until(lambda: "canary" in first_synced, 120, "the first ToolServer synced")
        idle_latencies: list[float] = []
        stop = asyncio.Event()
        probe = loop.create_task(neighbour(backend, token, stop, idle_latencies, []))
        await asyncio.sleep(3.0)        # the neighbour's latency with nothing else going on
        stop.set()
        await probe
        metrics0, requests0 = await asyncio.to_thread(backend.plane.get_raw, "/metrics"), backend.request_counts()
        plane0, operator0 = backend.control_plane_cpu(), operator.stats.cpu_seconds()
        latencies: list[float] = []
        failures: list[str] = []
        stop = asyncio.Event()
        probe = loop.create_task(neighbour(backend, token, stop, latencies, failures))
        names = [f"ts-{index:05d}" for index in range(count)]
        started = loop.time()
        await create_all(backend.client, [toolserver(name, fleet.urls[index % len(fleet.urls)])
                                          for index, name in enumerate(names)], concurrency=64)
        await stream.until(lambda: len(first_synced) >= count + 1, max(300.0, count * 0.5),
                           f"{count} ToolServers synced")
        converge = loop.time() - started
        stop.set()
        await probe
        metrics1, requests1 = await asyncio.to_thread(backend.plane.get_raw, "/metrics"), backend.request_counts()
        plane1, operator1 = backend.control_plane_cpu(), operator.stats.cpu_seconds()
    delta = request_delta(requests0, requests1)
    delta[("POST", "toolservers")] = delta.get(("POST", "toolservers"), 0) - count        # the bench's creates
    delta[("GET", "configmaps")] = delta.get(("GET", "configmaps"), 0) - len(latencies) - len(failures)
    operator_requests = sum(requests_by_verb(delta).values())
    cpu = {name: round(plane1[name] - plane0.get(name, 0.0), 2) for name in plane1}
    return {
        "resources": count, "servers": SERVERS, "tools_each": TOOLS,
        "converge_seconds": round(converge, 1),
        "syncs_per_second": round(count / converge, 1),
        "operator_api_requests_per_second": round(operator_requests / converge, 1),
        "apf": apf_delta(apf_figures(metrics0.decode()), apf_figures(metrics1.decode())),
        "control_plane_cpu_seconds": cpu,
        "kube_apiserver_cpu_percent_of_a_core": round(100 * cpu.get("kube-apiserver", 0.0) / converge, 1),
        "etcd_cpu_percent_of_a_core": round(100 * cpu.get("etcd", 0.0) / converge, 1),
        "operator_cpu_seconds": round(operator1 - operator0, 2),
        "neighbour_get_ms_idle": _latency(idle_latencies),
        "neighbour_get_ms_during": _latency(latencies),
        "neighbour_failures": len(failures),
        "neighbour_failure_examples": failures[:3],
    }


def _latency(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    return {"p50": round(percentile(samples, 0.5), 2), "p95": round(percentile(samples, 0.95), 2),
            "p99": round(percentile(samples, 0.99), 2), "max": round(max(samples), 2), "n": len(samples)}
