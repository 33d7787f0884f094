"""The gateway tier (make test-gateways): the adapters against real ToolHive and real IBM ContextForge.

Everything runs on loopback: real MCP servers (toolcatalog_dev.mcpserver), ToolHive's proxy runner
built from its Go module, thv-operator, ContextForge from PyPI in a virtual environment of its own,
and a real control plane (etcd, kube-apiserver, kube-controller-manager) with our CRDs and
ToolHive's. The agent is the mcp SDK client (2.x), talking only to the gateway.

Nothing is built or installed here: a missing artifact fails the test at once, naming the make target
(make controlplane, make toolhive, make contextforge: steps of .ci/run).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.k8s import OperatorProcesses
from toolcatalog.gateways.contextforge import ContextForgeClient
from toolcatalog_dev.gateways import (
    ContextForge,
    MissingArtifact,
    ThvOperator,
    cache_dir,
    contextforge_dir,
    toolhive_dir,
)
from toolcatalog_dev.mcpserver import McpTestServer, make_self_signed_cert, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess

REPO = Path(__file__).resolve().parents[2]


def _need(check: Any) -> Any:
    try:
        return check()
    except MissingArtifact as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def toolhive_bin() -> Path:
    """ToolHive's cached build (toolhive-runner, thv-operator, crds/)."""
    return Path(_need(toolhive_dir))


