"""kubectl-toolcatalog against the Kubernetes API emulator, with the test playing the operator.

The plugin is blocking (the `kubernetes` client), so it runs in a worker thread while the
emulator serves it from the test's event loop; the test answers the refresh by writing
status.lastRefresh through /status, as the operator does.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from toolcatalog.api import constants as c
from toolcatalog.api.models import CacheDocument, CachedTool, CacheSource, ErrorInfo, ServerInfo, Status
from toolcatalog.kubectl.plugin import connect, main, run_refresh
from toolcatalog.reconcile.cachedoc import build_configmap, configmap_name, render_cache
from toolcatalog.reconcile.catalog import CatalogDiff
from toolcatalog.reconcile.refresh import RefreshRequest
from toolcatalog.reconcile.status import with_refresh
from toolcatalog_dev.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TOOLSERVERS = f"{c.API_VERSION}/toolservers"
CONNECTORCONFIGS = f"{c.API_VERSION}/connectorconfigs"
URL = "http://127.0.0.1:9/mcp"  # never contacted: no operator runs here
WAIT = 20.0  # the plugin's --timeout when the test answers; far above what an answer takes


async def create_toolserver(api: Any, name: str = "clickup", namespace: str | None = None,
                            **spec: Any) -> dict[str, Any]:
    return await api.create({"apiVersion": c.API_VERSION, "kind": c.KIND_TOOLSERVER,
                             "metadata": {"name": name, "namespace": namespace or api.ns},
                             "spec": {"url": URL, **spec}})


async def plugin(*argv: str) -> tuple[int, str, str]:
    """Run `kubectl toolcatalog ARGV` in a thread; exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(main, [str(arg) for arg in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def annotations(api: Any, name: str = "clickup", namespace: str | None = None,
                      resource: str = TOOLSERVERS) -> dict[str, str]:
    obj = await api.get(resource, namespace or api.ns, name)
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


async def answer(api: Any, result: str, *, name: str = "clickup",
                 previous_token: str | None = None, **details: Any) -> str:
    """Play the operator: wait for a new refresh token, then answer it in status; return it."""
    async def new_token() -> str | None:
        token = (await annotations(api, name)).get(c.ANN_REFRESH)
        return token if token != previous_token else None

    token = await wait_for(new_token, timeout=10, what="a new refresh annotation")
    current = await annotations(api, name)
    now = datetime.now(UTC)
    status = with_refresh(
        Status(), RefreshRequest(token=token, reason=current.get(c.ANN_REFRESH_REASON),
                                 force=current.get(c.ANN_REFRESH_FORCE) == "true",
                                 requested_at=now),
        completed_at=now, result=result, generation=1,
        rate_limit_message="a sync ran 2s ago, within sync.minIntervalSeconds (10s)", **details)
    await api.patch_status(TOOLSERVERS, api.ns, name, status.dump())
    return token


# ---------------------------------------------------------------------------- refresh


async def test_refresh_sets_token_reason_and_force_in_one_merge_patch(api, kubeconfig):
    await create_toolserver(api)
    code, out, err = await plugin("refresh", "toolserver/clickup", "--reason", "deployed v2",
                                  "--force", "-n", api.ns, "--kubeconfig", kubeconfig)
    assert (code, err) == (0, "")
    first = await annotations(api)
    assert out == f"toolserver/clickup refresh requested (token {first[c.ANN_REFRESH]})\n"
    assert first[c.ANN_REFRESH_REASON] == "deployed v2"
    assert first[c.ANN_REFRESH_FORCE] == "true"
    if api.emulator is not None:    # only the emulator keeps a log of the requests it served
        patches = [r for r in api.emulator.emulator if r.method == "PATCH" and r.name == "clickup"]
        assert len(patches) == 1
        assert patches[0].headers["Content-Type"].startswith("application/merge-patch+json")
        assert patches[0].subresource is None

    code, out, _ = await plugin("refresh", "mcpts/clickup", "--kubeconfig", kubeconfig)
    second = await annotations(api)
    assert code == 0
    assert second[c.ANN_REFRESH] != first[c.ANN_REFRESH]
    assert c.ANN_REFRESH_REASON not in second and c.ANN_REFRESH_FORCE not in second
    assert (await api.get(TOOLSERVERS, api.ns, "clickup"))["metadata"]["generation"] == 1


async def test_refresh_of_a_connectorconfig(api, kubeconfig):
    await api.create({"apiVersion": c.API_VERSION, "kind": c.KIND_CONNECTORCONFIG,
                      "metadata": {"name": "alice", "namespace": api.ns},
                      "spec": {"toolServerRef": {"name": "clickup"}}})
    code, out, _ = await plugin("refresh", "ConnectorConfig", "alice", "--kubeconfig", kubeconfig)
    assert code == 0 and out.startswith("connectorconfig/alice refresh requested")
    assert (await annotations(api, "alice", resource=CONNECTORCONFIGS))[c.ANN_REFRESH] in out


async def test_refresh_of_a_missing_resource_exits_4(api, kubeconfig):
    code, out, err = await plugin("refresh", "toolserver/nope", "--kubeconfig", kubeconfig)
    assert code == 4 and out == ""
    assert err == f"error: toolserver/nope not found in namespace '{api.ns}'\n"


async def test_wait_prints_the_diff_of_a_succeeded_refresh(api, kubeconfig):
    await create_toolserver(api)
    names = [f"tool_{i:03d}" for i in range(120)]
    run = asyncio.create_task(plugin("refresh", "toolserver/clickup", "--wait", "--reason", "v2",
                                     "--timeout", str(WAIT), "--kubeconfig", kubeconfig))
    token = await answer(api, "Succeeded", diff=CatalogDiff(names, ["old_tool"], ["edited"]),
                         previous_tool_count=2, tools_discovered=121)
    code, out, err = await run
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"toolserver/clickup refresh requested (token {token})"
    assert "Result:           Succeeded" in lines
    assert "Reason:           v2" in lines
    assert "Tools discovered: 121 (previously 2)" in lines
    assert "New (120, first 100 shown):" in lines
    listed = " ".join(lines[lines.index("New (120, first 100 shown):") + 1:]).split()
    assert "tool_099" in " ".join(listed) and "tool_100" not in " ".join(listed)
    assert "Removed (1):      old_tool" in lines
    assert "Changed (1):      edited" in lines
    assert lines[-1].startswith("Message:          RefreshSucceeded: 121 tools: 120 new (tool_000")


async def test_wait_exits_1_and_prints_the_error_of_a_failed_refresh(api, kubeconfig):
    await create_toolserver(api)
    run = asyncio.create_task(plugin("refresh", "toolserver/clickup", "--wait", "--timeout",
                                     str(WAIT), "--kubeconfig", kubeconfig))
    await answer(api, "Failed", previous_tool_count=6,
                 error=ErrorInfo(reason="ServerUnavailable", message="connection refused"))
    code, out, _ = await run
    assert code == 1
    assert "Result:           Failed" in out
    assert "Error:            ServerUnavailable: connection refused" in out
    assert "Message:          RefreshFailed: ServerUnavailable: connection refused" in out


async def test_wait_exits_2_on_a_rate_limited_refresh(api, kubeconfig):
    await create_toolserver(api)
    run = asyncio.create_task(plugin("refresh", "toolserver/clickup", "--wait", "--timeout",
                                     str(WAIT), "--kubeconfig", kubeconfig))
    await answer(api, "RateLimited")
    code, out, _ = await run
    assert code == 2
    assert "Result:           RateLimited" in out
    assert "within sync.minIntervalSeconds (10s)" in out and "--force" in out


async def test_wait_ignores_the_answer_to_an_earlier_token(api, kubeconfig):
    await create_toolserver(api)
    await plugin("refresh", "toolserver/clickup", "--kubeconfig", kubeconfig)
    earlier = await answer(api, "Failed", error=ErrorInfo(reason="Timeout", message="slow"))
    run = asyncio.create_task(plugin("refresh", "toolserver/clickup", "--wait", "--timeout",
                                     str(WAIT), "--kubeconfig", kubeconfig))
    await answer(api, "Succeeded", previous_token=earlier, diff=CatalogDiff([], [], []),
                 previous_tool_count=3, tools_discovered=3)
    code, out, _ = await run
    assert code == 0 and "Result:           Succeeded" in out


async def test_wait_times_out_with_exit_3_and_says_where_to_look(api, kubeconfig):
    team_a = await api.make_namespace("team-a")
    await create_toolserver(api, namespace=team_a)
    code, out, err = await plugin("refresh", "toolserver/clickup", "--wait", "--timeout", "0.5",
                                  "-n", team_a, "--kubeconfig", kubeconfig)
    assert code == 3
    assert "refresh requested" in out
    assert "timed out after 0.5s" in err
    assert f"kubectl describe toolserver clickup -n {team_a}" in err


async def test_run_refresh_returns_the_outcome_for_callers(api, kubeconfig):
    await create_toolserver(api)
    cluster = connect(kubeconfig=str(kubeconfig))
    try:
        run = asyncio.create_task(asyncio.to_thread(
            run_refresh, cluster, "toolserver/clickup", reason="r", timeout=WAIT))
        token = await answer(api, "Succeeded", diff=CatalogDiff(["a"], [], []),
                             previous_tool_count=0, tools_discovered=1)
        outcome = await run
    finally:
        cluster.close()
    assert outcome.token == token and outcome.exit_code == 0
    assert outcome.answer.new_tools == ["a"] and outcome.answer.reason == "r"


# ---------------------------------------------------------------------------- kubeconfig


async def test_namespace_comes_from_the_context_and_flags_work_before_the_subcommand(
        api, kubeconfig, monkeypatch):
    team_a, team_b = await api.make_namespace("team-a"), await api.make_namespace("team-b")
    await create_toolserver(api, namespace=team_a)
    await create_toolserver(api, namespace=team_b)
    config = yaml.safe_load(kubeconfig.read_text())
    context = config["contexts"][0]["context"]
    context["namespace"] = team_a
    config["contexts"].append({"name": "other", "context": {**context, "namespace": team_b}})
    kubeconfig.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    assert (await plugin("refresh", "toolserver/clickup"))[0] == 0
    assert c.ANN_REFRESH in await annotations(api, namespace=team_a)
    assert (await plugin("--context", "other", "refresh", "toolserver/clickup"))[0] == 0
    assert c.ANN_REFRESH in await annotations(api, namespace=team_b)
    code, _, err = await plugin("-n", api.ns, "refresh", "toolserver/clickup")
    assert code == 4 and f"not found in namespace '{api.ns}'" in err


# ---------------------------------------------------------------------------- tools


def cached_tools(count: int, description_size: int = 40) -> list[CachedTool]:
    return [CachedTool(name=f"tool_{i:03d}", description=(f"Tool {i} does things. " * 200)
                       [:description_size], schema_hash=f"sha256:{i:064x}",
                       first_seen="2026-11-21T12:00:01Z") for i in range(count)]


async def create_cache(api: Any, owner: dict[str, Any], tools: list[CachedTool],
                       name: str | None = None) -> dict[str, Any]:
    meta = owner["metadata"]
    document = CacheDocument(
        source=CacheSource(kind=c.KIND_TOOLSERVER, namespace=meta["namespace"], name=meta["name"],
                           url=URL),
        server=ServerInfo(name="demo", version="1", protocol_version="2025-06-18"),
        cached_at="2026-11-21T12:00:01Z", expires_at="2026-11-21T13:00:01Z", tools=tools)
    rendered = render_cache(document)
    await api.create(build_configmap(
        kind=c.KIND_TOOLSERVER, name=meta["name"], namespace=meta["namespace"],
        owner_uid=meta["uid"], rendered=rendered, cached_at=document.cached_at,
        expires_at=document.expires_at,
        configmap_name=name or configmap_name(c.KIND_TOOLSERVER, meta["name"])))
    return rendered


async def test_tools_prints_the_cached_tools_as_a_table(api, kubeconfig):
    owner = await create_toolserver(api)
    tools = cached_tools(3)
    tools[1] = tools[1].model_copy(update={"available": False, "removed_at": "2026-11-22T00:00:00Z",
                                           "description": "Gone now.\nSecond line."})
    tools[2] = tools[2].model_copy(update={"enabled": False})
    await create_cache(api, owner, tools)
    code, out, err = await plugin("tools", "toolserver/clickup", "--kubeconfig", kubeconfig)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "NAME       AVAILABLE   ENABLED   FIRST SEEN             DESCRIPTION",
        "tool_000   true        true      2026-11-21T12:00:01Z   Tool 0 does things. Tool 0 does things.",
        "tool_001   false       true      2026-11-21T12:00:01Z   Gone now....",
        "tool_002   true        false     2026-11-21T12:00:01Z   Tool 2 does things. Tool 2 does things.",
    ]


async def test_tools_reads_a_gzipped_cache_under_the_name_in_status(api, kubeconfig):
    owner = await create_toolserver(api)
    rendered = await create_cache(api, owner, cached_tools(300, 2000), name="custom-cache")
    assert rendered.compressed
    await api.patch_status(TOOLSERVERS, api.ns, "clickup", {"cache": {"configMap": "custom-cache"}})
    code, out, _ = await plugin("tools", "mcpts/clickup", "--kubeconfig", kubeconfig)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 301
    assert lines[300].startswith("tool_299   true ")
    assert all(len(line) <= 120 for line in lines)

    code, out, _ = await plugin("tools", "mcpts/clickup", "-o", "json", "--kubeconfig", kubeconfig)
    documents = json.loads(out)
    assert code == 0 and len(documents) == 300
    assert documents[0]["name"] == "tool_000" and len(documents[0]["description"]) == 2000


async def test_tools_hides_deselected_tools_unless_all(api, kubeconfig):
    owner = await create_toolserver(api)
    tools = cached_tools(2)
    tools[0] = tools[0].model_copy(update={"selected": False})
    await create_cache(api, owner, tools)
    code, out, err = await plugin("tools", "toolserver/clickup", "--kubeconfig", kubeconfig)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "tool_001"]
    assert "1 tools left out by spec.toolSelector; --all lists them" in err
    code, out, err = await plugin("tools", "toolserver/clickup", "--all", "--kubeconfig", kubeconfig)
    assert [line.split()[:4] for line in out.splitlines()][1:] == [
        ["tool_000", "true", "true", "false"], ["tool_001", "true", "true", "true"]]
    assert err == ""


async def test_tools_without_a_cache_says_so_with_the_synced_condition(api, kubeconfig):
    await create_toolserver(api)
    await api.patch_status(TOOLSERVERS, api.ns, "clickup", {"conditions": [{
        "type": "Synced", "status": "False", "reason": "ServerUnavailable",
        "message": "connection refused", "lastTransitionTime": "2026-11-21T12:00:00Z"}]})
    code, out, err = await plugin("tools", "toolserver/clickup", "--kubeconfig", kubeconfig)
    assert code == 1 and out == ""
    assert err == ("error: toolserver/clickup has no tool cache yet (ConfigMap toolserver-clickup"
                   f" not found in namespace '{api.ns}'); Synced: False ServerUnavailable:"
                   " connection refused\n")
