"""Properties of URL and address checks (api/validation.py) and the egress policy (mcp/egress.py).

- Every spelling of an IPv4 address that an inet_aton-style parser (C libraries, some HTTP clients)
  or a WHATWG URL parser reads as an address, other than four plain decimal numbers, is refused:
  octal, hex, zero-padded, fewer than four parts, a trailing dot, junk after whitespace. glibc's own
  inet_aton checks that each generated spelling really means the address it was built from.
- The canonical form, IPv6 literals and host names are accepted, and literal_address reads the
  address back.
- Credentials in the URL (userinfo) are always refused, and the problem never repeats them.
- An address in a denied network is never allowed, whether written as IPv4 or as IPv4-mapped IPv6
  (the one alternative spelling egress.py claims to handle), and whether the network is written
  one way or the other; a spec naming such an address, in any spelling, is refused at admission.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st

from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.spec import parse_spec
from toolcatalog.api.validation import literal_address, spec_problems, url_problems
from toolcatalog.mcp.egress import EgressPolicy

SECRET = "pw-CANARY-5c1e"

# ----------------------------------------------------------------------------- IPv4 spellings


def _part(value: int, style: str, zeros: int, upper: bool) -> str:
    if style == "dec":
        return str(value)           # zero-padded decimal is octal to inet_aton: "010" is 8
    if style == "oct":
        return "0" + "0" * zeros + format(value, "o")
    digits = "0" * zeros + format(value, "X" if upper else "x")
    return ("0X" if upper else "0x") + digits


@st.composite
def ipv4_spellings(draw: st.DrawFn, addresses: st.SearchStrategy[ipaddress.IPv4Address] | None = None
                   ) -> tuple[ipaddress.IPv4Address, str]:
    """An address and one way inet_aton (or a WHATWG URL parser) would read it: 1 to 4 parts, the last
    filling the remaining bytes, each in decimal, octal or hex (these two maybe zero-padded), maybe a
    trailing dot."""
    address = draw(addresses if addresses is not None else st.ip_addresses(v=4))
    count = draw(st.integers(1, 4))
    packed = address.packed
    values = [*packed[:count - 1], int.from_bytes(packed[count - 1:], "big")]
    parts = [_part(value, draw(st.sampled_from(["dec", "dec", "oct", "hex"])),
                   draw(st.sampled_from([0, 0, 0, 1, 2])), draw(st.booleans())) for value in values]
    return address, ".".join(parts) + draw(st.sampled_from(["", "", "."]))


def _inet_aton(text: str) -> bytes:
    return socket.inet_aton(text.rstrip("."))


def _url(host: str, port: str = "", path: str = "/mcp", scheme: str = "http") -> str:
    return f"{scheme}://{host}{port}{path}"


ports = st.one_of(st.just(""), st.integers(0, 65535).map(lambda port: f":{port}"))


@given(ipv4_spellings(), ports)
@example((ipaddress.IPv4Address("169.254.169.254"), "0251.0376.0251.0376"), "")
@example((ipaddress.IPv4Address("127.0.0.2"), "0177.0.0.02"), "")
@example((ipaddress.IPv4Address("127.0.0.2"), "127.000.000.002"), "")
@example((ipaddress.IPv4Address("127.0.0.1"), "127.1"), ":80")
@example((ipaddress.IPv4Address("127.0.0.1"), "2130706433"), "")
@example((ipaddress.IPv4Address("127.0.0.1"), "0x7f000001"), "")
@example((ipaddress.IPv4Address("127.0.0.1"), "127.0.0.1."), "")
def test_only_the_canonical_ipv4_spelling_is_accepted(case: tuple[ipaddress.IPv4Address, str], port: str) -> None:
    address, host = case
    assert _inet_aton(host) == address.packed            # the spelling means that address to a C library
    problems = url_problems(_url(host, port))
    if host == str(address):
        assert problems == []
        assert literal_address(_url(host, port)) == address
    else:
        assert len(problems) == 1 and "non-standard form" in problems[0] and problems[0].startswith("spec.url ")
        with_error = _parse_error(_url(host, port))
        assert with_error is not None and with_error.reason == c.REASON_INVALID_SPEC


def _parse_error(url: str) -> SyncError | None:
    try:
        parse_spec(c.KIND_TOOLSERVER, {"url": url})
    except SyncError as error:
        return error
    return None


@given(ipv4_spellings(), st.sampled_from([" ", "\t", "\n", "\r", "\v", "\f", "\x00"]), st.text(max_size=5))
@example((ipaddress.IPv4Address("127.0.0.1"), "127.0.0.1"), "\v", "")
@example((ipaddress.IPv4Address("169.254.169.254"), "169.254.169.254"), " ", "x")
def test_junk_after_an_ipv4_address_is_refused(case: tuple[ipaddress.IPv4Address, str], space: str,
                                              junk: str) -> None:
    """inet_aton stops at whitespace and ignores the rest (C strings stop at NUL): such a host is the
    address to some parsers and a name to others, so it is refused, by url_problems alone too (the
    CRD's \\s is RE2's, which has no \\v, so admission sees these)."""
    address, host = case
    host += space + junk
    url = _url(host)
    assert url_problems(url) != []
    assert spec_problems({"url": url}) != []
    assert _parse_error(url) is not None


def _labels(first: str) -> st.SearchStrategy[str]:
    """A DNS label starting with one of `first`: letters, digits and -, not ending in - (st.from_regex is slow)."""
    return st.builds(lambda head, body, tail, bare: head if bare else head + body + tail,
                     st.sampled_from(first), st.text(alphabet="az09-", max_size=8), st.sampled_from("a9"),
                     st.booleans())


hostnames = st.builds(lambda head, top: ".".join([*head, top]), st.lists(_labels("a0z9"), max_size=3),
                      _labels("az"))         # the last label never looks numeric, as a TLD


@given(hostnames, ports, st.sampled_from(["http", "https"]))
@example("localhost", "", "http")
@example("0xdeadbeef.example", ":8080", "https")
def test_host_names_are_accepted_and_are_not_addresses(host: str, port: str, scheme: str) -> None:
    url = _url(host, port, scheme=scheme)
    assert url_problems(url) == []
    assert literal_address(url) is None


def _ipv6_spellings(address: ipaddress.IPv6Address, style: str) -> str:
    if style == "compressed":
        return address.compressed
    if style == "exploded":
        return address.exploded
    if style == "upper":
        return address.exploded.upper()
    mapped = address.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else address.compressed


ipv6_styles = st.sampled_from(["compressed", "exploded", "upper", "dotted"])


@given(st.ip_addresses(v=6), ipv6_styles, ports)
@example(ipaddress.IPv6Address("::ffff:169.254.169.254"), "dotted", "")
def test_ipv6_literals_are_accepted_and_read_back(address: ipaddress.IPv6Address, style: str, port: str) -> None:
    url = _url(f"[{_ipv6_spellings(address, style)}]", port)
    assert url_problems(url) == []
    assert literal_address(url) == address


userinfo_chars = st.characters(blacklist_characters="/?#@", blacklist_categories=("Cs",))
nfkc_traps = st.sampled_from(["\uff03", "\uff1f", "\uff0f", "\uff20", "\uff1a", "\u2100", "\ufe6b"])
userinfo_text = st.lists(st.one_of(userinfo_chars, nfkc_traps), max_size=8).map("".join)


@given(userinfo_text, st.sampled_from(["password", "user", "bare"]), userinfo_text,
       st.one_of(hostnames, st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]")), ports)
@example("user", "password", "\uff03", "example.com", "")
@example("", "bare", "", "example.com", "")
@example(":", "bare", "", "example.com", "")
@example("", "password", "", "10.0.0.1", ":80")
def test_credentials_in_the_url_are_always_refused_and_never_repeated(
        user: str, form: str, noise: str, host: str, port: str) -> None:
    userinfo = {"password": f"{user}:{SECRET}{noise}", "user": f"{user}{SECRET}{noise}", "bare": user}[form]
    url = _url(f"{userinfo}@{host}", port)
    problems = url_problems(url)
    assert problems != []               # even an empty userinfo: "http://@host/" is refused
    assert all(problem.startswith("spec.url ") and SECRET not in problem for problem in problems)
    error = _parse_error(url)
    assert error is not None and error.reason == c.REASON_INVALID_SPEC and SECRET not in error.message


@given(st.text(max_size=60))
@example("http://[::1")
@example("http://example.com:99999/")
@example("http://example.com:port/")
@example("http://[v1.x]/")
def test_url_problems_answers_any_text_with_sentences_naming_the_field(url: str) -> None:
    problems = url_problems(url)
    assert all(problem.startswith("spec.url ") for problem in problems)
    if problems == []:
        assert url.lower().startswith(("http://", "https://"))


# ----------------------------------------------------------------------------- egress

LINK_LOCAL_V4 = ipaddress.IPv4Network("169.254.0.0/16")


def ip_networks(v: int) -> st.SearchStrategy[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    network = ipaddress.IPv4Network if v == 4 else ipaddress.IPv6Network
    return st.builds(lambda address, prefix: network((address, prefix), strict=False),
                     st.ip_addresses(v=v), st.integers(0, 32 if v == 4 else 128))


def _mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address("::ffff:0:0")) | int(address))


def _mapped_network(network: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(f"{_mapped(network.network_address)}/{96 + network.prefixlen}")


@st.composite
def network_and_member(draw: st.DrawFn) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    network = draw(ip_networks(4))
    member = network.network_address + draw(st.integers(0, network.num_addresses - 1))
    return network, member


def _spellings_of(address: ipaddress.IPv4Address) -> list[Any]:
    mapped = _mapped(address)
    return [address, str(address), mapped, str(mapped), f"::ffff:{address}", mapped.exploded]


@given(network_and_member(), st.booleans(), st.lists(ip_networks(4) | ip_networks(6), max_size=3))
@example((ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv4Address("169.254.169.254")), True, [])
@example((ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv4Address("169.254.169.254")), False, [])
def test_an_ipv4_address_in_a_denied_network_is_denied_however_either_is_written(
        case: tuple[ipaddress.IPv4Network, ipaddress.IPv4Address], network_as_mapped: bool,
        more: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    network, member = case
    written = str(_mapped_network(network)) if network_as_mapped else str(network)
    policy = EgressPolicy.from_lists([written, *map(str, more)])
    for spelling in _spellings_of(member):
        reason = policy.verdict(spelling)
        assert reason is not None and "denied network" in reason, (written, spelling)


@given(network_and_member(), st.lists(st.tuples(st.integers(0, 32), st.booleans()), max_size=3), st.booleans())
@example((ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Address("192.0.2.1")), [(24, False)], False)
@example((ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Address("192.0.2.1")), [(24, True)], True)
def test_only_a_more_specific_allow_lets_through_an_address_a_network_denies(
        case: tuple[ipaddress.IPv4Network, ipaddress.IPv4Address], allows: list[tuple[int, bool]],
        deny_as_mapped: bool) -> None:
    """docs/explanation/failure-handling.md: the most specific matching network decides, and a deny wins a tie."""
    network, member = case
    allowed = [(ipaddress.IPv4Network((member, prefix), strict=False), as_mapped) for prefix, as_mapped in allows]
    written = [str(_mapped_network(net)) if as_mapped else str(net) for net, as_mapped in allowed]
    policy = EgressPolicy.from_lists([str(_mapped_network(network)) if deny_as_mapped else str(network)], written)
    more_specific = any(net.prefixlen > network.prefixlen for net, _ in allowed)
    for spelling in _spellings_of(member):
        assert (policy.verdict(spelling) is None) == more_specific, (network, allowed, spelling)


@given(ip_networks(6), st.data())
@example(ipaddress.IPv6Network("fe80::/10"), None)
def test_an_ipv6_address_in_a_denied_network_is_denied(network: ipaddress.IPv6Network, data: Any) -> None:
    offset = data.draw(st.integers(0, network.num_addresses - 1)) if data is not None else 1
    member = network.network_address + offset
    assume(member.ipv4_mapped is None)      # those are IPv4 addresses: the test above
    assert EgressPolicy.from_lists([str(network)]).verdict(member) is not None
    assert EgressPolicy.from_lists([str(network)]).verdict(str(member)) is not None


@given(network_and_member(), st.booleans(), st.booleans())
def test_an_allow_list_permits_exactly_its_networks_however_either_is_written(
        case: tuple[ipaddress.IPv4Network, ipaddress.IPv4Address], network_as_mapped: bool,
        inside: bool) -> None:
    network, member = case
    if not inside:
        assume(network.prefixlen > 0)
        member = ipaddress.IPv4Address(int(member) ^ (1 << (32 - network.prefixlen)))   # just outside
    written = str(_mapped_network(network)) if network_as_mapped else str(network)
    policy = EgressPolicy.from_lists([], [written])
    for spelling in _spellings_of(member):
        assert (policy.verdict(spelling) is None) == inside, (written, spelling)


@given(ipv4_spellings(st.ip_addresses(network=LINK_LOCAL_V4)), st.sampled_from(["v4", "mapped", "mapped-hex"]))
@example((ipaddress.IPv4Address("169.254.169.254"), "169.254.169.254"), "v4")
@example((ipaddress.IPv4Address("169.254.169.254"), "169.254.169.254"), "mapped")
def test_a_spec_naming_a_denied_address_is_refused_at_admission_in_any_spelling(
        case: tuple[ipaddress.IPv4Address, str], form: str) -> None:
    address, spelling = case
    host = spelling if form == "v4" else f"[::ffff:{address}]" if form == "mapped" else f"[{_mapped(address)}]"
    problems = spec_problems({"url": _url(host)}, egress_verdict=EgressPolicy().verdict)
    assert problems != [] and all(problem.startswith("spec.url") for problem in problems)

