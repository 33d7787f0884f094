"""What a sync talks to: a resolved MCP endpoint, its TLS material, and what a fetch brings back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import constants as c
from .models import FetchedWith, ServerInfo


@dataclass(frozen=True)
class TLSMaterial:
    """Resolved TLS settings: CA PEM text (already read from a Secret/ConfigMap) and the skip flag."""

    ca_pem: str | None = None
    insecure_skip_verify: bool = False

    def pool_key(self) -> tuple[str, bool]:
        """Connections can be shared exactly between endpoints whose TLS settings hash alike."""
        if self.insecure_skip_verify:
            return ("", True)
        return (hashlib.sha256(self.ca_pem.encode()).hexdigest() if self.ca_pem else "", False)


@dataclass(frozen=True)
class Endpoint:
    """A fully resolved endpoint. `headers` may hold secrets: repr shows their names only."""

    url: str
    transport: str = c.TRANSPORT_STREAMABLE_HTTP
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: TLSMaterial | None = None
    # Where the credentials come from, for messages: "spec.auth", or the referenced ToolServer's.
    auth_source: str = "spec.auth"
    # Whose credentials these are, for status.fetchedWith: the Secrets' names and keys, never a value.
    fetched_with: FetchedWith | None = None

    def __repr__(self) -> str:
        return (
            f"Endpoint(url={display_url(self.url)!r}, transport={self.transport!r}, "
            f"headers=<{', '.join(sorted(self.headers)) or 'none'}>, tls={self.tls!r})"
        )


@dataclass(frozen=True)
class FetchedCatalog:
    server: ServerInfo
    tools: list[dict[str, Any]]
    pages: int
    # sha256 of the server's answers as received (every page's bytes) and of what it said of itself: two fetches
    # with the same digest brought the same catalog, byte for byte. None: not known.
    digest: str | None = None


def catalog_digest(pages: Iterable[bytes], server: ServerInfo) -> str:
    """`FetchedCatalog.digest`: over each page's bytes (length-prefixed, so pages cannot run into each other)
    and the server's identity, cache hints and listChanged."""
    digest = hashlib.sha256()
    for page in pages:
        digest.update(len(page).to_bytes(8, "big"))
        digest.update(page)
    digest.update(json.dumps(server.model_dump(mode="json"), sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()


def display_url(url: str) -> str:
    """The URL without userinfo, query or fragment: safe for messages and logs."""
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        return "<invalid url>"
