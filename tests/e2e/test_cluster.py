"""What only a real control plane can answer: admission (schemas, CEL), defaulting and pruning, RBAC,
GitOps health (kstatus), the garbage collector, and an API server that restarts or
compacts its history under a running operator.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pydantic
import pytest

from tests.support.k8s import CC, CM, TS, condition, connectorconfig, toolserver, wait_until
from toolcatalog.api.models import Status
from toolcatalog_dev.cluster import ApiError
from toolcatalog_dev.mcpserver import McpTestServer, make_tools

pytestmark = [pytest.mark.e2e, pytest.mark.cluster_only("only a real API server enforces or shows this")]

REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "system:serviceaccount:toolcatalog-system:toolcatalog"


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


async def kubectl(api: Any, *args: str, input: str | None = None, check: bool = True) -> Any:
    """kubectl (built with the control plane) as admin, in a thread so the test's loop keeps running."""
    return await asyncio.to_thread(api.control_plane.kubectl, *args, input=input, check=check)


async def kstatus(api: Any, resource: str, name: str) -> tuple[str, str]:
    """(status, message) as kstatus, the health library of Flux and kpt, computes them."""
    obj = await api.get(resource, api.ns, name)
    plane = api.control_plane
    result = await asyncio.to_thread(subprocess.run, [plane.binary("kstatus")], input=json.dumps(obj),
                                     capture_output=True, text=True, timeout=30, check=True)
    _, status, message = result.stdout.strip().split(" ", 2)
    return status, message


# ------------------------------------------------------------------------------ admission


async def test_the_crds_are_established_and_a_server_dry_run_accepts_them(api):
    result = await kubectl(api, "apply", "--dry-run=server", "-f", str(REPO / "crds"))
    assert "toolservers.toolcatalog.dev" in result.stdout and "connectorconfigs.toolcatalog.dev" in result.stdout
    for crd in ("toolservers.toolcatalog.dev", "connectorconfigs.toolcatalog.dev"):
        conditions = json.loads((await kubectl(api, "get", "crd", crd, "-o", "json")).stdout)["status"]["conditions"]
        states = {cond["type"]: cond["status"] for cond in conditions}
        assert states["Established"] == "True" and states["NamesAccepted"] == "True"


