"""ToolHive's own operator (thv-operator) against the real control plane, without pods: it renders the
MCPToolConfig (and an MCPWebhookConfig) into the RunConfig its proxy pods would run, and ToolHive's proxy
runner runs that RunConfig here, with the pod's mounted Secrets written where the RunConfig expects them.

So what the toolhive and toolhiveWebhook targets write is enforced the way a cluster would enforce it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.gateways.conftest import Kubectl, agent, listed
from toolcatalog.api.toolhive import NO_TOOL_ALLOWED, tools_filter
from toolcatalog.handlers.toolhive_webhook import ToolHiveWebhookServer, path_for
from toolcatalog_dev import thvpod
from toolcatalog_dev.gateways import ThvOperator, ToolHiveRunner
from toolcatalog_dev.mcpserver import McpTestServer
from toolcatalog_dev.wait import wait_for

pytestmark = pytest.mark.timeout(180)
HASH = "sha256:" + "2" * 64


def tool_config(name: str, names: list[str]) -> dict[str, Any]:
    return {"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPToolConfig", "metadata": {"name": name},
            "spec": {"toolsFilter": names}}


async def rendered(kubectl: Kubectl, workload: str, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 30.0) -> dict[str, Any]:
    """The RunConfig thv-operator rendered for `workload`, once it satisfies `predicate`."""
    def current() -> dict[str, Any] | None:
        config = thvpod.runconfig(kubectl, workload)
        return config if config is not None and predicate(config) else None
    return await wait_for(current, timeout=timeout, interval=0.1, what=f"thv-operator to render {workload}'s RunConfig")


async def test_the_mcptoolconfig_written_for_a_remote_proxy_is_what_its_proxy_enforces(
        thv_operator: ThvOperator, kubectl: Kubectl, namespace: str, upstream: McpTestServer, tmp_path: Path) -> None:
    kubectl.apply(tool_config("github", tools_filter(["tool_001"])),
                  {"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPRemoteProxy",
                   "metadata": {"name": "github"},
                   # thv-operator refuses loopback URLs and resolves no names; the runner below reaches the
                   # upstream on loopback instead of this in-cluster name.
                   "spec": {"remoteUrl": f"http://github-mcp.{namespace}.svc:8000/mcp",
                            "toolConfigRef": {"name": "github"}}})
    config = await rendered(kubectl, "github", lambda rc: rc.get("tools_filter") == ["tool_001"])
    (tmp_path / "runconfig.json").write_text(json.dumps(config))
    runner = ToolHiveRunner(tmp_path / "runner", upstream.url, runconfig=tmp_path / "runconfig.json")
    async with runner:
        async with agent(runner.url, mode="legacy") as client:
            assert await listed(client) == ["tool_001"]

        # The source's only tool drifts: nothing is allowed, written as the sentinel, never as [].
        kubectl.apply(tool_config("github", tools_filter([])))
        config = await rendered(kubectl, "github", lambda rc: rc.get("tools_filter") == [NO_TOOL_ALLOWED])
        (tmp_path / "runconfig-2.json").write_text(json.dumps(config))
        await runner.arestart(runconfig=tmp_path / "runconfig-2.json")      # what a changed checksum does to the pods
        async with agent(runner.url, mode="legacy") as client:
            assert await listed(client) == []
            with pytest.raises(MCPError, match="tool not found"):
                await client.call_tool("tool_001", {"value": 1})
    assert upstream.tool_calls == []
    annotations = kubectl.get("deployment", "github")["spec"]["template"]["metadata"]["annotations"]
    assert "toolhive.stacklok.dev/runconfig-checksum" in annotations


@pytest.fixture
async def operator_webhook(tmp_path: Path,
                           cert_dir: Path) -> AsyncIterator[tuple[ToolHiveWebhookServer, dict[Any, Any]]]:
    allowed: dict[tuple[str, str, str], dict[str, str]] = {}
    secret = tmp_path / "operator-hmac"
    secret.write_bytes(b"shared-by-the-operator-and-toolhive")
    server = ToolHiveWebhookServer(lambda *key: allowed.get(key), cert_dir=cert_dir, address="127.0.0.1",
                                   hmac_secret_file=secret)
    await server.start()
    try:
        yield server, allowed
    finally:
        await server.stop()


async def test_the_sample_mcpwebhookconfig_sends_an_mcpservers_calls_to_the_operator(
        thv_operator: ThvOperator, kubectl: Kubectl, namespace: str, upstream: McpTestServer, tmp_path: Path,
        operator_webhook: tuple[ToolHiveWebhookServer, dict[Any, Any]], cert_dir: Path) -> None:
    webhook, allowed = operator_webhook
    allowed[(namespace, "team-a-gateway", "github")] = {"tool_000": HASH}
    url = f"https://127.0.0.1:{webhook.port}{path_for(namespace, 'team-a-gateway')}"
    sample = thvpod.webhook_sample(namespace, url, (cert_dir / "tls.crt").read_text(),
                                   (tmp_path / "operator-hmac").read_text())
    kubectl.apply(*sample, tool_config("github", tools_filter(["tool_000", "tool_001"])),
                  {"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPServer", "metadata": {"name": "github"},
                   "spec": {"image": "example.invalid/github-mcp:1", "transport": "streamable-http",
                            "toolConfigRef": {"name": "github"}, "webhookConfigRef": {"name": "toolcatalog"}}})
    config = await rendered(kubectl, "github", lambda rc: bool(rc.get("validating_webhooks"))
                            and rc.get("tools_filter") == ["tool_000", "tool_001"])
    assert config["validating_webhooks"][0]["url"].endswith(f"/toolhive/{namespace}/team-a-gateway")
    await wait_for(lambda: kubectl("get", "deployment", "github", "--ignore-not-found", "-o", "name"),
                   what="the proxy's Deployment")
    config = thvpod.mount_secrets(kubectl, "github", tmp_path / "pod", config)
    (tmp_path / "runconfig.json").write_text(json.dumps(config))

    async with ToolHiveRunner(tmp_path / "runner", upstream.url, runconfig=tmp_path / "runconfig.json") as runner:
        async with agent(runner.url, mode="legacy") as client:
            assert await listed(client) == ["tool_000", "tool_001"]          # the MCPToolConfig's filter
            assert not (await client.call_tool("tool_000", {"value": 1})).is_error
            with pytest.raises(MCPError, match="Request denied by policy"):   # the operator's webhook
                await client.call_tool("tool_001", {"value": 1})
    assert upstream.tool_calls == ["tool_000"]
