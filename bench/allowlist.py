"""The ToolAllowlist exposure window through the real gateways, on the real control plane: a server that notifies
(list_changed) rug-pulls a tool, and the clock runs until each gateway no longer lets it through.

    python -m bench.allowlist [--rounds 20]

The operator runs as deploy/'s ServiceAccount with ToolHive's webhook served (HTTPS, HMAC); one allowlist
has four targets (configMap, toolhive, toolhiveWebhook, contextforge). Started with the launchers
(toolcatalog_dev.gateways): ToolHive's proxy runner in front of the server, its validating webhook pointed at
the operator; thv-operator rendering an MCPServer that names the operator's MCPToolConfig; ContextForge
(SQLite) with the server registered. Per round, from the moment the server changes the tool's description
(it notifies the operator's listener at once):
- `webhook_deny`: until an agent (the mcp SDK client, one open session through ToolHive's proxy, calling
  the tool every 20 ms) gets the webhook's denial;
- `operator_withdraws`: until the operator's "withdrawn at once" log line (before the sync writes anything);
- `mcptoolconfig`, `configmap`: until a watch sees the target without the tool; `runconfig`: until
  thv-operator's re-rendered RunConfig no longer holds it (a proxy pod then still has to roll);
- `contextforge`: until ContextForge says the tool is inactive (read every 50 ms);
- `exposure`: the operator's own figure, toolcatalog_allowlist_exposure_seconds (the sync's start to the
  last target written), the one observation the round added;
then the tool is approved again (spec.tools[].approvedHash, as `kubectl toolcatalog approve` writes it) and
`approval_*` run until the MCPToolConfig allows it, ContextForge has it active, and the agent's call passes.
Built beforehand: make controlplane toolhive contextforge.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bench.common import TS, Backend, log, operator_python, real_cluster, summary, until, workdir
from toolcatalog_dev.controlplane import free_port
from toolcatalog_dev.gateways import ContextForge, ThvOperator, ToolHiveRunner, toolhive_dir, webhook_file
from toolcatalog_dev.mcpserver import McpTestServer, make_self_signed_cert, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess

TAL = "toolcatalog.dev/v1alpha1/toolallowlists"
MCPTOOLCONFIGS = "toolhive.stacklok.dev/v1beta1/mcptoolconfigs"
CONFIGMAPS = "v1/configmaps"
BOUNDS = {"webhook_deny": 1000.0, "mcptoolconfig": 2000.0, "contextforge": 2000.0}     # p95, ms (the issue's)
PROBE_INTERVAL = 0.02           # the agent's calls through ToolHive
FORGE_INTERVAL = 0.05           # reads of ContextForge
TIMEOUT = 30.0
_SAMPLE = re.compile(r"^toolcatalog_allowlist_exposure_seconds_(sum|count) (\S+)$", re.MULTILINE)
PULLED = "tool_001"


def _filter(obj: dict[str, Any] | None) -> list[str]:
    return list(((obj or {}).get("spec") or {}).get("toolsFilter") or [])


def _documented(obj: dict[str, Any] | None) -> list[str]:
    if not obj:
        return []
    document = json.loads(obj["data"]["allowlist.json"])
    return [tool["name"] for server in document["servers"] for tool in server["tools"]]


def _rendered(obj: dict[str, Any] | None) -> list[str] | None:
    """The tools filter of thv-operator's RunConfig ConfigMap (None before it rendered one)."""
    if not obj or "runconfig.json" not in (obj.get("data") or {}):
        return None
    return list(json.loads(obj["data"]["runconfig.json"]).get("tools_filter") or [])


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


async def _one_more(port: int, before: tuple[float, float]) -> float | None:
    total, count = await _exposure(f"http://127.0.0.1:{port}/metrics")
    if count <= before[1]:
        return None
    return (total - before[0]) / (count - before[1])


async def _served(api: Any) -> bool:
    try:
        answer = await api.request("GET", "/apis/toolhive.stacklok.dev/v1beta1")
    except Exception:       # 404 until the CRD is established
        return False
    return any(item.get("name") == "mcptoolconfigs" for item in answer.get("resources") or [])


async def _every(interval: float, check: Callable[[], Awaitable[bool]], started: float) -> float:
    """Milliseconds from `started` to the first check() that is True, checking every `interval` seconds."""
    while True:
        if await check():
            return (time.perf_counter() - started) * 1000
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def _agent(url: str) -> AsyncIterator[Client]:
    """The agent: the mcp SDK client through ToolHive's proxy (handshake era: its filter drops 2026 fields)."""
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            yield client


async def _passes(agent: Client) -> bool:
    """Whether the agent's call of the pulled tool goes through ToolHive (False: the webhook denied it)."""
    try:
        return not (await agent.call_tool(PULLED, {"value": 1})).is_error
    except MCPError as error:
        if "denied" not in str(error):
            raise
        return False


