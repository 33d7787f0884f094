"""Real gateways for tests and benchmarks, on loopback: IBM ContextForge, ToolHive's proxy runner, thv-operator.

They are built or installed beforehand, never here (make toolhive, make contextforge: .ci/run steps);
a missing one raises MissingArtifact naming the make target at once. Each runs as a subprocess in its
own process group with a HOME of its own, dies with the process that started it, and is stopped by PID
(controlplane.Process). ToolHive's binaries run with TOOLHIVE_SKIP_UPDATE_CHECK=true and
TOOLHIVE_USAGE_METRICS_ENABLED=false (they call home otherwise); ContextForge with SQLite, no Redis,
its UI, plugins, catalog, A2A and LLM chat off, and SSRF_ALLOW_LOCALHOST (it refuses 127.0.0.1
upstreams otherwise) and no rate limit (a test suite would get 429s).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .controlplane import Process, free_port

REPO = Path(__file__).resolve().parents[2]
TOOLHIVE_MODULE = REPO / "test" / "gateways" / "toolhive"
CONTEXTFORGE_REQUIREMENTS = REPO / "test" / "gateways" / "contextforge" / "requirements.txt"
ADMIN_EMAIL = "admin@example.com"
START_TIMEOUT = 90.0        # ContextForge's first start migrates a fresh SQLite database: 10-30 s on 2 cores


class MissingArtifact(RuntimeError):
    """A gateway that was not built or installed: the message names the make target."""


def cache_dir() -> Path:
    return Path(os.environ.get("TOOLCATALOG_CACHE") or Path.home() / ".cache" / "toolcatalog")


def toolhive_version() -> str:
    match = re.search(r"^\s*(?:require\s+)?github\.com/stacklok/toolhive\s+(v\S+)", (TOOLHIVE_MODULE / "go.mod")
                      .read_text(), re.MULTILINE)
    assert match, "test/gateways/toolhive/go.mod requires no github.com/stacklok/toolhive"
    return match.group(1)


def toolhive_dir(*, crds_only: bool = False) -> Path:
    """The cached ToolHive build (binaries, crds/, operator-crds/); MissingArtifact when incomplete."""
    directory = cache_dir() / "toolhive" / toolhive_version()
    if not crds_only:
        missing = [name for name in ("toolhive-runner", "thv-operator") if not (directory / name).is_file()]
        if missing:
            raise MissingArtifact(f"{', '.join(missing)} not built in {directory}: run `make toolhive` "
                                  "(a cold build takes ~7 minutes on 2 cores)")
    if not any((directory / "crds").glob("*.yaml")) or not any((directory / "operator-crds").glob("*.yaml")):
        raise MissingArtifact(f"ToolHive's CRDs are not in {directory}: run `make toolhive-crds`")
    return directory


def contextforge_dir() -> Path:
    """The virtual environment ContextForge is installed in; MissingArtifact when it is not."""
    version = CONTEXTFORGE_REQUIREMENTS.read_text().split("mcp-contextforge-gateway==", 1)[1].split()[0]
    venv = cache_dir() / "contextforge" / version / "venv"
    if not (venv / "bin" / "mcpgateway").is_file():
        raise MissingArtifact(f"ContextForge {version} is not installed in {venv}: run `make contextforge`")
    return venv


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with nothing of ours in it: a HOME and XDG directories of its own, no proxies."""
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local" / "share"),
           "XDG_STATE_HOME": str(home / ".local" / "state"), "XDG_CACHE_HOME": str(home / ".cache"),
           "TOOLHIVE_SKIP_UPDATE_CHECK": "true", "TOOLHIVE_USAGE_METRICS_ENABLED": "false"}
    env.update(extra)
    return env


def _wait(check: object, what: str, process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if callable(check) and check():
            return
        if not process.running():
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name}: timed out after {timeout:g}s waiting for {what}:\n{process.tail()}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:     # noqa: S310 -- loopback only
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------------------- ContextForge


