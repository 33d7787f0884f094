"""A server that quotes back the credentials it was sent must not get them stored. Pure.

Before anything a server sent is merged, hashed, stored, posted or logged, every credential the
operator has read (and every form derived from one) is masked in every string of every tool
definition and of the server's identity. A tool whose *name* holds one fails the sync closed:
masking a name would merge different tools into one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..api import constants as c
from ..api.errors import SyncError
from ..api.models import ServerInfo
from ..api.redact import Redactor


def _scrubbed(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, Mapping):
        return {redactor.redact(str(key)): _scrubbed(item, redactor) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, redactor) for item in value]
    return value


def scrub_catalog(tools: Sequence[Mapping[str, Any]], server: ServerInfo, redactor: Redactor
                  ) -> tuple[list[dict[str, Any]], ServerInfo]:
    """The tools and server identity with every credential masked; SyncError when a tool's name holds one."""
    if not len(redactor):
        return [dict(tool) for tool in tools], server
    for position, tool in enumerate(tools):
        name = tool.get("name") if isinstance(tool, Mapping) else None
        if isinstance(name, str) and redactor.contains(name):
            raise SyncError(c.REASON_PROTOCOL_ERROR,
                            f"tool #{position + 1} of the server's list has a name that contains a credential the "
                            "operator sent it; nothing from this answer is used")
    scrubbed = [_scrubbed(dict(tool), redactor) for tool in tools]
    identity = server.model_copy(update={"name": redactor.redact(server.name) if server.name else server.name,
                                         "version": redactor.redact(server.version) if server.version
                                         else server.version})
    return scrubbed, identity


def scrub_error(error: SyncError, redactor: Redactor) -> SyncError:
    if not len(redactor) or not redactor.contains(error.message):
        return error
    return SyncError(error.reason, redactor.redact(error.message), retry_after=error.retry_after,
                     api_reason=error.api_reason)
