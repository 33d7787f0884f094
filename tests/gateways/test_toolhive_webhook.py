"""The operator's ToolHive validating webhook (HTTPS, HMAC), called by ToolHive's real proxy runner for an
agent's MCP requests: a tools/call of a tool not allowed right now is denied, without any proxy restart.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.gateways.conftest import agent, listed
from toolcatalog.gateways.toolhive_webhook import sign
from toolcatalog.handlers.toolhive_webhook import ToolHiveWebhookServer, path_for
from toolcatalog_dev.gateways import ToolHiveRunner, webhook_file
from toolcatalog_dev.mcpserver import McpTestServer, make_self_signed_cert
from toolcatalog_dev.wait import wait_for

pytestmark = pytest.mark.timeout(120)
HASH = "sha256:" + "1" * 64


class Allowlists:
    """The engine's answer, as the webhook asks it: (namespace, allowlist, server) -> allowed tools."""

    def __init__(self) -> None:
        self.allowed: dict[tuple[str, str, str], dict[str, str]] = {}
        self.asked: list[tuple[str, str, str]] = []

    def __call__(self, namespace: str, allowlist: str, server: str) -> dict[str, str] | None:
        self.asked.append((namespace, allowlist, server))
        return self.allowed.get((namespace, allowlist, server))


@pytest.fixture
def allowlists() -> Allowlists:
    return Allowlists()


@pytest.fixture
def hmac_secret(tmp_path: Path) -> Path:
    path = tmp_path / "hmac"
    path.write_bytes(b"a-shared-secret-of-the-operator-and-toolhive")
    return path


@pytest.fixture
async def webhook(allowlists: Allowlists, cert_dir: Path, hmac_secret: Path) -> AsyncIterator[ToolHiveWebhookServer]:
    server = ToolHiveWebhookServer(allowlists, cert_dir=cert_dir, address="127.0.0.1", port=0,
                                   hmac_secret_file=hmac_secret, reload_interval=0.1)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def proxy(tmp_path: Path, upstream: McpTestServer, webhook: ToolHiveWebhookServer, cert_dir: Path,
          secret: Path | None, *, name: str = "github", allowlist: str = "team-a/gateway") -> ToolHiveRunner:
    """ToolHive's proxy runner in front of `upstream`, its validating webhook pointed at the operator."""
    namespace, list_name = allowlist.split("/")
    hooks = webhook_file(tmp_path / "webhooks.json", name="toolcatalog",
                         url=f"https://127.0.0.1:{webhook.port}{path_for(namespace, list_name)}",
                         ca_bundle=cert_dir / "tls.crt", hmac_secret=secret)
    return ToolHiveRunner(tmp_path / "runner", upstream.url, name=name, webhooks=hooks)


async def call(url: str, tool: str) -> str:
    """One agent session calling one tool: "called", "error", or the refusal."""
    async with agent(url, mode="legacy") as client:
        try:
            result = await client.call_tool(tool, {"value": 3})
        except MCPError as error:
            return f"refused: {error}"
    return "error" if result.is_error else "called"


async def test_a_tool_not_allowed_right_now_is_denied_and_an_approval_lets_it_through(
        tmp_path: Path, upstream: McpTestServer, webhook: ToolHiveWebhookServer, allowlists: Allowlists,
        cert_dir: Path, hmac_secret: Path) -> None:
    allowlists.allowed[("team-a", "gateway", "github")] = {"tool_000": HASH, "tool_001": HASH}
    async with proxy(tmp_path, upstream, webhook, cert_dir, hmac_secret) as runner:
        async with agent(runner.url, mode="legacy") as client:
            assert await listed(client) == ["tool_000", "tool_001", "tool_002"]   # a webhook does not trim lists
            assert not (await client.call_tool("tool_001", {"value": 1})).is_error
            with pytest.raises(MCPError, match="Request denied by policy"):
                await client.call_tool("tool_002", {"value": 1})
            assert not (await client.call_tool("tool_000", {"value": 1})).is_error   # the session goes on
        assert upstream.tool_calls == ["tool_001", "tool_000"]

        # tool_001 drifts (the engine withdraws it), tool_002 is approved: no proxy restart needed.
        allowlists.allowed[("team-a", "gateway", "github")] = {"tool_000": HASH, "tool_002": HASH}
        assert await call(runner.url, "tool_001") == "refused: Request denied by policy"
        assert await call(runner.url, "tool_002") == "called"
    assert upstream.tool_calls == ["tool_001", "tool_000", "tool_002"]
    assert ("team-a", "gateway", "github") in allowlists.asked


