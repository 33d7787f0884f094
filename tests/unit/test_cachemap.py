"""The cache ConfigMap: its name, the tools.json document, gzip, size limits, the manifest,
the update patch and reading it back — as a pod mounting it or kubectl would see them."""

from __future__ import annotations

import base64
import gzip
import json
import random
import re

import pytest

from toolcatalog.api import constants
from toolcatalog.api.models import CacheDocument, CachedTool, CacheSource, ServerInfo, ToolSelector
from toolcatalog.reconcile.cachedoc import (
    CacheParseError,
    CacheTooLargeError,
    build_configmap,
    configmap_name,
    configmap_patch,
    content_hash,
    document_json,
    is_owned_by,
    label_value,
    parse_cache,
    render_cache,
)
from toolcatalog.reconcile.catalog import merge_catalog

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
T0, T1 = "2026-11-21T12:45:00Z", "2026-11-21T13:45:00Z"
SOURCE = CacheSource(kind="ToolServer", namespace="team-a", name="clickup",
                     url="http://clickup-mcp.team-a.svc:8000/mcp")
SERVER = ServerInfo(name="clickup-mcp", version="1.4.0", protocol_version="2025-06-18")
UID = "6f1d2c1e-0000-4000-8000-000000000001"


def tools(*entries: dict) -> list[CachedTool]:
    fetched = [{"inputSchema": {"type": "object", "properties": {}}, **e} for e in entries]
    return merge_catalog([], fetched, settings=[], selector=ToolSelector(), now=T0).tools


def document(tool_list: list[CachedTool], *, cached_at: str = T0, server: ServerInfo = SERVER) -> CacheDocument:
    return CacheDocument(source=SOURCE, server=server, cached_at=cached_at, tools=tool_list)


def manifest_for(rendered, **overrides) -> dict:
    arguments = dict(kind="ToolServer", name="clickup", namespace="team-a", owner_uid=UID,
                     configmap_name="toolserver-clickup", rendered=rendered,
                     cached_at=T0)
    return build_configmap(**{**arguments, **overrides})


def padded_document(target_bytes: int) -> CacheDocument:
    """A one-tool document whose tools.json is exactly `target_bytes` long."""
    base = document(tools({"name": "pad", "description": ""}))
    missing = target_bytes - len(document_json(base).encode("utf-8"))
    assert missing >= 0
    doc = document(tools({"name": "pad", "description": "x" * missing}))
    assert len(document_json(doc).encode("utf-8")) == target_bytes
    return doc


# ---------------------------------------------------------------------------- name


@pytest.mark.parametrize("kind, name, override, expected", [
    ("ToolServer", "clickup", None, "toolserver-clickup"),
    ("ConnectorConfig", "alice-clickup", None, "connectorconfig-alice-clickup"),
    ("ToolServer", "clickup", "clickup-tools", "clickup-tools"),
    ("ConnectorConfig", "alice", "", "connectorconfig-alice"),
])
def test_configmap_name_defaults_and_override(kind, name, override, expected):
    assert configmap_name(kind, name, override) == expected


def test_configmap_name_exactly_at_253_is_kept():
    name = "a" * (253 - len("toolserver-"))
    assert configmap_name("ToolServer", name) == f"toolserver-{name}"


def test_long_configmap_names_are_hashed_distinct_and_valid():
    common = "team." + "x" * 230  # a valid 253-char object name after the suffix
    first, second = common + "-" + "a" * 17, common + "-" + "b" * 17
    results = [configmap_name("ConnectorConfig", n) for n in (first, second)]
    assert results[0] != results[1]
    for result in results:
        assert len(result) <= 253
        assert DNS_SUBDOMAIN.match(result), result
        assert result.startswith("connectorconfig-team.xxx")
    assert configmap_name("ConnectorConfig", first) == results[0]  # deterministic


@pytest.mark.parametrize("cut_at", ["-", "."])
def test_long_configmap_name_never_has_dash_or_dot_before_the_hash(cut_at):
    # Put a separator exactly where the cut falls (position 241 of the full name).
    prefix = "toolserver-"
    name = "a" * (241 - len(prefix)) + cut_at + "b" * 30
    result = configmap_name("ToolServer", name)
    assert DNS_SUBDOMAIN.match(result), result
    assert len(result) <= 253


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="Pod"):
        configmap_name("Pod", "x")


