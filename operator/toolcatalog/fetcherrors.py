"""The one error a catalog fetch raises: a Synced condition reason plus a secret-free hint.

A leaf module (no imports from this package) so that everything on the fetch path can
raise it without an import cycle: mcpfetch (the MCP session), httppool (a bad CA bundle)
and egress (a denied or unresolvable address, raised from inside the pool's connect).
"""

from __future__ import annotations


class FetchError(Exception):
    """A fetch that failed; `reason` is a Synced condition reason, `message` a one-line hint for humans."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"FetchError({self.reason!r}, {self.message!r})"
