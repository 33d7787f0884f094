"""`toolcatalog run` (the operator, kopf's usual flags) and `toolcatalog demo`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

# Loggers that could see credentials or full bodies at DEBUG stay at INFO whatever --debug says.
QUIET_LOGGERS = ("kubernetes", "urllib3", "httpcore", "httpcore2", "httpx", "httpx2", "hpack")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the operator against the cluster in KUBECONFIG or in-cluster config")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs allowed)")
    run.add_argument("--standalone", action="store_true", help="no peering: do not coordinate with other operators")
    run.add_argument("--liveness", metavar="URL", default=None,
                     help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG (secrets are never logged)")
    run.add_argument("--debug", action="store_true", help="same as --verbose")
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    run.add_argument("--context", default=None, help="kubeconfig context to use")
    run.add_argument("--max-concurrent-syncs", type=int, default=None, metavar="N",
                     help="syncs of different resources running at once (default 10)")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve Prometheus metrics on this port (/metrics); off by default")
    run.add_argument("--metrics-address", default=None, metavar="ADDR",
                     help="address the metrics server listens on (default 0.0.0.0)")
    run.add_argument("--timer-interval", type=float, default=None, metavar="SECONDS",
                     help="how often each resource checks whether a scheduled sync is due (default 10)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolcatalog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    demo = sub.add_parser("demo", help="run a self-contained demo: emulated API server, demo MCP server, operator")
    demo.add_argument("--keep-running", action="store_true", help="keep everything running after the demo")
    return parser


class TimerEndFilter(logging.Filter):
    """kopf warns "is cancelled. Will escalate." when a timer ends itself, which ours does on purpose
    once its resource is deleted (handlers/resources.py): say that plainly, at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.endswith("Timer 'sync-when-due' is cancelled. Will escalate."):
            return True
        record.msg, record.args = message.replace("is cancelled. Will escalate.", "stopped."), ()
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def configure_logging(*, verbose: bool, quiet: bool) -> None:
    import kopf

    kopf.configure(debug=verbose, verbose=verbose, quiet=quiet, log_prefix=True)  # "[namespace/name] ..."
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("kopf.objects").addFilter(TimerEndFilter())


def run_operator(args: argparse.Namespace) -> int:
    # Settings travel by environment so that handler modules read them at import.
    if args.context:
        os.environ["TOOLCATALOG_CONTEXT"] = args.context
    if args.max_concurrent_syncs is not None:
        os.environ["TOOLCATALOG_MAX_CONCURRENT_SYNCS"] = str(args.max_concurrent_syncs)
    if args.metrics_port is not None:
        os.environ["TOOLCATALOG_METRICS_PORT"] = str(args.metrics_port)
    if args.metrics_address is not None:
        os.environ["TOOLCATALOG_METRICS_ADDRESS"] = args.metrics_address
    if args.timer_interval is not None:
        os.environ["TOOLCATALOG_TIMER_INTERVAL"] = str(args.timer_interval)
    configure_logging(verbose=args.verbose or args.debug, quiet=args.quiet)

    import kopf

    import toolcatalog.handlers  # noqa: F401  (registers the handlers)

    clusterwide = args.all_namespaces or not args.namespace
    try:
        asyncio.run(kopf.operator(
            standalone=args.standalone,
            clusterwide=clusterwide,
            namespaces=() if clusterwide else args.namespace,
            liveness_endpoint=args.liveness,
        ))
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_operator(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(keep_running=args.keep_running)
    return 2


if __name__ == "__main__":
    sys.exit(main())
