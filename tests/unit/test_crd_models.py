"""crds/*.yaml and operator/toolcatalog/models.py describe the same API: they must not drift.

A real API server prunes every field its CRD schema lacks and applies the CRD's defaults,
while the operator parses objects with the pydantic models: a field on one side only is
silently lost or silently different. These tests walk both schemas side by side.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from toolcatalog.api import constants as c
from toolcatalog.api.allowlist import AllowlistStatus, ToolAllowlistSpec
from toolcatalog.api.models import ConnectorConfigSpec, Status, ToolServerSpec
from toolcatalog.api.validation import URL_HOST_PATTERN

REPO = Path(__file__).resolve().parents[2]
CRDS = {
    c.KIND_TOOLSERVER: REPO / "crds" / "toolservers.yaml",
    c.KIND_CONNECTORCONFIG: REPO / "crds" / "connectorconfigs.yaml",
}
SPEC_MODELS: dict[str, type[BaseModel]] = {
    c.KIND_TOOLSERVER: ToolServerSpec,
    c.KIND_CONNECTORCONFIG: ConnectorConfigSpec,
}
SAMPLES = REPO / "deploy" / "samples"
COMPARED_KEYWORDS = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
                     "minItems", "maxItems")


def load_crd(kind: str) -> dict[str, Any]:
    return yaml.safe_load(CRDS[kind].read_text())


def crd_schema(kind: str) -> dict[str, Any]:
    (version,) = load_crd(kind)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also report `default_factory` defaults: the CRD must default them the same way."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return super().get_default_value(schema)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and unwrap `X | None` (absent and null are the same on the wire)."""
    outer = {k: v for k, v in node.items() if k not in ("$ref", "anyOf")}
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        assert len(branches) == 1, f"unsupported union {node}"
        outer = {**_resolve(branches[0], defs), **outer}
    if "$ref" in node:
        outer = {**_resolve(defs[node["$ref"].split("/")[-1]], defs), **outer}
    return outer


def _emptied(value: Any) -> Any:
    """Drop None, empty lists and empty dicts: for a reader, absent and empty are alike."""
    if isinstance(value, dict):
        kept = {k: _emptied(v) for k, v in value.items()}
        value = {k: v for k, v in kept.items() if v is not None}
    return None if value in ([], {}) else value


def crd_default(node: dict[str, Any]) -> Any:
    """The value the API server stores for an absent field: its default, nested defaults applied."""
    if "default" not in node:
        return None
    return apply_crd_defaults(node["default"], node)


def apply_crd_defaults(value: Any, node: dict[str, Any]) -> Any:
    if isinstance(value, dict) and "properties" in node:
        value = dict(value)
        for name, sub in node["properties"].items():
            if name not in value and "default" in sub:
                value[name] = crd_default(sub)
            elif name in value:
                value[name] = apply_crd_defaults(value[name], sub)
    elif isinstance(value, list) and "items" in node:
        value = [apply_crd_defaults(item, node["items"]) for item in value]
    return value


def compare(model: dict[str, Any], crd: dict[str, Any], defs: dict[str, Any], path: str,
            errors: list[str]) -> None:
    """Append one message per difference between a pydantic JSON schema node and a CRD node."""
    model = _resolve(model, defs)
    for keyword in COMPARED_KEYWORDS:
        if model.get(keyword) != crd.get(keyword):
            errors.append(f"{path}: {keyword} model={model.get(keyword)!r} crd={crd.get(keyword)!r}")
    model_default = _emptied(model.get("default"))
    if model_default != _emptied(crd_default(crd)):
        errors.append(f"{path}: default model={model_default!r} crd={crd_default(crd)!r}")
    if sorted(model.get("required", [])) != sorted(crd.get("required", [])):
        errors.append(f"{path}: required model={model.get('required')} crd={crd.get('required')}")

    model_props, crd_props = model.get("properties", {}), crd.get("properties", {})
    for name in sorted(set(model_props) - set(crd_props)):
        errors.append(f"{path}.{name}: in the model, missing from the CRD")
    for name in sorted(set(crd_props) - set(model_props)):
        errors.append(f"{path}.{name}: in the CRD, missing from the model")
    for name in sorted(set(model_props) & set(crd_props)):
        compare(model_props[name], crd_props[name], defs, f"{path}.{name}", errors)

    for keyword, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        model_sub, crd_sub = model.get(keyword), crd.get(keyword)
        if isinstance(model_sub, dict) and isinstance(crd_sub, dict):
            compare(model_sub, crd_sub, defs, path + suffix, errors)
        elif bool(model_sub) != bool(crd_sub):
            errors.append(f"{path}: {keyword} model={model_sub!r} crd={crd_sub!r}")


