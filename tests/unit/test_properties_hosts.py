"""Properties of the host in spec.url (api/validation.py, mcp/egress.py, the CRDs' CEL rule) over hostnames
people and attackers write: IDNA names, full-width and other Unicode digits and dots, mixed scripts.

- Every spec either is refused (InvalidSpec naming spec.url) or names a host the HTTP client uses
  exactly as the validation, the admission webhook and the egress policy read it: the client accepts
  the URL (it used to raise InvalidURL at every attempt, and the resource never got a condition).
- The CRD's CEL rule never refuses a URL the operator would accept (so it can refuse, without the
  webhook, what the operator refuses anyway).
- A host that IDNA's UTS-46 mapping turns into an address of a denied network is refused at
  admission with the egress reason too, and the egress policy never resolves a non-ASCII name (Python's
  resolver would map it with IDNA 2003 first): the deny list cannot be bypassed by another spelling.

The engine's side of "every admitted spec ends with a Synced condition" is tests/engine/test_bad_input.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import idna
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from toolcatalog.api import constants as c
from toolcatalog.api.errors import SyncError
from toolcatalog.api.models import URL_PATTERN
from toolcatalog.api.spec import parse_spec
from toolcatalog.api.validation import URL_HOST_PATTERN, mapped_address, spec_problems, url_problems
from toolcatalog.mcp.egress import EgressPolicy

REPO = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------- strategies

# Digits 0-9 in scripts and forms people paste: ASCII, full-width, mathematical bold and superscript/
# circled (UTS-46 maps all of these to ASCII), Arabic-Indic, Devanagari, Thai (it does not).
DIGIT_SETS = {
    "ascii": "0123456789",
    "fullwidth": "".join(chr(0xFF10 + d) for d in range(10)),
    "math-bold": "".join(chr(0x1D7CE + d) for d in range(10)),
    "superscript": "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
    "circled": "\u24ea" + "".join(chr(0x2460 + d) for d in range(9)),
    "arabic-indic": "".join(chr(0x0660 + d) for d in range(10)),
    "devanagari": "".join(chr(0x0966 + d) for d in range(10)),
    "thai": "".join(chr(0x0E50 + d) for d in range(10)),
}
DOTS = [".", "\u3002", "\uff0e", "\uff61"]          # UTS-46 maps the last three to "."
LOOKALIKES = "\u0430\u0435\u043e\u0440\u0441\u0445\u03bf\u03b1\u0131\u00e9\u00fc\u00df"   # Cyrillic, Greek, ...
FULLWIDTH_LETTERS = "".join(chr(0xFF41 + i) for i in range(26))


@st.composite
def spelled_addresses(draw: st.DrawFn) -> tuple[ipaddress.IPv4Address, str]:
    """An IPv4 address written with one digit set per octet (or one for all) and one kind of dot."""
    address = draw(st.ip_addresses(v=4))
    one = draw(st.sampled_from(sorted(DIGIT_SETS)))
    octets = []
    for octet in address.packed:
        digits = DIGIT_SETS[draw(st.sampled_from([one, one, *sorted(DIGIT_SETS)]))]
        octets.append("".join(digits[int(d)] for d in str(octet)))
    return address, draw(st.sampled_from(DOTS)).join(octets)


labels = st.text(alphabet="abcxyz019-" + LOOKALIKES + FULLWIDTH_LETTERS + DIGIT_SETS["fullwidth"][:3],
                 min_size=1, max_size=10)
unicode_labels = st.text(st.characters(categories=("Ll", "Lu", "Lo", "Nd", "Mn", "No", "Pd"),
                                       exclude_characters="/?#@:[]%"), min_size=1, max_size=8)
mixed_names = st.lists(st.one_of(labels, unicode_labels), min_size=1, max_size=4).map(".".join)
ascii_odd = st.text(alphabet="ab1-_.~!$&'()*+,;=<>\"`{}|\\^%", min_size=1, max_size=12)
hosts = st.one_of(spelled_addresses().map(lambda case: case[1]), mixed_names, ascii_odd,
                  st.ip_addresses(v=6).map(lambda address: f"[{address}]"))
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda port: f":{port}"))


def _url(host: str, port: str = "") -> str:
    return f"http://{host}{port}/mcp"


def _refusal(url: str) -> str | None:
    """The InvalidSpec message, or None when the spec parses; any other exception fails the test."""
    try:
        parse_spec(c.KIND_TOOLSERVER, {"url": url})
    except SyncError as error:
        assert error.reason == c.REASON_INVALID_SPEC
        return error.message
    return None


# ----------------------------------------------------------------------------- properties


@given(hosts, ports)
@example("\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14", "")  # the issue's
@example("\u0661\u0662\u0667.0.0.1", ":80")
@example("b\u00fccher.example", "")
@example("exa\u00admple.com", "")            # a soft hyphen: IDNA2008 refuses it, UTS-46 drops it
@example("loc\u0430lhost", ":9")              # a Cyrillic a
@example("a<b", "")
@example("[v1.x]", "")                        # urlsplit's IPvFuture: no HTTP client connects there
@example("xn--bcher-kva.example", "")
def test_a_host_is_refused_naming_spec_url_or_is_exactly_what_the_http_client_uses(host: str, port: str) -> None:
    url = _url(host, port)
    refusal = _refusal(url)
    if refusal is not None:
        assert "spec.url" in refusal, refusal
        return
    assert url_problems(url) == [] and spec_problems({"url": url}) == []
    parsed = urlsplit(url)
    client = httpx2.URL(url)                  # raised InvalidURL at every sync before: no condition, ever
    httpx2.Request("POST", url)
    used = client.raw_host.decode("ascii")  # what it resolves and connects to (.host decodes xn-- for show)
    if host.startswith("["):
        assert ipaddress.ip_address(used.split("%")[0]) == ipaddress.ip_address((parsed.hostname or "").split("%")[0])
    else:
        assert used == parsed.hostname           # the host egress checks and admission saw, as written
    assert client.port == (parsed.port if parsed.port != 80 else None)


@given(hosts, ports)
@example("[fe80::1%eth0]", "")
@example("[fe80::1%25eth0]", ":8080")
@example("Example.COM", "")
def test_the_crd_rule_never_refuses_a_url_the_operator_accepts(host: str, port: str) -> None:
    url = _url(host, port)
    if re.search(URL_PATTERN, url) and url_problems(url) == []:
        assert re.search(URL_HOST_PATTERN, url), url


@pytest.mark.parametrize("crd", ["crds/toolservers.yaml", "crds/connectorconfigs.yaml"])
def test_the_crd_rule_is_the_operators_pattern(crd: str) -> None:
    document = yaml.safe_load((REPO / crd).read_text())
    url = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["url"]
    (rule,) = url["x-kubernetes-validations"]
    assert rule["rule"] == f"self.matches(r'{URL_HOST_PATTERN}')"
    assert "A-label" in rule["message"]


def _mapped(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(idna.encode(host, uts46=True).decode())
    except (ValueError, UnicodeError):
        return None


@given(spelled_addresses(), st.integers(8, 32))
@example((ipaddress.IPv4Address("127.0.0.2"), "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff12"), 32)
@example((ipaddress.IPv4Address("169.254.169.254"),
          "\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14"), 16)
@example((ipaddress.IPv4Address("127.0.0.1"), "\u00b9\u00b2\u2077\u3002\u2070\u3002\u2070\u3002\u00b9"), 8)
def test_no_spelling_of_a_denied_address_gets_past_admission_or_egress(
        case: tuple[ipaddress.IPv4Address, str], prefix: int) -> None:
    address, host = case
    denied = ipaddress.IPv4Network((address, prefix), strict=False)
    policy = EgressPolicy.from_lists([str(denied)])
    problems = spec_problems({"url": _url(host)}, egress_verdict=policy.verdict)
    assert problems != []
    if host != str(address):
        assert any("not ASCII" in problem for problem in problems), problems
        if _mapped(host) == address:          # it IS the address to a UTS-46 reader: say it is denied
            assert mapped_address(_url(host)) == address
            assert any(f"reads as {address} under IDNA mapping" in problem and "denied network" in problem
                       for problem in problems), problems
        with pytest.raises(SyncError) as refused:       # and the egress check never resolves such a name
            asyncio.run(policy.permitted_addresses(host))
        assert refused.value.reason == c.REASON_INVALID_SPEC
    else:
        assert any("may not connect there" in problem for problem in problems)