@pytest.mark.parametrize(("manifest", "message"), [
    pytest.param(connectorconfig("both", toolServerRef={"name": "a"}, url="http://127.0.0.1:1/mcp"),
                 "exactly one of spec.toolServerRef and spec.url must be set", id="ref-and-url"),
    pytest.param(connectorconfig("neither", owner="alice"),
                 "exactly one of spec.toolServerRef and spec.url must be set", id="neither"),
    pytest.param(toolserver("two-cas", "https://127.0.0.1:1/mcp", tls={"caBundle": {
        "configMapKeyRef": {"name": "ca", "key": "ca.crt"}, "secretKeyRef": {"name": "ca", "key": "ca.crt"}}}),
                 "tls.caBundle needs exactly one of configMapKeyRef and secretKeyRef", id="two-ca-sources"),
    pytest.param(toolserver("ftp", "ftp://127.0.0.1/mcp"), "spec.url in body should match", id="not-http"),
    pytest.param(toolserver("sse2", "http://127.0.0.1:1/mcp", transport="websocket"),
                 'supported values: "streamable-http", "sse"', id="unknown-transport"),
    pytest.param(toolserver("ttl0", "http://127.0.0.1:1/mcp", sync={"ttlSeconds": 0}),
                 "spec.sync.ttlSeconds in body should be greater than or equal to 1", id="ttl-zero"),
])
async def test_admission_rejects_invalid_specs_with_the_schema_messages(api, manifest, message):
    manifest["metadata"]["namespace"] = api.ns
    with pytest.raises(ApiError) as refused:
        await api.create(manifest)
    assert refused.value.status == 422 and message in refused.value.message
    # What a user sees: kubectl apply prints the same message and changes nothing.
    result = await kubectl(api, "apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0 and message in result.stderr
    assert await api.list(TS, api.ns) == [] and await api.list(CC, api.ns) == []


async def test_schema_defaults_are_stored_and_unknown_fields_pruned(api):
    created = await api.create(toolserver("defaults", "http://127.0.0.1:1/mcp", unknownField=True))
    stored = await api.get(TS, api.ns, "defaults")
    assert stored == created
    assert stored["spec"] == {"url": "http://127.0.0.1:1/mcp", "transport": "streamable-http",
                              "sync": {"ttlSeconds": 3600, "timeoutSeconds": 30, "minIntervalSeconds": 10,
                                       "suspend": False},
                              "approval": {"policy": "None"}}
    # Nobody has synced it yet: observedGeneration 0 makes it "in progress" for GitOps health checks.
    assert stored["status"] == {"observedGeneration": 0, "phase": "Pending", "toolCount": 0,
                                "toolsTruncated": False, "consecutiveFailures": 0}


def _maximal(annotation: Any) -> Any:
    """A JSON value for `annotation` with every optional field filled in, recursively."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _maximal(next(arg for arg in get_args(annotation) if arg is not type(None)))
    if origin is Literal:
        return get_args(annotation)[-1]
    if origin is list:
        return [_maximal(get_args(annotation)[0])]
    if origin is dict:
        return {"key": _maximal(get_args(annotation)[1])}
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return {field.alias or name: _maximal(field.annotation) for name, field in annotation.model_fields.items()}
    return {bool: True, int: 7, str: "2026-11-21T12:00:00Z", float: 1.5}.get(annotation, "x")


async def test_nothing_the_operator_can_write_to_status_is_pruned(api):
    """Every field of the status model, filled in at once, survives a real server's pruning."""
    maximal = _maximal(Status)
    maximal["fetchedWith"]["headers"][0]["name"] = "X-Api-Key"     # an HTTP header name, as the CRD requires
    full = Status.model_validate(maximal).dump()
    assert full["lastRefresh"]["error"] and full["server"]["listChanged"] is True   # truly everything
    await api.create(toolserver("full", "http://127.0.0.1:1/mcp"))
    written = await api.patch_status(TS, api.ns, "full", full)
    assert written["status"] == full
    assert (await api.get(TS, api.ns, "full"))["status"] == full


async def test_every_manifest_in_deploy_passes_a_server_dry_run(api):
    result = await kubectl(api, "apply", "--dry-run=server", "-k", str(REPO / "deploy"))
    kinds = {line.split("/")[0] for line in result.stdout.splitlines()}
    assert {"namespace", "serviceaccount", "clusterrole.rbac.authorization.k8s.io",
            "clusterrolebinding.rbac.authorization.k8s.io", "deployment.apps"} <= kinds
    assert result.stderr == ""


# ------------------------------------------------------------------------------ GitOps health


async def test_kstatus_follows_the_sync_the_way_flux_sees_it(api, start_operator, waiter):
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("health", server.url))
        status, message = await kstatus(api, TS, "health")
        assert status == "InProgress" and "latest observed generation is 0" in message   # before any sync

        operator = start_operator()
        await waiter.status(TS, "health", synced, "first sync", operator=operator)
        assert (await kstatus(api, TS, "health"))[0] == "Current"

        operator.stop()
        await api.patch_spec(TS, api.ns, "health", {"toolSelector": {"include": ["tool_000"]}})
        status, message = await kstatus(api, TS, "health")
        assert status == "InProgress" and "generation is 2" in message                    # not observed yet
        operator = start_operator()
        await waiter.status(TS, "health", lambda o: o["status"]["observedGeneration"] == 2 and synced(o),
                            "the spec change synced", operator=operator)
        assert (await kstatus(api, TS, "health"))[0] == "Current"

        # A spec the operator cannot use: no retry will help, so it is Stalled, which kstatus calls Failed.
        await api.create(toolserver("doomed", "http://user:pass@127.0.0.1:1/mcp"))
        obj = await waiter.status(TS, "doomed", lambda o: condition(o, "Stalled").get("status") == "True",
                                  "Stalled", operator=operator)
        assert condition(obj, "Stalled")["reason"] == "InvalidSpec"
        status, message = await kstatus(api, TS, "doomed")
        assert status == "Failed" and "spec.url" in message

        # Fixed: Stalled goes away and it is Current again.
        await api.patch_spec(TS, api.ns, "doomed", {"url": server.url})
        obj = await waiter.status(TS, "doomed", synced, "fixed", operator=operator)
        assert condition(obj, "Stalled") == {}
        assert (await kstatus(api, TS, "doomed"))[0] == "Current"


