"""kubectl-toolcatalog: ask the operator for a refresh, wait for its answer, list cached tools.

Installed as the `kubectl-toolcatalog` executable, so `kubectl toolcatalog ...` runs it.
It talks to the API server with the official `kubernetes` client and the same kubeconfig
kubectl uses (KUBECONFIG, --kubeconfig, --context, -n).

Exit status of `refresh --wait`: 0 Succeeded, 1 Failed, 2 RateLimited, 3 timed out,
4 the request could not be made (bad arguments, not found, API error).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError, MaxRetryError

from ..api import constants as c
from ..api.models import CachedTool
from ..reconcile.cachedoc import CacheParseError, configmap_name, parse_cache
from .format import (
    EXIT_FAILED,
    EXIT_SUCCEEDED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    NotFoundError,
    PluginError,
    RefreshOutcome,
    ResourceRef,
    answer_in,
    find_condition,
    format_refresh_answer,
    format_tools_table,
    new_refresh_token,
    parse_resource_ref,
    refresh_patch,
    timeout_message,
)

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 30.0
POLL_FIRST_SECONDS = 0.2  # first re-read of the status; grows to POLL_MAX_SECONDS
POLL_MAX_SECONDS = 0.5
DEFAULT_WAIT_SECONDS = 60.0


# ---------------------------------------------------------------------------- cluster I/O


@dataclass
class Cluster:
    """An API client for one kubeconfig context, plus the namespace commands default to."""

    api_client: Any
    namespace: str

    def close(self) -> None:
        self.api_client.close()

    def get(self, ref: ResourceRef, namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or self.namespace
        with _api_errors(ref, namespace):
            obj = kubernetes.client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, ref.plural, ref.name,
                _request_timeout=REQUEST_TIMEOUT_SECONDS)
            return dict(obj)  # type: ignore[call-overload]

    def patch(self, ref: ResourceRef, body: dict[str, Any], namespace: str | None = None) -> None:
        namespace = namespace or self.namespace
        with _api_errors(ref, namespace):
            kubernetes.client.CustomObjectsApi(self.api_client).patch_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, ref.plural, ref.name, body,
                _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT_SECONDS)

    def read_configmap(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The ConfigMap as the API server's JSON (camelCase `binaryData`), or None if absent.

        Raw JSON rather than the client's V1ConfigMap: no snake_case round trip, and no
        second-long first import of the client's model classes.
        """
        namespace = namespace or self.namespace
        try:
            with _api_errors(f"configmap/{name}", namespace):
                response = kubernetes.client.CoreV1Api(self.api_client).read_namespaced_config_map(
                    name, namespace, _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS)
                return dict(json.loads(response.data))  # type: ignore[arg-type]
        except NotFoundError:
            return None


@contextmanager
def _api_errors(what: object, namespace: str) -> Iterator[None]:
    """Turn the client's exceptions into a message a user can act on."""
    try:
        yield
    except ApiException as error:
        if error.status == 404:
            raise NotFoundError(f"{what} not found in namespace {namespace!r}") from None
        detail = _api_message(error)
        raise PluginError(f"{what} in namespace {namespace!r}: the API server answered"
                          f" {error.status} {error.reason}{': ' + detail if detail else ''}"
                          ) from None
    except HTTPError as error:
        cause = error.reason if isinstance(error, MaxRetryError) else error
        raise PluginError(f"cannot reach the Kubernetes API server: {cause}") from None


def _api_message(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message") or "")
    except (TypeError, ValueError, AttributeError):
        return ""


def connect(*, kubeconfig: str | None = None, context: str | None = None,
            namespace: str | None = None) -> Cluster:
    """Load the kubeconfig as kubectl does: --kubeconfig, else $KUBECONFIG, else ~/.kube/config.

    The namespace is -n, else the context's namespace, else `default`.
    """
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=config_file)
        api_client = kubernetes.config.new_client_from_config(
            config_file=config_file, context=context, persist_config=False)
    except (ConfigException, OSError) as error:
        raise PluginError(f"cannot load kubeconfig {config_file!r}: {error}") from None
    chosen = next((ctx for ctx in contexts or [] if ctx.get("name") == context), None) \
        if context else current
    context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return Cluster(api_client=api_client, namespace=namespace or context_namespace or "default")


