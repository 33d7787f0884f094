"""deploy/ as users install it, checked with the tools they run and by a real API server.

- kustomize: the default install (deploy/) and each overlay (namespaced, sharded, webhook, networkpolicy),
  and the NetworkPolicy component added to other overlays, rendered by
  `kubectl kustomize` of the kubectl built with the control plane;
- Helm: deploy/helm/toolcatalog with each variant of values, through `helm lint` and `helm template` of
  a helm built from the Go module proxy (test/controlplane/helm/build.sh, cached);
- every rendered manifest is accepted by the real control plane (`kubectl apply --dry-run=server`, with
  no warning: the pods pass the "restricted" Pod Security Standard), cert-manager's own CRDs installed
  for the webhook's Certificate and Issuer;
- the RBAC every install renders is the RBAC the operator runs with in the cluster tests (the session
  applies what `kubectl kustomize deploy/` renders), and a namespace-scoped install syncs with its Roles
  and can do nothing outside them.

Rendering needs only the binaries, so it runs on the emulator backend too when they have been built
(`make controlplane`, `make helm`); the server dry-runs and installs need the real control plane.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.support.k8s import CM, TS, condition, secret, toolserver
from toolcatalog_dev.deploy import render
from toolcatalog_dev.mcpserver import McpTestServer, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "toolcatalog"
HELM_BUILD = REPO / "test" / "controlplane" / "helm" / "build.sh"
OPERATOR_NS = "toolcatalog-system"
WATCHED = ("team-a", "team-b")              # the namespaces the namespaced variants name
CLUSTER_ONLY_RESOURCES = {"customresourcedefinitions", "namespaces"}

KUSTOMIZE = {
    "default": REPO / "deploy",
    "namespaced": REPO / "deploy" / "overlays" / "namespaced",
    "sharded": REPO / "deploy" / "overlays" / "sharded",
    "webhook": REPO / "deploy" / "overlays" / "webhook",
    "monitoring": REPO / "deploy" / "overlays" / "monitoring",
    "networkpolicy": REPO / "deploy" / "overlays" / "networkpolicy",
}
MONITORING = CHART / "monitoring"       # the PrometheusRule and dashboard both installs ship
HELM: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"namespaces": list(WATCHED)},
    "sharded": {"sharding": {"enabled": True, "shards": 3}},
    "webhook-helm-certificate": {"webhook": {"enabled": True}},
    "webhook-cert-manager": {"webhook": {"enabled": True, "certificate": {"source": "certManager"}}},
    "webhook-existing-secret": {"webhook": {"enabled": True, "certificate": {
        "source": "secret", "secretName": "my-webhook-tls",
        "caBundle": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").decode()}}},
    "monitoring": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                               "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                               "dashboard": {"enabled": True}}},
    "networkpolicy": {"networkPolicy": {"enabled": True}},
    "networkpolicy-webhook": {"networkPolicy": {"enabled": True}, "webhook": {"enabled": True}},
    "networkpolicy-metrics-from": {"networkPolicy": {"enabled": True, "metricsFrom": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}},
    "everything": {
        "image": {"repository": "registry.example/platform/toolcatalog", "tag": "0.1.0-rc1"},
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
                          "mcpServers": {"cidrs": ["10.32.0.0/16", "fd00::/64"], "ports": [8080, 443]},
                          "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                              "kubernetes.io/metadata.name": "monitoring"}}}],
                          "extraEgress": [{"to": [{"podSelector": {"matchLabels": {"app": "mcp"}}}],
                                           "ports": [{"port": 3000, "protocol": "TCP"}]}]},
        "namespaces": list(WATCHED), "sharding": {"enabled": True, "shards": 2},
        "webhook": {"enabled": True, "certificate": {"source": "certManager",
                                                     "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}},
        "metrics": {"enabled": False}, "logFormat": "text",
        "extraArgs": ["--max-concurrent-syncs=20", "--watch-stall-timeout=300"],
        "extraEnv": [{"name": "TOOLCATALOG_KUBE_QPS", "value": "150"}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "podAnnotations": {"example.com/team": "platform"}, "nodeSelector": {"kubernetes.io/os": "linux"},
    },
}


# ------------------------------------------------------------------------------ tools


def _cache() -> Path:
    return Path(os.environ.get("TOOLCATALOG_CACHE") or Path.home() / ".cache" / "toolcatalog")


def _gomod_version(path: Path, module: str) -> str:
    for line in path.read_text().splitlines():
        words = line.replace("require ", "").split()
        if len(words) >= 2 and words[0] == module:
            return words[1]
    raise AssertionError(f"no {module} in {path}")


@pytest.fixture(scope="session")
def kubectl(cluster_session: Any) -> str:
    """The kubectl built with the control plane (for `kubectl kustomize`)."""
    if cluster_session is not None:
        return str(cluster_session.plane.binary("kubectl"))
    version = _gomod_version(REPO / "test/controlplane/kubernetes/go.mod", "k8s.io/kubernetes")
    built = _cache() / "controlplane" / version / "kubectl"
    if not built.exists():
        pytest.skip("kubectl is built with the control plane: `make controlplane`, or the cluster tier")
    return str(built)


@pytest.fixture(scope="session")
def helm_dir(backend: str) -> Path:
    """helm and cert-manager's CRDs, as `make helm` (a step of .ci/run) built them: never built here."""
    result = subprocess.run(["bash", str(HELM_BUILD), "--check"], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode == 3:
        if backend == "emulator":       # `make test` on a fresh machine: the cluster tier renders them
            pytest.skip(result.stderr.strip())
        pytest.fail(result.stderr.strip(), pytrace=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


def helm(helm_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm_dir / "helm"), *args], capture_output=True, text=True, timeout=120,
                            check=False, env={**os.environ, "HELM_CACHE_HOME": "/tmp/toolcatalog-helm-cache",
                                              "HELM_CONFIG_HOME": "/tmp/toolcatalog-helm-config",
                                              "HELM_DATA_HOME": "/tmp/toolcatalog-helm-data"})
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def helm_template(helm_dir: Path, values: dict[str, Any], tmp_path: Path, *, namespace: str = OPERATOR_NS,
                  release: str = "toolcatalog", crds: bool = False) -> list[dict[str, Any]]:
    values_file = tmp_path / f"values-{release}-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm(helm_dir, "template", release, str(CHART), "--namespace", namespace, "-f", str(values_file),
                  *(["--include-crds"] if crds else []))
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def objects_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = objects_of(objects, kind)
    return found