def drift(model: type[BaseModel], crd: dict[str, Any], path: str) -> list[str]:
    schema = model_schema(model)
    errors: list[str] = []
    compare(schema, crd, schema.get("$defs", {}), path, errors)
    return errors


def walk(node: Any, path: str = ""):
    """Every schema node with its path."""
    if isinstance(node, dict):
        yield path, node
        for name, sub in node.get("properties", {}).items():
            yield from walk(sub, f"{path}.{name}")
        for keyword, suffix in (("items", "[]"), ("additionalProperties", "{}")):
            if isinstance(node.get(keyword), dict):
                yield from walk(node[keyword], path + suffix)


# ------------------------------------------------------------------------- schema vs models


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_spec_schema_matches_the_model(kind: str) -> None:
    assert drift(SPEC_MODELS[kind], crd_schema(kind)["properties"]["spec"], f"{kind}.spec") == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_status_schema_matches_the_model(kind: str) -> None:
    schema = dict(crd_schema(kind)["properties"]["status"])
    # A resource nobody has synced yet reads as observedGeneration 0 (in progress for kstatus), with the
    # model's defaults for the rest: the same status the model starts from.
    assert schema.pop("default") == {"observedGeneration": 0}
    assert crd_default({**schema, "default": {"observedGeneration": 0}}) == \
        Status(observed_generation=0).model_dump(by_alias=True, exclude_none=True, exclude_defaults=False,
                                                 exclude={"tools", "conditions", "references"})
    assert drift(Status, schema, f"{kind}.status") == []


