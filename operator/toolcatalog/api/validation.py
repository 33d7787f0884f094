"""What a spec must satisfy beyond its schema: URLs, addresses, globs, per-tool settings. Pure.

Used twice with the same words: by the admission webhook, which rejects such a spec before it is
stored, and by the sync, which reports InvalidSpec (never retried) when one got past admission.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import idna

from .models import HASH_PATTERN, HEADER_NAME_PATTERN

# Something an IPv4 parser that follows inet_aton (C libraries, some HTTP clients) reads as an
# address: dotted parts in decimal, octal (leading 0) or hex (0x), or a single number.
_IPV4_LIKE = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}\.?")
GLOB_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,128}")
# inet_aton stops reading at whitespace (a C string at NUL) and ignores the rest: "127.0.0.1 x".
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# A host the HTTP client uses exactly as written: a DNS name in ASCII (urlsplit lowercases it), or an
# IPv6 literal in brackets, maybe with a zone. A non-ASCII name would go through IDNA first, and IDNA
# implementations disagree (strict IDNA2008 refuses full-width digits, UTS-46 maps them to 0-9): so
# an internationalized name must be written in its A-label form (xn--...), as Kubernetes' own host
# fields (Ingress, Gateway) require. The CRDs' CEL rule on spec.url matches URL_HOST_PATTERN, which
# accepts every URL url_problems accepts (a test keeps them in step), so the API server refuses such a
# host even without the admission webhook.
URL_HOST_PATTERN = (r"^https?://([^/?#]*@)?([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+(%(25)?[A-Za-z0-9._~-]+)?\])"
                    r"(:[0-9]*)?([/?#].*)?$")
_NAME_HOST = re.compile(r"[a-z0-9_.-]+")
_IPV6_ZONE = re.compile(r"(?:25)?[a-z0-9._~-]+")
# What an HTTP header value may hold (RFC 9110 field-vchar, SP and HTAB; obs-text is obsolete and
# read differently by different servers, and a bearer token is ASCII by RFC 6750).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def _why_not_a_url(error: ValueError) -> str:
    """What urllib found wrong, in words that never quote the URL: its userinfo may hold a credential."""
    text = str(error)
    if "NFKC" in text:      # urllib quotes the whole netloc, userinfo included
        return "characters that NFKC normalization turns into / ? # @ or :"
    if text.startswith("Port"):
        return "the port must be a number from 0 to 65535"
    return text             # the others quote at most the host in brackets


def url_problems(url: str, field: str = "spec.url") -> list[str]:
    """What is wrong with an MCP endpoint URL, each as a sentence naming the field; [] when usable."""
    if _SPACE_OR_CONTROL.search(url):
        return [f"{field} must not contain whitespace or control characters"]
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port      # raises on a port that is not a number in range
    except ValueError as error:
        return [f"{field} is not a valid URL ({_why_not_a_url(error)})"]
    if parts.scheme not in ("http", "https") or not host:
        return [f"{field} must be an http:// or https:// URL with a host"]
    problems = []
    if parts.username is not None or parts.password is not None:
        problems.append(f"{field} must not carry credentials; use spec.auth with a Secret")
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    if (problem := _host_problem(host, bracketed, field)) is not None:
        problems.append(problem)
    elif _IPV4_LIKE.fullmatch(host):
        try:
            canonical = str(ipaddress.IPv4Address(host.rstrip(".")))
        except ValueError:
            canonical = None
        if canonical != host:
            problems.append(f"{field} host {host!r} is an IPv4 address in a non-standard form (octal, hex, "
                            "zero-padded or shortened); write it as four decimal numbers, like 10.0.0.1")
    return problems


def _host_problem(host: str, bracketed: bool, field: str) -> str | None:
    """Why the HTTP client could not use `host` exactly as written (urlsplit's hostname: lowercased,
    brackets removed), or None. Names the first offending character, never the whole host."""
    if bracketed:
        address, _, zone = host.partition("%")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return f"{field} host in brackets must be an IPv6 address"
        if zone and not _IPV6_ZONE.fullmatch(zone):
            return f"{field} host has an IPv6 zone with characters other than letters, digits and . _ ~ -"
        return None
    if _NAME_HOST.fullmatch(host):
        return None
    odd = next(char for char in host if not _NAME_HOST.fullmatch(char))
    if not odd.isascii():
        return (f"{field} host has a character that is not ASCII ({describe_character(odd)}): write an "
                "internationalized name in its IDNA A-label form (xn--...) and digits as 0-9")
    return (f"{field} host has a character a host name cannot have ({describe_character(odd)}): use letters, "
            "digits, '-', '_' and '.', or an IPv6 address in brackets")


def describe_character(char: str) -> str:
    """One character as a reader can identify it whatever their font: U+FF11 FULLWIDTH DIGIT ONE."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"


