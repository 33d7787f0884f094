"""The pure parts of ToolAllowlists: what a source contributes and why, the target documents, status and Events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.allowlist import Allowlist, AllowlistStatus, AllowlistTargetStatus, ToolAllowlistSpec
from toolcatalog.api.models import ToolServerSpec
from toolcatalog.api.toolhive import NO_TOOL_ALLOWED, tools_filter
from toolcatalog.reconcile.allowlist import (
    CatalogTool,
    Change,
    SourceCatalog,
    SourceInput,
    change_between,
    limits_of,
    lookup,
    view_allowlist,
)
from toolcatalog.reconcile.allowlist_status import TargetResult, allowlist_events, plan_status, summary
from toolcatalog.reconcile.allowlist_targets import object_name, plan_targets

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
H1, H2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def allowlist(spec: dict[str, Any], status: dict[str, Any] | None = None) -> Allowlist:
    return Allowlist.from_body({"metadata": {"namespace": "team-a", "name": "gw", "uid": "u-1", "generation": 3},
                                "spec": spec, "status": status or {}})


SPEC = {"sources": [{"toolServerRef": {"name": "github"}}, {"connectorConfigRef": {"name": "fs"}, "as": "files"}],
        "targets": [{"configMap": {"name": "allowed"}}, {"toolhive": {}}]}


def catalog(*tools: CatalogTool, **more: Any) -> SourceCatalog:
    fields: dict[str, Any] = {"url": "http://github.test/mcp", "policy": "NewAndChanged", **more}
    return SourceCatalog(kind=c.KIND_TOOLSERVER, namespace="team-a", name="github", tools=tools, **fields)


TOOLS = (CatalogTool("create", H1), CatalogTool("gone", H1, available=False), CatalogTool("off", H1, enabled=False),
         CatalogTool("other", H1, selected=False), CatalogTool("pulled", H2, approved=False))


def test_a_source_contributes_its_usable_tools_and_says_why_the_rest_is_withheld() -> None:
    spec = ToolAllowlistSpec.model_validate(SPEC)
    (view, missing) = view_allowlist(spec, [SourceInput(spec.sources[0], True, catalog(*TOOLS)),
                                            SourceInput(spec.sources[1], False)])
    assert view.state == "Current" and dict(view.allowed) == {"create": H1}
    assert dict(view.withheld) == {"Unavailable": ("gone",), "Disabled": ("off",), "NotSelected": ("other",),
                                   "Pending": ("pulled",)}
    assert (missing.state, missing.alias, dict(missing.allowed)) == ("NotFound", "files", {})


@pytest.mark.parametrize(("on_failure", "state", "allowed"), [("Keep", "Kept", {"create": H1}),
                                                             ("Withdraw", "Withdrawn", {})])
def test_a_failing_source_keeps_or_withdraws(on_failure: str, state: str, allowed: dict[str, str]) -> None:
    spec = ToolAllowlistSpec.model_validate({**SPEC, "onSourceFailure": on_failure})
    (view, _) = view_allowlist(spec, [SourceInput(spec.sources[0], True, catalog(*TOOLS, failing=True)),
                                      SourceInput(spec.sources[1], False)])
    assert (view.state, dict(view.allowed)) == (state, allowed)


def test_the_ceiling_of_a_running_sync_and_the_spec_now_both_limit_the_cache() -> None:
    source = catalog(CatalogTool("create", H1), CatalogTool("list", H1), CatalogTool("merge", H1))
    narrowed = source.with_tools(source.tools, ceiling=frozenset({("create", H1), ("list", H2), ("merge", H1)}))
    assert narrowed.usable() == {"create": H1, "merge": H1}        # list drifted: out before anything is written
    limits = limits_of(ToolServerSpec.model_validate({"url": "http://x.test/mcp", "approval": {"policy": "All"},
                                                      "tools": [{"name": "create", "approvedHash": H1},
                                                                {"name": "merge", "approvedHash": H2}]}))
    assert narrowed.with_tools(narrowed.tools, limits=limits).usable() == {"create": H1}
    disabled = limits_of(ToolServerSpec.model_validate({"url": "http://x.test/mcp", "toolSelector": {
        "exclude": ["mer*"]}, "tools": [{"name": "create", "enabled": False}]}))
    assert source.with_tools(source.tools, limits=disabled).usable() == {"list": H1}


def test_a_source_without_a_policy_says_its_tools_are_unreviewed() -> None:
    spec = ToolAllowlistSpec.model_validate(SPEC)
    (view, _) = view_allowlist(spec, [SourceInput(spec.sources[0], True, catalog(CatalogTool("a", H1),
                                                                                  policy="None")),
                                      SourceInput(spec.sources[1], False)])
    assert view.policy == "None" and "without review" in view.message


def test_the_lookup_fails_closed_until_the_state_is_loaded() -> None:
    spec = ToolAllowlistSpec.model_validate(SPEC)
    assert lookup(spec, "github", True, None, loaded=False) is None
    assert lookup(spec, "nobody", True, catalog(*TOOLS), loaded=True) is None
    assert lookup(spec, "github", True, catalog(*TOOLS), loaded=True) == {"create": H1}


def test_a_changed_hash_is_a_withdrawal_and_an_addition() -> None:
    before = frozenset({("gh", "a", H1), ("gh", "b", H1)})
    assert change_between(None, before) == Change()
    change = change_between(before, frozenset({("gh", "a", H2), ("gh", "c", H1)}))
    assert change.withdrawn == ("gh/a", "gh/b") and change.added == ("gh/a", "gh/c")


def test_a_tools_filter_is_never_empty_and_never_matches_a_tool() -> None:
    assert tools_filter(["b", "a"]) == ["a", "b"]
    assert tools_filter([]) == [NO_TOOL_ALLOWED]
    assert tools_filter([], known=[NO_TOOL_ALLOWED]) == [NO_TOOL_ALLOWED + "-2"]
    assert "/" in NO_TOOL_ALLOWED        # outside MCP's tool-name characters: no conforming tool is named so


def test_object_names_fit_and_stay_distinct() -> None:
    assert object_name("gw", "github") == "gw-github"
    long_one, long_two = object_name("a" * 200, "b" * 60), object_name("a" * 200, "b" * 59 + "c")
    assert len(long_one) == len(long_two) == 253 and long_one != long_two


def test_targets_hold_every_source_sorted_by_as_and_retire_what_is_no_longer_wanted() -> None:
    item = allowlist(SPEC)
    assert item.spec is not None
    views = view_allowlist(item.spec, [SourceInput(item.spec.sources[0], True, catalog(CatalogTool("z", H1),
                                                                                        CatalogTool("a", H2))),
                                       SourceInput(item.spec.sources[1], False)])
    configmap, toolhive = plan_targets(item, views, generated_at="2026-12-06T12:00:00Z",
                                       previously={"MCPToolConfig": ["gw-github", "gw-old"]})
    document = json.loads(configmap.writes[0].manifest["data"]["allowlist.json"])
    assert [server["as"] for server in document["servers"]] == ["files", "github"]
    assert document["servers"][1]["tools"] == [{"name": "a", "schemaHash": H2}, {"name": "z", "schemaHash": H1}]
    assert document["servers"][0] == {"source": {"kind": "ConnectorConfig", "name": "fs"}, "as": "files",
                                      "url": None, "tools": []}
    filters = {write.name: (write.manifest["spec"]["toolsFilter"], write.retired) for write in toolhive.writes}
    assert filters == {"gw-files": ([NO_TOOL_ALLOWED], False), "gw-github": (["a", "z"], False),
                       "gw-old": ([NO_TOOL_ALLOWED], True)}
    assert toolhive.objects == ["gw-files", "gw-github"]
    owner = configmap.writes[0].manifest["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ToolAllowlist", "u-1", True)
    again = plan_targets(item, views, generated_at="2026-12-06T13:00:00Z")
    assert again[0].content_hash == configmap.content_hash      # generatedAt alone changes no content


def results(item: Allowlist, *states: str, withdrawing: bool = False) -> list[TargetResult]:
    assert item.spec is not None
    plans = plan_targets(item, [], generated_at="t")
    return [TargetResult(plan, state, f"{state.lower()} for a reason" if state != "Published" else "",  # type: ignore
                         reason={"Conflict": c.REASON_TARGET_CONFLICT}.get(state), withdrawing=withdrawing)
            for plan, state in zip(plans, states, strict=True)]


def conditions(status: AllowlistStatus) -> dict[str, tuple[str, str]]:
    return {cond.type: (cond.status, cond.reason) for cond in status.conditions}


def test_ready_names_the_worst_target_problem_and_stalled_only_what_no_retry_fixes() -> None:
    item = allowlist(SPEC)
    status = plan_status(item, [], results(item, "Published", "Published"), Change(), NOW)
    assert conditions(status) == {"Ready": ("True", "Published")}
    status = plan_status(item, [], results(item, "Unavailable", "Conflict"), Change(), NOW)
    assert conditions(status) == {"Ready": ("False", "TargetConflict"), "Stalled": ("True", "TargetConflict")}
    status = plan_status(item, [], results(item, "Published", "Unavailable"), Change(), NOW)
    assert conditions(status) == {"Ready": ("False", "TargetUnavailable")}
    assert status.target_types == "configMap,toolhive"


def test_a_failed_target_keeps_what_it_last_held_in_status() -> None:
    held = AllowlistTargetStatus(type="configMap", state="Published", object="allowed", published=4,
                                 content_hash=H1, last_published_at="2026-12-06T11:00:00Z")
    item = allowlist(SPEC, {"targets": [held.dump()]})
    status = plan_status(item, [], results(item, "Failed", "Published"), Change(withdrawn=("gh/a",)), NOW)
    assert (status.targets[0].state, status.targets[0].published, status.targets[0].content_hash) == ("Failed", 4, H1)
    assert status.last_change is not None and status.last_change.withdrawn == ["gh/a"]


def test_a_failed_withdrawal_is_loud_once_and_a_recovery_is_told() -> None:
    item = allowlist(SPEC)
    failing = results(item, "Unavailable", "Published", withdrawing=True)
    events = allowlist_events(item.status, [], failing, Change(withdrawn=("gh/a",)))
    assert [(e.type, e.reason) for e in events] == [("Normal", "ToolsWithdrawn"), ("Warning", "WithdrawalFailed")]
    after = plan_status(item, [], failing, Change(withdrawn=("gh/a",)), NOW)
    again = allowlist_events(after, [], results(item, "Unavailable", "Published"), Change())
    assert again == []                                      # the same failure on a retry: quiet
    recovered = allowlist_events(after, [], results(item, "Published", "Published"), Change())
    assert [e.reason for e in recovered] == ["TargetRecovered"]


def test_kubectl_columns_are_cut_with_a_count() -> None:
    assert summary(["gh", "fs"]) == "gh,fs"
    cut = summary([f"source-{i}" for i in range(20)])
    assert len(cut) <= 64 and cut.endswith(",+" + cut.rsplit("+", 1)[1])


def test_the_plugin_lists_allowlists_with_each_target_state() -> None:
    from toolcatalog.kubectl.fleet import format_allowlist_table

    ready = {"metadata": {"namespace": "team-a", "name": "gw"},
             "status": {"toolCount": 3, "sourceNames": "github,fs",
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Published",
                                        "lastTransitionTime": "2026-12-06T12:00:00Z"}],
                        "targets": [{"type": "configMap", "state": "Published"},
                                    {"type": "toolhive", "state": "Unavailable"}]}}
    new = {"metadata": {"namespace": "team-a", "name": "another"}, "status": {}}
    lines = [" ".join(line.split()) for line in format_allowlist_table([ready, new]).splitlines()]
    assert lines == ["NAMESPACE ALLOWLIST READY TOOLS SOURCES TARGETS",
                     "team-a mcpal/another Unknown 0 <none> <none>",
                     "team-a mcpal/gw True 3 github,fs configMap=Published, toolhive=Unavailable"]