async def test_generation_moves_with_the_spec_only_and_observed_generation_follows(api, operator, waiter):
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("gen", server.url, sync={"minIntervalSeconds": 0}))
        obj = await waiter.status(TS, "gen", synced, "first sync", operator=operator)
        assert obj["metadata"]["generation"] == obj["status"]["observedGeneration"] == 1
        await api.annotate(TS, api.ns, "gen", {"toolcatalog.dev/refresh": "g1"})
        obj = await waiter.status(TS, "gen", lambda o: (o["status"].get("lastRefresh") or {}).get("token") == "g1",
                                  "refresh answered", operator=operator)
        assert obj["metadata"]["generation"] == 1                   # annotations and status: no new generation
        await api.patch_spec(TS, api.ns, "gen", {"sync": {"ttlSeconds": 600}})
        obj = await waiter.status(TS, "gen", lambda o: o["status"]["observedGeneration"] == 2, "generation 2",
                                  operator=operator)
        assert obj["metadata"]["generation"] == 2 and synced(obj)
        assert condition(obj, "Ready")["observedGeneration"] == condition(obj, "Synced")["observedGeneration"] == 2
        assert condition(obj, "Refreshed")["observedGeneration"] == 1    # it answered generation 1's refresh
        # A status written to the main resource is ignored: only /status writes status.
        await api.patch(TS, api.ns, "gen", {"status": {"phase": "Failed"}})
        assert (await api.get(TS, api.ns, "gen"))["status"]["phase"] == "Ready"


async def test_a_spec_edited_during_a_sync_is_picked_up_by_the_next_one(api, operator, waiter):
    with McpTestServer(tools=make_tools(3), delay=1.5) as server:
        await api.create(toolserver("racy", server.url))
        await server.wait_until_async(lambda s: s.list_calls >= 1 or s.requests >= 2, timeout=20)
        await api.patch_spec(TS, api.ns, "racy", {"toolSelector": {"include": ["tool_001"]}})   # mid-sync
        obj = await waiter.status(TS, "racy", lambda o: o["status"]["observedGeneration"] == 2 and synced(o),
                                  "generation 2 synced", timeout=30, operator=operator)
    assert obj["status"]["toolCount"] == 1
    assert [t["name"] for t in obj["status"]["tools"] if t["selected"]] == ["tool_001"]


# ------------------------------------------------------------------------------ garbage collection


async def test_deleting_a_toolserver_garbage_collects_its_configmap_even_without_the_operator(
        api, operator, waiter):
    with McpTestServer(tools=make_tools(1)) as server:
        for name in ("first", "second"):
            await api.create(toolserver(name, server.url))
            await waiter.status(TS, name, synced, f"{name} synced", operator=operator)
    for name in ("first", "second"):
        cm = await api.get(CM, api.ns, f"toolserver-{name}")
        assert cm["metadata"]["ownerReferences"][0]["uid"] == (await api.get(TS, api.ns, name))["metadata"]["uid"]
        assert not (await api.get(TS, api.ns, name))["metadata"].get("finalizers")

    await api.delete(TS, api.ns, "first")
    assert await api.get(TS, api.ns, "first") is None                  # no finalizer holds it
    await wait_until(lambda: _gone(api, "toolserver-first"), timeout=90, what="the garbage collector")

    operator.stop()                                                     # nothing waits for the operator
    await api.delete(TS, api.ns, "second")
    assert await api.get(TS, api.ns, "second") is None
    await wait_until(lambda: _gone(api, "toolserver-second"), timeout=90, what="the garbage collector")


