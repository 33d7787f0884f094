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

from .api.redact import Redactor
from .config import DEFAULT_EGRESS_DENY, OperatorConfig

# Loggers that could see credentials or full bodies at DEBUG stay at INFO whatever --debug says.
QUIET_LOGGERS = ("kubernetes", "urllib3", "httpcore", "httpcore2", "httpx", "httpx2", "hpack")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _run_parser(sub: argparse._SubParsersAction, env: Mapping[str, str]) -> None:
    def default(name: str, fallback: str) -> str:
        return env.get(f"TOOLCATALOG_{name}", fallback)

    run = sub.add_parser("run", help="run the operator against the cluster in KUBECONFIG or in-cluster config")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs allowed)")
    run.add_argument("--standalone", action="store_true", help="no peering: do not coordinate with other operators")
    run.add_argument("--liveness", metavar="URL", default=None,
                     help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG (secrets are never logged)")
    run.add_argument("--debug", action="store_true", help="same as --verbose")
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    run.add_argument("--context", default=None, help="kubeconfig context to use")
    run.add_argument("--max-concurrent-syncs", type=int, metavar="N",
                     default=int(default("MAX_CONCURRENT_SYNCS", "10")),
                     help="syncs running at once, across resources (default 10; env TOOLCATALOG_MAX_CONCURRENT_SYNCS)")
    run.add_argument("--max-listeners", type=int, metavar="N", default=int(default("MAX_LISTENERS", "500")),
                     help="long-lived sessions listening for tool-list changes, at most (default 500; "
                          "env TOOLCATALOG_MAX_LISTENERS)")
    run.add_argument("--metrics-port", type=int, metavar="PORT", default=int(default("METRICS_PORT", "0")) or None,
                     help="serve Prometheus metrics on this port (/metrics); off by default")
    run.add_argument("--metrics-address", metavar="ADDR", default=default("METRICS_ADDRESS", "0.0.0.0"),
                     help="address the metrics server listens on (default 0.0.0.0)")
    run.add_argument("--egress-deny", metavar="CIDRS", type=_csv,
                     default=_csv(default("EGRESS_DENY", ",".join(DEFAULT_EGRESS_DENY))),
                     help="comma-separated networks the operator never connects to (default: link-local, "
                          "i.e. cloud metadata; env TOOLCATALOG_EGRESS_DENY; empty: none)")
    run.add_argument("--egress-allow", metavar="CIDRS", type=_csv, default=_csv(default("EGRESS_ALLOW", "")),
                     help="if set, the only networks the operator may connect to (env TOOLCATALOG_EGRESS_ALLOW)")
    run.add_argument("--max-sync-timeout", type=float, metavar="SECONDS",
                     default=float(default("MAX_SYNC_TIMEOUT", "60")),
                     help="the longest one sync may take, whatever spec.sync.timeoutSeconds says (default 60)")
    run.add_argument("--min-server-ttl", type=float, metavar="SECONDS", default=float(default("MIN_SERVER_TTL", "60")),
                     help="the shortest cache lifetime a server's ttlMs may impose (default 60)")
    run.add_argument("--max-response-bytes", type=int, metavar="BYTES",
                     default=int(default("MAX_RESPONSE_BYTES", str(8 * 1024 * 1024))),
                     help="the largest answer read from an MCP server, on the wire and inflated (default 8 MiB)")
    run.add_argument("--max-catalog-bytes", type=int, metavar="BYTES",
                     default=int(default("MAX_CATALOG_BYTES", str(32 * 1024 * 1024))),
                     help="the most bytes of tool definitions read for one catalog, inflated (default 32 MiB)")
    run.add_argument("--kube-qps", type=float, default=float(default("KUBE_QPS", "50")), metavar="QPS",
                     help="requests a second the operator makes to the API server, on average (default 50)")
    run.add_argument("--kube-burst", type=int, default=int(default("KUBE_BURST", "100")), metavar="N",
                     help="requests it may make at once above that rate (default 100)")


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolcatalog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub, os.environ if env is None else env)
    demo = sub.add_parser("demo", help="run a self-contained demo: emulated API server, demo MCP server, operator")
    demo.add_argument("--keep-running", action="store_true", help="keep everything running after the demo")
    return parser


def config_from(args: argparse.Namespace) -> OperatorConfig:
    clusterwide = args.all_namespaces or not args.namespace
    return OperatorConfig(
        namespaces=() if clusterwide else tuple(args.namespace), standalone=args.standalone, context=args.context,
        max_concurrent_syncs=args.max_concurrent_syncs, max_listeners=args.max_listeners,
        metrics_port=args.metrics_port, metrics_address=args.metrics_address, liveness=args.liveness,
        egress_deny=tuple(args.egress_deny), egress_allow=tuple(args.egress_allow),
        max_sync_timeout=args.max_sync_timeout, min_server_ttl=args.min_server_ttl,
        max_response_bytes=args.max_response_bytes, max_catalog_bytes=args.max_catalog_bytes,
        kube_qps=args.kube_qps, kube_burst=args.kube_burst,
        verbose=args.verbose or args.debug, quiet=args.quiet)


class RedactingFilter(logging.Filter):
    """Masks every credential the operator has read, in every record of every logger, at every level
    (the MCP SDK's and kopf's included): the message, its arguments and any traceback."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not len(self.redactor):
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redactor.redact(message), ()
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        record.exc_info = None
        return True


def configure_logging(config: OperatorConfig, redactor: Redactor) -> None:
    import kopf

    kopf.configure(debug=config.verbose, verbose=config.verbose, quiet=config.quiet, log_prefix=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(redactor))


def run_operator(config: OperatorConfig) -> int:
    redactor = Redactor()
    configure_logging(config, redactor)

    import kopf

    from .handlers import build_registry

    try:
        asyncio.run(kopf.operator(
            registry=build_registry(config, redactor),
            standalone=config.standalone,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=config.liveness,
            memo=kopf.Memo(),
        ))
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_operator(config_from(args))
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