# ---------------------------------------------------------------------------- document


def test_document_shape_matches_the_cache_reference():
    doc = document(tools(
        {"name": "clickup_update_task_status", "description": "Update a task"},
        {"name": "clickup_add_attachment", "title": "Attach", "annotations": {"readOnlyHint": False}},
    ))
    rendered = render_cache(doc)
    assert rendered.binary_data is None
    parsed = json.loads(rendered.data["tools.json"])
    # No expiry: the document changes only when the catalog does (freshness is in the resource's status).
    assert list(parsed) == ["source", "server", "cachedAt", "hashVersion", "approval", "fetchedWith", "tools"]
    assert parsed["hashVersion"] == doc.hash_version and parsed["approval"] == {"policy": "None", "baselineAt": None}
    assert parsed["source"] == {"kind": "ToolServer", "namespace": "team-a", "name": "clickup",
                                "url": "http://clickup-mcp.team-a.svc:8000/mcp"}
    assert {k: parsed["server"][k] for k in ("name", "version", "protocolVersion")} == {
        "name": "clickup-mcp", "version": "1.4.0", "protocolVersion": "2025-06-18"}
    assert parsed["cachedAt"] == T0
    assert [t["name"] for t in parsed["tools"]] == ["clickup_add_attachment",
                                                    "clickup_update_task_status"]
    status = parsed["tools"][1]
    assert list(status) == ["name", "title", "description", "inputSchema", "outputSchema",
                            "annotations", "icons", "execution", "extra", "available", "enabled", "selected",
                            "approved", "schemaHash", "approvedHash", "approvedDefinition", "firstSeen", "removedAt"]
    assert status == {
        "name": "clickup_update_task_status", "title": None, "description": "Update a task",
        "inputSchema": {"type": "object", "properties": {}}, "outputSchema": None,
        "annotations": None, "icons": None, "execution": None, "extra": None,
        "available": True, "enabled": True, "selected": True, "approved": True,
        "schemaHash": doc.tools[1].schema_hash, "approvedHash": None, "approvedDefinition": None,
        "firstSeen": T0, "removedAt": None}
    assert rendered.size_bytes == rendered.stored_bytes == len(
        rendered.data["tools.json"].encode("utf-8"))


def test_document_sorts_tools_even_if_given_unsorted():
    tool_list = tools({"name": "b"}, {"name": "a"}, {"name": "c"})
    doc = document(list(reversed(tool_list)))
    parsed = json.loads(render_cache(doc).data["tools.json"])
    assert [t["name"] for t in parsed["tools"]] == ["a", "b", "c"]


def test_non_ascii_descriptions_are_kept_as_utf8():
    doc = document(tools({"name": "a", "description": "Crée une tâche ✓"}))
    text = render_cache(doc).data["tools.json"]
    assert "Crée une tâche ✓" in text
    assert parse_cache({"data": {"tools.json": text}}).tools[0].description == "Crée une tâche ✓"


# ---------------------------------------------------------------------------- gzip switch


@pytest.mark.parametrize("size, compressed", [
    (constants.GZIP_THRESHOLD_BYTES - 1, False),
    (constants.GZIP_THRESHOLD_BYTES, False),
    (constants.GZIP_THRESHOLD_BYTES + 1, True),
])
def test_gzip_switch_at_512_kib(size, compressed):
    doc = padded_document(size)
    rendered = render_cache(doc)
    assert rendered.size_bytes == size
    assert (rendered.data is None) == compressed
    assert (rendered.binary_data is not None) == compressed  # never both
    if compressed:
        packed = base64.b64decode(rendered.binary_data["tools.json.gz"])
        assert rendered.stored_bytes == len(packed) < size
        assert len(gzip.decompress(packed)) == size
    configmap = manifest_for(rendered)
    assert ("data" in configmap) != ("binaryData" in configmap)
    assert parse_cache(configmap) == doc


def test_gzip_output_is_deterministic():
    doc = padded_document(constants.GZIP_THRESHOLD_BYTES + 100)
    assert render_cache(doc) == render_cache(doc)


