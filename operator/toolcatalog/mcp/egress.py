"""Egress policy: which IP addresses the operator may open connections to.

A ToolServer URL is user input, so without a policy anyone who can create one
can make the operator connect to the node's link-local cloud metadata service
(169.254.169.254) or similar. The decision is pure (`EgressPolicy.verdict` on
an IP address); `permitted_addresses` adds the one DNS lookup, and the HTTP
pool (httppool) connects only to the addresses it returns, so a name cannot
resolve to something else between the check and the connect.

Rule: the most specific matching network (longest prefix) decides; a deny wins
a tie. With an allow list set, an address that matches nothing is denied.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..api import constants as c
from ..api.errors import SyncError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Link-local: cloud metadata endpoints (169.254.169.254, fd00:ec2::254 aside) and friends.
DEFAULT_DENY: tuple[str, ...] = ("169.254.0.0/16", "fe80::/10")
DENY_FLAG, ALLOW_FLAG = "--egress-deny", "--egress-allow"


def parse_networks(text: str | Iterable[str]) -> list[IPNetwork]:
    """CIDRs from a comma-separated string or an iterable; a bare address means a single host."""
    items = text.split(",") if isinstance(text, str) else list(text)
    networks: list[IPNetwork] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"invalid CIDR {item!r} in egress policy: {exc}") from None
    return networks


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")      # RFC 6052's well-known prefix: the last 32 bits are IPv4


def _normalise(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (::ffff:169.254.169.254) is the IPv4 address for policy purposes."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a translation: 6to4 (2002:a9fe:a9fe::), NAT64
    (64:ff9b::a9fe:a9fe) or the deprecated IPv4-compatible form (::169.254.169.254)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1):     # not :: nor ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Deny and (optionally) allow networks for outgoing connections to MCP servers."""

    deny: list[IPNetwork] = field(default_factory=lambda: parse_networks(DEFAULT_DENY))
    allow: list[IPNetwork] | None = None

    @classmethod
    def from_lists(cls, deny: Iterable[str], allow: Iterable[str] = ()) -> EgressPolicy:
        """From the operator's settings: CIDRs to deny, and (when any) the only ones allowed."""
        return cls(deny=parse_networks(deny), allow=parse_networks(allow) or None)

    def verdict(self, address: str | IPAddress) -> str | None:
        """None if connecting to `address` is allowed, else why not (a short phrase). Pure."""
        ip = _normalise(ipaddress.ip_address(address) if isinstance(address, str) else address)
        best_allow = _longest_match(ip, self.allow or [])
        best_deny = _longest_match(ip, self.deny)
        if best_deny is not None and (best_allow is None or best_deny.prefixlen >= best_allow.prefixlen):
            return f"{ip} is in denied network {best_deny} ({DENY_FLAG})"
        embedded = _embedded_ipv4(ip)       # a denied IPv4 network is not reachable through a translation
        if embedded is not None and (embedded_deny := _longest_match(embedded, self.deny)) is not None:
            embedded_allow = _longest_match(embedded, self.allow or [])
            if embedded_allow is None or embedded_deny.prefixlen >= embedded_allow.prefixlen:
                return f"{ip} reaches {embedded}, in denied network {embedded_deny} ({DENY_FLAG})"
        if self.allow is not None and best_allow is None:
            return f"{ip} is not in any allowed network ({ALLOW_FLAG})"
        return None

    async def permitted_addresses(self, host: str, port: int | None = None) -> list[str]:
        """Resolve `host` and return its addresses, all of them permitted.

        Raises SyncError EgressDenied if any address is denied (a name that
        resolves to both a public and a metadata address is not trusted), and
        SyncError ServerUnavailable if the name does not resolve.
        """
        addresses = await _resolve(host, port)
        if not addresses:
            raise SyncError(c.REASON_SERVER_UNAVAILABLE, f"cannot resolve host {host!r}; check spec.url")
        for address in addresses:
            reason = self.verdict(address)
            if reason is not None:
                shown = host if host == address else f"{host} ({address})"
                raise SyncError(
                    c.REASON_EGRESS_DENIED,
                    f"connections to {shown} are not allowed by the operator's egress policy: {reason}",
                )
        return addresses

    async def check(self, host: str) -> None:
        """Raise SyncError EgressDenied if `host` resolves to a denied address."""
        await self.permitted_addresses(host)


def _normalise_network(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (::ffff:169.254.0.0/112) is that IPv4 network, as its addresses are."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 \
            and network.network_address.ipv4_mapped is not None:
        return ipaddress.IPv4Network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network


def _longest_match(ip: IPAddress, networks: Iterable[IPNetwork]) -> IPNetwork | None:
    matches = [net for net in map(_normalise_network, networks) if net.version == ip.version and ip in net]
    return max(matches, key=lambda net: net.prefixlen, default=None)


async def _resolve(host: str, port: int | None) -> list[str]:
    """Addresses of `host` in resolver order, without duplicates; literals skip DNS."""
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return [str(ipaddress.ip_address(literal))]
    except ValueError:
        pass
    if not literal.isascii():
        # The HTTP client hands over hosts in ASCII. Python's resolver would map any other through
        # IDNA 2003 first (full-width digits become an address): never let a name mean something else.
        raise SyncError(c.REASON_INVALID_SPEC, f"host {host!r} is not ASCII; write it in its IDNA A-label form "
                                               "(xn--...) in spec.url")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(literal, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        detail = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else type(exc).__name__
        raise SyncError(
            c.REASON_SERVER_UNAVAILABLE, f"cannot resolve host {host!r} ({detail}); check spec.url"
        ) from None
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)
