"""Spec validation: what a user sees when a spec cannot be used (reason InvalidSpec)."""

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.models import ConnectorConfigSpec
from toolcatalog.api.spec import check_url, names_of, parse_spec, settings_of


def problem(kind, spec):
    with pytest.raises(SyncError) as info:
        parse_spec(kind, spec)
    assert info.value.reason == c.REASON_INVALID_SPEC
    return info.value.message


def test_missing_url_names_the_field():
    assert "spec.url: Field required" in problem(c.KIND_TOOLSERVER, {})


def test_bad_scheme_names_the_field_without_echoing_input():
    message = problem(c.KIND_TOOLSERVER, {"url": "ftp://secret-host.example/mcp"})
    assert "spec.url" in message and "secret-host" not in message


def test_unknown_transport_and_bad_numbers():
    message = problem(c.KIND_TOOLSERVER, {"url": "http://127.0.0.1/mcp", "transport": "grpc",
                                          "sync": {"timeoutSeconds": 0}})
    assert "spec.transport" in message and "spec.sync.timeoutSeconds" in message


def test_connectorconfig_needs_exactly_one_of_ref_and_url():
    assert "exactly one of spec.toolServerRef and spec.url" in problem(c.KIND_CONNECTORCONFIG, {})
    both = {"toolServerRef": {"name": "x"}, "url": "http://127.0.0.1/mcp"}
    assert "exactly one" in problem(c.KIND_CONNECTORCONFIG, both)


def test_ca_bundle_needs_exactly_one_source():
    spec = {"url": "http://127.0.0.1/mcp", "tls": {"caBundle": {}}}
    assert "caBundle" in problem(c.KIND_TOOLSERVER, spec)


def test_defaults_apply():
    spec = parse_spec(c.KIND_TOOLSERVER, {"url": "http://127.0.0.1/mcp"})
    settings = settings_of(spec)
    assert spec.transport == "streamable-http"
    assert (settings.sync.ttl_seconds, settings.sync.timeout_seconds, settings.sync.min_interval_seconds) == (
        3600, 30, 10)
    assert settings.sync.suspend is False and settings.config_map_name is None


def test_connectorconfig_settings_and_secret_names():
    spec = parse_spec(c.KIND_CONNECTORCONFIG, {
        "toolServerRef": {"name": "clickup"}, "owner": "alice@example.com",
        "auth": {"bearerToken": {"secretKeyRef": {"name": "alice", "key": "token"}},
                 "headers": [{"name": "X-Api-Key", "secretKeyRef": {"name": "keys", "key": "api"}}]}})
    assert isinstance(spec, ConnectorConfigSpec)
    settings = settings_of(spec)
    assert (settings.owner, settings.tool_server_ref) == ("alice@example.com", "clickup")
    assert names_of(spec).secrets == {"alice", "keys"} and names_of(spec).toolserver == "clickup"


@pytest.mark.parametrize("url", ["http://user:pw@127.0.0.1/mcp", "file:///etc/passwd", "http:///nohost"])
def test_check_url_rejects_unusable_urls(url):
    with pytest.raises(SyncError) as info:
        check_url(url)
    assert info.value.reason == c.REASON_INVALID_SPEC and "pw" not in info.value.message