def test_incompressible_huge_catalog_is_too_large():
    rng = random.Random(7)
    noise = [base64.b64encode(rng.randbytes(60_000)).decode() for _ in range(25)]  # ~2 MB
    doc = document(tools(*({"name": f"t{i:02d}", "description": text}
                           for i, text in enumerate(noise))))
    with pytest.raises(CacheTooLargeError) as caught:
        render_cache(doc)
    error = caught.value
    assert error.size_bytes > error.stored_bytes > constants.CONFIGMAP_MAX_BYTES
    assert error.limit_bytes == constants.CONFIGMAP_MAX_BYTES
    message = str(error)
    assert str(error.size_bytes) in message and str(error.stored_bytes) in message
    assert "spec.toolSelector" in message


def test_large_but_compressible_catalog_fits_gzipped():
    schema = {"type": "object", "properties": {f"field_{j}": {"type": "string",
              "description": "A field of the task record."} for j in range(40)}}
    doc = document(tools(*({"name": f"tool_{i:04d}", "description": "Does a task thing.",
                            "inputSchema": schema} for i in range(400))))
    rendered = render_cache(doc)
    assert rendered.size_bytes > constants.CONFIGMAP_MAX_BYTES  # would never fit as JSON
    assert rendered.binary_data is not None
    assert parse_cache(manifest_for(rendered)).tools == doc.tools


# ---------------------------------------------------------------------------- content hash


def test_content_hash_ignores_cached_at():
    tool_list = tools({"name": "a"}, {"name": "b"})
    early = render_cache(document(tool_list, cached_at=T0))
    late = render_cache(document(tool_list, cached_at=T1))
    assert early.content_hash == late.content_hash
    assert early.data != late.data
    assert early.content_hash == content_hash(SERVER, list(reversed(tool_list)))
    assert early.content_hash.startswith("sha256:")


@pytest.mark.parametrize("change", ["description", "removed", "disabled", "server_version"])
def test_content_hash_changes_with_the_catalog(change):
    tool_list = tools({"name": "a", "description": "one"}, {"name": "b"})
    server = SERVER
    schema = {"inputSchema": {"type": "object", "properties": {}}}
    if change == "description":
        changed = merge_catalog(tool_list, [{"name": "a", "description": "two", **schema}, {"name": "b", **schema}],
                                settings=[], selector=ToolSelector(), now=T1).tools
    elif change == "removed":
        changed = merge_catalog(tool_list, [{"name": "a", "description": "one", **schema}],
                                settings=[], selector=ToolSelector(), now=T1).tools
    elif change == "disabled":
        changed = [tool_list[0].model_copy(update={"enabled": False}), tool_list[1]]
    else:
        changed, server = tool_list, SERVER.model_copy(update={"version": "1.5.0"})
    assert content_hash(server, changed) != content_hash(SERVER, tool_list)


# ---------------------------------------------------------------------------- manifest


