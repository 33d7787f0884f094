"""The diff base kopf builds for our resources: the same essence as kopf's default, without copying status."""

from __future__ import annotations

import copy

import kopf

from toolcatalog.handlers.diffbase import StatusFreeDiffBase


def body(tools: int = 3) -> dict:
    return {
        "apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer",
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "u1", "resourceVersion": "7", "generation": 2,
                     "labels": {"team": "a"},
                     "annotations": {"toolcatalog.dev/refresh": "r1",
                                     "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                     "kopf.zalando.org/last-handled-configuration": "{}"},
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"url": "http://mcp.test/mcp", "sync": {"ttlSeconds": 60}},
        "status": {"toolCount": tools, "tools": [{"name": f"t{i}", "available": True} for i in range(tools)]},
    }


def test_the_essence_is_kopfs_own_without_the_status_copy():
    raw = body()
    before = copy.deepcopy(raw)
    ours = StatusFreeDiffBase().build(body=kopf.Body(raw))
    assert ours == kopf.AnnotationsDiffBaseStorage().build(body=kopf.Body(raw))
    assert "status" not in ours and ours["spec"] == raw["spec"]
    assert ours["metadata"] == {"labels": {"team": "a"}, "annotations": {"toolcatalog.dev/refresh": "r1"}}
    ours["spec"]["sync"]["ttlSeconds"] = 1      # a copy: the body kopf holds is left as it was
    assert raw == before


def test_status_fields_a_handler_asks_for_are_kept_as_kopf_keeps_them():
    raw = body()
    fields = [("status", "toolCount")]
    ours = StatusFreeDiffBase().build(body=kopf.Body(raw), extra_fields=fields)
    assert ours == kopf.AnnotationsDiffBaseStorage().build(body=kopf.Body(raw), extra_fields=fields)
    assert ours["status"] == {"toolCount": 3}
