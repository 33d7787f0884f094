"""Helpers for end-to-end tests: object builders and waiting with deadlines (the operator process and the
wait itself live in the dev package, shared with the demo and the benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from toolcatalog.api import constants as c
from toolcatalog_dev.operatorproc import OperatorProcess
from toolcatalog_dev.wait import WaitFailed, wait_for

TS = f"{c.API_VERSION}/toolservers"
CC = f"{c.API_VERSION}/connectorconfigs"
TAL = f"{c.API_VERSION}/toolallowlists"
CM = "v1/configmaps"
SECRETS = "v1/secrets"


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


def toolallowlist(name: str, sources: list[dict[str, Any]], targets: list[dict[str, Any]],
                  namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND_TOOLALLOWLIST, "metadata": _metadata(name, namespace),
            "spec": {"sources": sources, "targets": targets, **spec}}


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
    """Poll `check` (sync or async) until it returns something truthy; fail the test with the operator's
    log tail on timeout, or at once if the operator exited."""
    try:
        return await wait_for(check, timeout=timeout, what=what, process=operator)
    except WaitFailed as failure:
        pytest.fail(str(failure))


async def looked_at(api: Any, operator: OperatorProcess, resource: str, name: str, times: int = 3) -> None:
    """Make the operator look at a resource `times` more times, and wait until it has found nothing to do
    each time: a test can then assert what it did NOT do (fetch, write, retry) without sleeping."""
    kind = c.KIND_TOOLSERVER if resource == TS else c.KIND_CONNECTORCONFIG
    marker = f"{kind} {api.ns}/{name}: nothing to do"
    for touch in range(times):
        before = operator.log().count(marker)
        await api.annotate(resource, api.ns, name, {"example.com/touch": f"{before}-{touch}"})
        await wait_until(lambda before=before: operator.log().count(marker) > before,
                         what=f"the operator to look at {name} again", operator=operator)


class OperatorProcesses:
    """The real operators one test starts (`toolcatalog run --verbose ARGS`), each logging to its own file in
    `logs`; the fixtures that start them stop them all at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[OperatorProcess] = []

    def start(self, kubeconfig: Path, *args: str, namespaces: Sequence[str] = (),
              env: Mapping[str, str] | None = None) -> OperatorProcess:
        process = OperatorProcess(kubeconfig, self.logs / f"operator-{len(self.started)}.log", env=env,
                                  args=["--verbose", *args], namespaces=namespaces).start()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()