async def test_an_unknown_server_or_allowlist_denies_tool_calls_only(
        tmp_path: Path, upstream: McpTestServer, webhook: ToolHiveWebhookServer, allowlists: Allowlists,
        cert_dir: Path, hmac_secret: Path) -> None:
    allowlists.allowed[("team-a", "gateway", "github")] = {"tool_000": HASH}
    async with proxy(tmp_path, upstream, webhook, cert_dir, hmac_secret, name="gitlab") as runner:
        async with agent(runner.url, mode="legacy") as client:
            assert await listed(client) == ["tool_000", "tool_001", "tool_002"]
        assert await call(runner.url, "tool_000") == "refused: Request denied by policy"
    assert upstream.tool_calls == []


async def test_a_proxy_with_the_wrong_hmac_secret_gets_nothing_through(
        tmp_path: Path, upstream: McpTestServer, webhook: ToolHiveWebhookServer, allowlists: Allowlists,
        cert_dir: Path) -> None:
    allowlists.allowed[("team-a", "gateway", "github")] = {"tool_000": HASH}
    wrong = tmp_path / "wrong-hmac"
    wrong.write_bytes(b"not-the-operator-s-secret")
    async with proxy(tmp_path, upstream, webhook, cert_dir, wrong) as runner:
        with pytest.raises(Exception) as refused:      # initialize itself is denied: no session at all
            async with agent(runner.url, mode="legacy") as client:
                await client.list_tools()
        assert "403" in repr(refused.value) or "denied" in repr(refused.value)
    assert upstream.tool_calls == [] and upstream.methods == []


async def test_unsigned_and_replayed_calls_are_refused_with_422(
        webhook: ToolHiveWebhookServer, allowlists: Allowlists, cert_dir: Path, hmac_secret: Path) -> None:
    allowlists.allowed[("team-a", "gateway", "github")] = {"tool_000": HASH}
    body = json.dumps({"version": "v0.1.0", "uid": "u-1", "timestamp": "2026-12-06T10:00:00Z",
                       "mcp_request": {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                       "params": {"name": "tool_000", "arguments": {}}},
                       "context": {"server_name": "github", "source_ip": "127.0.0.1", "transport": "streamable-http"}
                       }).encode()
    url = f"https://127.0.0.1:{webhook.port}{path_for('team-a', 'gateway')}"
    secret = hmac_secret.read_bytes()
    now = int(time.time())
    async with httpx2.AsyncClient(verify=ssl.create_default_context(cafile=str(cert_dir / "tls.crt"))) as http:
        signed = await http.post(url, content=body, headers={"X-ToolHive-Timestamp": str(now),
                                                             "X-ToolHive-Signature": sign(secret, now, body)})
        unsigned = await http.post(url, content=body)
        replayed = await http.post(url, content=body, headers={"X-ToolHive-Timestamp": str(now - 3600),
                                                               "X-ToolHive-Signature": sign(secret, now - 3600, body)})
    assert signed.status_code == 200 and signed.json() == {"version": "v0.1.0", "uid": "u-1", "allowed": True,
                                                           "reason": "Allowed"}
    assert unsigned.status_code == 422 and unsigned.json()["reason"] == "InvalidSignature"
    assert replayed.status_code == 422 and "replay" in replayed.json()["message"]


async def test_a_renewed_certificate_is_served_without_a_restart(
        webhook: ToolHiveWebhookServer, cert_dir: Path, tmp_path: Path) -> None:
    async def served_certificate() -> bytes:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", webhook.port, ssl=context)
        certificate = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
        assert certificate is not None
        return bytes(certificate)

    before = await served_certificate()
    renewed = make_self_signed_cert(str(tmp_path))          # what cert-manager does to the mounted Secret
    Path(renewed.keyfile).replace(cert_dir / "tls.key")
    Path(renewed.certfile).replace(cert_dir / "tls.crt")
    async def renewed_one() -> bytes | None:
        cert = await served_certificate()
        return cert if cert != before else None

    after = await wait_for(renewed_one, timeout=10,
                           what="the renewed certificate to be served")
    assert ssl.DER_cert_to_PEM_cert(after).strip() == renewed.pem.strip()
