"""kubectl-toolcatalog: refresh catalogs, list, search and approve tools, see the fleet's state.

Installed as the `kubectl-toolcatalog` executable, so `kubectl toolcatalog ...` runs it.
It talks to the API server with the official `kubernetes` client and the same kubeconfig
kubectl uses (KUBECONFIG, --kubeconfig, --context, -n).

Commands: refresh, tools, approve, diff, search, status (`kubectl toolcatalog COMMAND --help`).

Exit status:
  refresh --wait   0 Succeeded, 1 Failed, 2 RateLimited, 3 timed out
  refresh, tools   0 done; tools: 1 no cache yet
  approve          0 approved, or nothing to approve; 1 no cache yet; 4 also when a pinned
                   TOOL@sha256:HEX is not the current definition (nothing is written)
  diff             0 no difference, 1 differences (as diff and kubectl diff)
  search, status   0 when anything could be listed (namespaces RBAC hides are skipped with a note)
  every command    4 bad arguments, unknown resource or tool, forbidden, conflict, API error
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from .approval import approval_lines, approve_hint, parse_tool_words, policy_note, spec_tools_yaml
from .cluster import Cluster, connect
from .fleet import format_allowlist_table, format_search_table, format_status_table, search_json
from .format import (
    EXIT_SUCCEEDED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    PluginError,
    ResourceRef,
    format_refresh_answer,
    format_tools_table,
    parse_resource_ref,
    printable,
    timeout_message,
    tool_json,
)
from .operations import (
    DEFAULT_WAIT_SECONDS,
    approve_tools,
    diff_of,
    list_allowlists,
    list_status,
    list_tools,
    request_refresh,
    run_refresh,
    search_tools,
    wait_for_refresh,
)

__all__ = ["Cluster", "build_parser", "connect", "main", "run_refresh"]

TARGET_HELP = ("toolserver/NAME or connectorconfig/NAME (also toolservers, mcpts, connectorconfigs, mcpcc;"
               " KIND NAME works too)")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 4, since 2 means RateLimited here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise PluginError(f"{message}\n{self.format_usage().rstrip()}")


def _connection_flags(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument("-n", "--namespace", default=default,
                        help="namespace (default: the context's namespace, else 'default')")
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default,
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="KIND/NAME", help=TARGET_HELP)
    parser.add_argument("name", nargs="?", help=argparse.SUPPRESS)  # `KIND NAME`, as kubectl takes


def _target_and_tools(parser: argparse.ArgumentParser, tools_help: str) -> None:
    """KIND/NAME TOOL...; `KIND NAME TOOL...` too: a KIND without a slash takes the next word as NAME."""
    parser.add_argument("target", metavar="KIND/NAME", help=TARGET_HELP)
    parser.add_argument("words", nargs="*", metavar="TOOL", help=tools_help)


def _all_namespaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="every namespace you may read (others are skipped with a note)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kubectl toolcatalog", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_flags(parser, default=None)
    # Flags also after the subcommand; SUPPRESS keeps a subcommand from resetting them.
    common = _Parser(add_help=False)
    _connection_flags(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_: str, description: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=description, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    refresh = command(
        "refresh", "ask the operator to fetch fresh tool definitions now",
        "Set the toolcatalog.dev/refresh annotation to a fresh token, so the\n"
        "operator refetches the tools and records the diff in status.lastRefresh.",
        "exit status with --wait: 0 Succeeded, 1 Failed, 2 RateLimited (retry later\n"
        "or use --force), 3 timed out waiting, 4 bad arguments, not found or API error.\n"
        "Without --wait: 0 once the annotation is set, 4 otherwise.")
    _target(refresh)
    refresh.add_argument("--reason", default=None, metavar="TEXT",
                         help="recorded in status.lastRefresh.reason (e.g. 'deployed v2')")
    refresh.add_argument("--force", action="store_true",
                         help="bypass the rate limit (sync.minIntervalSeconds): sets"
                              " toolcatalog.dev/refresh-force to this request's token")
    refresh.add_argument("--wait", action="store_true",
                         help="wait for the operator's answer and print the diff")
    refresh.add_argument("--timeout", type=float, default=DEFAULT_WAIT_SECONDS, metavar="S",
                         help="seconds --wait waits at most (default %(default)g)")

    tools = command(
        "tools", "list the tools in the cache ConfigMap",
        "Print the tools cached for a ToolServer or ConnectorConfig, removed ones\n"
        "included (AVAILABLE false). APPROVAL is Approved or Pending under an approval\n"
        "policy, - without one.",
        "exit status: 0 listed, 1 no cache yet, 4 bad arguments, not found or API error.")
    _target(tools)
    tools.add_argument("--all", action="store_true",
                       help="also list tools that spec.toolSelector leaves out (SELECTED column)")
    tools.add_argument("-o", "--output", choices=("table", "json"), default="table",
                       help="table (default) or json (the full tool documents, with approval and approvedHash)")

    approve = command(
        "approve", "approve the current definitions of tools (spec.tools[].approvedHash)",
        "Set spec.tools[].approvedHash of each TOOL to the schemaHash of its current\n"
        "definition in the cache, keeping every other entry and field of spec.tools.\n"
        "One merge patch guarded by the resourceVersion read: a concurrent edit is\n"
        "never overwritten (the command re-reads and retries once). Review first with\n"
        "`kubectl toolcatalog diff KIND/NAME TOOL`, and approve what it showed with the\n"
        "command it prints: TOOL@sha256:HEX approves TOOL only if its current definition\n"
        "is still that one (the hash after +++).",
        "exit status: 0 approved, or nothing to approve; 1 no cache yet; 4 unknown tool or\n"
        "a pin that is not the current definition (nothing is written), bad arguments,\n"
        "not found, forbidden, conflict or API error.")
    _target_and_tools(approve, "tools to approve: TOOL, or TOOL@sha256:HEX to approve only that definition")
    approve.add_argument("--all-pending", action="store_true",
                         help="approve every tool that awaits approval")
    approve.add_argument("--print", dest="print_yaml", action="store_true",
                         help="change nothing; print the spec.tools YAML to commit to Git")

    diff = command(
        "diff", "show how a tool's definition differs from the approved one",
        "A unified diff of the approved definition (the cache's approvedDefinition)\n"
        "and the current one, as pretty JSON with sorted keys; a new tool shows whole.\n"
        "After a difference, stderr has the approve command for exactly that definition\n"
        "(TOOL@sha256:HEX, the hash after +++).",
        "exit status: 0 no difference, 1 differences, 4 errors (as diff and kubectl diff).")
    _target_and_tools(diff, "the tool to compare")

    search = command(
        "search", "find tools by name or description in every catalog you can read",
        "Tools whose name or description matches PATTERN, case-insensitively: a glob\n"
        "over the whole name or description when PATTERN has * ? or [, else a substring.",
        "exit status: 0 when anything could be listed (namespaces you may not read are\n"
        "skipped with a note on stderr), 4 when nothing could be, or on bad arguments.")
    search.add_argument("pattern", metavar="PATTERN")
    _all_namespaces(search)
    search.add_argument("-o", "--output", choices=("table", "json"), default="table",
                        help="table (default) or json (each match with its whole cache entry)")

    status = command(
        "status", "one line per ToolServer and ConnectorConfig: ready, synced, tools, pending approvals",
        "Ready and Synced (the reason when not synced), usable tools, tools awaiting\n"
        "approval, and the age of the last sync and of the cache. Then one line per\n"
        "ToolAllowlist: Ready (the reason when not), tools allowed, its sources' names\n"
        "at the gateways, and each target's state.",
        "exit status: 0 when anything could be listed (namespaces you may not read are\n"
        "skipped with a note on stderr), 4 when nothing could be, or on bad arguments.")
    _all_namespaces(status)
    return parser


def _ref_of(args: argparse.Namespace) -> ResourceRef:
    return parse_resource_ref([args.target] + ([args.name] if args.name else []))


def _ref_and_tools(args: argparse.Namespace) -> tuple[ResourceRef, list[str]]:
    words = list(args.words)
    if "/" not in args.target and words:
        return parse_resource_ref([args.target, words[0]]), words[1:]
    return parse_resource_ref(args.target), words


def _width(out: TextIO) -> int | None:
    return shutil.get_terminal_size(fallback=(0, 0)).columns if out.isatty() else None


Command = Callable[[Cluster, argparse.Namespace, TextIO, TextIO], int]


def _cmd_refresh(cluster: Cluster, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ref = _ref_of(args)
    notes: list[str] = []
    token = request_refresh(cluster, ref, reason=args.reason, force=args.force, notes=notes)
    print(f"{ref} refresh requested (token {token})", file=out, flush=True)
    for note in notes:
        print(note, file=err)
    if not args.wait:
        return EXIT_SUCCEEDED
    outcome = wait_for_refresh(cluster, ref, token, timeout=args.timeout)
    if outcome.answer is None:
        print(timeout_message(outcome, args.timeout), file=err)
        return EXIT_TIMEOUT
    width = shutil.get_terminal_size(fallback=(100, 24)).columns
    print(format_refresh_answer(outcome.answer, outcome.condition,
                                superseded_by=outcome.superseded_by, width=width), file=out)
    return outcome.exit_code


def _cmd_tools(cluster: Cluster, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    listing = list_tools(cluster, _ref_of(args))
    shown = [tool for tool in listing.tools if args.all or tool.selected]
    if args.output == "json":
        print(json.dumps([tool_json(tool, listing.policy) for tool in shown], indent=2, ensure_ascii=False),
              file=out)
        return EXIT_SUCCEEDED
    hidden = len(listing.tools) - len(shown)
    if not shown:
        print(f"No tools in the cache of {listing.ref} in namespace {listing.namespace}.", file=err)
    else:
        print(format_tools_table(shown, show_selected=args.all, policy=listing.policy, terminal_width=_width(out)),
              file=out)
    if hidden:
        print(f"({hidden} tools left out by spec.toolSelector; --all lists them)", file=err)
    return EXIT_SUCCEEDED


def _cmd_approve(cluster: Cluster, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ref, names = _ref_and_tools(args)
    outcome = approve_tools(cluster, ref, names, all_pending=args.all_pending, dry_run=args.print_yaml)
    plan = outcome.plan
    if args.print_yaml:
        print(spec_tools_yaml(plan), file=out, end="")
        report = err        # stdout is the YAML alone, for a pipe or a redirect
    else:
        report = out
    if not plan.items:
        print(f"{ref}: no tool awaits approval; nothing to do", file=report)
    for line in approval_lines(plan, dry_run=args.print_yaml):
        print(line, file=report)
    if outcome.retried:
        print(f"note: {ref} changed while approving (409 Conflict); re-read it and kept that change", file=err)
    note = policy_note(plan)
    if note:
        print(note, file=err)
    return EXIT_SUCCEEDED


def _cmd_diff(cluster: Cluster, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ref, names = _ref_and_tools(args)
    try:
        result = diff_of(cluster, ref, names[0])
    except PluginError as error:
        raise PluginError(error.message, EXIT_USAGE) from None    # 1 means "differences" here
    print(result.text, file=out, flush=True)   # before stderr, so that 2>&1 keeps the order
    for line in [*result.notes, *approve_hint(result)]:
        print(line, file=err)
    return result.exit_code


def _cmd_search(cluster: Cluster, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    result = search_tools(cluster, args.pattern, all_namespaces=args.all_namespaces, namespace=args.namespace)
    for note in result.notes:
        print(note, file=err)
    if args.output == "json":
        print(search_json(result.hits), file=out)
    elif result.hits:
        print(format_search_table(result.hits, terminal_width=_width(out)), file=out)
    else:
        where = "in any namespace" if args.all_namespaces else f"in namespace {args.namespace or cluster.namespace}"
        print(f"No tools match {printable(args.pattern)!r} {where} ({result.resources} resources searched).",
              file=err)
    return EXIT_SUCCEEDED


def _cmd_status(cluster: Cluster, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    listing = list_status(cluster, all_namespaces=args.all_namespaces, namespace=args.namespace)
    allowlists, notes = list_allowlists(cluster, all_namespaces=args.all_namespaces, namespace=args.namespace)
    for note in [*listing.all_notes(), *notes]:
        print(note, file=err)
    if listing.found:
        print(format_status_table(listing.found, datetime.now(UTC)), file=out)
    else:
        where = "" if args.all_namespaces else f" in namespace {args.namespace or cluster.namespace}"
        print(f"No toolservers or connectorconfigs found{where}.", file=err)
    if allowlists:
        print(("\n" if listing.found else "") + format_allowlist_table(allowlists), file=out)
    return EXIT_SUCCEEDED


def _check_usage(args: argparse.Namespace) -> None:
    """Usage errors, before any connection is made."""
    if "words" in args:
        ref, names = _ref_and_tools(args)
        if args.command == "approve" and not names and not args.all_pending:
            raise PluginError("name the tools to approve, or pass --all-pending (review them first with"
                              f" `kubectl toolcatalog diff {ref} TOOL`)")
        if args.command == "approve":
            parse_tool_words(names)
        if args.command == "diff" and len(names) != 1:
            raise PluginError(f"name exactly one tool to compare, e.g. kubectl toolcatalog diff {ref} TOOL")
    elif "target" in args:
        _ref_of(args)
    if args.command == "refresh" and args.timeout <= 0:
        raise PluginError("--timeout must be a positive number of seconds")


COMMANDS: dict[str, Command] = {"refresh": _cmd_refresh, "tools": _cmd_tools, "approve": _cmd_approve,
                                "diff": _cmd_diff, "search": _cmd_search, "status": _cmd_status}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Entry point of `kubectl toolcatalog`; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        _check_usage(args)
        cluster = connect(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)
        try:
            return COMMANDS[args.command](cluster, args, out, err)
        finally:
            cluster.close()
    except PluginError as error:
        print(f"error: {error.message}", file=err)
        return error.exit_code
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
