"""The ToolAllowlist exposure window on the real control plane: a server that notifies (list_changed) rug-pulls
a tool, and the clock runs until the operator no longer allows it, and until each target no longer holds it.

    python -m bench.allowlist [--rounds 20]

Per round, from the moment the server changes the tool (it notifies the operator's listener at once):
- `deny`: until the operator's answers (what its ToolHive webhook answers from) withdraw the tool: the
  time of its "withdrawn at once" log line, written before the sync writes anything;
- `mcptoolconfig` and `configmap`: until a watch sees the target without the tool;
- `exposure`: the operator's own figure, toolcatalog_allowlist_exposure_seconds (from the start of the
  sync to the last target written), read from its /metrics as the one observation the round added;
then the tool is approved again (spec.tools[].approvedHash) and `approval` runs until both targets allow it.
ToolHive's CRDs come from `make toolhive-crds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2

from bench.common import TS, Backend, real_cluster, summary, until, workdir
from toolcatalog_dev.controlplane import free_port
from toolcatalog_dev.mcpserver import McpTestServer, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess
from toolcatalog_dev.toolhivecrds import toolhive_crds

TAL = "toolcatalog.dev/v1alpha1/toolallowlists"
MCPTOOLCONFIGS = "toolhive.stacklok.dev/v1beta1/mcptoolconfigs"
CONFIGMAPS = "v1/configmaps"
BOUNDS = {"deny": 1000.0, "mcptoolconfig": 2000.0}       # p95, ms (the issue's bounds)
_SAMPLE = re.compile(r"^toolcatalog_allowlist_exposure_seconds_(sum|count) (\S+)$", re.MULTILINE)


def _filter(obj: dict[str, Any] | None) -> list[str]:
    return list(((obj or {}).get("spec") or {}).get("toolsFilter") or [])


def _documented(obj: dict[str, Any] | None) -> list[str]:
    if not obj:
        return []
    document = json.loads(obj["data"]["allowlist.json"])
    return [tool["name"] for server in document["servers"] for tool in server["tools"]]


def _withdrawals(log_path: Path, tool: str) -> list[float]:
    """Wall-clock times of the operator's "withdrawn at once" lines naming `tool` (JSON log lines)."""
    times = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "withdrawn at once" not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if tool in (record.get("withdrawn") or []):
            times.append(datetime.fromisoformat(record["timestamp"]).timestamp())
    return times


async def _exposure(metrics_url: str) -> tuple[float, float]:
    async with httpx2.AsyncClient(trust_env=False) as client:
        text = (await client.get(metrics_url)).text
    found = {kind: float(value) for kind, value in _SAMPLE.findall(text)}
    return found.get("sum", 0.0), found.get("count", 0.0)


