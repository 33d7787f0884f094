"""Helpers for end-to-end tests: object builders, waiting with deadlines, the operator process."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from toolcatalog import constants as c

TS = f"{c.API_VERSION}/toolservers"
CC = f"{c.API_VERSION}/connectorconfigs"
CM = "v1/configmaps"
SECRETS = "v1/secrets"
TOOLCATALOG = Path(sys.executable).parent / "toolcatalog"


class OperatorProcess:
    """`toolcatalog run` in a subprocess; its whole log (DEBUG) goes to a file for assertions."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.extra_env, self.args = extra_env or {}, args or []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCATALOG_")}
        env.update({"KUBECONFIG": str(self.kubeconfig), "TOOLCATALOG_TIMER_INTERVAL": "0.5",
                    "PYTHONUNBUFFERED": "1", **self.extra_env})
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(TOOLCATALOG), "run", "-A", "--standalone", "--verbose", *self.args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _metadata(name: str, namespace: str | None, **extra: Any) -> dict[str, Any]:
    """Object metadata; without a namespace the test's client puts the object in its own."""
    return {"name": name, **({"namespace": namespace} if namespace else {}), **extra}


def toolserver(name: str, url: str, namespace: str | None = None, annotations: dict[str, str] | None = None,
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND_TOOLSERVER,
            "metadata": _metadata(name, namespace, annotations=annotations or {}),
            "spec": {"url": url, **spec}}


def connectorconfig(name: str, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND_CONNECTORCONFIG,
            "metadata": _metadata(name, namespace), "spec": spec}


def secret(name: str, data: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(name, namespace),
            "type": "Opaque", "stringData": data}


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


async def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
                     operator: OperatorProcess | None = None) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail with the operator's log
    tail on timeout, or at once if the operator exited."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if operator is not None and operator.process is not None and operator.process.poll() is not None:
            pytest.fail(f"operator exited with {operator.process.returncode} while waiting for {what}:\n"
                        f"{operator.log()[-4000:]}")
        if asyncio.get_running_loop().time() > deadline:
            tail = operator.log()[-4000:] if operator is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")
        await asyncio.sleep(0.05)


