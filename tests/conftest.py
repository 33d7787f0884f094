"""Shared fixtures: the Kubernetes API emulator, the real operator as a subprocess, helpers.

The operator runs exactly as users run it (`toolcatalog run -A --standalone`), against
kmock's emulator on loopback, with a short timer interval so scheduled syncs are prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from toolcatalog.emulator import ApiEmulator

from tests.support.k8s import OperatorProcess, wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def api() -> AsyncIterator[ApiEmulator]:
    async with ApiEmulator() as emulator:
        yield emulator


@pytest.fixture
def kubeconfig(api: ApiEmulator, tmp_path: Path) -> Path:
    return api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def start_operator(kubeconfig: Path, tmp_path: Path) -> Any:
    """Start the operator (once per test, maybe with extra env); stopped at teardown."""
    started: list[OperatorProcess] = []

    def start(extra_env: dict[str, str] | None = None, args: list[str] | None = None) -> OperatorProcess:
        proc = OperatorProcess(kubeconfig, tmp_path / f"operator-{len(started)}.log", extra_env, args).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def operator(start_operator: Any) -> OperatorProcess:
    return start_operator()


@pytest.fixture
def waiter(api: ApiEmulator) -> Any:
    """Helpers bound to this test's emulator: wait for a resource's status to satisfy a predicate."""

    class Waiter:
        async def status(self, resource: str, name: str, predicate: Callable[[dict[str, Any]], Any],
                         what: str, timeout: float = 20.0, namespace: str = "default",
                         operator: OperatorProcess | None = None) -> dict[str, Any]:
            def check() -> Any:
                obj = api.get(resource, namespace, name)
                return obj if obj is not None and predicate(obj) else None
            return await wait_until(check, timeout=timeout, what=f"{name}: {what}", operator=operator)

    return Waiter()
