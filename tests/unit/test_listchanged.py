"""The list-changed listeners' pure policy: endpoint fingerprints, reconnect backoff, debouncing, who listens."""

from toolcatalog.api.endpoint import Endpoint, TLSMaterial
from toolcatalog.engine.listeners import backoff_delay, debounce_due, endpoint_fingerprint

TOKEN = "Bearer fp-secret-token-0815"


def endpoint(**overrides):
    fields = {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": TOKEN, "X-Tenant": "a"}}
    return Endpoint(**{**fields, **overrides})


def test_fingerprint_is_a_digest_that_holds_no_header_value():
    fingerprint = endpoint_fingerprint(endpoint())
    assert fingerprint.startswith("hmac-sha256:") and len(fingerprint) == len("hmac-sha256:") + 64
    assert "fp-secret-token" not in fingerprint and fingerprint == endpoint_fingerprint(endpoint())


def test_fingerprint_ignores_header_order_and_where_credentials_come_from():
    reordered = endpoint(headers={"X-Tenant": "a", "Authorization": TOKEN})
    assert endpoint_fingerprint(reordered) == endpoint_fingerprint(endpoint(auth_source="ToolServer x spec.auth"))
    assert endpoint_fingerprint(reordered) == endpoint_fingerprint(endpoint())


def test_fingerprint_changes_with_anything_that_decides_the_session():
    base = endpoint_fingerprint(endpoint())
    variants = [
        endpoint(url="http://127.0.0.1:8001/mcp"),
        endpoint(transport="sse"),
        endpoint(headers={"Authorization": "Bearer rotated", "X-Tenant": "a"}),     # a rotated Secret
        endpoint(headers={"Authorization": TOKEN}),
        endpoint(tls=TLSMaterial(ca_pem="-----BEGIN CERTIFICATE-----\nx\n")),
        endpoint(tls=TLSMaterial(insecure_skip_verify=True)),
    ]
    fingerprints = {endpoint_fingerprint(variant) for variant in variants}
    assert base not in fingerprints and len(fingerprints) == len(variants)


def test_backoff_grows_exponentially_up_to_the_cap():
    ceilings = [backoff_delay(failures, 0.999999, base=1.0, cap=60.0) for failures in range(1, 10)]
    assert [round(c) for c in ceilings] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_delay(10_000, 0.5, base=1.0, cap=60.0) <= 60.0


def test_backoff_jitter_spreads_over_the_upper_half_and_never_spins():
    assert backoff_delay(0, 0.7) == 0.0
    assert backoff_delay(3, 0.0, base=1.0) == 2.0 and backoff_delay(3, 0.999999, base=1.0) < 4.0
    assert min(backoff_delay(1, jitter) for jitter in (0.0, 0.3, 0.9)) >= 0.5


def test_a_burst_resyncs_after_a_quiet_spell_but_no_later_than_the_longest_wait():
    assert debounce_due(10.0, 10.0, quiet=0.5, longest=5.0) == 10.5
    assert debounce_due(10.0, 12.0, quiet=0.5, longest=5.0) == 12.5
    assert debounce_due(10.0, 14.9, quiet=0.5, longest=5.0) == 15.0     # an endless burst still resyncs