@pytest.fixture(scope="session")
def gateway_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real control plane with toolcatalog's CRDs and every CRD of ToolHive's chart (server-side apply:
    some are larger than a client-side apply's annotation can hold)."""
    from toolcatalog_dev.controlplane import ControlPlane

    version = re.search(r"k8s\.io/kubernetes (v\S+)", (REPO / "test/controlplane/kubernetes/go.mod").read_text())
    assert version is not None
    bin_dir = cache_dir() / "controlplane" / version.group(1)
    missing = [name for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
               if not (bin_dir / name).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not built in {bin_dir}: run `make controlplane`", pytrace=False)
    toolhive = _need(toolhive_dir)
    plane = ControlPlane(bin_dir=bin_dir, crds=sorted((REPO / "crds").glob("*.yaml")))
    plane.start()
    try:
        plane.kubectl("apply", "--server-side", "-f", str(toolhive / "operator-crds"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(gateway_plane: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().removeprefix("test_")).strip("-")[:40].strip("-")
    name = f"g-{base}-{secrets.token_hex(3)}"
    gateway_plane.kubectl("create", "namespace", name)
    yield name
    gateway_plane.kubectl("delete", "namespace", name, "--wait=false")


class Kubectl:
    """kubectl as admin in the test's namespace, on the gateway tier's control plane."""

    def __init__(self, plane: Any, namespace: str) -> None:
        self.plane, self.namespace = plane, namespace

    def __call__(self, *args: str, input: str | None = None) -> str:
        return str(self.plane.kubectl("-n", self.namespace, *args, input=input).stdout)

    def apply(self, *objects: Mapping[str, Any]) -> str:
        return self("apply", "-f", "-", input=yaml.safe_dump_all([dict(obj) for obj in objects]))

    def get(self, resource: str, name: str) -> dict[str, Any]:
        return dict(yaml.safe_load(self("get", resource, name, "-o", "yaml")))

    def save(self, resource: str, name: str, path: Path) -> Path:
        """The object as the API server holds it, into a file (what a proxy would be given)."""
        path.write_text(self("get", resource, name, "-o", "yaml"))
        return path


@pytest.fixture
def kubectl(gateway_plane: Any, namespace: str) -> Kubectl:
    return Kubectl(gateway_plane, namespace)


def kubectl_toolcatalog(plane: Any, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl toolcatalog ARGS -n NAMESPACE` as a user runs it: kubectl finds the plugin
    (kubectl-toolcatalog, installed with the package) on PATH; admin credentials."""
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([plane.binary("kubectl"), "toolcatalog", *args, "-n", namespace], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


# ------------------------------------------------------------------------------------ the operator


@pytest.fixture(scope="session")
def operator_kubeconfig(gateway_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the operator runs with: deploy/'s ServiceAccount and RBAC, a TokenRequest token; never admin."""
    from toolcatalog_dev.controlplane import write_kubeconfig
    from toolcatalog_dev.deploy import install_operator_access

    token = install_operator_access(gateway_plane)
    return Path(write_kubeconfig(tmp_path_factory.mktemp("operator") / "operator.kubeconfig", server=gateway_plane.url,
                                 ca=gateway_plane.pki.ca_cert, token=token, user="toolcatalog"))


@pytest.fixture
def start_operator(operator_kubeconfig: Path, namespace: str,
                   tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the real operator (`toolcatalog run -n NAMESPACE --standalone --verbose ARGS`); stopped at teardown."""
    operators = OperatorProcesses(tmp_path)

    def start(*args: str) -> OperatorProcess:
        return operators.start(operator_kubeconfig, *args, namespaces=[namespace])

    yield start
    operators.stop_all()


@pytest.fixture
def thv_operator(gateway_plane: Any, namespace: str, tmp_path: Path) -> Iterator[ThvOperator]:
    """ToolHive's own operator, watching the test's namespace."""
    with ThvOperator(tmp_path / "thv-operator", gateway_plane.kubeconfig, watch_namespace=namespace) as operator:
        yield operator


# ---------------------------------------------------------------------------------------------- MCP


@pytest.fixture
def upstream() -> Iterator[McpTestServer]:
    """A real MCP server with tools tool_000..tool_002, announcing tools.listChanged."""
    with McpTestServer(tools=make_tools(3), list_changed=True) as server:
        yield server


@contextlib.asynccontextmanager
async def agent(url: str, *, token: str | None = None, mode: str = "auto") -> AsyncIterator[Client]:
    """An agent: the mcp SDK client, connected to `url` (a gateway), with a bearer token if given.

    ToolHive's tools filter rewrites a tools/list answer to `{"tools": [...]}` only, which a 2026-07-28
    session refuses (its ttlMs, cacheScope and resultType are required): agents of a ToolHive proxy
    use the handshake era (mode="legacy"), as ToolHive's own readiness probe does.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


async def listed(client: Client) -> list[str]:
    result = await client.list_tools()
    return sorted(tool.name for tool in result.tools)


# ------------------------------------------------------------------------------------- ContextForge


@pytest.fixture(scope="session")
def contextforge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContextForge]:
    """One ContextForge for the session (first start migrates its SQLite database: 10-30 s), with stateful
    sessions: it then refreshes a server on its own when the server notifies a change, as users may run it."""
    _need(contextforge_dir)
    forge = ContextForge(tmp_path_factory.mktemp("contextforge"), stateful_sessions=True)
    forge.start()
    try:
        yield forge
    finally:
        forge.stop()


@pytest.fixture(scope="session")
def forge_token(contextforge: ContextForge) -> str:
    return contextforge.token()


class Forge:
    """The test's view of ContextForge: its REST API as an admin, and the agent's endpoints."""

    def __init__(self, forge: ContextForge, token: str, http: httpx2.AsyncClient) -> None:
        self.forge, self.token, self.http = forge, token, http
        self.headers = {"Authorization": f"Bearer {token}"}

    async def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, self.forge.url + path, headers=self.headers, **kwargs)
        response.raise_for_status()
        return response.json()

    async def register(self, name: str, url: str) -> str:
        """What a platform team does: register an MCP server ("gateway") in ContextForge."""
        gateway = await self.rest("POST", "/gateways", json={"name": name, "url": url, "transport": "STREAMABLEHTTP"})
        return str(gateway["id"])

    async def tools(self, gateway_id: str) -> dict[str, dict[str, Any]]:
        """The gateway's tools by upstream name, inactive ones included."""
        items = await self.rest("GET", "/tools", params={"gateway_id": gateway_id, "include_inactive": "true",
                                                          "limit": "0"})
        return {item["originalName"]: item for item in items}

    async def server_id(self, name: str) -> str:
        servers = await self.rest("GET", "/servers", params={"include_inactive": "true", "limit": "0"})
        return next(str(server["id"]) for server in servers if server["name"] == name)

    def client(self, token: str | None = None) -> ContextForgeClient:
        return ContextForgeClient(self.forge.url, token or self.token, self.http)

    async def seen_by_agent(self, path: str, prefix: str) -> list[str]:
        """The tools an agent lists at `path` (/mcp or /servers/<id>/mcp), of the gateway `prefix` only
        (the session's ContextForge holds other tests' gateways too)."""
        async with agent(self.forge.url + path, token=self.token) as client:
            result = await client.list_tools()
        return sorted(tool.name for tool in result.tools if tool.name.startswith(prefix + "-"))

    async def call(self, path: str, tool: str) -> tuple[bool, str]:
        """(is_error, text) of an agent's call of `tool` at `path`."""
        async with agent(self.forge.url + path, token=self.token) as client:
            result = await client.call_tool(tool, {"value": 1})
        return result.is_error, " ".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
async def forge(contextforge: ContextForge, forge_token: str) -> AsyncIterator[Forge]:
    async with httpx2.AsyncClient(timeout=30) as http:
        yield Forge(contextforge, forge_token, http)


# ------------------------------------------------------------------------------------------ TLS


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    """A webhook certificate directory as --webhook-cert-dir expects it (tls.crt, tls.key) for 127.0.0.1."""
    directory = tmp_path / "webhook-tls"
    directory.mkdir()
    cert = make_self_signed_cert(str(directory))
    Path(cert.certfile).rename(directory / "tls.crt")
    Path(cert.keyfile).rename(directory / "tls.key")
    return directory
