"""ToolAllowlists where only a real API server can judge: the CRD's CEL rules and schema refuse bad
allowlists at `kubectl apply` with readable messages (`kubectl get mcpal`: tests/e2e/test_kubectl_get.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from tests.support.k8s import TAL, toolallowlist

pytestmark = [pytest.mark.e2e, pytest.mark.cluster_only("only a real API server runs CEL rules")]

GITHUB = {"toolServerRef": {"name": "github"}}
CONFIGMAP = {"configMap": {"name": "allowed"}}


async def kubectl(api: Any, *args: str, input: str | None = None, check: bool = True) -> Any:
    return await asyncio.to_thread(api.control_plane.kubectl, *args, input=input, check=check)


@pytest.mark.parametrize(("sources", "targets", "message"), [
    pytest.param([], [CONFIGMAP], "spec.sources: Invalid value: 0: spec.sources in body should have at least 1 items",
                 id="no-source"),
    pytest.param([GITHUB], [], "spec.targets in body should have at least 1 items", id="no-target"),
    pytest.param([{**GITHUB, "connectorConfigRef": {"name": "alice"}}], [CONFIGMAP],
                 "each source needs exactly one of toolServerRef and connectorConfigRef", id="two-refs"),
    pytest.param([{"as": "github"}], [CONFIGMAP],
                 "each source needs exactly one of toolServerRef and connectorConfigRef", id="no-ref"),
    pytest.param([{**GITHUB, "as": "GitHub_Server"}], [CONFIGMAP], "spec.sources[0].as in body should match",
                 id="as-not-a-dns-label"),
    pytest.param([GITHUB, {"connectorConfigRef": {"name": "github"}}], [CONFIGMAP],
                 "every source needs its own `as` name", id="as-taken-by-default"),
    pytest.param([GITHUB], [{**CONFIGMAP, "toolhive": {}}],
                 "each target needs exactly one of configMap, toolhive, toolhiveWebhook and contextforge",
                 id="two-target-types"),
    pytest.param([GITHUB], [{}], "each target needs exactly one of configMap", id="empty-target"),
    pytest.param([GITHUB], [{"toolhive": {}}, {"toolhive": {}}], "toolhive and toolhiveWebhook targets appear at "
                 "most once", id="two-toolhive-targets"),
    pytest.param([GITHUB], [CONFIGMAP, CONFIGMAP], "a configMap target names each ConfigMap once",
                 id="same-configmap-twice"),
])
async def test_kubectl_apply_refuses_a_bad_allowlist_with_a_readable_message(api, sources, targets, message):
    manifest = toolallowlist("bad", sources, targets, namespace=api.ns)
    result = await kubectl(api, "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert await api.get(TAL, api.ns, "bad") is None


async def test_a_good_allowlist_passes_a_server_dry_run_and_is_defaulted(api):
    manifest = toolallowlist("good", [GITHUB, {"connectorConfigRef": {"name": "github"}, "as": "alice"}],
                             [CONFIGMAP, {"toolhive": {}}, {"toolhiveWebhook": {}},
                              {"contextforge": {"url": "http://mcpgateway.gateways.svc:4444",
                                                "tokenSecretRef": {"name": "forge", "key": "token"}}}],
                             namespace=api.ns)
    result = await kubectl(api, "apply", "--dry-run=server", "-o", "yaml", "-f", "-", input=yaml.safe_dump(manifest))
    stored = yaml.safe_load(result.stdout)
    assert stored["spec"]["onSourceFailure"] == "Keep"
    assert stored["spec"]["targets"][1] == {"toolhive": {}}
    assert stored["status"] == {"observedGeneration": 0, "toolCount": 0} or "status" not in stored