def rules(role: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """A Role's or ClusterRole's rules, comparable: sorted, each (apiGroups, resources, verbs) sorted."""
    return sorted((tuple(sorted(rule.get("apiGroups") or [])), tuple(sorted(rule.get("resources") or [])),
                   tuple(sorted(rule.get("verbs") or []))) for rule in role.get("rules") or [])


def namespaced_part(role_rules: list[tuple[tuple[str, ...], ...]]) -> list[Any]:
    return [rule for rule in role_rules if not set(rule[1]) & CLUSTER_ONLY_RESOURCES]


def assert_follows_its_statefulset(objects: list[dict[str, Any]]) -> None:
    """A sharded install: each pod is named to the operator (the downward API), and may read and watch its
    own StatefulSet, and nothing else of apps/ (its replicas are the number of shards)."""
    statefulset = one(objects, "StatefulSet")
    env = {item["name"]: item for item in operator_container(objects)["env"]}
    assert env["TOOLCATALOG_POD"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["TOOLCATALOG_POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert not {"TOOLCATALOG_SHARD", "TOOLCATALOG_TOTAL_SHARDS"} & set(env)
    (role,) = [role for role in objects_of(objects, "Role") if any("apps" in rule["apiGroups"]
                                                                   for rule in role["rules"])]
    assert role["metadata"]["namespace"] == statefulset["metadata"]["namespace"]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["statefulsets"],
                              "resourceNames": [statefulset["metadata"]["name"]], "verbs": ["get", "list", "watch"]}]
    (binding,) = [binding for binding in objects_of(objects, "RoleBinding")
                  if binding["roleRef"]["name"] == role["metadata"]["name"]]
    account = one(objects, "ServiceAccount")["metadata"]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]
    assert pod_spec(objects)["serviceAccountName"] == account["name"]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    workload = [obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet")]
    assert len(workload) == 1, [obj["kind"] for obj in workload]
    return dict(workload[0]["spec"]["template"]["spec"])


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod_spec(objects)["containers"]
    return dict(container)


# ------------------------------------------------------------------------------ kustomize


def test_the_default_install_and_each_overlay_render_what_they_say(kubectl):
    base = render(kubectl, KUSTOMIZE["default"])
    assert sorted(obj["kind"] for obj in base) == sorted([
        "Namespace", "CustomResourceDefinition", "CustomResourceDefinition", "CustomResourceDefinition",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"])
    deployment = one(base, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(base)
    assert container["args"][:3] == ["run", "--all-namespaces", "--standalone"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "readyz"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    pod = pod_spec(base)
    assert pod["securityContext"]["runAsNonRoot"] and isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    service = one(base, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert one(base, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    namespaced = render(kubectl, KUSTOMIZE["namespaced"])
    assert not objects_of(namespaced, "ClusterRole") and not objects_of(namespaced, "ClusterRoleBinding")
    assert sorted(role["metadata"]["namespace"] for role in objects_of(namespaced, "Role")) == list(WATCHED)
    assert sorted(binding["metadata"]["namespace"] for binding in objects_of(namespaced, "RoleBinding")) == \
        list(WATCHED)
    args = operator_container(namespaced)["args"]
    assert "--all-namespaces" not in args and [a for a in args if a.startswith("--namespace=")] == \
        [f"--namespace={ns}" for ns in WATCHED]

    sharded = render(kubectl, KUSTOMIZE["sharded"])
    assert not objects_of(sharded, "Deployment")
    statefulset = one(sharded, "StatefulSet")
    assert_follows_its_statefulset(sharded)
    assert statefulset["spec"]["serviceName"] in [svc["metadata"]["name"] for svc in objects_of(sharded, "Service")]
    # The shard's pod is the Deployment's pod, but for the two variables that name the pod.
    shard_pod, single_pod = copy.deepcopy(pod_spec(sharded)), pod_spec(base)
    shard_pod["containers"][0]["env"] = [item for item in shard_pod["containers"][0]["env"]
                                         if not item["name"].startswith("TOOLCATALOG_POD")]
    assert shard_pod == single_pod

    webhook = render(kubectl, KUSTOMIZE["webhook"])
    configuration = one(webhook, "ValidatingWebhookConfiguration")
    (hook,) = configuration["webhooks"]
    assert hook["failurePolicy"] == "Ignore" and hook["clientConfig"]["service"]["path"] == "/validate"
    certificate = one(webhook, "Certificate")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    service = next(svc for svc in objects_of(webhook, "Service") if svc["metadata"]["name"] ==
                   hook["clientConfig"]["service"]["name"])
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" in certificate["spec"]["dnsNames"]
    container = operator_container(webhook)
    assert "--webhook-port=9443" in container["args"]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    volume = next(v for v in pod_spec(webhook)["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]

    monitoring = render(kubectl, KUSTOMIZE["monitoring"])
    assert sorted(obj["kind"] for obj in monitoring) == sorted([obj["kind"] for obj in base] + [
        "ServiceMonitor", "PrometheusRule", "ConfigMap"])
    check_monitoring(monitoring)

    images = {operator_container(render(kubectl, path))["image"] for path in KUSTOMIZE.values()}
    assert images == {"toolcatalog:0.1.0"}


def check_monitoring(objects: list[dict[str, Any]], *, release_labels: dict[str, str] | None = None) -> None:
    """The ServiceMonitor scrapes the metrics Service's port as job "toolcatalog"; the PrometheusRule holds
    the shipped rules exactly; the dashboard ConfigMap holds the shipped dashboard, labelled for Grafana."""
    service = next(svc for svc in objects_of(objects, "Service") if svc["metadata"]["name"].endswith("-metrics"))
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "toolcatalog"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"
    rule = one(objects, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())["spec"]
    dashboard = one(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["toolcatalog.json"]) == json.loads((MONITORING / "dashboard.json").read_text())
    for obj in (monitor, rule):
        assert (release_labels or {}).items() <= obj["metadata"]["labels"].items()
    assert {obj["metadata"]["namespace"] for obj in (monitor, rule, dashboard)} == {service["metadata"]["namespace"]}


def egress_rules(policy: dict[str, Any]) -> dict[str, Any]:
    """A NetworkPolicy's egress rules by what they reach, in the order both installs write them: DNS, the
    API server, the MCP servers, then any extra ones."""
    dns, apiserver, mcp, *other = policy["spec"]["egress"]
    return {"dns": dns, "apiserver": apiserver, "mcp": mcp, "other": other}


def selects_the_operator(policy: dict[str, Any], objects: list[dict[str, Any]]) -> bool:
    workload = next(obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet"))
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in policy["spec"]["podSelector"]["matchLabels"].items())


def test_the_networkpolicy_component_limits_the_operator_to_dns_the_api_server_and_mcp_ports(kubectl, tmp_path):
    objects = render(kubectl, KUSTOMIZE["networkpolicy"])
    assert sorted(obj["kind"] for obj in objects) == sorted(
        [obj["kind"] for obj in render(kubectl, KUSTOMIZE["default"])] + ["NetworkPolicy"])
    policy = one(objects, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == OPERATOR_NS and selects_the_operator(policy, objects)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # From anywhere: Prometheus to the metrics port, the API server (no selector reaches it) to the webhook's.
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}]},
                                         {"ports": [{"port": 9443, "protocol": "TCP"}]}]
    rules = egress_rules(policy)
    assert rules["dns"] == {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                                            "kube-system"}},
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    apiserver, mcp = rules["apiserver"], rules["mcp"]
    assert [port["port"] for port in apiserver["ports"]] == [443, 6443]
    assert [port["port"] for port in mcp["ports"]] == [443, 80] and not rules["other"]
    for rule in (apiserver, mcp):       # anywhere but link-local: no cloud metadata endpoint, on any port
        assert rule["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
                              {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10"]}}]
    # The component adds the same policy to any overlay: here the sharded one and the webhook one.
    root = tmp_path / "mine"
    for overlay in ("sharded", "webhook"):
        root.mkdir(exist_ok=True)
        relative = os.path.relpath(REPO / "deploy", root)
        (root / "kustomization.yaml").write_text(yaml.safe_dump({
            "resources": [f"{relative}/overlays/{overlay}"], "components": [f"{relative}/components/networkpolicy"]}))
        combined = render(kubectl, root)
        assert one(combined, "NetworkPolicy")["spec"] == policy["spec"] and selects_the_operator(policy, combined)


# ------------------------------------------------------------------------------ Helm


@pytest.mark.parametrize("variant", sorted(HELM))
def test_helm_lint_passes_for_each_variant(helm_dir, variant, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(HELM[variant]))
    result = helm(helm_dir, "lint", "--strict", str(CHART), "--namespace", OPERATOR_NS, "-f", str(values_file))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_helm_renders_each_variant(helm_dir, tmp_path):
    rendered = {variant: helm_template(helm_dir, values, tmp_path) for variant, values in HELM.items()}

    default = rendered["default"]
    assert sorted(obj["kind"] for obj in default) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"])

    namespaced = rendered["namespaced"]
    assert not objects_of(namespaced, "ClusterRole") and not objects_of(namespaced, "ClusterRoleBinding")
    assert sorted(role["metadata"]["namespace"] for role in objects_of(namespaced, "Role")) == list(WATCHED)

    sharded = rendered["sharded"]
    assert one(sharded, "StatefulSet")["spec"]["replicas"] == 3
    assert_follows_its_statefulset(sharded)
    assert_follows_its_statefulset(rendered["everything"])

    helm_certs = rendered["webhook-helm-certificate"]
    tls = one(helm_certs, "Secret")
    (hook,) = one(helm_certs, "ValidatingWebhookConfiguration")["webhooks"]
    assert hook["clientConfig"]["caBundle"] == tls["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["ca.crt"]))
    serving = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    service = hook["clientConfig"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in names
    assert serving.not_valid_after_utc > datetime.now(UTC)

    cert_manager = rendered["webhook-cert-manager"]
    certificate = one(cert_manager, "Certificate")
    assert one(cert_manager, "Issuer")["spec"] == {"selfSigned": {}}
    (hook,) = one(cert_manager, "ValidatingWebhookConfiguration")["webhooks"]
    assert "caBundle" not in hook["clientConfig"]
    assert one(cert_manager, "ValidatingWebhookConfiguration")["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{OPERATOR_NS}/{certificate['metadata']['name']}"}

    existing = rendered["webhook-existing-secret"]
    assert not objects_of(existing, "Secret") and not objects_of(existing, "Certificate")
    volume = next(v for v in pod_spec(existing)["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "my-webhook-tls"

    monitoring = rendered["monitoring"]
    check_monitoring(monitoring, release_labels={"release": "kube-prometheus-stack"})
    assert not objects_of(monitoring, "PrometheusRule")[0]["metadata"]["labels"].keys() - {
        "release", "app.kubernetes.io/component", *one(default, "Deployment")["metadata"]["labels"]}

    assert not objects_of(default, "NetworkPolicy")
    policy = one(rendered["networkpolicy"], "NetworkPolicy")
    assert selects_the_operator(policy, rendered["networkpolicy"])
    # No webhook: its port stays closed.
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}]}]
    with_webhook = one(rendered["networkpolicy-webhook"], "NetworkPolicy")
    assert with_webhook["spec"]["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}]},
                                               {"ports": [{"port": 9443, "protocol": "TCP"}]}]

    scraped = one(rendered["networkpolicy-metrics-from"], "NetworkPolicy")
    assert scraped["spec"]["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}], "from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]

    everything = rendered["everything"]
    policy = one(everything, "NetworkPolicy")
    # No metrics port; the webhook's from anywhere (metricsFrom is for the metrics port only).
    assert selects_the_operator(policy, everything)
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 9443, "protocol": "TCP"}]}]
    rules = egress_rules(policy)
    assert rules["apiserver"]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert rules["apiserver"]["ports"] == [{"port": 6443, "protocol": "TCP"}]
    assert rules["mcp"]["to"] == [{"ipBlock": {"cidr": "10.32.0.0/16"}}, {"ipBlock": {"cidr": "fd00::/64"}}]
    assert [port["port"] for port in rules["mcp"]["ports"]] == [8080, 443]
    assert rules["other"] == HELM["everything"]["networkPolicy"]["extraEgress"]
    container = operator_container(everything)
    assert container["image"] == "registry.example/platform/toolcatalog:0.1.0-rc1"
    assert container["args"][-2:] == ["--max-concurrent-syncs=20", "--watch-stall-timeout=300"]
    assert "--log-format=text" in container["args"] and not any("metrics-port" in a for a in container["args"])
    assert one(everything, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corp-ca"}
    assert not objects_of(everything, "Issuer")


def test_helm_refuses_values_it_cannot_honour(helm_dir, tmp_path):
    for values, message in [
        ({"namespaces": ["team-*"]}, "is a pattern"),
        ({"webhook": {"enabled": True, "certificate": {"source": "vault"}}}, "is not one of helm"),
        ({"webhook": {"enabled": True, "certificate": {"source": "secret"}}}, "needs webhook.certificate.caBundle"),
        ({"sharding": {"enabled": True, "shards": 0}}, "at least 1"),
        ({"networkPolicy": {"enabled": True, "mcpServers": {"ports": []}}}, "name at least one port"),
    ]:
        values_file = tmp_path / "bad.yaml"
        values_file.write_text(yaml.safe_dump(values))
        result = helm(helm_dir, "template", "toolcatalog", str(CHART), "-f", str(values_file), check=False)
        assert result.returncode != 0 and message in result.stderr, (values, result.stderr)


def test_the_helm_chart_and_kustomize_install_the_same_operator(kubectl, helm_dir, tmp_path):
    """The same pod (but for Helm's instance label and image pull policy), the same CRDs, the same RBAC."""
    kustomized, charted = render(kubectl, KUSTOMIZE["default"]), helm_template(helm_dir, {}, tmp_path, crds=True)
    assert objects_of(charted, "CustomResourceDefinition") == objects_of(kustomized, "CustomResourceDefinition")
    for name in sorted(path.name for path in (REPO / "crds").glob("*.yaml")):
        assert (CHART / "crds" / name).read_text() == (REPO / "crds" / name).read_text(), \
            f"deploy/helm/toolcatalog/crds/{name} is not a copy of crds/{name}"
    kustomized_pod, charted_pod = pod_spec(kustomized), pod_spec(charted)
    charted_pod["containers"][0].pop("imagePullPolicy")
    assert charted_pod == kustomized_pod
    assert rules(one(charted, "ClusterRole")) == rules(one(kustomized, "ClusterRole"))
    # The same NetworkPolicy (but for the pod selector's instance label), the webhook's port open in both.
    kustomized_policy = one(render(kubectl, KUSTOMIZE["networkpolicy"]), "NetworkPolicy")["spec"]
    charted_policy = one(helm_template(helm_dir, HELM["networkpolicy-webhook"], tmp_path), "NetworkPolicy")["spec"]
    charted_policy["podSelector"]["matchLabels"].pop("app.kubernetes.io/instance")
    assert charted_policy == kustomized_policy


# ------------------------------------------------------------------------------ RBAC: one source of truth


async def test_the_rbac_every_install_renders_is_the_rbac_the_operator_is_tested_with(api, kubectl, helm_dir,
                                                                                      tmp_path):
    """The cluster tests run the operator as the ServiceAccount the session bound with what `kubectl kustomize
    deploy/` renders; every other install grants the same rules (namespaced ones: the namespaced part)."""
    kustomized = rules(one(render(kubectl, KUSTOMIZE["default"]), "ClusterRole"))
    assert ("apiextensions.k8s.io",) in [rule[0] for rule in kustomized]
    if api.control_plane is not None:
        live = json.loads(api.control_plane.kubectl("get", "clusterrole", "toolcatalog", "-o", "json").stdout)
        assert rules(live) == kustomized
        binding = json.loads(api.control_plane.kubectl("get", "clusterrolebinding", "toolcatalog", "-o",
                                                       "json").stdout)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "toolcatalog", "namespace": OPERATOR_NS}]
    assert rules(one(helm_template(helm_dir, {}, tmp_path), "ClusterRole")) == kustomized
    sources = {"kustomize namespaced": render(kubectl, KUSTOMIZE["namespaced"]),
               "helm namespaced": helm_template(helm_dir, HELM["namespaced"], tmp_path)}
    for source, objects in sources.items():
        for role in objects_of(objects, "Role"):
            assert rules(role) == namespaced_part(kustomized), f"{source}: Role in {role['metadata']['namespace']}"
        for binding in objects_of(objects, "RoleBinding"):
            (subject,) = binding["subjects"]
            account = one(objects, "ServiceAccount")["metadata"]
            assert (subject["name"], subject["namespace"]) == (account["name"], account["namespace"]), source
    for variant in ("sharded", "webhook"):
        assert rules(one(render(kubectl, KUSTOMIZE[variant]), "ClusterRole")) == kustomized, variant
    for variant in ("sharded", "webhook-helm-certificate", "webhook-cert-manager"):
        assert rules(one(helm_template(helm_dir, HELM[variant], tmp_path), "ClusterRole")) == kustomized, variant


# ------------------------------------------------------------------------------ the real API server


@pytest.fixture(scope="module")
def install_targets(cluster_session: Any, helm_dir: Path) -> Iterator[Any]:
    """The namespaces the namespaced variants name, cert-manager's CRDs (Certificate, Issuer) and
    prometheus-operator's (ServiceMonitor, PrometheusRule)."""
    if cluster_session is None:
        pytest.skip("needs the real control plane")
    plane = cluster_session.plane
    for namespace in WATCHED:
        plane.kubectl("create", "namespace", namespace, check=False)
    crds = sorted((helm_dir / "crds").glob("*.yaml"))
    for crd in crds:
        plane.kubectl("apply", "--server-side", "-f", str(crd))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io",
                  "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
    yield plane
    for namespace in WATCHED:
        plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    for crd in crds:
        plane.kubectl("delete", "-f", str(crd), "--wait=false", check=False)


def dry_run(plane: Any, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return plane.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects), check=False)


@pytest.mark.cluster_only("only a real API server validates manifests")
@pytest.mark.parametrize("variant", sorted(KUSTOMIZE))
def test_every_kustomize_install_passes_a_server_dry_run(install_targets, kubectl, variant):
    objects = render(kubectl, KUSTOMIZE[variant])
    result = dry_run(install_targets, objects)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"warnings (Pod Security, deprecations):\n{result.stderr}"
    assert len(result.stdout.strip().splitlines()) == len(objects)
    assert all(line.endswith("(server dry run)") for line in result.stdout.strip().splitlines())


@pytest.mark.cluster_only("only a real API server validates manifests")
@pytest.mark.parametrize("variant", sorted(HELM))
async def test_every_helm_variant_passes_a_server_dry_run(install_targets, api, helm_dir, variant, tmp_path):
    # The release's namespace enforces the "restricted" Pod Security Standard, as deploy/'s does.
    await api.patch("v1/namespaces", None, api.ns, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    objects = helm_template(helm_dir, HELM[variant], tmp_path, namespace=api.ns, release=f"tc-{variant}"[:40])
    result = dry_run(install_targets, objects)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"warnings (Pod Security, deprecations):\n{result.stderr}"
    assert len(result.stdout.strip().splitlines()) == len(objects)


@pytest.mark.cluster_only("RBAC is enforced by a real API server only")
@pytest.mark.timeout(180)
async def test_a_namespace_scoped_install_syncs_with_its_roles_and_can_do_nothing_else(api, kubectl, waiter,
                                                                                       tmp_path):
    """deploy/overlays/namespaced, its watched namespace renamed to the test's and its ServiceAccount to one of
    its own (the session's has the cluster-wide binding): the operator, run with `-n`, syncs with that Role
    alone, with no permission warning, and can read nothing elsewhere."""
    plane = api.control_plane
    account = f"scoped-{api.ns[-6:]}"
    objects = []
    for obj in render(kubectl, KUSTOMIZE["namespaced"]):
        if obj["kind"] == "ServiceAccount":
            obj["metadata"]["name"] = account
        elif obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["namespace"] == WATCHED[0]:
            obj["metadata"]["namespace"] = api.ns
            for subject in obj.get("subjects") or []:
                subject["name"] = account
        else:
            continue
        objects.append(obj)
    assert sorted(obj["kind"] for obj in objects) == ["Role", "RoleBinding", "ServiceAccount"]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    try:
        from toolcatalog_dev.controlplane import write_kubeconfig

        token = plane.service_account_token(OPERATOR_NS, account)
        kubeconfig = write_kubeconfig(tmp_path / "scoped.kubeconfig", server=plane.url, ca=plane.pki.ca_cert,
                                      token=token, user=account, namespace=api.ns)
        operator = OperatorProcess(kubeconfig, tmp_path / "scoped.log", namespaces=[api.ns]).start()
        try:
            with McpTestServer(tokens={"scoped-token": make_tools(2)}) as server:
                await api.create(secret("scoped-auth", {"token": "scoped-token"}))
                await api.create(toolserver("scoped", server.url, auth={
                    "bearerToken": {"secretKeyRef": {"name": "scoped-auth", "key": "token"}}}))
                obj = await waiter.status(TS, "scoped", lambda o: condition(o, "Synced").get("status") == "True",
                                          "synced by the namespace-scoped operator", timeout=60, operator=operator)
                await waiter.events("scoped", "Synced", operator=operator)
            assert obj["status"]["toolCount"] == 2
            assert await api.get(CM, api.ns, "toolserver-scoped") is not None
            log = operator.log()
            for unwanted in ("Not enough permissions", "Forbidden", "forbidden", " 403 "):
                assert unwanted not in log, f"{unwanted!r} in the operator's log"
        finally:
            operator.stop()
        who = f"--as=system:serviceaccount:{OPERATOR_NS}:{account}"
        for args, allowed in [(("list", "toolservers.toolcatalog.dev", "-n", api.ns), "yes"),
                              (("patch", "toolservers.toolcatalog.dev", "--subresource=status", "-n", api.ns), "yes"),
                              (("list", "toolservers.toolcatalog.dev", "--all-namespaces"), "no"),
                              (("get", "secrets", "-n", "default"), "no"),
                              (("list", "customresourcedefinitions"), "no"),
                              (("list", "namespaces"), "no"),
                              (("patch", "toolservers.toolcatalog.dev", "-n", api.ns), "no")]:
            answer = plane.kubectl("auth", "can-i", *args, who, check=False).stdout.strip()
            assert answer == allowed, (args, answer)
    finally:
        plane.kubectl("delete", "serviceaccount", account, "-n", OPERATOR_NS, "--wait=false", check=False)