def test_manifest_metadata_and_owner_reference():
    rendered = render_cache(document(tools({"name": "a"})))
    configmap = manifest_for(rendered)
    assert (configmap["apiVersion"], configmap["kind"]) == ("v1", "ConfigMap")
    metadata = configmap["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("toolserver-clickup", "team-a")
    assert metadata["labels"] == {"app.kubernetes.io/managed-by": "toolcatalog",
                                  "toolcatalog.dev/kind": "ToolServer",
                                  "toolcatalog.dev/name": "clickup"}
    assert metadata["annotations"] == {"toolcatalog.dev/cached-at": T0,
                                       "toolcatalog.dev/content-hash": rendered.content_hash}
    assert metadata["ownerReferences"] == [{
        "apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer", "name": "clickup",
        "uid": UID, "controller": True, "blockOwnerDeletion": True}]
    assert configmap["data"] == rendered.data
    assert "binaryData" not in configmap
    json.dumps(configmap)  # a plain JSON body


def test_long_name_label_is_truncated_valid_and_distinct():
    long_a, long_b = "team." + "a" * 200, "team." + "a" * 199 + "b"
    values = [label_value(v) for v in (long_a, long_b)]
    assert values[0] != values[1]
    for value in values:
        assert len(value) <= 63 and LABEL_VALUE.match(value), value
    configmap = manifest_for(render_cache(document(tools({"name": "a"}))), name=long_a,
                             kind="ConnectorConfig")
    labels = configmap["metadata"]["labels"]
    assert labels["toolcatalog.dev/name"] == values[0]
    assert configmap["metadata"]["ownerReferences"][0]["name"] == long_a  # the real name
    assert label_value("clickup") == "clickup"
    assert label_value("x" * 63) == "x" * 63


@pytest.mark.parametrize("separator", ["-", ".", "_"])
def test_label_cut_never_ends_in_a_separator(separator):
    value = "a" * 51 + separator + "b" * 40
    assert LABEL_VALUE.match(label_value(value))


def test_patch_switching_to_gzip_removes_data_and_back():
    small = render_cache(document(tools({"name": "a"})))
    big = render_cache(padded_document(constants.GZIP_THRESHOLD_BYTES + 1))
    to_gzip = configmap_patch(manifest_for(big))
    assert to_gzip["data"] is None
    assert set(to_gzip["binaryData"]) == {"tools.json.gz"}
    to_plain = configmap_patch(manifest_for(small))
    assert to_plain["binaryData"] is None
    assert to_plain["data"] == small.data
    assert set(to_plain) == {"metadata", "data", "binaryData"}
    assert set(to_plain["metadata"]) == {"labels", "annotations", "ownerReferences"}
    assert to_plain["metadata"]["ownerReferences"][0]["uid"] == UID

    # Applying the patch as RFC 7386 merge-patch leaves exactly one form.
    stored = manifest_for(small)
    merged = merge_patch(stored, to_gzip)
    assert "data" not in merged and parse_cache(merged) == padded_document(
        constants.GZIP_THRESHOLD_BYTES + 1)
    merged = merge_patch(merged, to_plain)
    assert "binaryData" not in merged and "tools.json" in merged["data"]


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386, as the API server applies a merge-patch."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


@pytest.mark.parametrize("references, owned", [
    ([{"uid": UID, "controller": True, "kind": "ToolServer", "name": "clickup"}], True),
    ([{"uid": "other", "controller": True}, {"uid": UID, "controller": True}], True),
    ([{"uid": UID, "controller": False}], False),
    ([{"uid": UID}], False),
    ([{"uid": "other", "controller": True}], False),
    ([], False),
    (None, False),
])
def test_is_owned_by(references, owned):
    metadata = {"name": "toolserver-clickup"}
    if references is not None:
        metadata["ownerReferences"] = references
    assert is_owned_by({"metadata": metadata}, UID) is owned


def test_built_manifest_is_owned_by_its_resource():
    configmap = manifest_for(render_cache(document(tools({"name": "a"}))))
    assert is_owned_by(configmap, UID)
    assert not is_owned_by(configmap, "someone-else")


# ---------------------------------------------------------------------------- parse


def test_round_trip_plain():
    doc = document(tools({"name": "a", "description": "d", "annotations": {"x": 1}}))
    assert parse_cache(manifest_for(render_cache(doc))) == doc


def gz64(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data)).decode()


@pytest.mark.parametrize("configmap, message", [
    ({}, "neither"),
    ({"data": {"other": "x"}}, "neither"),
    ({"data": {"tools.json": "{not json"}}, "not valid JSON"),
    ({"data": {"tools.json": "[]"}}, "does not match"),
    ({"data": {"tools.json": json.dumps({"source": {}, "tools": []})}}, "source.kind"),
    ({"binaryData": {"tools.json.gz": "%%% not base64"}}, "not valid base64"),
    ({"binaryData": {"tools.json.gz": base64.b64encode(b"plain bytes").decode()}},
     "not valid gzip"),
    ({"binaryData": {"tools.json.gz": base64.b64encode(gzip.compress(b"{}")[:-12]).decode()}},
     "truncated"),
    ({"binaryData": {"tools.json.gz": gz64(b"\xff\xfe")}}, "UTF-8"),
    ({"data": {"tools.json": "{}"}, "binaryData": {"tools.json.gz": gz64(b"{}")}}, "both"),
])
def test_parse_errors_are_clear(configmap, message):
    with pytest.raises(CacheParseError, match=message):
        parse_cache(configmap)


def test_parse_refuses_a_gzip_bomb(monkeypatch):
    import toolcatalog.reconcile.cachedoc as cachemap
    monkeypatch.setattr(cachemap, "MAX_DECOMPRESSED_BYTES", 1000)
    with pytest.raises(CacheParseError, match="inflates past"):
        parse_cache({"binaryData": {"tools.json.gz": gz64(b" " * 5000)}})
