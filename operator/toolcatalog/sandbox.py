"""`toolcatalog sandbox`: the demo kept running, with a KUBECONFIG for kubectl and `kubectl toolcatalog`.

The sandbox itself is development tooling (dev/toolcatalog_dev/sandbox.py, installed by `make venv`),
as the demo is: it is imported only when asked for, and the image does not have it.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    sandbox = sub.add_parser(
        "sandbox", help="run the demo and keep it running: a Kubernetes API, the demo MCP server and the operator "
                        "on loopback, with a KUBECONFIG to use kubectl and kubectl toolcatalog against, until Ctrl-C")
    sandbox.add_argument("--real", action="store_true",
                         help="a real control plane (etcd, kube-apiserver, kube-controller-manager; built once by "
                              "`make controlplane`, needs Go) instead of the API emulator")


def main(args: argparse.Namespace) -> int:
    try:
        from toolcatalog_dev.sandbox import run_sandbox
    except ImportError:
        print("toolcatalog sandbox needs the development tools: run it from a clone, after `make venv`",
              file=sys.stderr)
        return 2
    return int(run_sandbox(real=args.real))