def test_a_field_on_one_side_only_is_reported_with_its_path() -> None:
    crd = crd_schema(c.KIND_TOOLSERVER)["properties"]["spec"]
    crd["properties"]["sync"]["properties"]["jitterSeconds"] = {"type": "integer"}
    del crd["properties"]["toolSelector"]["properties"]["exclude"]
    crd["properties"]["sync"]["properties"]["ttlSeconds"]["default"] = 60
    errors = drift(ToolServerSpec, crd, "spec")
    assert "spec.sync.jitterSeconds: in the CRD, missing from the model" in errors
    assert "spec.toolSelector.exclude: in the model, missing from the CRD" in errors
    assert any(e.startswith("spec.sync.ttlSeconds: default") for e in errors)
    assert any(e.startswith("spec.sync: default") for e in errors)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural_and_complete(kind: str) -> None:
    """What a real API server demands, and no blanket escape hatch from pruning."""
    for path, node in walk(crd_schema(kind)):
        assert "type" in node, f"{kind}{path}: no type"
        assert "x-kubernetes-preserve-unknown-fields" not in node, f"{kind}{path}: preserves unknowns"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], path


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_lists_keyed_by_name_and_type(kind: str) -> None:
    schema = crd_schema(kind)
    tools = schema["properties"]["spec"]["properties"]["tools"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert (tools["x-kubernetes-list-type"], tools["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == (
        "map", ["type"])


def test_transport_defaults_only_on_toolserver() -> None:
    """A ConnectorConfig without transport inherits its ToolServer's; a default would hide that."""
    ts = crd_schema(c.KIND_TOOLSERVER)["properties"]["spec"]["properties"]["transport"]
    cc = crd_schema(c.KIND_CONNECTORCONFIG)["properties"]["spec"]["properties"]["transport"]
    assert ts["default"] == c.TRANSPORT_STREAMABLE_HTTP
    assert "default" not in cc
    assert ts["enum"] == cc["enum"] == list(c.TRANSPORTS)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_sync_defaults_apply_when_sync_is_absent(kind: str) -> None:
    sync = crd_schema(kind)["properties"]["spec"]["properties"]["sync"]
    assert crd_default(sync) == {"ttlSeconds": c.DEFAULT_TTL_SECONDS,
                                 "timeoutSeconds": c.DEFAULT_TIMEOUT_SECONDS,
                                 "minIntervalSeconds": c.DEFAULT_MIN_INTERVAL_SECONDS,
                                 "suspend": False}


# ------------------------------------------------------------------------- names, columns, CEL


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_names_scope_and_version(kind: str) -> None:
    spec = load_crd(kind)["spec"]
    plural = c.PLURAL[kind]
    assert load_crd(kind)["metadata"]["name"] == f"{plural}.{c.GROUP}"
    assert spec["group"] == c.GROUP and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind and spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["shortNames"] == c.SHORT_NAMES[kind]
    assert spec["names"]["categories"] == [c.CATEGORY]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (c.VERSION, True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_printer_columns(kind: str) -> None:
    (version,) = load_crd(kind)["spec"]["versions"]
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert {"URL", "Tools", "Ready", "Synced", "Last Sync", "Age"} <= set(columns)
    assert columns["Tools"] == {"name": "Tools", "type": "integer", "jsonPath": ".status.toolCount"}
    for cond in ("Ready", "Synced"):
        assert columns[cond]["jsonPath"] == f'.status.conditions[?(@.type=="{cond}")].status'
    assert columns["Last Sync"]["jsonPath"] == ".status.lastSync.completedAt"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"
    assert columns["Last Sync"]["type"] == columns["Age"]["type"] == "date"
    if kind == c.KIND_CONNECTORCONFIG:
        assert columns["Owner"]["jsonPath"] == ".spec.owner"
        assert columns["Server"]["jsonPath"] == ".spec.toolServerRef.name"


HAS_XOR = re.compile(r"^has\(self\.(\w+)\) != has\(self\.(\w+)\)$")


def cel_xor_holds(rule: str, obj: dict[str, Any]) -> bool:
    """Evaluate the one CEL shape our CRDs use, `has(self.a) != has(self.b)`."""
    match = HAS_XOR.match(rule)
    assert match, f"unexpected CEL rule {rule!r}"
    return (match.group(1) in obj) != (match.group(2) in obj)


def _rules(node: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("has_ref", [True, False])
@pytest.mark.parametrize("has_url", [True, False])
def test_connectorconfig_cel_rule_agrees_with_the_model(has_ref: bool, has_url: bool) -> None:
    spec_node = crd_schema(c.KIND_CONNECTORCONFIG)["properties"]["spec"]
    (rule,) = spec_node["x-kubernetes-validations"]
    assert "exactly one" in rule["message"] and "toolServerRef" in rule["message"]
    spec: dict[str, Any] = {}
    if has_ref:
        spec["toolServerRef"] = {"name": "demo"}
    if has_url:
        spec["url"] = "http://127.0.0.1:8765/mcp"
    try:
        ConnectorConfigSpec.model_validate(spec)
        model_accepts = True
    except ValidationError:
        model_accepts = False
    assert cel_xor_holds(rule["rule"], spec) == model_accepts == (has_ref != has_url)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_ca_bundle_cel_rule_agrees_with_the_model(kind: str) -> None:
    tls = crd_schema(kind)["properties"]["spec"]["properties"]["tls"]
    (rule,) = _rules(tls["properties"]["caBundle"])
    ref = {"name": "internal-ca", "key": "ca.crt"}
    for bundle in ({}, {"configMapKeyRef": ref}, {"secretKeyRef": ref},
                   {"configMapKeyRef": ref, "secretKeyRef": ref}):
        try:
            ToolServerSpec.model_validate({"url": "https://127.0.0.1/mcp", "tls": {"caBundle": bundle}})
            model_accepts = True
        except ValidationError:
            model_accepts = False
        assert cel_xor_holds(rule, bundle) == model_accepts, bundle
    # Only the xors and spec.url's host rule (tests/unit/test_properties_hosts.py): inherited endpoint fields
    # next to toolServerRef are not rejected.
    url_rule = f"self.matches(r'{URL_HOST_PATTERN}')"
    assert [r for _, n in walk(crd_schema(kind)) for r in _rules(n)] == (
        [url_rule, rule] if kind == c.KIND_TOOLSERVER else
        [*_rules(crd_schema(kind)["properties"]["spec"]), url_rule, rule])


# ------------------------------------------------------------------------- samples


def check_against_crd(value: Any, node: dict[str, Any], path: str, errors: list[str]) -> None:
    """The checks an API server makes that matter for samples: unknown fields, types, formats."""
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if not isinstance(value, kinds[node["type"]]) or (node["type"] == "integer" and isinstance(value, bool)):
        errors.append(f"{path}: expected {node['type']}, got {value!r}")
        return
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: {value!r} not in {node['enum']}")
    if "pattern" in node and not re.search(node["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {node['pattern']}")
    if "maxLength" in node and len(value) > node["maxLength"]:
        errors.append(f"{path}: longer than {node['maxLength']}")
    for bound, ok in (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b)):
        if bound in node and not ok(node[bound]):
            errors.append(f"{path}: {value} violates {bound} {node[bound]}")
    if isinstance(value, dict):
        for name in node.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, sub in value.items():
            if "properties" in node and name not in node["properties"]:
                errors.append(f"{path}.{name}: unknown field, a real API server drops it")
            elif "properties" in node:
                check_against_crd(sub, node["properties"][name], f"{path}.{name}", errors)
            elif "additionalProperties" in node:
                check_against_crd(sub, node["additionalProperties"], f"{path}.{name}", errors)
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_against_crd(item, node["items"], f"{path}[{index}]", errors)


def load_sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / name).read_text())


@pytest.mark.parametrize(("sample", "kind"), [("toolserver.yaml", c.KIND_TOOLSERVER),
                                              ("connectorconfig.yaml", c.KIND_CONNECTORCONFIG)])
def test_samples_are_valid_for_the_crd_and_the_model(sample: str, kind: str) -> None:
    obj = load_sample(sample)
    assert obj["apiVersion"] == c.API_VERSION and obj["kind"] == kind
    assert obj["metadata"]["namespace"] == "default"
    errors: list[str] = []
    check_against_crd(obj["spec"], crd_schema(kind)["properties"]["spec"], "spec", errors)
    assert errors == []
    spec = SPEC_MODELS[kind].model_validate(obj["spec"])
    defaulted = apply_crd_defaults(obj["spec"], crd_schema(kind)["properties"]["spec"])
    assert SPEC_MODELS[kind].model_validate(defaulted) == spec


def test_samples_fit_together() -> None:
    """The ConnectorConfig references the ToolServer and a Secret key the samples provide."""
    server = ToolServerSpec.model_validate(load_sample("toolserver.yaml")["spec"])
    connector_obj = load_sample("connectorconfig.yaml")
    connector = ConnectorConfigSpec.model_validate(connector_obj["spec"])
    secret = load_sample("secret.yaml")
    assert server.url == "http://127.0.0.1:8765/mcp"
    assert server.tool_selector.include or server.tool_selector.exclude
    assert any(not tool.enabled for tool in server.tools)
    assert connector.tool_server_ref is not None
    assert connector.tool_server_ref.name == load_sample("toolserver.yaml")["metadata"]["name"] == "demo"
    assert connector.owner == "alice@example.com"
    assert connector.auth is not None and connector.auth.bearer_token is not None
    ref = connector.auth.bearer_token.secret_key_ref
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    assert secret["metadata"] == {"name": ref.name, "namespace": "default"} and ref.name == "alice-demo"
    assert ref.key in secret.get("stringData", {})


# ------------------------------------------------------------------------- deploy/


def _deploy_docs() -> dict[str, dict[str, Any]]:
    docs = [d for name in ("rbac.yaml", "deployment.yaml")
            for d in yaml.safe_load_all((REPO / "deploy" / "base" / name).read_text())]
    return {d["kind"]: d for d in docs}


def test_kustomization_includes_every_crd() -> None:
    """kustomize refuses ../crds/<file> (outside its root), so crds/ carries a Kustomization."""
    assert yaml.safe_load((REPO / "deploy" / "kustomization.yaml").read_text())["resources"] == ["base"]
    deploy = yaml.safe_load((REPO / "deploy" / "base" / "kustomization.yaml").read_text())
    assert deploy["namespace"] == "toolcatalog-system"
    for resource in deploy["resources"]:
        assert (REPO / "deploy" / "base" / resource).exists(), resource
    assert "../../crds" in deploy["resources"]
    crds = yaml.safe_load((REPO / "crds" / "Kustomization").read_text())
    assert sorted(crds["resources"]) == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))