@dataclass
class ContextForge:
    """mcpgateway on 127.0.0.1 with SQLite in `work_dir`; `token()` mints an admin JWT for its REST API.

    With `stateful_sessions` (USE_STATEFUL_SESSIONS=true), an agent's MCP session keeps one upstream session per
    server it called, and ContextForge hears that server's notifications/tools/list_changed and refreshes the
    server itself (adding new tools active): the harder case for toolcatalog, which the gateway tier runs.
    """

    work_dir: Path
    stateful_sessions: bool = False
    port: int = field(default_factory=free_port)
    process: Process | None = None
    started_in: float = 0.0
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _environment(self, venv: Path) -> dict[str, str]:
        secrets_file = self.work_dir / "secrets.env"
        if not secrets_file.exists():       # its own generator: the placeholders it ships are refused
            subprocess.run([str(venv / "bin" / "python"), "-m", "mcpgateway.scripts.init_secrets",
                            "--output", str(secrets_file), "--force"], check=True, capture_output=True,
                           cwd=self.work_dir, timeout=60, env=isolated_env(self.work_dir / "home"))
            secrets_file.chmod(0o600)
        secrets = dict(line.split("=", 1) for line in secrets_file.read_text().splitlines()
                       if "=" in line and not line.lstrip().startswith("#"))
        return isolated_env(
            self.work_dir / "home", **{key.strip(): value.strip().strip("'\"") for key, value in secrets.items()},
            DATABASE_URL=f"sqlite:///{self.work_dir / 'mcp.db'}", CACHE_TYPE="database",
            SSRF_ALLOW_LOCALHOST="true", RATE_LIMITING_ENABLED="false", PLATFORM_ADMIN_EMAIL=ADMIN_EMAIL,
            MCPGATEWAY_UI_ENABLED="false", PLUGINS_ENABLED="false", MCPGATEWAY_CATALOG_ENABLED="false",
            MCPGATEWAY_A2A_ENABLED="false", LLMCHAT_ENABLED="false", OTEL_ENABLE_OBSERVABILITY="false",
            AUTO_REFRESH_SERVERS="false", USE_STATEFUL_SESSIONS=str(self.stateful_sessions).lower(), LOG_LEVEL="INFO")

    def start(self, timeout: float = START_TIMEOUT) -> ContextForge:
        venv = contextforge_dir()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._env = self._environment(venv)
        began = time.monotonic()
        self.process = Process("contextforge", [str(venv / "bin" / "mcpgateway"), "--host", "127.0.0.1",
                                                "--port", str(self.port)],
                               self.work_dir / "contextforge.log", env=self._env, cwd=self.work_dir).start()
        _wait(lambda: _answers(self.url + "/health"), "GET /health", self.process, timeout)
        self.started_in = time.monotonic() - began
        return self

    def token(self, minutes: int = 120, user: str = ADMIN_EMAIL) -> str:
        """A JWT for `user`, made by ContextForge's own tool with its JWT_SECRET_KEY (never logged)."""
        venv = contextforge_dir()
        result = subprocess.run([str(venv / "bin" / "python"), "-m", "mcpgateway.utils.create_jwt_token",
                                 "--username", user, "--exp", str(minutes)], check=True, capture_output=True,
                                text=True, env=self._env, cwd=self.work_dir, timeout=60)
        return result.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        """Its log so far (JSON lines): what it did on its own, e.g. "Event-driven refresh completed"."""
        path = self.work_dir / "contextforge.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def rss_bytes(self) -> int:
        """Resident memory of the server and its workers."""
        return _tree_rss(self.process)

    def __enter__(self) -> ContextForge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tree_rss(process: Process | None) -> int:
    if process is None or process.pid is None or not process.running():
        return 0
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            pgid = os.getpgid(int(status.parent.name))
        except (OSError, ValueError):
            continue
        if pgid == process.pid and "VmRSS" in fields:
            total += int(fields["VmRSS"].split()[0]) * 1024
    return total


# ------------------------------------------------------------------------------------- ToolHive


