"""Shared fixtures: one API server per backend, the real operator as a subprocess, helpers.

Two backends run the same end-to-end tests (`--backend`, or TOOLCATALOG_TEST_BACKEND):

- `emulator` (make test): kmock's emulator made faithful, one per test, on loopback; fast.
- `cluster` (make test-cluster): a real etcd + kube-apiserver + kube-controller-manager on
  loopback, started once per session; each test gets its own namespace, and the operator runs as
  the ServiceAccount, with the RBAC, that `kubectl kustomize deploy/` renders, with a token from the
  TokenRequest API, never as admin.

Tests that only make sense on one backend carry `@pytest.mark.emulator_only("why")` or
`@pytest.mark.cluster_only("why")`.
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import CC, TAL, TS, OperatorProcesses, wait_until
from toolcatalog_dev.apiproxy import ApiProxy
from toolcatalog_dev.cluster import ApiError, Cluster
from toolcatalog_dev.operatorproc import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("emulator", "cluster")
OPERATOR_NAMESPACE = "toolcatalog-system"
OPERATOR_SERVICE_ACCOUNT = "toolcatalog"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=BACKENDS, default=os.environ.get("TOOLCATALOG_TEST_BACKEND", "emulator"),
                     help="API server for the end-to-end tests: emulator (default) or cluster (real control plane)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator_only(reason): runs only against the emulator, and says why")
    config.addinivalue_line("markers", "cluster_only(reason): runs only against the real control plane, and says why")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = config.getoption("--backend")
    for item in items:
        for marker, runs_on in (("emulator_only", "emulator"), ("cluster_only", "cluster")):
            mark = item.get_closest_marker(marker)
            if mark is not None and backend != runs_on:
                why = mark.args[0] if mark.args else ""
                item.add_marker(pytest.mark.skip(reason=f"{runs_on} only: {why}"))


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--backend"))


# ------------------------------------------------------------------------- the real control plane


class ClusterSession:
    """The session's control plane, with the operator's ServiceAccount set up as deploy/ ships it."""

    def __init__(self, plane: Any, workdir: Path) -> None:
        self.plane = plane
        # The namespace, ServiceAccount and RBAC exactly as `kubectl kustomize deploy/` renders them
        # (tests/e2e/test_deploy.py checks every other install renders the same rules).
        from toolcatalog_dev.controlplane import write_kubeconfig
        from toolcatalog_dev.deploy import install_operator_access

        token = install_operator_access(plane)

        self.operator_kubeconfig = write_kubeconfig(workdir / "operator.kubeconfig", server=plane.url,
                                                    ca=plane.pki.ca_cert, token=token, user="toolcatalog")
        self.operator_token = token

    def user_kubeconfig(self, path: Path, namespace: str) -> Path:
        """An admin kubeconfig whose context is in `namespace`."""
        from toolcatalog_dev.controlplane import write_kubeconfig

        pki = self.plane.pki
        return write_kubeconfig(path, server=self.plane.url, ca=pki.ca_cert, client_cert=pki.admin_cert,
                                client_key=pki.admin_key, user="admin", namespace=namespace)


@pytest.fixture(scope="session")
def cluster_session(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSession | None]:
    """Started once for the whole session on the `cluster` backend; None on the emulator."""
    if backend != "cluster":
        yield None
        return
    from toolcatalog_dev.controlplane import NotBuilt, build, running_control_plane

    missing = None
    try:
        build(check=True)       # built by `make controlplane` (a step of .ci/run), never inside a test
    except NotBuilt as error:
        missing = str(error)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    with running_control_plane(crds=sorted((REPO / "crds").glob("*.yaml")), check_built=True) as plane:
        yield ClusterSession(plane, tmp_path_factory.mktemp("cluster"))


def _namespace_for(request: pytest.FixtureRequest) -> str:
    """A fresh, valid namespace name for this test: t-<test name>-<random>."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().removeprefix("test_")).strip("-")[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"


class E2eApi(Cluster):
    """The test's API server client, working in the test's namespace; knows its backend."""

    backend: str = "emulator"
    emulator: Any = None            # the ApiEmulator (emulator backend only)
    session: ClusterSession | None = None

    @property
    def control_plane(self) -> Any:
        return self.session.plane if self.session is not None else None

    async def make_namespace(self, suffix: str) -> str:
        """Another namespace for this test (e.g. team-a): `<test namespace>-<suffix>` on a real server,
        `suffix` itself on the per-test emulator. Deleted with the test's own."""
        name = suffix if self.backend == "emulator" else f"{self.namespace}-{suffix}"[:63].rstrip("-")
        await self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.extra_namespaces.append(name)
        return name

    extra_namespaces: list[str]


