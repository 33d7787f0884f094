"""ToolHive's tools filter (MCPToolConfig.spec.toolsFilter, a RunConfig's tools_filter), failing closed. Pure: written
by the toolhive target (reconcile/allowlist_targets.py) and proven against ToolHive's proxy by the gateway tier.

ToolHive reads an empty filter as "no filter": every tool of the server is listed and callable
(pkg/runner adds the filter middleware only when the list is non-empty, and thv-operator renders an
empty MCPToolConfig filter into a RunConfig without one). A source that allows nothing, say because
its only tool drifted, must therefore still be written as a filter that matches no tool.

Measured with ToolHive v0.47.0 through its proxy runner (tests/gateways/test_toolhive_filter.py):
  - `toolsFilter: []` (or none): every tool listed and callable: fails OPEN.
  - `toolsFilter: [""]`: accepted by the CRD, but thv-operator refuses to render it ("tool filter
    cannot contain empty values") and keeps serving the RunConfig it rendered before, and the runner
    refuses to start with it: a withdrawal written this way never reaches the proxy.
  - `toolsFilter: [NO_TOOL_ALLOWED]`: accepted by the CRD and rendered; the proxy lists no tool and
    answers every tools/call with "tool not found" without reaching the server: fails CLOSED.
Names with a comma or a newline are refused by thv-operator for an MCPServer, so the sentinel has none.
"""

from __future__ import annotations

from collections.abc import Iterable

# Not a valid MCP tool name (the specification allows only letters, digits, '_', '-' and '.'), so a
# server that follows it cannot offer a tool of that name; see tools_filter for one that does not.
NO_TOOL_ALLOWED = "toolcatalog.dev/no-tool-allowed"


def tools_filter(allowed: Iterable[str], known: Iterable[str] = ()) -> list[str]:
    """The filter for these allowed tool names, sorted; when none is allowed, a name that matches no tool.

    `known` are the names the server offers (allowed or not): should a server ever offer a tool named
    like the sentinel, a variant of it that it does not offer is used instead.
    """
    names = sorted(set(allowed))
    if names:
        return names
    offered = set(known)
    sentinel, n = NO_TOOL_ALLOWED, 1
    while sentinel in offered:
        n += 1
        sentinel = f"{NO_TOOL_ALLOWED}-{n}"
    return [sentinel]
