"""`toolcatalog demo` (what `make demo` runs) and its MCP server, as a user meets them.

The demo runs as a subprocess, exactly as `make demo` starts it: emulator, demo MCP server
and operator all on loopback. The demo server is also checked on its own over real MCP.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from toolcatalog.api.endpoint import Endpoint, FetchedCatalog
from toolcatalog.mcp.fetch import fetch_catalog
from toolcatalog.mcp.pool import HttpPool
from toolcatalog_dev.demo import format_events
from toolcatalog_dev.demoserver import ADDED_TOOL, CHANGED_TOOL, DemoServer

pytestmark = pytest.mark.emulator_only("the demo runs on its embedded emulator by design")
REPO = Path(__file__).resolve().parents[2]
TOOLCATALOG = Path(sys.executable).parent / "toolcatalog"
DEMO_TIMEOUT = 150.0
FIRST_RELEASE = ["add_attachment", "add_comment", "create_task", "delete_task", "list_tasks",
                 "update_task_status", "workspace_admin_purge"]


@pytest.fixture(scope="module")
def demo_run() -> subprocess.CompletedProcess[str]:
    """One `toolcatalog demo` run, shared by the tests that read its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCATALOG_") and k != "KUBECONFIG"}
    return subprocess.run([str(TOOLCATALOG), "demo"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)


def _row(output: str, name: str) -> list[str]:
    """The cells of the first tools-table row for `name` (before the description)."""
    cells = r"\s+(true|false)\s+(true|false)\s+(true|false)\s+(?:Approved|Pending|-)\s+\S+Z\s"
    match = re.search(rf"^\s+{name}{cells}", output, re.MULTILINE)
    assert match, f"no table row for {name} in:\n{output}"
    return list(match.groups())


@pytest.mark.e2e
@pytest.mark.timeout(DEMO_TIMEOUT + 30)
def test_demo_syncs_the_sample_and_prints_catalog_status_and_events(demo_run):
    out = demo_run.stdout
    assert demo_run.returncode == 0, f"exit {demo_run.returncode}\n{out}\n{demo_run.stderr}"
    assert "Synced=True (SyncSucceeded)" in out
    header = r"^\s+NAME\s+AVAILABLE\s+ENABLED\s+SELECTED\s+APPROVAL\s+FIRST SEEN\s+DESCRIPTION$"
    assert re.search(header, out, re.MULTILINE)
    for name in FIRST_RELEASE:
        assert _row(out, name)[0] == "true"  # available
    # The sample's own settings show: delete_task disabled, *_admin* left out by the selector.
    assert _row(out, "delete_task") == ["true", "false", "true"]
    assert _row(out, "workspace_admin_purge") == ["true", "true", "false"]
    assert "toolCount: 5 (available, enabled and selected)" in out
    status = out[out.index("      status:"):]
    for line in ("phase: Ready", "toolCount: 5", "configMap: toolserver-demo", "type: Synced",
                 "reason: SyncSucceeded", "trigger: create"):
        assert line in status
    assert re.search(r"^\s+Normal\s+Synced\s+toolserver/demo\s+first sync", out, re.MULTILINE)
    assert re.search(r"==> demo finished in [\d.]+ s$", out, re.MULTILINE)


@pytest.mark.e2e
@pytest.mark.timeout(DEMO_TIMEOUT + 30)
def test_demo_answers_a_forced_refresh_after_the_server_changes(demo_run):
    out = demo_run.stdout
    assert demo_run.returncode == 0
    assert "Refreshed=True (RefreshSucceeded): 8 tools: 1 new (assign_task), 0 removed, 1 changed (list_tasks)" in out
    after = out[out.index("==> tools after the refresh"):]
    assert _row(after, ADDED_TOOL)[0] == "true"


async def _fetch(url: str) -> FetchedCatalog:
    pool = HttpPool()
    try:
        return await fetch_catalog(Endpoint(url=url), pool=pool, timeout=10)
    finally:
        await pool.aclose()


@pytest.mark.e2e
async def test_demo_server_lists_typed_tools_over_mcp_and_publishes_an_update():
    with DemoServer(port=0) as server:
        catalog = await _fetch(server.url)
        tools = {tool["name"]: tool for tool in catalog.tools}
        assert catalog.server.name == "tasks-demo"
        assert sorted(tools) == FIRST_RELEASE
        create = tools["create_task"]
        assert create["inputSchema"]["required"] == ["title"]
        assert create["inputSchema"]["properties"]["priority"]["enum"] == ["low", "normal", "high", "urgent"]
        assert "id" in create["outputSchema"]["properties"]
        assert tools["list_tasks"]["annotations"]["readOnlyHint"] is True
        assert tools["delete_task"]["annotations"]["destructiveHint"] is True
        assert all(tool["description"] for tool in catalog.tools)

        server.publish_update()
        updated = {tool["name"]: tool for tool in (await _fetch(server.url)).tools}
        assert sorted(updated) == sorted([*FIRST_RELEASE, ADDED_TOOL])
        assert updated[CHANGED_TOOL]["description"] != tools[CHANGED_TOOL]["description"]
        assert updated[CHANGED_TOOL]["inputSchema"] == tools[CHANGED_TOOL]["inputSchema"]


@pytest.mark.e2e
async def test_demo_server_moves_to_a_free_port_when_its_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy_port = taken.getsockname()[1]
        with pytest.raises(OSError):
            DemoServer(port=busy_port).start()
        with DemoServer(port=busy_port, fallback_to_free_port=True) as server:
            assert server.port_was_busy and server.port != busy_port
            assert len((await _fetch(server.url)).tools) == len(FIRST_RELEASE)


def test_events_print_as_a_kubectl_like_table():
    events = [{"type": "Normal", "reason": "Synced", "message": "first sync:\n5 tools",
               "involvedObject": {"kind": "ToolServer", "name": "demo"}}]
    assert format_events(events).splitlines() == [
        "TYPE     REASON   OBJECT            MESSAGE",
        "Normal   Synced   toolserver/demo   first sync:...",
    ]
    assert format_events([]) == "(no Events yet)"
