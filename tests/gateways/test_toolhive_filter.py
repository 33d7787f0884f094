"""ToolHive's tools filter through its real proxy runner, from MCPToolConfig objects as the real API server
holds them: what passes, the fail-open forms, and the fail-closed form the toolhive target writes.

The agent is the mcp SDK client talking only to the proxy; the MCP server behind counts the calls it got.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.gateways.conftest import Kubectl, agent, listed
from toolcatalog.api.toolhive import NO_TOOL_ALLOWED, tools_filter
from toolcatalog_dev.gateways import ToolHiveRunner
from toolcatalog_dev.mcpserver import McpTestServer, make_tools

pytestmark = pytest.mark.timeout(120)


def tool_config(name: str, names: list[str]) -> dict[str, Any]:
    return {"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPToolConfig", "metadata": {"name": name},
            "spec": {"toolsFilter": names}}


async def proxy_view(runner: ToolHiveRunner, upstream: McpTestServer, *calls: str) -> tuple[list[str], dict[str, str]]:
    """What an agent sees through the proxy: the tools listed, and each call's outcome."""
    outcomes: dict[str, str] = {}
    async with agent(runner.url, mode="legacy") as client:
        tools = await listed(client)
        for name in calls:
            try:
                result = await client.call_tool(name, {"value": 7})
                outcomes[name] = "error" if result.is_error else "called"
            except MCPError as error:
                outcomes[name] = f"refused: {error}"
    return tools, outcomes


async def test_the_proxy_serves_what_the_mcptoolconfig_allows(kubectl: Kubectl, upstream: McpTestServer,
                                                              tmp_path: Path) -> None:
    kubectl.apply(tool_config("github", tools_filter(["tool_001"])))
    async with ToolHiveRunner(tmp_path, upstream.url, name="github",
                        tool_config=kubectl.save("mcptoolconfig", "github", tmp_path / "github.yaml")) as runner:
        tools, calls = await proxy_view(runner, upstream, "tool_001", "tool_000")
    assert tools == ["tool_001"]
    assert calls == {"tool_001": "called", "tool_000": "refused: tool not found"}
    assert upstream.tool_calls == ["tool_001"]


async def test_nothing_allowed_is_a_filter_that_matches_no_tool(kubectl: Kubectl, upstream: McpTestServer,
                                                               tmp_path: Path) -> None:
    """The fail-closed form: the API server accepts it, the proxy lists nothing and refuses every call."""
    assert tools_filter([]) == [NO_TOOL_ALLOWED]
    kubectl.apply(tool_config("github", tools_filter([])))
    saved = kubectl.save("mcptoolconfig", "github", tmp_path / "github.yaml")
    assert kubectl.get("mcptoolconfig", "github")["spec"]["toolsFilter"] == [NO_TOOL_ALLOWED]
    async with ToolHiveRunner(tmp_path, upstream.url, name="github", tool_config=saved) as runner:
        tools, calls = await proxy_view(runner, upstream, "tool_000", "tool_002")
    assert tools == []
    assert calls == {"tool_000": "refused: tool not found", "tool_002": "refused: tool not found"}
    assert upstream.tool_calls == []


async def test_an_empty_filter_fails_open(kubectl: Kubectl, upstream: McpTestServer, tmp_path: Path) -> None:
    """The trap the sentinel avoids: ToolHive reads an empty filter as no filter at all."""
    kubectl.apply(tool_config("github", []))
    async with ToolHiveRunner(tmp_path, upstream.url, name="github",
                        tool_config=kubectl.save("mcptoolconfig", "github", tmp_path / "github.yaml")) as runner:
        tools, calls = await proxy_view(runner, upstream, "tool_002")
    assert tools == ["tool_000", "tool_001", "tool_002"]
    assert calls == {"tool_002": "called"}


async def test_an_empty_name_is_accepted_by_the_api_server_but_never_reaches_a_proxy(
        kubectl: Kubectl, upstream: McpTestServer, tmp_path: Path) -> None:
    kubectl.apply(tool_config("github", [""]))
    runner = ToolHiveRunner(tmp_path, upstream.url, name="github",
                            tool_config=kubectl.save("mcptoolconfig", "github", tmp_path / "github.yaml"))
    with pytest.raises(RuntimeError, match="tool name cannot be empty"):
        runner.start()


async def test_a_server_offering_a_tool_named_like_the_sentinel_does_not_get_it_through(
        kubectl: Kubectl, tmp_path: Path) -> None:
    hostile = [*make_tools(1), {**make_tools(1)[0], "name": NO_TOOL_ALLOWED}]
    with McpTestServer(tools=hostile) as upstream:
        kubectl.apply(tool_config("github", tools_filter([], known=[t["name"] for t in hostile])))
        async with ToolHiveRunner(tmp_path, upstream.url, name="github",
                            tool_config=kubectl.save("mcptoolconfig", "github", tmp_path / "g.yaml")) as runner:
            tools, calls = await proxy_view(runner, upstream, NO_TOOL_ALLOWED)
        assert tools == [] and calls == {NO_TOOL_ALLOWED: "refused: tool not found"}
        assert upstream.tool_calls == []


async def test_the_filter_drops_a_paginated_servers_later_pages(kubectl: Kubectl, tmp_path: Path) -> None:
    """ToolHive rewrites a filtered tools/list answer to its `tools` alone: nextCursor goes too, so an agent
    never sees the allowed tools of a server's later pages (it fails closed, but it fails)."""
    with McpTestServer(tools=make_tools(4), page_size=2) as upstream:
        kubectl.apply(tool_config("github", tools_filter(["tool_000", "tool_003"])))
        async with ToolHiveRunner(tmp_path, upstream.url, name="github",
                            tool_config=kubectl.save("mcptoolconfig", "github", tmp_path / "g.yaml")) as runner:
            tools, calls = await proxy_view(runner, upstream, "tool_003")
    assert tools == ["tool_000"]
    assert calls == {"tool_003": "called"}