def request_refresh(cluster: Cluster, ref: ResourceRef | str, *, reason: str | None = None,
                    force: bool = False, namespace: str | None = None,
                    token: str | None = None) -> str:
    """Set the refresh annotations with a fresh token; returns the token the operator will echo."""
    ref = parse_resource_ref(ref) if isinstance(ref, str) else ref
    token = token or new_refresh_token()
    cluster.patch(ref, refresh_patch(token, reason=reason, force=force), namespace)
    return token


def wait_for_refresh(cluster: Cluster, ref: ResourceRef | str, token: str, *,
                     timeout: float = DEFAULT_WAIT_SECONDS,
                     namespace: str | None = None) -> RefreshOutcome:
    """Re-read the resource until status.lastRefresh answers `token`, at most `timeout` seconds.

    Polling with a short, growing interval: one GET per step works with every API server
    and proxy, and a refresh is usually answered within a second or two.
    """
    ref = parse_resource_ref(ref) if isinstance(ref, str) else ref
    namespace = namespace or cluster.namespace
    deadline = time.monotonic() + timeout
    interval = POLL_FIRST_SECONDS
    while True:
        outcome = answer_in(cluster.get(ref, namespace), ref, namespace, token)
        if outcome is not None:
            return outcome
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return RefreshOutcome(ref=ref, namespace=namespace, token=token)
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.5, POLL_MAX_SECONDS)


def run_refresh(cluster: Cluster, ref: ResourceRef | str, *, reason: str | None = None,
                force: bool = False, wait: bool = True, timeout: float = DEFAULT_WAIT_SECONDS,
                namespace: str | None = None) -> RefreshOutcome:
    """Request a refresh and (by default) wait for the operator's answer."""
    ref = parse_resource_ref(ref) if isinstance(ref, str) else ref
    namespace = namespace or cluster.namespace
    token = request_refresh(cluster, ref, reason=reason, force=force, namespace=namespace)
    if not wait:
        return RefreshOutcome(ref=ref, namespace=namespace, token=token)
    return wait_for_refresh(cluster, ref, token, timeout=timeout, namespace=namespace)


@dataclass(frozen=True)
class ToolListing:
    ref: ResourceRef
    namespace: str
    configmap: str
    tools: list[CachedTool]  # sorted by name, as the cache stores them


def list_tools(cluster: Cluster, ref: ResourceRef | str, *,
               namespace: str | None = None) -> ToolListing:
    """Every tool in the resource's cache ConfigMap, removed and deselected ones included."""
    ref = parse_resource_ref(ref) if isinstance(ref, str) else ref
    namespace = namespace or cluster.namespace
    obj = cluster.get(ref, namespace)
    status_cache = (obj.get("status") or {}).get("cache") or {}
    override = (((obj.get("spec") or {}).get("cache") or {}).get("configMapName"))
    cm_name = status_cache.get("configMap") or configmap_name(ref.kind, ref.name, override)
    configmap = cluster.read_configmap(cm_name, namespace)
    if configmap is None:
        synced = find_condition(obj, c.COND_SYNCED)
        why = (f"; Synced: {synced.status} {synced.reason}"
               f"{': ' + synced.message if synced.message else ''}" if synced
               else "; the operator has not reported a sync yet")
        raise PluginError(f"{ref} has no tool cache yet (ConfigMap {cm_name} not found in"
                          f" namespace {namespace!r}){why}", EXIT_FAILED)
    try:
        document = parse_cache(configmap)
    except CacheParseError as error:
        raise PluginError(f"ConfigMap {cm_name}: {error}", EXIT_FAILED) from None
    return ToolListing(ref=ref, namespace=namespace, configmap=cm_name,
                       tools=sorted(document.tools, key=lambda tool: tool.name))


# ---------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 4, since 2 means RateLimited here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise PluginError(f"{message}\n{self.format_usage().rstrip()}")


