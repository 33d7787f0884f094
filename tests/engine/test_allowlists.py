"""The ToolAllowlist engine in-process: sources synced by the real reconciler, catalogs narrowed before
writes and committed after, targets written to an in-memory API server and a fake ContextForge."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.engine.allowlist_world import TOOLHIVE, AllowlistWorld
from tests.engine.fakes import NS, tool
from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.toolhive import NO_TOOL_ALLOWED
from toolcatalog.engine import allowlist_metrics
from toolcatalog.kube.errors import ApiError

GATEWAY = {"sources": [{"toolServerRef": {"name": "github"}}],
           "targets": [{"configMap": {"name": "allowed"}}, {"toolhive": {}}, {"toolhiveWebhook": {}}]}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((cond for cond in status.get("conditions", []) if cond["type"] == type_), {})


async def synced_world(tools: list[dict[str, Any]] | None = None, policy: str = "NewAndChanged",
                       allowlist: dict[str, Any] | None = None) -> AllowlistWorld:
    world = AllowlistWorld(tools or [tool("create_issue"), tool("list_issues"), tool("delete_repo")])
    world.allow("gateway", allowlist or GATEWAY)
    world.apply("github", {"url": "http://github-mcp.test/mcp", "approval": {"policy": policy},
                           "tools": [{"name": "delete_repo", "enabled": False}]})
    await world.reconcile("github")
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile_allowlist("gateway")
    world.clock.advance(60)     # past sync.minIntervalSeconds: a refresh is answered with a sync
    return world


async def test_every_target_holds_the_usable_tools_of_the_source() -> None:
    world = await synced_world()
    usable = world.cache_usable("github")
    assert sorted(usable) == ["create_issue", "list_issues"]
    document = world.document("allowed")
    assert document["allowlist"] == {"namespace": NS, "name": "gateway"}
    assert document["servers"] == [{"source": {"kind": "ToolServer", "name": "github"}, "as": "github",
                                    "url": "http://github-mcp.test/mcp",
                                    "tools": [{"name": n, "schemaHash": usable[n]} for n in sorted(usable)]}]
    assert world.toolsfilter("gateway-github") == ["create_issue", "list_issues"]
    assert world.allowlists.allowed(NS, "gateway", "github") == usable
    status = world.allowlist_status("gateway")
    assert status["toolCount"] == 2 and status["observedGeneration"] == 1
    assert condition(status, "Ready")["status"] == "True" and condition(status, "Ready")["reason"] == "Published"
    (source,) = status["sources"]
    assert source["state"] == "Current" and source["allowed"] == 2 and source["approvalPolicy"] == "NewAndChanged"
    assert source["withheld"] == [{"reason": "Disabled", "count": 1, "tools": ["delete_repo"]}]
    assert [(t["type"], t["state"]) for t in status["targets"]] == [
        ("configMap", "Published"), ("toolhive", "Published"), ("toolhiveWebhook", "Published")]
    assert status["targets"][1]["objects"] == ["gateway-github"]
    assert status["targets"][2]["endpoint"] == f"/toolhive/{NS}/gateway"
    owned = world.kube.get(c.TOOLHIVE_TOOLCONFIG_KIND, "gateway-github")
    assert owned is not None and owned["apiVersion"] == TOOLHIVE
    allowlist_uid = world.kube.get(c.KIND_TOOLALLOWLIST, "gateway")["metadata"]["uid"]  # type: ignore[index]
    assert owned["metadata"]["ownerReferences"][0]["uid"] == allowlist_uid
    assert owned["metadata"]["labels"][c.LABEL_MANAGED_BY] == c.MANAGED_BY


def sample(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


async def test_a_drifted_tool_is_withdrawn_before_the_sync_that_found_it_writes_anything() -> None:
    world = await synced_world()
    world.woken.clear()
    windows = sample("toolcatalog_allowlist_exposure_seconds_count")
    per_target = {t: sample("toolcatalog_allowlist_target_exposure_seconds_count", type=t)
                  for t in ("configMap", "toolhive", "toolhiveWebhook")}
    world.fetch.tools[0] = tool("create_issue", "now also deletes repositories")       # a rug pull
    world.apply("github", {**world.kube.get(c.KIND_TOOLSERVER, "github")["spec"]},       # type: ignore[index]
                annotations={c.ANN_REFRESH: "1"})
    world.kube.fail["patch_configmap"] = ApiError(503, "ServiceUnavailable", "HTTP 503")   # its cache write fails
    with pytest.raises(Exception):      # noqa: B017 - the transient failure the work queue retries
        await world.reconcile("github")
    # The sync could not write its cache, but the drifted tool is out of what the webhook answers already,
    # and the allowlist was woken before anything else waiting.
    assert world.allowlists.allowed(NS, "gateway", "github") == {"list_issues": world.cache_usable("github")[
        "list_issues"]}
    assert ((c.KIND_TOOLALLOWLIST, NS, "gateway"), True) in world.woken
    await world.reconcile_allowlist("gateway")
    assert world.toolsfilter("gateway-github") == ["list_issues"]
    assert [t["name"] for t in world.document("allowed")["servers"][0]["tools"]] == ["list_issues"]
    # One exposure window: from the start of that sync to the last target written; one per target type.
    assert sample("toolcatalog_allowlist_exposure_seconds_count") == windows + 1
    for type_, before in per_target.items():
        assert sample("toolcatalog_allowlist_target_exposure_seconds_count", type=type_) == before + 1, type_
    assert sample("toolcatalog_allowlist_allowed_tools", namespace=NS, name="gateway") == 1
    # The retry succeeds: the tool is pending approval, still withdrawn.
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile("github")
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile_allowlist("gateway")
    status = world.allowlist_status("gateway")
    assert status["lastChange"]["withdrawn"] == ["github/create_issue"]
    assert {"reason": "Pending", "count": 1, "tools": ["create_issue"]} in status["sources"][0]["withheld"]
    (withdrawn,) = [e for e in world.kube.events if e["reason"] == c.EVENT_TOOLS_WITHDRAWN]
    assert "github/create_issue (awaits approval)" in withdrawn["message"]


async def test_an_approved_tool_is_allowed_only_once_cache_and_status_hold_it() -> None:
    world = await synced_world()
    world.fetch.tools.append(tool("merge_pr"))
    spec = world.kube.get(c.KIND_TOOLSERVER, "github")["spec"]      # type: ignore[index]
    world.apply("github", spec, annotations={c.ANN_REFRESH: "1"})
    await world.reconcile("github")
    assert "merge_pr" not in (world.allowlists.allowed(NS, "gateway", "github") or {})   # new: pending
    digest = next(t["schemaHash"] for t in world.status("github")["tools"] if t["name"] == "merge_pr")
    world.apply("github", {**spec, "tools": [*spec["tools"], {"name": "merge_pr", "approvedHash": digest}]})
    world.kube.fail["patch_status"] = ApiError(503, "ServiceUnavailable", "HTTP 503")    # status not written
    with pytest.raises(Exception):      # noqa: B017
        await world.reconcile("github")
    assert "merge_pr" not in (world.allowlists.allowed(NS, "gateway", "github") or {})
    await world.reconcile("github")
    assert world.allowlists.allowed(NS, "gateway", "github")["merge_pr"] == digest       # type: ignore[index]
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile_allowlist("gateway")
    assert world.toolsfilter("gateway-github") == ["create_issue", "list_issues", "merge_pr"]
    assert world.allowlist_status("gateway")["lastChange"]["added"] == ["github/merge_pr"]


@pytest.mark.parametrize(("policy", "allowed"), [("Keep", ["create_issue", "list_issues"]), ("Withdraw", [])])
async def test_a_failing_source_keeps_or_withdraws_its_tools(policy: str, allowed: list[str]) -> None:
    world = await synced_world(allowlist={**GATEWAY, "onSourceFailure": policy})
    world.fetch.error = SyncError(c.REASON_SERVER_UNAVAILABLE, "connection refused")
    world.apply("github", world.kube.get(c.KIND_TOOLSERVER, "github")["spec"],    # type: ignore[index]
                annotations={c.ANN_REFRESH: "2"})
    await world.reconcile("github")
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile_allowlist("gateway")
    assert sorted(world.allowlists.allowed(NS, "gateway", "github") or {}) == allowed
    assert world.toolsfilter("gateway-github") == (allowed or [NO_TOOL_ALLOWED])
    assert sorted(world.documented("allowed")["github"]) == allowed
    assert world.allowlist_status("gateway")["sources"][0]["state"] == ("Kept" if policy == "Keep" else "Withdrawn")


async def test_allowing_nothing_never_writes_an_empty_tools_filter() -> None:
    world = await synced_world(tools=[tool("create_issue")], policy="All")
    assert world.cache_usable("github") == {}
    assert world.toolsfilter("gateway-github") == [NO_TOOL_ALLOWED]
    assert world.kube.get(c.TOOLHIVE_TOOLCONFIG_KIND, "gateway-github")["metadata"]["annotations"][  # type: ignore
        c.ANN_ALLOWS] == "none"
    assert world.documented("allowed") == {"github": {}}


async def test_an_object_not_ours_is_never_touched_and_the_other_targets_still_work() -> None:
    world = AllowlistWorld([tool("create_issue")])
    foreign = {"apiVersion": TOOLHIVE, "kind": "MCPToolConfig", "spec": {"toolsFilter": ["anything"]}}
    world.kube.put(c.TOOLHIVE_TOOLCONFIG_KIND, "gateway-github", foreign)
    world.allow("gateway", GATEWAY)
    world.apply("github", {"url": "http://github-mcp.test/mcp"})
    await world.reconcile("github")
    delay = await world.reconcile_allowlist("gateway")
    assert world.toolsfilter("gateway-github") == ["anything"]
    status = world.allowlist_status("gateway")
    assert [(t["type"], t["state"]) for t in status["targets"]] == [
        ("configMap", "Published"), ("toolhive", "Conflict"), ("toolhiveWebhook", "Published")]
    assert condition(status, "Ready")["reason"] == c.REASON_TARGET_CONFLICT
    assert condition(status, "Stalled")["status"] == "True"
    assert world.documented("allowed") == {"github": {"create_issue": world.cache_usable("github")["create_issue"]}}
    assert [e["reason"] for e in world.kube.events if e["type"] == "Warning"] == [c.REASON_TARGET_CONFLICT]
    assert delay is not None and delay <= 1.0
    await world.reconcile_allowlist("gateway")       # the same conflict again: no second Warning
    assert [e["reason"] for e in world.kube.events if e["type"] == "Warning"] == [c.REASON_TARGET_CONFLICT]


async def test_without_toolhive_crds_the_toolhive_target_is_unavailable_and_the_configmap_works() -> None:
    world = AllowlistWorld([tool("create_issue")])
    world.kube.served.clear()
    world.allow("gateway", GATEWAY)
    world.apply("github", {"url": "http://github-mcp.test/mcp"})
    await world.reconcile("github")
    await world.reconcile_allowlist("gateway")
    status = world.allowlist_status("gateway")
    assert [(t["type"], t["state"]) for t in status["targets"]] == [
        ("configMap", "Published"), ("toolhive", "Unavailable"), ("toolhiveWebhook", "Published")]
    assert condition(status, "Ready")["reason"] == c.REASON_TARGET_UNAVAILABLE
    assert "Stalled" not in {cond["type"] for cond in status["conditions"]}
    assert "create_issue" in world.documented("allowed")["github"]


async def test_a_source_removed_from_the_allowlist_gets_a_filter_that_allows_nothing() -> None:
    world = await synced_world()
    world.apply("filesystem", {"url": "http://fs-mcp.test/mcp"})
    await world.reconcile("filesystem")
    world.allow("gateway", {**GATEWAY, "sources": [{"toolServerRef": {"name": "filesystem"}, "as": "fs"}]})
    world.watch(c.KIND_TOOLSERVER, "filesystem")
    await world.reconcile_allowlist("gateway")
    assert world.toolsfilter("gateway-github") == [NO_TOOL_ALLOWED]        # retired, left to the garbage collector
    assert world.toolsfilter("gateway-fs") == sorted(world.cache_usable("filesystem"))
    status = world.allowlist_status("gateway")
    assert status["targets"][1]["objects"] == ["gateway-fs"]
    assert status["lastChange"]["withdrawn"] == ["github/create_issue", "github/list_issues"]
    assert list(world.documented("allowed")) == ["fs"]


async def test_after_a_restart_nothing_is_answered_until_the_caches_are_read() -> None:
    world = await synced_world()
    usable = world.cache_usable("github")
    restarted = AllowlistWorld()
    restarted.kube, restarted.index = world.kube, world.index
    restarted.allowlists.kube = restarted.writer.store = world.kube
    for kind, name in ((c.KIND_TOOLSERVER, "github"), (c.KIND_TOOLALLOWLIST, "gateway")):
        restarted.watch(kind, name)
    assert restarted.allowlists.allowed(NS, "gateway", "github") is None       # fail closed
    reads = world.kube.count("read_configmap")
    await restarted.reconcile_allowlist("gateway")
    assert world.kube.count("read_configmap") == reads + 1
    assert restarted.allowlists.allowed(NS, "gateway", "github") == usable


async def test_a_cache_that_disagrees_with_status_is_read_again_and_allows_nothing_meanwhile() -> None:
    world = await synced_world()
    cache = world.status("github")["cache"]["configMap"]
    world.kube.objects[("ConfigMap", NS, cache)]["metadata"]["annotations"][c.ANN_CONTENT_HASH] = "sha256:other"
    restarted = AllowlistWorld()
    restarted.kube, restarted.index = world.kube, world.index
    restarted.allowlists.kube = restarted.writer.store = world.kube
    for kind, name in ((c.KIND_TOOLSERVER, "github"), (c.KIND_TOOLALLOWLIST, "gateway")):
        restarted.watch(kind, name)
    delay = await restarted.reconcile_allowlist("gateway")
    assert delay == 1.0
    assert restarted.allowlist_status("gateway")["sources"][0]["state"] == "Loading"
    assert restarted.toolsfilter("gateway-github") == [NO_TOOL_ALLOWED]


async def test_contextforge_gets_every_server_with_its_token_and_fails_alone() -> None:
    world = AllowlistWorld([tool("create_issue")])
    world.kube.secret("forge", {"token": "s3cr3t-token"})
    spec = {"sources": [{"toolServerRef": {"name": "github"}}],
            "targets": [{"configMap": {"name": "allowed"}},
                        {"contextforge": {"url": "http://forge.test:4444", "virtualServer": "team-a",
                                          "tokenSecretRef": {"name": "forge", "key": "token"}}}]}
    world.allow("gateway", spec)
    world.apply("github", {"url": "http://github-mcp.test/mcp"})
    await world.reconcile("github")
    await world.reconcile_allowlist("gateway")
    usable = world.cache_usable("github")
    assert world.forge.gateways == {"github": ("http://github-mcp.test/mcp", usable)}
    assert world.forge.virtual == {"team-a": {"github/create_issue"}}
    assert world.forge.tokens == ["s3cr3t-token"] and world.forge.owners == {f"{NS}/gateway"}
    world.forge.down = True
    world.fetch.tools = []
    world.clock.advance(60)
    world.apply("github", {"url": "http://github-mcp.test/mcp"}, annotations={c.ANN_REFRESH: "1"})
    await world.reconcile("github")
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile_allowlist("gateway")
    status = world.allowlist_status("gateway")
    assert [(t["type"], t["state"]) for t in status["targets"]] == [("configMap", "Published"),
                                                                     ("contextforge", "Unavailable")]
    assert world.documented("allowed") == {"github": {}}
    (warning,) = [e for e in world.kube.events if e["type"] == "Warning"]
    assert warning["reason"] == c.EVENT_WITHDRAWAL_FAILED and "s3cr3t" not in str(world.kube.objects)
    failures = allowlist_metrics.WITHDRAWAL_FAILURES.labels("contextforge")._value.get()  # noqa: SLF001
    assert failures >= 1


async def test_a_new_pending_tool_wakes_the_allowlist_and_publishes_to_contextforge_again() -> None:
    """A tool the sync found but does not allow changes no usable set; ContextForge may still have found it on
    its own (it refreshes itself on the server's notification, and a refresh adds tools active), so the publish
    that deactivates it must happen now, not at the next resync; the status lists it as pending."""
    world = AllowlistWorld([tool("create_issue")])
    world.kube.secret("forge", {"token": "s3cr3t-token"})
    world.allow("gateway", {"sources": [{"toolServerRef": {"name": "github"}}],
                            "targets": [{"contextforge": {"url": "http://forge.test:4444",
                                                          "tokenSecretRef": {"name": "forge", "key": "token"}}}]})
    world.apply("github", {"url": "http://github-mcp.test/mcp", "approval": {"policy": "NewAndChanged"}})
    await world.reconcile("github")
    world.watch(c.KIND_TOOLSERVER, "github")
    await world.reconcile_allowlist("gateway")
    published = len(world.forge.tokens)
    world.watch(c.KIND_TOOLALLOWLIST, "gateway")
    await world.reconcile_allowlist("gateway")
    assert len(world.forge.tokens) == published         # nothing changed: not published again
    world.woken.clear()

    world.fetch.tools.append(tool("merge_pr"))
    world.clock.advance(60)
    world.apply("github", world.kube.get(c.KIND_TOOLSERVER, "github")["spec"],   # type: ignore[index]
                annotations={c.ANN_REFRESH: "1"})
    await world.reconcile("github")
    assert world.woken == [((c.KIND_TOOLALLOWLIST, NS, "gateway"), True)]
    world.watch(c.KIND_TOOLSERVER, "github")
    world.watch(c.KIND_TOOLALLOWLIST, "gateway")
    await world.reconcile_allowlist("gateway")
    assert len(world.forge.tokens) == published + 1
    assert world.forge.gateways["github"][1] == {"create_issue": world.cache_usable("github")["create_issue"]}
    status = world.allowlist_status("gateway")
    assert {"reason": "Pending", "count": 1, "tools": ["merge_pr"]} in status["sources"][0]["withheld"]
    assert "lastChange" not in status or "github/merge_pr" not in str(status["lastChange"])


async def test_unchanged_targets_are_not_written_again() -> None:
    world = await synced_world()
    writes = world.kube.count("patch_object") + world.kube.count("create_object")
    world.watch(c.KIND_TOOLALLOWLIST, "gateway")
    assert await world.reconcile_allowlist("gateway") == world.allowlists.resync
    assert world.kube.count("patch_object") + world.kube.count("create_object") == writes
    assert world.kube.count("get_object") == 2          # only the first reconcile read them back


async def test_an_invalid_spec_is_reported_and_nothing_is_written() -> None:
    world = AllowlistWorld()
    world.allow("gateway", {"sources": [{}], "targets": [{"configMap": {"name": "x"}}]})
    assert await world.reconcile_allowlist("gateway") is None
    status = world.allowlist_status("gateway")
    assert condition(status, "Ready")["reason"] == c.REASON_INVALID_SPEC
    assert condition(status, "Stalled")["status"] == "True"
    assert "exactly one of toolServerRef and connectorConfigRef" in condition(status, "Ready")["message"]
    assert world.kube.count("create_object") == 0


class AdapterError(Exception):
    """An adapter's own error type, telling whether a retry may help (as toolcatalog.gateways' do)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@pytest.mark.parametrize(("error", "state"), [(AdapterError("HTTP 503", True), "Unavailable"),
                                              (AdapterError("token refused: s3cr3t-token", False), "Failed"),
                                              (RuntimeError("a bug"), "Failed")])
async def test_a_contextforge_adapter_error_fails_that_target_only(error: Exception, state: str) -> None:
    world = AllowlistWorld([tool("create_issue")])
    world.kube.secret("forge", {"token": "s3cr3t-token"})
    world.forge.error = error
    world.allow("gateway", {"sources": [{"toolServerRef": {"name": "github"}}],
                            "targets": [{"configMap": {"name": "allowed"}},
                                        {"contextforge": {"url": "http://forge.test:4444",
                                                          "tokenSecretRef": {"name": "forge", "key": "token"}}}]})
    world.apply("github", {"url": "http://github-mcp.test/mcp"})
    await world.reconcile("github")
    await world.reconcile_allowlist("gateway")
    status = world.allowlist_status("gateway")
    assert [(t["type"], t["state"]) for t in status["targets"]] == [("configMap", "Published"), ("contextforge", state)]
    assert "s3cr3t" not in str(status) and "s3cr3t" not in str(world.kube.events)
