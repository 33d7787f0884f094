"""The validating admission webhook: what the CRD schema and CEL cannot refuse, refused at apply time.

On the real control plane the API server itself calls the operator's webhook over HTTPS (a CA made
for the test) and `kubectl apply` shows its message; on the emulator, which calls no webhooks, the
test sends the same AdmissionReview the API server would and reads the answer.
"""

from __future__ import annotations

import shutil
import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.support.k8s import TS, condition, toolallowlist, toolserver, wait_until
from toolcatalog.api import constants as c
from toolcatalog_dev.mcpserver import McpTestServer, free_port
from toolcatalog_dev.pki import issue_serving_cert, make_pki

pytestmark = pytest.mark.e2e

HASH = "sha256:" + "ab" * 32
# (spec beyond url, what the refusal says): each passes the CRD schema, and is wrong.
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "octal-ip": ({"url": "http://0177.0.0.01:9/mcp"}, "non-standard form"),
    "userinfo": ({"url": "http://admin:pw@127.0.0.1:9/mcp"}, "must not carry credentials"),
    "metadata-ip": ({"url": "http://169.254.169.254/mcp"}, "the operator may not connect there"),
    "bad-glob": ({"url": "http://127.0.0.1:9/mcp", "toolSelector": {"include": ["[abc"]}}, "unbalanced"),
}
# (A tool listed twice in spec.tools is refused by the CRD itself: listType map.)


@pytest.fixture
def webhook(tmp_path: Path, api) -> dict[str, Any]:
    """A CA and a serving certificate for 127.0.0.1, laid out as a cert-manager Secret, and the flags."""
    pki = make_pki(tmp_path / "webhook-ca")
    issued, certs = tmp_path / "webhook-issued", tmp_path / "webhook-certs"
    issued.mkdir()
    certs.mkdir()
    cert, key = issue_serving_cert(pki, issued, ("127.0.0.1",))
    shutil.copy(cert, certs / "tls.crt")
    shutil.copy(key, certs / "tls.key")
    shutil.copy(pki.ca_cert, certs / "ca.crt")
    port = free_port()
    args = ["--webhook-port", str(port), "--webhook-address", "127.0.0.1", "--webhook-host", "127.0.0.1",
            "--webhook-cert-dir", str(certs)]
    name = None
    if api.backend == "cluster":
        name = f"{api.ns}.toolcatalog.dev"        # a webhook's name (validate.NAME) needs three segments
        args += ["--webhook-configuration", name]
    return {"port": port, "args": args, "ca": pki.ca_cert, "configuration": name}