def _connection_flags(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("-n", "--namespace", default=default,
                        help="namespace (default: the context's namespace, else 'default')")
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default,
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kubectl toolcatalog", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection_flags(parser, default=None)
    # Flags also after the subcommand; SUPPRESS keeps a subcommand from resetting them.
    common = _Parser(add_help=False)
    _connection_flags(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    target_help = ("toolserver/NAME or connectorconfig/NAME (also toolservers, mcpts,"
                   " connectorconfigs, mcpcc; KIND NAME works too)")

    refresh = sub.add_parser(
        "refresh", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="ask the operator to fetch fresh tool definitions now",
        description="Set the toolcatalog.dev/refresh annotation to a fresh token, so the\n"
                    "operator refetches the tools and records the diff in status.lastRefresh.",
        epilog="exit status with --wait: 0 Succeeded, 1 Failed, 2 RateLimited (retry later\n"
               "or use --force), 3 timed out waiting, 4 bad arguments, not found or API error.\n"
               "Without --wait: 0 once the annotation is set, 4 otherwise.")
    refresh.add_argument("target", metavar="KIND/NAME", help=target_help)
    refresh.add_argument("name", nargs="?", help=argparse.SUPPRESS)  # `KIND NAME`, as kubectl takes
    refresh.add_argument("--reason", default=None, metavar="TEXT",
                         help="recorded in status.lastRefresh.reason (e.g. 'deployed v2')")
    refresh.add_argument("--force", action="store_true",
                         help="bypass the rate limit (sync.minIntervalSeconds)")
    refresh.add_argument("--wait", action="store_true",
                         help="wait for the operator's answer and print the diff")
    refresh.add_argument("--timeout", type=float, default=DEFAULT_WAIT_SECONDS, metavar="S",
                         help="seconds --wait waits at most (default %(default)g)")

    tools = sub.add_parser(
        "tools", parents=[common], help="list the tools in the cache ConfigMap",
        description="Print the tools cached for a ToolServer or ConnectorConfig, removed ones"
                    " included (AVAILABLE false). Exit 1 when there is no cache yet.")
    tools.add_argument("target", metavar="KIND/NAME", help=target_help)
    tools.add_argument("name", nargs="?", help=argparse.SUPPRESS)  # `KIND NAME`, as kubectl takes
    tools.add_argument("--all", action="store_true",
                       help="also list tools that spec.toolSelector leaves out (SELECTED column)")
    tools.add_argument("-o", "--output", choices=("table", "json"), default="table",
                       help="table (default) or json (the full tool documents)")
    return parser


def _cmd_refresh(cluster: Cluster, ref: ResourceRef, args: argparse.Namespace, out: TextIO,
                 err: TextIO) -> int:
    token = request_refresh(cluster, ref, reason=args.reason, force=args.force)
    print(f"{ref} refresh requested (token {token})", file=out, flush=True)
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


def _cmd_tools(cluster: Cluster, ref: ResourceRef, args: argparse.Namespace, out: TextIO,
               err: TextIO) -> int:
    listing = list_tools(cluster, ref)
    shown = [tool for tool in listing.tools if args.all or tool.selected]
    if args.output == "json":
        print(json.dumps([tool.document() for tool in shown], indent=2, ensure_ascii=False),
              file=out)
        return EXIT_SUCCEEDED
    hidden = len(listing.tools) - len(shown)
    if not shown:
        print(f"No tools in the cache of {listing.ref} in namespace {listing.namespace}.", file=err)
    else:
        width = shutil.get_terminal_size(fallback=(0, 0)).columns if out.isatty() else None
        print(format_tools_table(shown, show_selected=args.all, terminal_width=width), file=out)
    if hidden:
        print(f"({hidden} tools left out by spec.toolSelector; --all lists them)", file=err)
    return EXIT_SUCCEEDED


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Entry point of `kubectl toolcatalog`; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        ref = parse_resource_ref([args.target] + ([args.name] if args.name else []))
        if args.command == "refresh" and args.timeout <= 0:
            raise PluginError("--timeout must be a positive number of seconds")
        cluster = connect(kubeconfig=args.kubeconfig, context=args.context,
                          namespace=args.namespace)
        command = _cmd_refresh if args.command == "refresh" else _cmd_tools
        try:
            return command(cluster, ref, args, out, err)
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
