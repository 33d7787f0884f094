"""The egress policy decides on IP literals alone: no DNS, no network."""

from __future__ import annotations

import ipaddress

import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError as FetchError
from toolcatalog.cli import build_parser, config_from
from toolcatalog.mcp.egress import ALLOW_FLAG, DENY_FLAG, EgressPolicy, parse_networks


def nets(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return parse_networks(cidrs)


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:169.254.169.254"])
def test_default_policy_denies_link_local_and_cloud_metadata(address: str) -> None:
    assert EgressPolicy().verdict(address) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "192.0.2.10", "2001:db8::1", "::1"])
def test_default_policy_allows_everything_else(address: str) -> None:
    assert EgressPolicy().verdict(address) is None


def test_verdict_names_the_denying_network_and_setting() -> None:
    reason = EgressPolicy().verdict("169.254.169.254")
    assert reason is not None
    assert "169.254.0.0/16" in reason and DENY_FLAG in reason


def test_more_specific_allow_overrides_a_broad_deny() -> None:
    policy = EgressPolicy(deny=nets("10.0.0.0/8"), allow=None)
    assert policy.verdict("10.1.2.3") is not None
    policy = EgressPolicy(deny=nets("10.0.0.0/8"), allow=nets("10.1.2.0/24", "0.0.0.0/0", "::/0"))
    assert policy.verdict("10.1.2.3") is None
    assert policy.verdict("10.1.3.3") is not None


def test_more_specific_deny_overrides_a_broad_allow() -> None:
    policy = EgressPolicy(deny=nets("127.0.0.2/32"), allow=nets("127.0.0.0/8"))
    assert policy.verdict("127.0.0.1") is None
    assert policy.verdict("127.0.0.2") is not None


def test_deny_wins_a_tie() -> None:
    policy = EgressPolicy(deny=nets("192.0.2.0/24"), allow=nets("192.0.2.0/24"))
    assert policy.verdict("192.0.2.1") is not None


def test_allow_list_mode_denies_what_it_does_not_list() -> None:
    policy = EgressPolicy(deny=[], allow=nets("10.0.0.0/8"))
    assert policy.verdict("10.9.9.9") is None
    reason = policy.verdict("192.0.2.1")
    assert reason is not None and ALLOW_FLAG in reason
    assert policy.verdict("2001:db8::1") is not None  # an IPv4 allow list does not open IPv6


def test_empty_policy_allows_link_local() -> None:
    assert EgressPolicy(deny=[], allow=None).verdict("169.254.169.254") is None


def policy_from(argv: list[str], env: dict[str, str] | None = None) -> EgressPolicy:
    """The policy `toolcatalog run ARGV` builds, with these environment variables."""
    config = config_from(build_parser(env or {}).parse_args(["run", *argv]))
    return EgressPolicy.from_lists(config.egress_deny, config.egress_allow)


def test_the_default_denies_link_local() -> None:
    policy = policy_from([])
    assert policy.deny == nets("169.254.0.0/16", "fe80::/10")
    assert policy.allow is None


def test_flags_take_comma_separated_cidrs() -> None:
    policy = policy_from(["--egress-deny", " 10.0.0.0/8, 192.0.2.7 ,fd00::/8", "--egress-allow=10.1.0.0/16"])
    assert policy.deny == nets("10.0.0.0/8", "192.0.2.7/32", "fd00::/8")
    assert policy.allow == nets("10.1.0.0/16")


def test_environment_variables_are_the_flags_defaults() -> None:
    policy = policy_from([], {"TOOLCATALOG_EGRESS_DENY": "10.0.0.0/8", "TOOLCATALOG_EGRESS_ALLOW": "10.1.0.0/16"})
    assert policy.deny == nets("10.0.0.0/8") and policy.allow == nets("10.1.0.0/16")
    assert policy_from(["--egress-deny=192.0.2.0/24"], {"TOOLCATALOG_EGRESS_DENY": "10.0.0.0/8"}).deny == \
        nets("192.0.2.0/24")


def test_an_empty_deny_disables_the_default_and_an_empty_allow_is_no_allow_list() -> None:
    policy = policy_from(["--egress-deny=", "--egress-allow="])
    assert policy.deny == []
    assert policy.allow is None


def test_an_invalid_cidr_is_named() -> None:
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        policy_from(["--egress-deny=10.0.0.0/8,10.0.0.0/33"])


async def test_permitted_addresses_of_a_literal_need_no_dns() -> None:
    policy = EgressPolicy()
    assert await policy.permitted_addresses("127.0.0.1") == ["127.0.0.1"]
    assert await policy.permitted_addresses("[::1]") == ["::1"]


async def test_check_raises_egress_denied_for_a_denied_literal() -> None:
    with pytest.raises(FetchError) as caught:
        await EgressPolicy().check("169.254.169.254")
    assert caught.value.reason == c.REASON_EGRESS_DENIED
    assert "169.254.169.254" in caught.value.message


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::169.254.169.254"])
def test_a_denied_ipv4_network_is_not_reachable_through_nat64_6to4_or_ipv4_compatible_addresses(address):
    verdict = EgressPolicy().verdict(address)
    assert verdict is not None and "reaches 169.254.169.254" in verdict


def test_a_translation_prefix_itself_is_not_denied_by_default():
    assert EgressPolicy().verdict("64:ff9b::808:808") is None       # 8.8.8.8 through NAT64: a public address