async def _gone(api: Any, configmap: str) -> bool:
    return await api.get(CM, api.ns, configmap) is None


# ------------------------------------------------------------------------------ RBAC


@pytest.mark.parametrize(("verb", "resource", "allowed"), [
    ("list", "toolservers.toolcatalog.dev", True),
    ("watch", "connectorconfigs.toolcatalog.dev", True),
    ("patch", "toolservers.toolcatalog.dev --subresource=status", True),
    ("patch", "toolservers.toolcatalog.dev", False),            # status only through /status
    ("update", "connectorconfigs.toolcatalog.dev", False),
    ("create", "configmaps", True),
    ("create", "events", True),
    ("watch", "secrets", True),
    ("create", "secrets", False),
    ("patch", "secrets", False),
    ("delete", "secrets", False),
    ("create", "pods", False),
    ("get", "pods", False),
    ("delete", "toolservers.toolcatalog.dev", False),
    ("delete", "connectorconfigs.toolcatalog.dev", False),
    ("create", "toolservers.toolcatalog.dev", False),
    ("delete", "configmaps", False),
    ("create", "deployments.apps", False),
    ("create", "rolebindings.rbac.authorization.k8s.io", False),
])
async def test_the_operator_service_account_may_do_what_it_needs_and_no_more(api, verb, resource, allowed):
    result = await kubectl(api, "auth", "can-i", verb, *resource.split(), "-n", api.ns, f"--as={SERVICE_ACCOUNT}",
                           check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, result.stderr)


# ------------------------------------------------------------------------------ a restless API server


async def test_the_operator_survives_an_api_server_restart(api, operator, waiter):
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("steady", server.url, sync={"minIntervalSeconds": 0}))
        await waiter.status(TS, "steady", synced, "first sync", operator=operator)
        api.control_plane.restart_apiserver(3.0)     # in the main thread: its children die with it
        # A refresh and a new resource, both set before the operator has necessarily reconnected.
        server.tools = make_tools(3)
        await api.annotate(TS, api.ns, "steady", {"toolcatalog.dev/refresh": "after-restart"})
        await api.create(toolserver("newcomer", server.url))
        obj = await waiter.status(TS, "steady", lambda o: (o["status"].get("lastRefresh") or {}).get("token")
                                  == "after-restart", "the refresh answered", timeout=60, operator=operator)
        assert obj["status"]["lastRefresh"]["result"] == "Succeeded" and obj["status"]["toolCount"] == 3
        await waiter.status(TS, "newcomer", synced, "the new resource synced", timeout=60, operator=operator)


async def test_a_watch_resumed_from_a_compacted_revision_recovers(api, operator, waiter):
    """etcd compaction makes a resumed watch fail with 410 Gone: the operator must list afresh."""
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("old", server.url, sync={"minIntervalSeconds": 0}))
        await waiter.status(TS, "old", synced, "first sync", operator=operator)
        for index in range(20):            # history the operator's watches never saw, then gone
            await api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"filler-{index}"}})
        api.control_plane.compact_etcd()
        api.control_plane.restart_apiserver(1.0)
        server.tools = make_tools(3)
        await api.annotate(TS, api.ns, "old", {"toolcatalog.dev/refresh": "after-compaction"})
        await api.create(toolserver("fresh", server.url))
        await waiter.status(TS, "fresh", synced, "a resource created after the compaction", timeout=60,
                            operator=operator)
        obj = await waiter.status(TS, "old", lambda o: (o["status"].get("lastRefresh") or {}).get("token")
                                  == "after-compaction", "the refresh answered", timeout=60, operator=operator)
    assert obj["status"]["toolCount"] == 3
    assert "Restarting the watch-stream" in operator.log()       # kopf's answer to 410 Gone: it happened