async def review(webhook: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST the AdmissionReview the API server would send; the `response` part of the answer."""
    context = ssl.create_default_context(cafile=str(webhook["ca"]))
    request = {"uid": str(uuid.uuid4()), "kind": {"group": c.GROUP, "version": c.VERSION, "kind": obj["kind"]},
               "resource": {"group": c.GROUP, "version": c.VERSION, "resource": c.PLURAL[obj["kind"]]},
               "operation": "UPDATE" if old else "CREATE", "namespace": "default",
               "name": obj["metadata"]["name"], "object": obj, "oldObject": old, "dryRun": False,
               "userInfo": {"username": "alice"}}
    async with httpx2.AsyncClient(verify=context) as client:
        answer = await client.post(f"https://127.0.0.1:{webhook['port']}/validate",
                                   json={"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                         "request": request})
    answer.raise_for_status()
    return dict(answer.json()["response"])


async def served(webhook: dict[str, Any]) -> bool:
    try:
        await review(webhook, toolserver("probe", "http://127.0.0.1:9/mcp"))
    except httpx2.TransportError:
        return False
    return True


@pytest.mark.emulator_only("the emulator calls no webhooks: the test sends the AdmissionReview itself")
async def test_the_webhook_answers_admission_reviews_as_the_api_server_sends_them(api, start_operator, webhook):
    operator = start_operator(args=webhook["args"])
    await wait_until(lambda: served(webhook), timeout=20, what="the webhook serving", operator=operator)
    for name, (spec, words) in REFUSED.items():
        answer = await review(webhook, toolserver(name, **spec))
        assert answer["allowed"] is False and answer["status"]["code"] == 422, name
        assert words in answer["status"]["message"], (name, answer["status"]["message"])
    answer = await review(webhook, toolserver("fine", "http://127.0.0.1:9/mcp", tools=[{"name": "a"}]))
    assert answer["allowed"] is True
    # An object stored before the webhook existed can still be refreshed: a change beside the spec passes.
    stored = toolserver("old", "http://0177.0.0.01:9/mcp")
    refreshed = toolserver("old", "http://0177.0.0.01:9/mcp", annotations={c.ANN_REFRESH: "now"})
    assert (await review(webhook, refreshed, old=stored))["allowed"] is True


@pytest.mark.cluster_only("the API server calling the webhook over HTTPS is what is tested")
async def test_kubectl_apply_shows_why_a_spec_is_refused(api, start_operator, webhook, kubeconfig, tmp_path):
    plane = api.control_plane
    await grant_webhook_configuration(api, webhook["configuration"])
    operator = start_operator(args=webhook["args"])
    try:
        async def configured() -> bool:
            obj = await api.get("admissionregistration.k8s.io/v1/validatingwebhookconfigurations", None,
                                webhook["configuration"])
            return bool(obj and obj.get("webhooks") and obj["webhooks"][0]["rules"])
        await wait_until(configured, timeout=30, what="the managed ValidatingWebhookConfiguration",
                         operator=operator)
        config = await api.get("admissionregistration.k8s.io/v1/validatingwebhookconfigurations", None,
                               webhook["configuration"])
        (hook,) = config["webhooks"]
        assert hook["failurePolicy"] == "Ignore" and hook["clientConfig"]["url"].endswith("/validate")
        # Every resource of the group (a ToolAllowlist is admitted as it is: its CRD's rules validate it).
        ours = ["connectorconfigs", "toolallowlists", "toolservers"]
        assert sorted(hook["rules"][0]["resources"]) == ours or \
            sorted(r for rule in hook["rules"] for r in rule["resources"]) == ours

        for name, (spec, words) in REFUSED.items():
            manifest = tmp_path / f"{name}.yaml"
            manifest.write_text(yaml.safe_dump(toolserver(name, namespace=api.ns, **spec)))
            result = plane.kubectl("apply", "-f", str(manifest), kubeconfig=kubeconfig, check=False)
            assert result.returncode != 0, f"{name} was admitted"
            assert "denied the request" in result.stderr and words in result.stderr, result.stderr
            assert await api.get(TS, api.ns, name) is None
        with McpTestServer() as server:
            manifest = tmp_path / "fine.yaml"
            manifest.write_text(yaml.safe_dump(toolserver("fine", server.url, namespace=api.ns,
                                                          tools=[{"name": "tool_000", "approvedHash": HASH}])))
            result = plane.kubectl("apply", "-f", str(manifest), kubeconfig=kubeconfig, check=False)
            assert result.returncode == 0, result.stderr

            async def synced() -> Any:
                obj = await api.get(TS, api.ns, "fine")
                return obj if condition(obj, "Synced").get("status") == "True" else None
            await wait_until(synced, timeout=20, what="fine: Synced=True", operator=operator)
        allowlist = tmp_path / "allowlist.yaml"     # through the webhook too, which admits it as it is
        allowlist.write_text(yaml.safe_dump(toolallowlist("fine", [{"toolServerRef": {"name": "fine"}}],
                                                          [{"configMap": {"name": "fine-allowed"}}],
                                                          namespace=api.ns)))
        result = plane.kubectl("apply", "-f", str(allowlist), kubeconfig=kubeconfig, check=False)
        assert result.returncode == 0, result.stderr
    finally:
        operator.stop()
    # The operator removes its webhook on the way out: applies never wait on a webhook that is gone.
    config = await api.get("admissionregistration.k8s.io/v1/validatingwebhookconfigurations", None,
                           webhook["configuration"])
    assert config is None or not config.get("webhooks")
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        await api.delete(f"admissionregistration.k8s.io/v1/{kind}", None, webhook["configuration"])


@pytest.mark.cluster_only("what the webhook cannot see (turned off) still ends as InvalidSpec, on the real server")
async def test_a_spec_that_slips_past_is_an_invalid_spec_not_a_retry_loop(api, operator, waiter):
    spec, words = REFUSED["octal-ip"]
    await api.create(toolserver("slipped", **spec))
    obj = await waiter.status(TS, "slipped", lambda o: condition(o, "Synced").get("reason") == "InvalidSpec",
                              "InvalidSpec", operator=operator)
    assert words in condition(obj, "Synced")["message"] and obj["status"].get("nextSyncAt") is None


async def grant_webhook_configuration(api, name: str) -> None:
    """What deploy/overlays/webhook grants when the operator manages its configuration itself."""
    # kopf manages a validating and a mutating configuration of that name (the latter stays empty).
    rules = [{"apiGroups": ["admissionregistration.k8s.io"], "verbs": ["create", "patch"],
              "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]}]
    role = f"{name}-writer"
    await api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": role}, "rules": rules})
    await api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                      "metadata": {"name": role},
                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                      "subjects": [{"kind": "ServiceAccount", "name": "toolcatalog",
                                    "namespace": "toolcatalog-system"}]})
