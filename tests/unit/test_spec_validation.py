"""Spec validation: what a user sees when a spec cannot be used (reason InvalidSpec)."""

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.models import ConnectorConfigSpec
from toolcatalog.api.spec import check_url, names_of, parse_spec, settings_of
from toolcatalog.api.validation import spec_problems


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


# ----------------------------------------------------------------------------- hosts and headers (issue 15, item 5)


def test_a_full_width_host_names_the_field_and_the_character_and_what_to_write():
    message = problem(c.KIND_TOOLSERVER, {"url": "http://\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19."
                                                 "\uff12\uff15\uff14/mcp"})
    assert "spec.url host has a character that is not ASCII (U+FF11 FULLWIDTH DIGIT ONE)" in message
    assert "IDNA A-label form (xn--...)" in message


@pytest.mark.parametrize(("host", "words"), [
    ("b\u00fccher.example", "U+00FC LATIN SMALL LETTER U WITH DIAERESIS"),
    ("loc\u0430lhost", "U+0430 CYRILLIC SMALL LETTER A"),
    ("a<b.example", "a character a host name cannot have (U+003C LESS-THAN SIGN)"),
    ("[v1.x]", "host in brackets must be an IPv6 address"),
])
def test_hosts_the_http_client_would_refuse_or_read_differently_are_invalid(host, words):
    assert words in problem(c.KIND_TOOLSERVER, {"url": f"http://{host}/mcp"})


def test_admission_says_when_a_host_reads_as_a_denied_address_under_idna_mapping():
    from toolcatalog.mcp.egress import EgressPolicy

    problems = spec_problems({"url": "http://\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff12:8080/mcp"},
                             egress_verdict=EgressPolicy.from_lists(["127.0.0.2/32"]).verdict)
    assert len(problems) == 2 and "not ASCII" in problems[0]
    assert problems[1] == ("spec.url: its host reads as 127.0.0.2 under IDNA mapping, and the operator may not "
                           "connect there: 127.0.0.2 is in denied network 127.0.0.2/32 (--egress-deny)")


@pytest.mark.parametrize(("headers", "words"), [
    ({"X-Tenant": "caf\u00e9"}, "spec.headers.X-Tenant has a character that is not ASCII"),
    ({"X-Tenant": "a\r\nX-Injected: 1"}, "spec.headers.X-Tenant has a control character"),
    ({"Bad Name": "x"}, "spec.headers: a header name may hold only"),
])
def test_static_headers_must_be_what_http_can_carry(headers, words):
    message = problem(c.KIND_TOOLSERVER, {"url": "http://127.0.0.1/mcp", "headers": headers})
    assert words in message and "caf\u00e9" not in message and "Injected" not in message
    assert parse_spec(c.KIND_TOOLSERVER, {"url": "http://127.0.0.1/mcp", "headers": {"X-Tenant": "a b\tc"}})
