"""`kubectl get` prints each kind's printer columns (the server-side Table a CRD's additionalPrinterColumns
define), the same on the emulator (what `make sandbox` runs) and on the real control plane: the real
kubectl, a synced ToolServer, ConnectorConfig and ToolAllowlist, and the `toolcatalog` category."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import CC, TAL, TS, condition, connectorconfig, toolallowlist, toolserver
from toolcatalog_dev.mcpserver import McpTestServer, make_tools
from toolcatalog_dev.transcripts import kubectl_dir

pytestmark = pytest.mark.e2e

AGE = re.compile(r"^\d+[smhdy](\d+[smhd])?$")   # what kubectl shows for a date column


@pytest.fixture
def kubectl(kubeconfig: Path) -> Any:
    """The kubectl `make controlplane` builds, as the test's user (admin on a real server)."""
    built = kubectl_dir()
    if built is None:
        pytest.fail("kubectl is not built: run `make controlplane`", pytrace=False)

    async def run(*args: str) -> list[list[str]]:
        """kubectl's output as rows of cells, cut where the columns of the table's header start."""
        result = await asyncio.to_thread(subprocess.run, [str(built / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
                                         capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return cells(result.stdout)
    return run


def cells(output: str) -> list[list[str]]:
    """Each table's header and rows as cells: a header's words one or no space apart are one column
    name ("LAST SYNC"); an empty cell is ""."""
    rows: list[list[str]] = []
    starts: list[int] = []
    for line in output.splitlines():
        if not line.strip():
            starts = []                   # tables of several kinds are a blank line apart
            continue
        if not starts:
            starts = [match.start() for match in re.finditer(r"\S+(?: \S+)*", line)]
        rows.append([line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)])
    return rows


def ages_aside(row: list[str], header: list[str], *dates: str) -> list[str]:
    """The row with its date cells checked to read as ages and left out."""
    for name in dates:
        assert AGE.match(row[header.index(name)]), (name, row)
    return [cell for cell, name in zip(row, header, strict=True) if name not in dates]


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


async def test_kubectl_get_prints_the_printer_columns_of_toolservers_and_connectorconfigs(
        api, operator, waiter, kubectl):
    with McpTestServer(tools=make_tools(3)) as server:
        await api.create(toolserver("github", server.url))
        await api.create(connectorconfig("alice", toolServerRef={"name": "github"}, owner="alice@example.com"))
        waited = await kubectl("wait", "--for=condition=Ready", "toolserver/github", "--timeout=30s")
        assert waited == [["toolserver.toolcatalog.dev/github condition met"]]
        await waiter.status(CC, "alice", synced, "alice synced", operator=operator)

        header, *rows = await kubectl("get", "toolservers")
        assert header == ["NAME", "URL", "TOOLS", "READY", "SYNCED", "LAST SYNC", "AGE"]
        assert [ages_aside(row, header, "LAST SYNC", "AGE") for row in rows] == [
            ["github", server.url, "3", "True", "True"]]

        header, *rows = await kubectl("get", "mcpts", "github", "-o", "wide")
        assert header == ["NAME", "URL", "TOOLS", "READY", "SYNCED", "PHASE", "LAST SYNC", "AGE"]
        assert [ages_aside(row, header, "LAST SYNC", "AGE") for row in rows] == [
            ["github", server.url, "3", "True", "True", "Ready"]]

        header, *rows = await kubectl("get", "mcpcc")
        assert header == ["NAME", "OWNER", "SERVER", "URL", "TOOLS", "READY", "SYNCED", "LAST SYNC", "AGE"]
        assert [ages_aside(row, header, "LAST SYNC", "AGE") for row in rows] == [
            ["alice", "alice@example.com", "github", server.url, "3", "True", "True"]]

        # The README's first command: the category, every namespace, one table per kind.
        listed = await kubectl("get", "toolcatalog", "-A")
        tables = [listed[:2], listed[2:]]
        assert [len(table) for table in tables] == [2, 2], listed
        for header, row in tables:
            assert header[:2] == ["NAMESPACE", "NAME"] and row[0] == api.namespace
        servers = {table[1][1].split("/")[0]: table for table in tables}["toolserver.toolcatalog.dev"]
        assert servers[0] == ["NAMESPACE", "NAME", "URL", "TOOLS", "READY", "SYNCED", "LAST SYNC", "AGE"]
        assert ages_aside(servers[1], servers[0], "LAST SYNC", "AGE") == [
            api.namespace, "toolserver.toolcatalog.dev/github", server.url, "3", "True", "True"]


async def test_a_column_with_no_value_shows_none(api, kubectl):
    await api.create(toolserver("idle", "http://127.0.0.1:9/mcp"))      # no operator: no status yet
    header, *rows = await kubectl("get", "toolservers")
    assert [ages_aside(row, header, "AGE") for row in rows] == [
        ["idle", "http://127.0.0.1:9/mcp", "0", "", "", ""]]      # toolCount defaults to 0


async def test_kubectl_get_watch_prints_each_change_in_the_same_columns(api, kubeconfig):
    built = kubectl_dir()
    if built is None:
        pytest.fail("kubectl is not built: run `make controlplane`", pytrace=False)
    await api.create(toolserver("watched", "http://127.0.0.1:9/mcp"))
    process = await asyncio.create_subprocess_exec(str(built / "kubectl"), f"--kubeconfig={kubeconfig}", "get",
                                                   "toolservers", "--watch", stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT)
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            lines = [await process.stdout.readline(), await process.stdout.readline()]      # the header, a row
            await api.patch(TS, api.ns, "watched", {"status": {"toolCount": 7}}, subresource="status")
            lines.append(await process.stdout.readline())                                   # the change
    finally:
        process.kill()
        await process.wait()
    header, *rows = cells(b"".join(lines).decode())
    assert header == ["NAME", "URL", "TOOLS", "READY", "SYNCED", "LAST SYNC", "AGE"]
    assert [ages_aside(row, header, "AGE") for row in rows] == [["watched", "http://127.0.0.1:9/mcp", tools, "", "", ""]
                                                               for tools in ("0", "7")]


async def test_kubectl_get_mcpal_reads_well(api, operator, waiter, kubectl):
    with McpTestServer(tools=make_tools(3)) as server, McpTestServer(tools=make_tools(1, prefix="fs")) as fs:
        await api.create(toolserver("github", server.url))
        await api.create(toolserver("filesystem", fs.url))
        await api.create(toolallowlist("gateway", [{"toolServerRef": {"name": "github"}, "as": "gh"},
                                                   {"toolServerRef": {"name": "filesystem"}, "as": "fs"}],
                                       [{"configMap": {"name": "allowed"}}, {"toolhiveWebhook": {}}]))
        await waiter.status(TAL, "gateway", lambda o: o["status"].get("toolCount") == 4, "published",
                            operator=operator)
    header, *rows = await kubectl("get", "mcpal")
    assert header == ["NAME", "SOURCES", "TOOLS", "READY", "AGE"]
    assert [ages_aside(row, header, "AGE") for row in rows] == [["gateway", "gh,fs", "4", "False"]]  # no webhook
    header, *rows = await kubectl("get", "toolallowlists", "-o", "wide")
    assert header == ["NAME", "SOURCES", "TOOLS", "READY", "REASON", "TARGETS", "AGE"]
    assert [ages_aside(row, header, "AGE") for row in rows] == [
        ["gateway", "gh,fs", "4", "False", "TargetUnavailable", "configMap,toolhiveWebhook"]]
    listed = await kubectl("get", "toolcatalog", "-o", "name")
    assert sorted(" ".join(line) for line in listed) == ["toolallowlist.toolcatalog.dev/gateway",
                                                  "toolserver.toolcatalog.dev/filesystem",
                                                  "toolserver.toolcatalog.dev/github"]
