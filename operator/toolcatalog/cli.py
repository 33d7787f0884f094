"""`toolcatalog run`: the operator. (`toolcatalog demo` runs the demo when the dev tools are installed.)

The command line is parsed once into an `OperatorConfig`, which is passed to everything that needs
it. A few flags take their default from an environment variable, read here and only here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from . import sandbox
from .api.redact import Redactor, mask_userinfo
from .config import MIN_SLOW_SYNCS, SLOW_SYNCS_PER_WORKER, OperatorConfig

# Loggers that could see credentials or full bodies at DEBUG stay at INFO whatever --debug says.
QUIET_LOGGERS = ("kubernetes", "urllib3", "httpcore", "httpcore2", "httpx", "httpx2", "hpack")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def shipped_default(name: str) -> str:
    """OperatorConfig's default of the field `name`, as the help and the docs show it (written only there)."""
    value = getattr(OperatorConfig, name)
    if value is None:
        return "off"
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 2**20 and value % 2**20 == 0:
        return f"{value // 2**20} MiB"
    return str(value)


def _run_parser(sub: argparse._SubParsersAction, env: Mapping[str, str]) -> tuple[argparse.ArgumentParser,
                                                                                 dict[str, str]]:
    """The `run` subcommand, and the environment variable each flag (by its dest) may take its default from."""
    environment: dict[str, str] = {}

    def default(name: str) -> str:
        """TOOLCATALOG_NAME, else OperatorConfig's default of the field `name` ("" for None)."""
        environment[name.lower()] = f"TOOLCATALOG_{name}"
        shipped = getattr(OperatorConfig, name.lower())
        fallback = "" if shipped is None else ",".join(shipped) if isinstance(shipped, tuple) else str(shipped)
        return env.get(f"TOOLCATALOG_{name}", fallback)

    def documented(text: str, name: str, shown: str | None = None) -> str:
        """The help `text`, then the shipped default (OperatorConfig's, or `shown` where it is computed)
        and the environment variable: written here once, for --help and the generated reference alike."""
        return f"{text} (default {shown or shipped_default(name.lower())}; env TOOLCATALOG_{name})"

    run = sub.add_parser("run", help="run the operator against the cluster in KUBECONFIG or in-cluster config")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs allowed)")
    run.add_argument("--standalone", action="store_true", help="no peering: do not coordinate with other operators")
    run.add_argument("--liveness", metavar="URL", default=None,
                     help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--readiness", metavar="URL", default=None,
                     help="serve a readiness endpoint, e.g. http://0.0.0.0:8081/readyz: 200 once the watches have "
                          "delivered every resource and each was looked at, 503 before and while stopping")
    run.add_argument("--watch-stall-timeout", type=float, metavar="SECONDS",
                     default=float(default("WATCH_STALL_TIMEOUT")),
                     help=documented("the liveness endpoint fails when a change the API server holds has not come "
                                     "through the watches for this long", "WATCH_STALL_TIMEOUT"))
    run.add_argument("--log-format", choices=("text", "json"), default=default("LOG_FORMAT"),
                     help=documented("text, or json: one JSON object a line", "LOG_FORMAT"))
    run.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG (secrets are never logged)")
    run.add_argument("--debug", action="store_true", help="same as --verbose")
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    run.add_argument("--context", default=None, help="kubeconfig context to use")
    slow_after = shipped_default("slow_after")
    run.add_argument("--max-concurrent-syncs", type=int, metavar="N",
                     default=int(default("MAX_CONCURRENT_SYNCS")),
                     help=documented(f"workers: syncs started at once, across resources; a sync still running after "
                                     f"{slow_after} s steps aside into the slow pool (--max-slow-syncs), so at most N "
                                     f"plus that many run at once", "MAX_CONCURRENT_SYNCS"))
    slow = default("MAX_SLOW_SYNCS")
    run.add_argument("--max-slow-syncs", type=int, metavar="M", default=int(slow) if slow else None,
                     help=documented(f"slow syncs (running for over {slow_after} s: a server that answers slowly or "
                                     f"never) that may run beside the workers, one namespace at most half of them; "
                                     f"0: none, a sync holds its worker to the end", "MAX_SLOW_SYNCS",
                                     shown=f"{SLOW_SYNCS_PER_WORKER} per worker, at least {MIN_SLOW_SYNCS}"))
    run.add_argument("--max-listeners", type=int, metavar="N", default=int(default("MAX_LISTENERS")),
                     help=documented("long-lived sessions listening for tool-list changes (one per endpoint and "
                                     "credentials, shared by the resources that read it), at most", "MAX_LISTENERS"))
    metrics_port = default("METRICS_PORT")
    run.add_argument("--metrics-port", type=int, metavar="PORT", default=int(metrics_port or 0) or None,
                     help=documented("serve Prometheus metrics on this port (/metrics)", "METRICS_PORT"))
    run.add_argument("--metrics-address", metavar="ADDR", default=default("METRICS_ADDRESS"),
                     help=documented("address the metrics server listens on", "METRICS_ADDRESS"))
    run.add_argument("--egress-deny", metavar="CIDRS", type=_csv, default=_csv(default("EGRESS_DENY")),
                     help=documented("comma-separated networks the operator never connects to; empty: none",
                                     "EGRESS_DENY", shown=f"link-local, i.e. cloud metadata: "
                                                          f"{shipped_default('egress_deny')}"))
    run.add_argument("--egress-allow", metavar="CIDRS", type=_csv, default=_csv(default("EGRESS_ALLOW")),
                     help=documented("if set, the only networks the operator may connect to", "EGRESS_ALLOW",
                                     shown="any network not denied"))
    run.add_argument("--max-sync-timeout", type=float, metavar="SECONDS",
                     default=float(default("MAX_SYNC_TIMEOUT")),
                     help=documented("the longest one sync may take, whatever spec.sync.timeoutSeconds says",
                                     "MAX_SYNC_TIMEOUT"))
    run.add_argument("--min-server-ttl", type=float, metavar="SECONDS", default=float(default("MIN_SERVER_TTL")),
                     help=documented("the shortest cache lifetime a server's ttlMs may impose", "MIN_SERVER_TTL"))
    run.add_argument("--status-report-interval", type=float, metavar="SECONDS",
                     default=float(default("STATUS_REPORT_INTERVAL")),
                     help=documented("a resync that finds the catalog unchanged writes status only when the "
                                     "recorded verification (status.cache.verifiedAt) is this old; 0: every "
                                     "resync writes it", "STATUS_REPORT_INTERVAL"))
    run.add_argument("--fetch-share-window", type=float, metavar="SECONDS",
                     default=float(default("FETCH_SHARE_WINDOW")),
                     help=documented("a scheduled resync may use an answer fetched this many seconds before for "
                                     "another resource with the same URL, headers and credentials; 0: share only "
                                     "fetches under way", "FETCH_SHARE_WINDOW"))
    run.add_argument("--max-response-bytes", type=int, metavar="BYTES",
                     default=int(default("MAX_RESPONSE_BYTES")),
                     help=documented("the largest answer read from an MCP server, on the wire and inflated",
                                     "MAX_RESPONSE_BYTES"))
    run.add_argument("--max-catalog-bytes", type=int, metavar="BYTES",
                     default=int(default("MAX_CATALOG_BYTES")),
                     help=documented("the most bytes of tool definitions read for one catalog, inflated",
                                     "MAX_CATALOG_BYTES"))
    run.add_argument("--kube-qps", type=float, default=float(default("KUBE_QPS")), metavar="QPS",
                     help=documented("requests a second the operator makes to the API server, on average",
                                     "KUBE_QPS"))
    run.add_argument("--kube-burst", type=int, default=int(default("KUBE_BURST")), metavar="N",
                     help=documented("requests it may make at once above that rate", "KUBE_BURST"))
    webhook_port = default("WEBHOOK_PORT")
    run.add_argument("--webhook-port", type=int, metavar="PORT", default=int(webhook_port or 0) or None,
                     help=documented("serve the validating admission webhook (HTTPS, path /validate) on this port",
                                     "WEBHOOK_PORT"))
    run.add_argument("--webhook-address", metavar="ADDR", default=default("WEBHOOK_ADDRESS"),
                     help=documented("the address the webhook listens on", "WEBHOOK_ADDRESS"))
    run.add_argument("--webhook-cert-dir", metavar="DIR",
                     default=default("WEBHOOK_CERT_DIR"),
                     help=documented("tls.crt and tls.key of the webhook, and ca.crt if the API server needs it (the "
                                     "layout of a cert-manager Secret; re-read when they change)", "WEBHOOK_CERT_DIR"))
    run.add_argument("--webhook-service", metavar="NAMESPACE/NAME", default=default("WEBHOOK_SERVICE") or None,
                     help=documented("the Service the API server reaches the webhook through (port 443)",
                                     "WEBHOOK_SERVICE", shown="none"))
    run.add_argument("--webhook-host", metavar="HOST", default=default("WEBHOOK_HOST") or None,
                     help=documented("without --webhook-service: the host the API server calls, "
                                     "https://HOST:PORT/validate", "WEBHOOK_HOST", shown="none"))
    run.add_argument("--webhook-configuration", metavar="NAME", default=default("WEBHOOK_CONFIGURATION") or None,
                     help=documented("create and keep up to date this ValidatingWebhookConfiguration, a name with a "
                                     "dot such as toolcatalog.dev (kopf also keeps an empty "
                                     "MutatingWebhookConfiguration of that name; needs RBAC to write both)",
                                     "WEBHOOK_CONFIGURATION", shown="none, apply your own as deploy/overlays/webhook "
                                                                    "does"))
    toolhive_port = default("TOOLHIVE_WEBHOOK_PORT")
    run.add_argument("--toolhive-webhook-port", type=int, metavar="PORT", default=int(toolhive_port or 0) or None,
                     help=documented("answer ToolHive's validating webhook for ToolAllowlists (HTTPS, path "
                                     "/toolhive/NAMESPACE/ALLOWLIST; --webhook-address and --webhook-cert-dir's "
                                     "certificate) on this port", "TOOLHIVE_WEBHOOK_PORT"))
    run.add_argument("--toolhive-webhook-hmac-secret-file", metavar="FILE",
                     default=default("TOOLHIVE_WEBHOOK_HMAC_SECRET_FILE") or None,
                     help=documented("refuse ToolHive's webhook calls not signed with the secret in this file (the "
                                     "MCPWebhookConfig's hmacSecretRef; re-read when it changes)",
                                     "TOOLHIVE_WEBHOOK_HMAC_SECRET_FILE", shown="none: unsigned calls accepted"))
    run.add_argument("--shard", type=int, default=int(default("SHARD")), metavar="I",
                     help=documented("take only the resources whose uid hashes to shard I", "SHARD"))
    run.add_argument("--total-shards", type=int, default=int(default("TOTAL_SHARDS")), metavar="N",
                     help=documented("the number of shards, one operator process each (1: no sharding)",
                                     "TOTAL_SHARDS"))
    run.add_argument("--pod", default=default("POD") or None, metavar="NAME",
                     help=documented("run as the shard of this StatefulSet pod: its ordinal, of as many shards as the "
                                     "StatefulSet has replicas, followed while it runs (instead of --shard and "
                                     "--total-shards; from the downward API)", "POD", shown="none"))
    run.add_argument("--pod-namespace", default=default("POD_NAMESPACE") or None, metavar="NS",
                     help=documented("the namespace of --pod and its StatefulSet", "POD_NAMESPACE", shown="none"))
    return run, environment


