"""What a spec must satisfy beyond its schema: URLs, addresses, globs, per-tool settings. Pure.

Used twice with the same words: by the admission webhook, which rejects such a spec before it is
stored, and by the sync, which reports InvalidSpec (never retried) when one got past admission.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .models import HASH_PATTERN

# Something an IPv4 parser that follows inet_aton (C libraries, some HTTP clients) reads as an
# address: dotted parts in decimal, octal (leading 0) or hex (0x), or a single number.
_IPV4_LIKE = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}\.?")
GLOB_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,128}")
# inet_aton stops reading at whitespace (a C string at NUL) and ignores the rest: "127.0.0.1 x".
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


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
    if _IPV4_LIKE.fullmatch(host):
        try:
            canonical = str(ipaddress.IPv4Address(host.rstrip(".")))
        except ValueError:
            canonical = None
        if canonical != host:
            problems.append(f"{field} host {host!r} is an IPv4 address in a non-standard form (octal, hex, "
                            "zero-padded or shortened); write it as four decimal numbers, like 10.0.0.1")
    return problems


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
        address = literal_address(url)
        if address is not None and egress_verdict is not None and (reason := egress_verdict(address)):
            problems.append(f"spec.url: the operator may not connect there: {reason}")
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