@dataclass
class ToolHiveRunner:
    """Our toolhive-runner (ToolHive's proxy runner library) in front of `remote_url`, on 127.0.0.1.

    The tools filter comes from `tool_config` (an MCPToolConfig object as YAML/JSON) or `runconfig` (a
    RunConfig JSON such as thv-operator renders); `webhooks` is ToolHive's webhook file format. ToolHive
    applies a changed filter by restarting its proxy: so does `restart()`.
    """

    work_dir: Path
    remote_url: str
    name: str = ""
    port: int = field(default_factory=free_port)
    tool_config: Path | None = None
    runconfig: Path | None = None
    webhooks: Path | None = None
    transport: str = "streamable-http"
    process: Process | None = None
    started_in: float = 0.0
    _starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout: float = 30.0) -> ToolHiveRunner:
        binary = toolhive_dir() / "toolhive-runner"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        args = [str(binary), "-remote-url", self.remote_url, "-port", str(self.port), "-transport", self.transport]
        for flag, value in (("-name", self.name), ("-tool-config", self.tool_config), ("-runconfig", self.runconfig),
                            ("-webhooks", self.webhooks)):
            if value:
                args += [flag, str(value)]
        self._starts += 1
        log = self.work_dir / f"toolhive-runner-{self._starts}.log"
        began = time.monotonic()
        self.process = Process("toolhive-runner", args, log, env=isolated_env(self.work_dir / "home"),
                               cwd=self.work_dir).start()
        _wait(lambda: "workload started successfully" in log.read_text(errors="replace") and _accepts(self.port),
              "the proxy to serve", self.process, timeout)
        self.started_in = time.monotonic() - began
        return self

    def restart(self, **changes: object) -> ToolHiveRunner:
        """Stop, change fields (tool_config=..., runconfig=...), start again on the same port."""
        self.stop()
        for key, value in changes.items():
            setattr(self, key, value)
        return self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def rss_bytes(self) -> int:
        return self.process.rss_bytes() if self.process is not None else 0

    async def arestart(self, **changes: object) -> ToolHiveRunner:
        """restart() off the event loop: the proxy's readiness probe may need a server running on it."""
        return await asyncio.to_thread(self.restart, **changes)

    def __enter__(self) -> ToolHiveRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ToolHiveRunner:
        """Started off the event loop (the operator's webhook may be served on it)."""
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


@dataclass
class ThvOperator:
    """ToolHive's Kubernetes operator against a (real) API server, from outside the cluster: it renders
    MCPRemoteProxy/MCPServer and the MCPToolConfig and MCPWebhookConfig they name into RunConfig
    ConfigMaps (`<name>-runconfig`, key runconfig.json) and Deployments whose pods never run here."""

    work_dir: Path
    kubeconfig: Path
    watch_namespace: str | None = None
    probe_port: int = field(default_factory=free_port)
    process: Process | None = None

    def start(self, timeout: float = 60.0) -> ThvOperator:
        binary = toolhive_dir() / "thv-operator"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = isolated_env(self.work_dir / "home", KUBECONFIG=str(self.kubeconfig), POD_NAMESPACE="default")
        if self.watch_namespace:
            env["WATCH_NAMESPACE"] = self.watch_namespace
        self.process = Process("thv-operator", [str(binary), "--metrics-bind-address=0",
                                                f"--health-probe-bind-address=127.0.0.1:{self.probe_port}"],
                               self.work_dir / "thv-operator.log", env=env, cwd=self.work_dir).start()
        _wait(lambda: _answers(f"http://127.0.0.1:{self.probe_port}/readyz"), "/readyz", self.process, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> ThvOperator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def webhook_file(path: Path, *, name: str, url: str, ca_bundle: Path, hmac_secret: Path | None = None,
                 failure_policy: str = "fail", timeout: str = "5s") -> Path:
    """ToolHive's local webhook file (the form `thv run --webhook-config` reads) with one validating webhook."""
    hook: dict[str, object] = {"name": name, "url": url, "failure_policy": failure_policy, "timeout": timeout,
                               "tls_config": {"ca_bundle_path": str(ca_bundle)}}
    if hmac_secret is not None:
        hook["hmac_secret_ref"] = str(hmac_secret)
    path.write_text(json.dumps({"validating": [hook], "mutating": []}, indent=2))
    return path
