"""MCP servers for the benchmarks, in a process of their own (started by bench.common.McpFleet).

One McpTestServer (the mcp SDK's low-level Server behind uvicorn, TCP_NODELAY, 127.0.0.1) per
catalog size given; commands arrive as one JSON object per line on stdin, answers leave as one
JSON object per line on stdout:

    {"op": "urls"}                                  -> {"urls": [...]}
    {"op": "tools", "server": I, "count": N}        -> {"ok": true}     (server I now lists N tools)
    {"op": "stats"}                                 -> {"list_calls": [...], "connections": [...]}
    {"op": "stop"}                                  -> {"ok": true}, then it exits
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from toolcatalog_dev.mcpserver import McpTestServer, make_tools


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mcpfleet", description=__doc__)
    parser.add_argument("--catalogs", required=True, help="comma-separated tool counts, one server each")
    parser.add_argument("--page-size", type=int, default=None)
    args = parser.parse_args()
    counts = [int(part) for part in args.catalogs.split(",") if part]
    with contextlib.ExitStack() as stack:
        # A day's ttlMs: the test server's default of 0 ("do not cache") would have the operator resync every
        # resource at --min-server-ttl (60 s), which is no idle and no steady state at all.
        servers = [stack.enter_context(McpTestServer(tools=make_tools(count), page_size=args.page_size,
                                                     host="127.0.0.1", tcp_nodelay=True, ttl_ms=86_400_000))
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
                        "connections": [server.connections for server in servers]})
            elif op == "stop":
                answer({"ok": True})
                break
            else:
                answer({"error": f"unknown op {op!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