def mapped_address(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a non-ASCII host turns into under IDNA's UTS-46 mapping (what browsers and some
    resolvers do: `１６９.２５４.１６９.２５４` is 169.254.169.254), if it turns into one. Such a host is
    refused anyway; this lets the refusal say when it would also be an address the operator may not reach."""
    try:
        host = urlsplit(url).hostname or ""
        if host.isascii():
            return None
        return ipaddress.ip_address(idna.encode(host, uts46=True).decode("ascii"))
    except (ValueError, UnicodeError):      # idna.IDNAError is a UnicodeError
        return None


def header_value_problem(value: str) -> str | None:
    """What keeps `value` out of an HTTP header (a phrase, never quoting it: it may be a credential), or None."""
    if _HEADER_VALUE.fullmatch(value):
        return None
    if not value.isascii():
        return "a character that is not ASCII"
    return "a control character (such as a line break)"


def literal_address(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a URL's host is written as, if it is one."""
    try:
        host = urlsplit(url).hostname or ""
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def glob_problems(patterns: Iterable[Any], field: str) -> list[str]:
    problems = []
    for index, pattern in enumerate(patterns):
        where = f"{field}[{index}]"
        if not isinstance(pattern, str) or not GLOB_PATTERN.fullmatch(pattern):
            problems.append(f"{where} must be a glob of 1 to 128 characters of tool names and * ? [ ] ! only")
        elif pattern.count("[") != pattern.count("]"):
            problems.append(f"{where} has an unbalanced [ ]")
    return problems


def _egress_problems(url: str, egress_verdict: Callable[[Any], str | None]) -> list[str]:
    address = literal_address(url)
    if address is not None and (reason := egress_verdict(address)):
        return [f"spec.url: the operator may not connect there: {reason}"]
    mapped = mapped_address(url)
    if mapped is not None and (reason := egress_verdict(mapped)):
        return [f"spec.url: its host reads as {mapped} under IDNA mapping, and the operator may not connect "
                f"there: {reason}"]
    return []


def header_problems(headers: Any, field: str = "spec.headers") -> list[str]:
    """Static headers: names that are HTTP tokens, values an HTTP header can carry (the HTTP client
    refuses anything else at every attempt)."""
    if not isinstance(headers, Mapping):
        return []
    problems = []
    for name, value in headers.items():
        if not isinstance(name, str) or not re.fullmatch(HEADER_NAME_PATTERN, name):
            problems.append(f"{field}: a header name may hold only letters, digits and !#$%&'*+.^_`|~-")
        elif isinstance(value, str) and (why := header_value_problem(value)) is not None:
            problems.append(f"{field}.{name} has {why}, and an HTTP header value must be printable ASCII")
    return problems


def _list(value: Any) -> list[Any]:
    """A list field as given, or [] when it is not a list (the schema reports that, not these checks)."""
    return value if isinstance(value, list) else []


def spec_problems(spec: Mapping[str, Any], *, egress_verdict: Callable[[Any], str | None] | None = None) -> list[str]:
    """Everything the CRD schema and its CEL rules cannot say about a ToolServer or ConnectorConfig spec.

    Answers any JSON object, schema-valid or not, without raising (the admission webhook calls it)."""
    problems: list[str] = []
    url = spec.get("url")
    if isinstance(url, str):
        problems += url_problems(url)
        if egress_verdict is not None:
            problems += _egress_problems(url, egress_verdict)
    problems += header_problems(spec.get("headers"))
    selector = spec.get("toolSelector") or {}
    if isinstance(selector, Mapping):
        problems += glob_problems(_list(selector.get("include")), "spec.toolSelector.include")
        problems += glob_problems(_list(selector.get("exclude")), "spec.toolSelector.exclude")
    seen: set[str] = set()
    for index, setting in enumerate(_list(spec.get("tools"))):
        if not isinstance(setting, Mapping):
            continue
        name = setting.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"spec.tools[{index}]: {name!r} is listed twice")
            seen.add(name)
        approved = setting.get("approvedHash")
        if approved is not None and not (isinstance(approved, str) and re.fullmatch(HASH_PATTERN, approved)):
            problems.append(f"spec.tools[{index}].approvedHash must be sha256: and 64 hex digits (a tool's "
                            "schemaHash, as `kubectl toolcatalog approve` writes it)")
    return problems