def test_cluster_role_grants_what_the_operator_uses_and_no_more() -> None:
    role = _deploy_docs()["ClusterRole"]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {(c.GROUP, plural + sub, verb) for plural in c.PLURAL.values()
              for sub, verbs in (("", ("get", "list", "watch")), ("/status", ("patch",)))
              for verb in verbs}
    needed |= {("", "configmaps", v) for v in ("get", "list", "watch", "create", "patch")}
    needed |= {("", "secrets", v) for v in ("get", "list", "watch")}
    needed |= {("", "events", "create"), ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}
    needed |= {(c.TOOLHIVE_GROUP, c.TOOLHIVE_TOOLCONFIG_PLURAL, v) for v in ("get", "create", "patch")}
    assert needed <= granted
    assert not any("*" in entry for entry in granted)
    assert not {v for g, r, v in granted if r == "secrets"} - {"get", "list", "watch"}
    assert not {(g, r, v) for g, r, v in granted if v in ("delete", "deletecollection", "update")}
    # Our resources are only ever written through /status.
    assert not {(g, r, v) for g, r, v in granted if g == c.GROUP and "/" not in r and v in ("patch", "create")}


def test_deployment_runs_one_locked_down_operator() -> None:
    docs = _deploy_docs()
    deployment = docs["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert container["image"] == "toolcatalog:0.1.0"
    assert container["args"] == ["run", "--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz",
                                 "--readiness=http://0.0.0.0:8081/readyz", "--metrics-port=9090",
                                 "--log-format=json"]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9090
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    account = docs["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    assert docs["ClusterRoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "toolcatalog-system"}]