@pytest.fixture
async def api(backend: str, cluster_session: ClusterSession | None,
              request: pytest.FixtureRequest) -> AsyncIterator[E2eApi]:
    if backend == "emulator":
        from toolcatalog_dev.emulator import ApiEmulator

        async with ApiEmulator() as emulator:
            client = E2eApi(emulator.url, namespace="default")
            client.emulator, client.extra_namespaces = emulator, []
            try:
                yield client
            finally:
                await client.aclose()
        return
    assert cluster_session is not None
    plane = cluster_session.plane
    client = E2eApi(plane.url, namespace=_namespace_for(request), **plane.admin_access())
    client.backend, client.session, client.extra_namespaces = "cluster", cluster_session, []
    await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": client.namespace}})
    try:
        yield client
    finally:
        # Our resources go at once (they have no finalizers), so the next test's operator never sees
        # them; the namespace controller removes the rest in the background.
        for namespace in [client.namespace, *client.extra_namespaces]:
            for resource in (TS, CC, TAL):
                try:
                    await client.delete_all(resource, namespace)
                except ApiError:
                    pass
            try:
                await client.delete("v1/namespaces", None, namespace)
            except ApiError:
                pass
        await client.aclose()


@pytest.fixture
def kubeconfig(api: E2eApi, tmp_path: Path) -> Path:
    """A user's kubeconfig (admin on a real server), its context in the test's namespace."""
    if api.backend == "emulator":
        return api.emulator.write_kubeconfig(tmp_path / "kubeconfig", namespace=api.namespace)
    assert api.session is not None
    return api.session.user_kubeconfig(tmp_path / "kubeconfig", api.namespace)


@pytest.fixture
def operator_kubeconfig(api: E2eApi, kubeconfig: Path) -> Path:
    """What the operator runs with: on a real server the ServiceAccount's token, never admin."""
    if api.backend == "emulator":
        return kubeconfig
    assert api.session is not None
    return api.session.operator_kubeconfig


@pytest.fixture
def start_operator(operator_kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator (once per test, maybe with extra env or args); stopped at teardown."""
    operators = OperatorProcesses(tmp_path)

    def start(extra_env: dict[str, str] | None = None, args: list[str] | None = None) -> OperatorProcess:
        return operators.start(operator_kubeconfig, *(args or []), env=extra_env)

    yield start
    operators.stop_all()


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()


@pytest.fixture
def proxy(api: E2eApi) -> Iterator[ApiProxy]:
    """An API proxy on loopback in front of the test's API server (toolcatalog_dev.apiproxy): it records
    every request and answer body, and can stall watches or slow writes."""
    if api.backend == "emulator":
        upstream, context = api.emulator.url, None
    else:
        upstream = api.control_plane.url
        context = ssl.create_default_context(cafile=str(api.control_plane.pki.ca_cert))
    with ApiProxy(upstream, ssl_context=context, keep_bodies=True) as running:
        yield running


@pytest.fixture
def waiter(api: E2eApi) -> Any:
    """Wait for a resource in the test's namespace to satisfy a predicate."""

    class Waiter:
        async def status(self, resource: str, name: str, predicate: Callable[[dict[str, Any]], Any],
                         what: str, timeout: float = 20.0, namespace: str | None = None,
                         operator: OperatorProcess | None = None) -> dict[str, Any]:
            async def check() -> Any:
                obj = await api.get(resource, namespace or api.namespace, name)
                return obj if obj is not None and predicate(obj) else None
            return await wait_until(check, timeout=timeout, what=f"{name}: {what}", operator=operator)

        async def events(self, name: str, reason: str, *, count: int = 1, timeout: float = 20.0,
                         operator: OperatorProcess | None = None) -> list[dict[str, Any]]:
            """Wait for at least `count` Events with `reason` about `name`; returns them, oldest first."""
            async def check() -> Any:
                found = [e for e in await api.events(api.namespace, name) if e["reason"] == reason]
                return found if len(found) >= count else None
            return await wait_until(check, timeout=timeout, what=f"{name}: {count} {reason} event(s)",
                                    operator=operator)

    return Waiter()