def run_command(env: Mapping[str, str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser of `toolcatalog run` and, per flag (its dest), the environment variable its default may
    come from: what docs/reference/configuration.md is generated from (toolcatalog_dev.docgen)."""
    sub = argparse.ArgumentParser(prog="toolcatalog").add_subparsers(dest="command", required=True)
    return _run_parser(sub, os.environ if env is None else env)


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolcatalog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub, os.environ if env is None else env)
    demo = sub.add_parser("demo", help="run a self-contained demo: emulated API server, demo MCP server, operator")
    demo.add_argument("--keep-running", action="store_true", help="keep everything running after the demo")
    sandbox.add_parser(sub)
    return parser


def config_from(args: argparse.Namespace) -> OperatorConfig:
    clusterwide = args.all_namespaces or not args.namespace
    return OperatorConfig(
        namespaces=() if clusterwide else tuple(args.namespace), standalone=args.standalone, context=args.context,
        max_concurrent_syncs=args.max_concurrent_syncs, max_slow_syncs=args.max_slow_syncs,
        max_listeners=args.max_listeners,
        metrics_port=args.metrics_port, metrics_address=args.metrics_address, liveness=args.liveness,
        readiness=args.readiness, watch_stall_timeout=args.watch_stall_timeout, log_format=args.log_format,
        egress_deny=tuple(args.egress_deny), egress_allow=tuple(args.egress_allow),
        max_sync_timeout=args.max_sync_timeout, min_server_ttl=args.min_server_ttl,
        status_report_interval=args.status_report_interval, fetch_share_window=args.fetch_share_window,
        max_response_bytes=args.max_response_bytes, max_catalog_bytes=args.max_catalog_bytes,
        kube_qps=args.kube_qps, kube_burst=args.kube_burst, shard=args.shard, total_shards=args.total_shards,
        pod=args.pod, pod_namespace=args.pod_namespace,
        webhook_port=args.webhook_port, webhook_address=args.webhook_address, webhook_cert_dir=args.webhook_cert_dir,
        webhook_service=args.webhook_service, webhook_host=args.webhook_host,
        webhook_configuration=args.webhook_configuration, toolhive_webhook_port=args.toolhive_webhook_port,
        toolhive_webhook_hmac_secret_file=args.toolhive_webhook_hmac_secret_file,
        verbose=args.verbose or args.debug, quiet=args.quiet)


class RedactingFilter(logging.Filter):
    """Masks every credential the operator has read, in every record of every logger, at every level
    (the MCP SDK's and kopf's included): the message, its arguments and any traceback."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        def clean(text: str) -> str:
            return mask_userinfo(self.redactor.redact(text))

        if isinstance(record.msg, dict):        # a structured message (the JSON format writes its fields)
            record.msg = self.redactor.redact_all(record.msg)
        else:
            record.msg, record.args = clean(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = clean(record.exc_text)
        if record.stack_info:
            record.stack_info = clean(record.stack_info)
        record.exc_info = None
        return True


def configure_logging(config: OperatorConfig, redactor: Redactor) -> None:
    import kopf

    json_format = config.log_format == "json"
    kopf.configure(debug=config.verbose, verbose=config.verbose, quiet=config.quiet,
                   log_format=kopf.LogFormat.JSON if json_format else kopf.LogFormat.FULL, log_prefix=not json_format)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(redactor))
    if json_format:
        from .handlers.logs import use_json_format

        use_json_format(redactor)


def run_operator(config: OperatorConfig) -> int:
    redactor = Redactor()
    configure_logging(config, redactor)

    from .handlers import operate
    from .handlers.autoshard import ShardingError

    try:
        asyncio.run(operate(config, redactor))
    except ShardingError as error:
        logging.getLogger("toolcatalog").error("%s", error)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:       # through the logging filter: a traceback must not print a credential either
        logging.getLogger("toolcatalog").exception("the operator stopped on an unexpected error")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.total_shards < 1 or not 0 <= args.shard < args.total_shards:
            parser.error(f"--shard must be in 0..--total-shards-1 and --total-shards at least 1 "
                         f"(got --shard {args.shard} --total-shards {args.total_shards})")
        if args.max_concurrent_syncs < 1 or (args.max_slow_syncs is not None and args.max_slow_syncs < 0):
            parser.error(f"--max-concurrent-syncs must be at least 1 and --max-slow-syncs at least 0 (got "
                         f"{args.max_concurrent_syncs} and {args.max_slow_syncs})")
        if args.pod is not None:
            if (args.shard, args.total_shards) != (0, 1):
                parser.error("--pod takes the shard and the number of shards from its StatefulSet: drop --shard and "
                             "--total-shards (or TOOLCATALOG_SHARD and TOOLCATALOG_TOTAL_SHARDS)")
            if not args.pod_namespace:
                parser.error("--pod needs --pod-namespace (TOOLCATALOG_POD_NAMESPACE, from the downward API)")
            from .handlers.sharding import statefulset_pod

            try:
                statefulset_pod(args.pod)
            except ValueError as error:
                parser.error(str(error))
        if args.webhook_configuration and "." not in args.webhook_configuration:
            parser.error(f"--webhook-configuration {args.webhook_configuration!r}: the API server wants its "
                         "webhooks named like domains (validate.NAME with three parts), e.g. toolcatalog.dev")
        return run_operator(config_from(args))
    if args.command == "sandbox":
        return sandbox.main(args)
    if args.command == "demo":
        try:
            from toolcatalog_dev.demo import run_demo
        except ImportError:
            print("toolcatalog demo needs the development tools: run it from a clone with `make demo`",
                  file=sys.stderr)
            return 2
        return run_demo(keep_running=args.keep_running)
    return 2


if __name__ == "__main__":
    sys.exit(main())