# ------------------------------------------------------------------------- ToolAllowlist

ALLOWLIST_CRD = REPO / "crds" / "toolallowlists.yaml"


def allowlist_schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(ALLOWLIST_CRD.read_text())["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def test_allowlist_schema_matches_the_models() -> None:
    schema = allowlist_schema()
    assert drift(ToolAllowlistSpec, schema["properties"]["spec"], "ToolAllowlist.spec") == []
    status = dict(schema["properties"]["status"])
    assert status.pop("default") == {"observedGeneration": 0}
    assert drift(AllowlistStatus, status, "ToolAllowlist.status") == []


def test_allowlist_schema_is_structural_and_complete() -> None:
    for path, node in walk(allowlist_schema()):
        assert "type" in node, f"ToolAllowlist{path}: no type"
        assert "x-kubernetes-preserve-unknown-fields" not in node, f"ToolAllowlist{path}: preserves unknowns"


def test_allowlist_names_columns_and_rbac() -> None:
    crd = yaml.safe_load(ALLOWLIST_CRD.read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"toolallowlists.{c.GROUP}" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == c.KIND_TOOLALLOWLIST and spec["names"]["plural"] == "toolallowlists"
    assert spec["names"]["shortNames"] == ["mcpal"] == c.SHORT_NAMES[c.KIND_TOOLALLOWLIST]
    assert spec["names"]["categories"] == [c.CATEGORY]
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    shown = [col["name"] for col in version["additionalPrinterColumns"] if not col.get("priority")]
    assert shown == ["Sources", "Tools", "Ready", "Age"]
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert columns["Tools"]["jsonPath"] == ".status.toolCount"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def _cel(node: dict[str, Any]) -> dict[str, str]:
    return {rule["message"]: rule["rule"] for rule in node.get("x-kubernetes-validations", [])}


def _model_error(spec: dict[str, Any]) -> str | None:
    try:
        ToolAllowlistSpec.model_validate(spec)
    except ValidationError as error:
        return str(error)
    return None


SOURCE = {"toolServerRef": {"name": "github"}}
TARGET = {"configMap": {"name": "allowed"}}


@pytest.mark.parametrize(("spec", "message"), [
    ({"sources": [{}], "targets": [TARGET]}, "each source needs exactly one of toolServerRef and connectorConfigRef"),
    ({"sources": [{**SOURCE, "connectorConfigRef": {"name": "x"}}], "targets": [TARGET]},
     "each source needs exactly one of toolServerRef and connectorConfigRef"),
    ({"sources": [SOURCE], "targets": [{}]},
     "each target needs exactly one of configMap, toolhive, toolhiveWebhook and contextforge"),
    ({"sources": [SOURCE], "targets": [{**TARGET, "toolhive": {}}]},
     "each target needs exactly one of configMap, toolhive, toolhiveWebhook and contextforge"),
    ({"sources": [SOURCE, {"connectorConfigRef": {"name": "github"}}], "targets": [TARGET]},
     "every source needs its own `as` name (default: the resource's name)"),
    ({"sources": [SOURCE, {"toolServerRef": {"name": "other"}, "as": "github"}], "targets": [TARGET]},
     "every source needs its own `as` name (default: the resource's name)"),
])
def test_allowlist_cel_rules_and_the_model_refuse_the_same_specs(spec: dict[str, Any], message: str) -> None:
    """The CEL rule with this message exists in the CRD (tests/e2e/test_allowlist_cluster.py shows a real API
    server applies it), and the model refuses the same spec with the same words."""
    schema = allowlist_schema()["properties"]["spec"]
    rules = {**_cel(schema), **_cel(schema["properties"]["sources"]["items"]),
             **_cel(schema["properties"]["targets"]["items"])}
    assert message in rules
    error = _model_error(spec)
    assert error is not None and message.split(" (")[0] in error


def test_a_valid_allowlist_passes_the_model() -> None:
    assert _model_error({"sources": [SOURCE, {"connectorConfigRef": {"name": "github"}, "as": "alice-github"}],
                         "targets": [TARGET, {"toolhive": {}}, {"toolhiveWebhook": {}}]}) is None


def test_the_allowlist_sample_is_valid_for_the_crd_and_the_model() -> None:
    obj = load_sample("toolallowlist.yaml")
    assert obj["apiVersion"] == c.API_VERSION and obj["kind"] == c.KIND_TOOLALLOWLIST
    errors: list[str] = []
    check_against_crd(obj["spec"], allowlist_schema()["properties"]["spec"], "spec", errors)
    assert errors == []
    spec = ToolAllowlistSpec.model_validate(obj["spec"])
    assert [(s.kind, s.name, s.alias) for s in spec.sources] == [(c.KIND_TOOLSERVER, "demo", "demo")]
    assert load_sample("toolserver.yaml")["metadata"]["name"] == "demo"