class Forge:
    """The benchmark's reads of ContextForge's REST API: one gateway's tools, active or not."""

    def __init__(self, forge: ContextForge, http: httpx2.AsyncClient, gateway_id: str) -> None:
        self.forge, self.http, self.gateway_id = forge, http, gateway_id
        self.ids: dict[str, str] = {}

    async def active(self) -> dict[str, bool]:
        items = (await self.http.get(f"{self.forge.url}/tools", params={
            "gateway_id": self.gateway_id, "include_inactive": "true", "limit": "0"})).json()
        self.ids = {item["originalName"]: item["id"] for item in items}
        return {item["originalName"]: bool(item["enabled"]) for item in items}

    async def is_active(self, name: str) -> bool:
        return bool((await self.http.get(f"{self.forge.url}/tools/{self.ids[name]}")).json()["enabled"])


async def _objects(api: Any, server: McpTestServer, forge: ContextForge, token: str, names: list[str]) -> None:
    """The Secret with ContextForge's token, the ToolServer, the allowlist with its four targets, and the
    platform team's MCPServer naming the operator's MCPToolConfig."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "contextforge-admin"},
              "data": {"token": base64.b64encode(token.encode()).decode()}}
    await api.create(secret)
    await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer", "metadata": {"name": "github"},
                      "spec": {"url": server.url, "approval": {"policy": "NewAndChanged"},
                               "sync": {"minIntervalSeconds": 0}}})
    await api.create({"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolAllowlist",
                      "metadata": {"name": "gateway"},
                      "spec": {"sources": [{"toolServerRef": {"name": "github"}}],
                               "targets": [{"configMap": {"name": "gateway-allowed"}}, {"toolhive": {}},
                                           {"toolhiveWebhook": {}},
                                           {"contextforge": {"url": forge.url, "tokenSecretRef": {
                                               "name": "contextforge-admin", "key": "token"}}}]}})

    async def first() -> bool:      # before the watches: a new CRD's watch cache takes a moment
        return _filter(await api.get(MCPTOOLCONFIGS, api.ns, "gateway-github")) == names
    await until(first, 60, "the first MCPToolConfig")
    await api.create({"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPServer",
                      "metadata": {"name": "github"},
                      "spec": {"image": "example.invalid/github-mcp:1", "transport": "streamable-http",
                               "toolConfigRef": {"name": "gateway-github"}}})


async def measure(backend: Backend, rounds: int, directory: Path) -> dict[str, Any]:
    api = backend.client
    assert backend.plane is not None
    # Every CRD of ToolHive's chart: thv-operator watches all of its kinds (server-side: some are large).
    crds = toolhive_dir() / "operator-crds"
    await asyncio.to_thread(backend.plane.kubectl, "apply", "--server-side", "-f", str(crds))
    await until(lambda: _served(api), 60, "ToolHive's MCPToolConfig to be served")
    certs = directory / "webhook-tls"
    certs.mkdir()
    cert = make_self_signed_cert(str(certs))
    Path(cert.certfile).rename(certs / "tls.crt")
    Path(cert.keyfile).rename(certs / "tls.key")
    hmac = directory / "toolhive-hmac"
    hmac.write_text("shared-by-toolhive-and-the-operator")
    port, webhook_port = free_port(), free_port()
    log_path = directory / "operator-allowlist.log"
    operator = OperatorProcess(backend.operator_kubeconfig, log_path, namespaces=[api.ns],
                               command=[operator_python(), "-m", "toolcatalog.cli"],
                               args=["--log-format=json", f"--metrics-port={port}", "--metrics-address=127.0.0.1",
                                     f"--toolhive-webhook-port={webhook_port}", "--webhook-address=127.0.0.1",
                                     f"--webhook-cert-dir={certs}", f"--toolhive-webhook-hmac-secret-file={hmac}"])
    tools = make_tools(5)
    names = [tool["name"] for tool in tools]
    hooks = webhook_file(directory / "webhooks.json", name="toolcatalog", ca_bundle=certs / "tls.crt",
                         url=f"https://127.0.0.1:{webhook_port}/toolhive/{api.ns}/gateway", hmac_secret=hmac)
    with McpTestServer(tools=tools, list_changed=True, notify_on_change=True) as server, \
            ContextForge(directory / "contextforge") as contextforge, \
            ThvOperator(directory / "thv-operator", backend.admin_kubeconfig, watch_namespace=api.ns):
        token = contextforge.token()
        bearer = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(timeout=30, trust_env=False, headers=bearer) as http:
            gateway = (await http.post(f"{contextforge.url}/gateways", json={
                "name": "github", "url": server.url, "transport": "STREAMABLEHTTP"})).json()
            forge = Forge(contextforge, http, str(gateway["id"]))
            operator.start()
            try:
                await _objects(api, server, contextforge, token, names)

                async def published() -> bool:
                    return await forge.active() == dict.fromkeys(names, True)
                await until(published, 60, "ContextForge to serve the approved tools", process=operator)
                runner = ToolHiveRunner(directory / "toolhive-runner", server.url, name="github", webhooks=hooks)
                async with runner, _agent(runner.url) as agent:
                    await until(lambda: _passes(agent), 30, "the webhook to allow the tool", process=operator)
                    async with backend.watch(MCPTOOLCONFIGS, api.ns) as toolconfigs, \
                            backend.watch(CONFIGMAPS, api.ns) as configmaps:
                        await configmaps.until(lambda: _rendered(configmaps.objects.get("github-runconfig")) == names,
                                               60, "thv-operator's first RunConfig")
                        await server.wait_until_async(lambda s: s.open_listens == 1, timeout=30)
                        samples = await _rounds(rounds, server, tools, agent, forge, toolconfigs, configmaps,
                                                operator, log_path, port, api)
            finally:
                operator.stop()
    figures = {f"{key}_ms": summary([value for value in values if value == value]) for key, values in samples.items()}
    figures["bounds_p95_ms"] = BOUNDS
    figures["setup"] = {"toolhive_runner": "pkg/runner, webhook pointed at the operator (HTTPS, HMAC)",
                        "contextforge": "stateless sessions, SQLite", "probe_interval_ms": PROBE_INTERVAL * 1000,
                        "contextforge_read_interval_ms": FORGE_INTERVAL * 1000}
    return figures


async def _rounds(rounds: int, server: McpTestServer, tools: list[dict[str, Any]], agent: Client, forge: Forge,
                  toolconfigs: Any, configmaps: Any, operator: OperatorProcess, log_path: Path, port: int,
                  api: Any) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {key: [] for key in (
        "webhook_deny", "operator_withdraws", "mcptoolconfig", "configmap", "runconfig", "contextforge",
        "exposure", "approval_mcptoolconfig", "approval_contextforge", "approval_webhook")}
    for index in range(rounds):
        pulled = [dict(tool) for tool in tools]
        pulled[1]["description"] = f"Does thing 1, and (round {index}) also something it should not."
        before = await _exposure(f"http://127.0.0.1:{port}/metrics")
        started, wall = time.perf_counter(), time.time()
        server.tools = pulled           # notifies the operator's listener

        async def watched(target: Any, read: Callable[[Any], Any], name: str, started: float = started) -> float:
            await target.until(lambda: PULLED not in (read(target.objects.get(name)) or [PULLED]), TIMEOUT,
                               f"{PULLED} out of {name}")
            return (time.perf_counter() - started) * 1000

        async def denied(started: float = started) -> float:
            return await _every(PROBE_INTERVAL, lambda: _not(_passes(agent)), started)

        async def inactive(started: float = started) -> float:
            return await _every(FORGE_INTERVAL, lambda: _not(forge.is_active(PULLED)), started)

        marks = await asyncio.wait_for(asyncio.gather(
            denied(), watched(toolconfigs, _filter, "gateway-github"),
            watched(configmaps, _documented, "gateway-allowed"), watched(configmaps, _rendered, "github-runconfig"),
            inactive()), TIMEOUT)
        for key, value in zip(("webhook_deny", "mcptoolconfig", "configmap", "runconfig", "contextforge"), marks,
                              strict=True):
            samples[key].append(value)
        withdrawn = [moment for moment in _withdrawals(log_path, PULLED) if moment >= wall]
        samples["operator_withdraws"].append((withdrawn[0] - wall) * 1000 if withdrawn else float("nan"))
        after = await until(lambda before=before: _one_more(port, before), 10, "the exposure metric")
        samples["exposure"].append(after * 1000)
        # Approved again (the GitOps way, as the plugin writes it), then the next round pulls it once more.
        source = await api.get(TS, api.ns, "github")
        digest = next(t["schemaHash"] for t in source["status"]["tools"] if t["name"] == PULLED
                      and t.get("approval") == "Pending")
        approved = time.perf_counter()
        await api.patch_spec(TS, api.ns, "github", {"tools": [{"name": PULLED, "approvedHash": digest}]})

        async def allowed_again(approved: float = approved) -> float:
            await toolconfigs.until(lambda: PULLED in _filter(toolconfigs.objects.get("gateway-github")), TIMEOUT,
                                    f"{PULLED} allowed again")
            return (time.perf_counter() - approved) * 1000
        again = await asyncio.wait_for(asyncio.gather(
            allowed_again(), _every(FORGE_INTERVAL, lambda: forge.is_active(PULLED), approved),
            _every(PROBE_INTERVAL, lambda: _passes(agent), approved)), TIMEOUT)
        for key, value in zip(("approval_mcptoolconfig", "approval_contextforge", "approval_webhook"), again,
                              strict=True):
            samples[key].append(value)
        tools = pulled
        log(f"allowlist round {index + 1}/{rounds}: webhook denies after {marks[0]:.0f} ms, ContextForge "
            f"{marks[4]:.0f} ms, MCPToolConfig {marks[1]:.0f} ms")
    return samples


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


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
            print(f"{name:<26} p50 {figures['p50']:8.1f}  p95 {figures['p95']:8.1f}  (n={figures['n']})")
    print("bounds (p95): " + ", ".join(f"{key} <= {value:.0f} ms" for key, value in BOUNDS.items()))


if __name__ == "__main__":
    main()
