"""MCP servers for the benchmarks, in a process of their own (started by bench.common.McpFleet).

One McpTestServer (the mcp SDK's low-level Server behind uvicorn, TCP_NODELAY, 127.0.0.1) per
catalog size given. By default they behave as a platform team would tune them (a day's `ttlMs`, no
`listChanged`); `--sdk-defaults` serves them as the mcp SDK does out of the box (`ttlMs: 0`, "do not
cache", and `tools.listChanged` with `subscriptions/listen`; a change of tools notifies). Commands
arrive as one JSON object per line on stdin, answers leave as one JSON object per line on stdout:

    {"op": "urls"}                                  -> {"urls": [...]}
    {"op": "tools", "server": I, "count": N}        -> {"ok": true}     (server I now lists N tools)
    {"op": "stats"}                                 -> {"list_calls": [...], "connections": [...],
                                                        "open_listens": [...], "listens": [...]}
    {"op": "stop"}                                  -> {"ok": true}, then it exits
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from toolcatalog_dev.mcpserver import McpTestServer, make_tools


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mcpfleet", description=__doc__)
    parser.add_argument("--catalogs", required=True, help="comma-separated tool counts, one server each")
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument("--sdk-defaults", action="store_true",
                        help="ttlMs 0 and tools.listChanged, as the mcp SDK's servers say by default")
    args = parser.parse_args()
    counts = [int(part) for part in args.catalogs.split(",") if part]
    with contextlib.ExitStack() as stack:
        # Tuned: a day's ttlMs, no listChanged, so that idle is idle. SDK defaults: ttlMs 0 ("do not cache") has
        # the operator resync every resource at --min-server-ttl (60 s), and listChanged has it listen.
        behaviour: dict[str, Any] = ({"ttl_ms": 0, "list_changed": True, "notify_on_change": True}
                                     if args.sdk_defaults else {"ttl_ms": 86_400_000})
        servers = [stack.enter_context(McpTestServer(tools=make_tools(count), page_size=args.page_size,
                                                     host="127.0.0.1", tcp_nodelay=True, **behaviour))
                   for count in counts]

        def answer(message: dict[str, object]) -> None:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

        for line in sys.stdin:
            command = json.loads(line)
            op = command.get("op")
            if op == "urls":
                answer({"urls": [server.url for server in servers]})
            elif op == "tools":
                servers[int(command["server"])].tools = make_tools(int(command["count"]))
                answer({"ok": True})
            elif op == "stats":
                answer({"list_calls": [server.list_calls for server in servers],
                        "connections": [server.connections for server in servers],
                        "open_listens": [server.open_listens for server in servers],
                        "listens": [server.listens for server in servers]})
            elif op == "stop":
                answer({"ok": True})
                break
            else:
                answer({"error": f"unknown op {op!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