async def measure(backend: Backend, rounds: int, directory: Path) -> dict[str, Any]:
    api = backend.client
    for crd in toolhive_crds():
        await api.create(crd)
    await until(lambda: _served(api), 60, "ToolHive's MCPToolConfig to be served")
    port = free_port()
    log_path = directory / "operator-allowlist.log"
    operator = OperatorProcess(backend.operator_kubeconfig, log_path,
                               args=["--log-format=json", f"--metrics-port={port}", "--metrics-address=127.0.0.1"])
    samples: dict[str, list[float]] = {"deny": [], "mcptoolconfig": [], "configmap": [], "exposure": [],
                                       "approval": []}
    tools = make_tools(5)
    with McpTestServer(tools=tools, list_changed=True, notify_on_change=True) as server:
        operator.start()
        try:
            await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer",
                              "metadata": {"name": "github"},
                              "spec": {"url": server.url, "approval": {"policy": "NewAndChanged"},
                                       "sync": {"minIntervalSeconds": 0}}})
            await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolAllowlist",
                              "metadata": {"name": "gateway"},
                              "spec": {"sources": [{"toolServerRef": {"name": "github"}}],
                                       "targets": [{"configMap": {"name": "gateway-allowed"}}, {"toolhive": {}}]}})
            names = [tool["name"] for tool in tools]

            async def first() -> bool:      # before the watches: a new CRD's watch cache takes a moment
                return _filter(await api.get(MCPTOOLCONFIGS, api.ns, "gateway-github")) == names
            await until(first, 60, "the first MCPToolConfig")
            async with backend.watch(MCPTOOLCONFIGS, api.ns) as toolconfigs, \
                    backend.watch(CONFIGMAPS, api.ns) as configmaps:
                await server.wait_until_async(lambda s: s.open_listens == 1, timeout=30)
                for index in range(rounds):
                    pulled = [dict(tool) for tool in tools]
                    pulled[1]["description"] = f"Does thing 1, and (round {index}) also something it should not."
                    before = await _exposure(f"http://127.0.0.1:{port}/metrics")
                    started, wall = time.perf_counter(), time.time()
                    server.tools = pulled           # notifies the operator's listener
                    marks: dict[str, float] = {}

                    async def gone(target: Any, read: Any, key: str, name: str, started: float = started,
                                   marks: dict[str, float] = marks) -> None:
                        await target.until(lambda: "tool_001" not in read(target.objects.get(name)), 30,
                                           f"tool_001 out of {name}")
                        marks[key] = time.perf_counter() - started
                    await asyncio.gather(gone(toolconfigs, _filter, "mcptoolconfig", "gateway-github"),
                                         gone(configmaps, _documented, "configmap", "gateway-allowed"))
                    denied = [moment for moment in _withdrawals(log_path, "tool_001") if moment >= wall]
                    samples["deny"].append((denied[0] - wall) * 1000 if denied else float("nan"))
                    samples["mcptoolconfig"].append(marks["mcptoolconfig"] * 1000)
                    samples["configmap"].append(marks["configmap"] * 1000)
                    after = await until(lambda before=before: _one_more(port, before), 10, "the exposure metric")
                    samples["exposure"].append(after * 1000)
                    # Approved again (the GitOps way), then the next round pulls it once more.
                    source = await api.get(TS, api.ns, "github")
                    digest = next(t["schemaHash"] for t in source["status"]["tools"] if t["name"] == "tool_001"
                                  and t.get("approval") == "Pending")
                    approved = time.perf_counter()
                    await api.patch_spec(TS, api.ns, "github", {"tools": [{"name": "tool_001",
                                                                           "approvedHash": digest}]})
                    await toolconfigs.until(lambda: "tool_001" in _filter(toolconfigs.objects.get("gateway-github")),
                                            30, "tool_001 allowed again")
                    samples["approval"].append((time.perf_counter() - approved) * 1000)
                    tools = pulled
        finally:
            operator.stop()
    figures = {f"{key}_ms": summary([value for value in values if value == value]) for key, values in samples.items()}
    figures["bounds_p95_ms"] = BOUNDS
    return figures


async def _served(api: Any) -> bool:
    try:
        answer = await api.request("GET", "/apis/toolhive.stacklok.dev/v1beta1")
    except Exception:       # 404 until the CRD is established
        return False
    return any(item.get("name") == "mcptoolconfigs" for item in answer.get("resources") or [])


async def _one_more(port: int, before: tuple[float, float]) -> float | None:
    total, count = await _exposure(f"http://127.0.0.1:{port}/metrics")
    if count <= before[1]:
        return None
    return (total - before[0]) / (count - before[1])


async def run(rounds: int) -> dict[str, Any]:
    directory = workdir()
    async with real_cluster(directory) as backend:
        return await measure(backend, rounds, directory)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.allowlist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds))
    for name, figures in results.items():
        if name.endswith("_ms") and "p50" in figures:
            print(f"{name:<20} p50 {figures['p50']:8.1f}  p95 {figures['p95']:8.1f}  (n={figures['n']})")
    print(f"bounds (p95): deny <= {BOUNDS['deny']:.0f} ms, MCPToolConfig <= {BOUNDS['mcptoolconfig']:.0f} ms")


if __name__ == "__main__":
    main()
