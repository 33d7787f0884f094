"""Operating the operator, end to end on both API servers: JSON logs with one line per sync and no
credential, graceful shutdown (a sync is cut before it writes, or finishes its writes: never half
written), liveness that fails when the watches stall, readiness once the caches are warm, and
`toolcatalog sandbox` on the emulator and on the real control plane.

Stalled watches and slow writes are made by an API proxy on loopback (toolcatalog_dev.apiproxy) between
the operator and the API server: the operator's own ServiceAccount token passes through it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.test_metrics import scrape_when
from tests.support.k8s import CM, TS, OperatorProcesses, condition, secret, toolserver, wait_until
from toolcatalog.api import constants as c
from toolcatalog_dev.apiproxy import ApiProxy
from toolcatalog_dev.mcpserver import McpTestServer, free_port, make_tools
from toolcatalog_dev.operatorproc import OperatorProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "0perate-Echo-Token-5512"
FORMS = (TOKEN, base64.b64encode(TOKEN.encode()).decode().rstrip("="), quote(TOKEN, safe=""))
STOP_DEADLINE = 10.0            # SIGTERM to exit, with nothing to finish (the grace period is 30 s)


def synced(obj: dict[str, Any]) -> bool:
    return condition(obj, "Synced").get("status") == "True"


def answered(token: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: ((obj.get("status") or {}).get("lastRefresh") or {}).get("token") == token


async def forced_refresh(api: Any, name: str, token: str) -> None:
    await api.annotate(TS, api.ns, name, {c.ANN_REFRESH: token, c.ANN_REFRESH_FORCE: token})


def http_get(url: str) -> tuple[int, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body or b"null")
        except ValueError:
            return error.code, body.decode(errors="replace")
    except OSError:
        return None


async def probe(url: str, status: int | None = None) -> tuple[int, Any] | None:
    """GET an endpoint of the operator in a thread (the emulator serves on this test's loop); with `status`,
    None unless it answered that."""
    got = await asyncio.to_thread(http_get, url)
    return got if got is not None and (status is None or got[0] == status) else None


def full_lists(proxy: ApiProxy) -> list[Any]:
    """LISTs of our resources the operator made itself (kopf's initial listing is a plain GET, no query)."""
    return [seen for seen in proxy.requests("GET", r"/(toolservers|connectorconfigs)\?")
            if "watch=" not in seen.path and not re.search(r"[?&]limit=1(&|$)", seen.path)]


async def checked(url: str) -> tuple[int, Any] | None:
    """The liveness endpoint's answer once the watch check has run (before: `{"state": "starting"}`)."""
    got = await probe(url)
    return got if got is not None and "behind" in (got[1].get("watches") or {}) else None


def json_lines(log: str) -> list[dict[str, Any]]:
    """Every line of a --log-format=json log, parsed: each must be one JSON object."""
    lines = []
    for number, line in enumerate(log.splitlines(), 1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} of the log is not JSON: {line!r}")
        assert isinstance(lines[-1], dict) and {"timestamp", "severity", "logger", "message"} <= set(lines[-1])
    return lines


def sync_lines(log: str, name: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(log) if line["logger"] == "toolcatalog.sync" and line.get("name") == name]


async def cache_agrees_with_status(api: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ToolServer and its ConfigMap, asserting they describe the same catalog."""
    obj = await api.get(TS, api.ns, name)
    cm = await api.get(CM, api.ns, f"toolserver-{name}")
    assert cm is not None and obj is not None
    assert cm["metadata"]["annotations"][c.ANN_CONTENT_HASH] == obj["status"]["cache"]["contentHash"], \
        "the ConfigMap and the status describe different catalogs"
    return obj, cm


def stop_timed(operator: Any) -> tuple[int | None, float]:
    started = time.monotonic()
    code = operator.stop(timeout=40)
    return code, time.monotonic() - started


# ------------------------------------------------------------------------------ fixtures



@pytest.fixture
def proxied_kubeconfig(api: Any, proxy: ApiProxy, tmp_path: Path) -> Path:
    """The operator's kubeconfig through the proxy: its ServiceAccount token on a real server."""
    token = api.session.operator_token if api.session is not None else None
    return proxy.write_kubeconfig(tmp_path / "proxied.kubeconfig", token=token, namespace=api.ns)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators with a given kubeconfig and arguments; every one is stopped at teardown."""
    operators = OperatorProcesses(tmp_path)
    yield operators.start
    operators.stop_all()


# ------------------------------------------------------------------------------ logs


async def test_json_logs_have_one_line_per_sync_with_trigger_result_reason_duration_and_diff(
        api, start_operator, waiter):
    operator = start_operator(args=["--log-format=json"])
    with McpTestServer(tools=make_tools(3)) as server:
        await api.create(toolserver("logs", server.url))
        await waiter.status(TS, "logs", synced, "first sync", operator=operator)
        changed = make_tools(4)
        changed[0]["description"] = "Does something else now."
        server.tools = [changed[0], changed[1], changed[3]]         # 1 changed, 1 removed, 1 new
        await forced_refresh(api, "logs", "second")
        await waiter.status(TS, "logs", answered("second"), "the refresh answered", operator=operator)
        server.mode = "http500"
        await forced_refresh(api, "logs", "third")
        await waiter.status(TS, "logs", answered("third"), "the failed refresh answered", operator=operator)

    lines = await wait_until(lambda: (found := sync_lines(operator.log(), "logs")) and len(found) >= 3 and found,
                             what="three sync lines", operator=operator)
    first, second, third = lines[:3]
    assert {key: first[key] for key in ("severity", "kind", "namespace", "trigger", "result", "reason", "tools",
                                        "new", "removed", "changed")} == {
        "severity": "info", "kind": "ToolServer", "namespace": api.ns, "trigger": "create", "result": "Succeeded",
        "reason": "", "tools": 3, "new": 3, "removed": 0, "changed": 0}
    assert isinstance(first["durationMs"], int) and first["durationMs"] >= 0
    assert (second["trigger"], second["result"], second["new"], second["removed"], second["changed"]) == \
        ("refresh", "Succeeded", 1, 1, 1)
    assert (third["severity"], third["trigger"], third["result"], third["reason"]) == \
        ("warn", "refresh", "Failed", "ServerUnavailable")
    assert third["error"] and f"ToolServer {api.ns}/logs: refresh sync Failed (ServerUnavailable)" in third["message"]
    # kopf's own per-object lines carry the object they are about.
    assert any(line.get("object", {}).get("name") == "logs" for line in json_lines(operator.log()))


async def test_json_logs_never_hold_a_credential_at_debug_level(api, start_operator, waiter):
    """A server that quotes the bearer token back (a handshake-era one makes the MCP SDK log its answer):
    the JSON log, at DEBUG, masks it in every field."""
    operator = start_operator(args=["--log-format=json"])       # start_operator adds --verbose: DEBUG
    with McpTestServer(tokens={TOKEN: make_tools(1)}, mode="echo-token", legacy=True) as server:
        await api.create(secret("echo-auth", {"token": TOKEN}))
        await api.create(toolserver("echo", server.url,
                                    auth={"bearerToken": {"secretKeyRef": {"name": "echo-auth", "key": "token"}}}))
        await waiter.status(TS, "echo", lambda o: condition(o, "Synced").get("status") == "False",
                            "the echoing server's sync to fail", operator=operator)
        await wait_until(lambda: sync_lines(operator.log(), "echo"), what="the sync line", operator=operator)
    log = operator.log()
    lines = json_lines(log)
    assert any(line["severity"] == "debug" for line in lines)
    for form in FORMS:
        assert form not in log, f"a form of the credential ({form!r}) is in the JSON log"
    assert "***" in log                                 # it was there, and masked


# ------------------------------------------------------------------------------ graceful shutdown


async def test_sigterm_cuts_a_sync_still_fetching_writes_nothing_and_the_next_start_does_it(
        api, start_operator, waiter):
    operator = start_operator()
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("hung", server.url, sync={"minIntervalSeconds": 0, "timeoutSeconds": 60}))
        await waiter.status(TS, "hung", synced, "first sync", operator=operator)
        before, cm_before = await cache_agrees_with_status(api, "hung")
        server.delay, server.tools = 45.0, make_tools(3)
        calls = server.list_calls
        await forced_refresh(api, "hung", "in-flight")
        await server.wait_until_async(lambda s: s.list_calls > calls, timeout=20)   # it is fetching now

        code, took = await asyncio.to_thread(stop_timed, operator)
        print(f"\nSIGTERM with a sync fetching from a hung server: exit {code} in {took:.2f}s")
        assert code == 0, operator.log_tail()
        assert took < STOP_DEADLINE, f"{took:.1f}s to stop:\n{operator.log_tail()}"
        assert "1 sync(s) cut before writing anything" in operator.log()
        after, cm_after = await cache_agrees_with_status(api, "hung")
        assert after["status"] == before["status"] and cm_after["data"] == cm_before["data"]

        server.delay = 0.0
        restarted = start_operator()
        obj = await waiter.status(TS, "hung", answered("in-flight"), "the refresh answered after the restart",
                                  operator=restarted)
        assert obj["status"]["lastRefresh"]["result"] == "Succeeded" and obj["status"]["toolCount"] == 3
        await cache_agrees_with_status(api, "hung")


async def test_sigterm_while_a_sync_writes_lets_it_write_its_status_too(api, proxy, proxied_kubeconfig, launch,
                                                                        waiter):
    operator = launch(proxied_kubeconfig)
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("writing", server.url, sync={"minIntervalSeconds": 0}))
        await waiter.status(TS, "writing", synced, "first sync", operator=operator)
        await cache_agrees_with_status(api, "writing")
        cache_write = rf"/namespaces/{api.ns}/configmaps/toolserver-writing(\?|$)"
        proxy.delay("PATCH", cache_write, 3.0)          # the API server answers the cache write 3 s late
        server.tools = make_tools(3)
        await forced_refresh(api, "writing", "mid-write")
        await proxy.wait_for_request("PATCH", cache_write)

        code, took = await asyncio.to_thread(stop_timed, operator)
        print(f"\nSIGTERM with a sync writing (its ConfigMap write answered 3 s late): exit {code} in {took:.2f}s")
        assert code == 0, operator.log_tail()
        assert 2.0 < took < 3.0 + STOP_DEADLINE, operator.log_tail()
        await proxy.wait_idle()             # whatever the operator sent has reached the API server
        obj, cm = await cache_agrees_with_status(api, "writing")
        assert answered("mid-write")(obj) and obj["status"]["lastRefresh"]["result"] == "Succeeded"
        assert obj["status"]["toolCount"] == 3
        assert proxy.requests("PATCH", rf"/namespaces/{api.ns}/toolservers/writing/status")


# ------------------------------------------------------------------------------ liveness and readiness


async def test_liveness_fails_while_the_watches_stall_and_passes_again_when_they_recover(
        api, proxy, proxied_kubeconfig, launch, waiter):
    port = free_port()
    operator = launch(proxied_kubeconfig, f"--liveness=http://127.0.0.1:{port}/healthz", "--watch-stall-timeout=3")
    url = f"http://127.0.0.1:{port}/healthz"
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("alive", server.url, sync={"minIntervalSeconds": 0}))
        await waiter.status(TS, "alive", synced, "first sync", operator=operator)
        status, body = await wait_until(lambda: checked(url), what="/healthz answers a check", operator=operator)
        assert status == 200 and body["watches"]["behind"] == 0, body
        # Probes read what the background check found: ten of them send nothing to the API server, and no
        # check lists the resources (only short watches of the changes, and a list of one item at start).
        before = len(proxy.requests())
        for _ in range(10):
            assert (await probe(url))[0] == 200
        made = proxy.requests()[before:]
        assert all("timeoutSeconds=" in seen.path for seen in made if "toolcatalog.dev" in seen.path), made
        assert not full_lists(proxy), full_lists(proxy)

        proxy.stall_watches(spare=r"[?&]timeoutSeconds=")     # kopf's streams; not the check's short watches
        started = time.monotonic()
        await forced_refresh(api, "alive", "during-the-stall")      # a change the watches do not deliver
        status, _ = await wait_until(lambda: probe(url, 500), timeout=40, what="/healthz to fail", operator=operator)
        print(f"\nliveness failed {time.monotonic() - started:.1f}s after a change the stalled watches held back")
        obj = await api.get(TS, api.ns, "alive")
        assert not answered("during-the-stall")(obj)

        proxy.resume_watches()
        await waiter.status(TS, "alive", answered("during-the-stall"), "the held-back refresh answered",
                            operator=operator)
        status, body = await wait_until(lambda: probe(url, 200), timeout=30, what="/healthz to pass again",
                                        operator=operator)
        assert body["watches"]["behind"] == 0
    assert "the watches have stalled" in operator.log()


async def test_readiness_waits_for_the_initial_listing_and_a_first_look_at_every_resource(
        api, proxy, proxied_kubeconfig, launch, waiter):
    port = free_port()
    url = f"http://127.0.0.1:{port}/readyz"
    with McpTestServer(tools=make_tools(2)) as server:
        for index in range(3):
            await api.create(toolserver(f"warm-{index}", server.url))
        # kopf's initial listing of ToolServers (a plain GET of the collection) comes 3 s late.
        proxy.delay("GET", r"^/apis/toolcatalog\.dev/v1alpha1/toolservers$", 3.0)
        operator = launch(proxied_kubeconfig, f"--readiness=http://127.0.0.1:{port}/readyz")
        status, body = await wait_until(lambda: probe(url), what="/readyz answers", operator=operator)
        assert (status, body["ready"]) == (503, False), body
        assert body["state"].startswith("waiting for the initial listing"), body
        status, body = await wait_until(lambda: probe(url, 200), timeout=30, what="/readyz to say ready",
                                        operator=operator)
        assert body == {"ready": True, "state": "ready"}
        assert proxy.requests("GET", r"^/apis/toolcatalog\.dev/v1alpha1/toolservers$")
        assert not full_lists(proxy), full_lists(proxy)     # readiness needs kopf's listing, not one of its own
        for index in range(3):
            await waiter.status(TS, f"warm-{index}", synced, "synced", operator=operator)


# ------------------------------------------------------------------------------ throttling


async def test_a_429_with_retry_after_holds_the_retry_back_that_long_and_is_counted(api, proxy, proxied_kubeconfig,
                                                                                   launch, waiter):
    """The API server throttles the cache ConfigMap's create (429, Retry-After: 3): nothing is written, and the
    work queue retries that resource no sooner than 3 s later (its backoff alone: within half a second)."""
    port = free_port()
    operator = launch(proxied_kubeconfig, "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    create = rf"^/api/v1/namespaces/{api.ns}/configmaps(\?|$)"
    proxy.refuse("POST", create, 429, "TooManyRequests", retry_after=3)
    with McpTestServer(tools=make_tools(2)) as server:
        await api.create(toolserver("throttled", server.url))
        await waiter.status(TS, "throttled", synced, "synced after the throttled create", operator=operator)
    refused, retried = proxy.requests("POST", create)[:2]
    print(f"\nthe create refused with 429 and Retry-After: 3 was retried {retried.at - refused.at:.2f}s later")
    assert retried.at - refused.at >= 2.9
    assert "the API server asked for 3s" in operator.log()
    metrics = await wait_until(lambda: scrape_when(port, "toolcatalog_reconcile_kube_api_errors_total"),
                               what="the metrics", operator=operator)
    assert metrics[("toolcatalog_reconcile_kube_api_errors_total",
                    (("controller", "toolcatalog"), ("reason", "TooManyRequests")))] == 1
    assert metrics[("toolcatalog_reconcile_total", (("controller", "toolcatalog"), ("result", "error")))] == 1
    assert metrics[("toolcatalog_workqueue_retries_total", (("controller", "toolcatalog"), ("name", "toolcatalog")))] \
        == 1


# ------------------------------------------------------------------------------ the sandbox


class Sandbox:
    """`toolcatalog sandbox` as a newcomer runs it, its output in a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCATALOG_") and k != "KUBECONFIG"}
        with log.open("wb") as out:
            self.process = subprocess.Popen([str(BIN / "toolcatalog"), "sandbox", *args], cwd=REPO, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def exited(self) -> int | None:
        return self.process.poll()

    def kubeconfig(self) -> Path | None:
        found = re.search(r"^KUBECONFIG=(\S+)$", self.output(), re.MULTILINE)
        return Path(found.group(1)) if found else None

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def start(*args: str) -> Sandbox:
        started.append(Sandbox(list(args), tmp_path / f"sandbox-{len(started)}.out"))
        return started[-1]

    yield start
    for one in started:
        one.kill()


def run(*command: str | Path, kubeconfig: Path, kubectl_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(BIN), *([str(kubectl_dir)] if kubectl_dir else []), os.environ.get("PATH", "")])
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": path})


def _kubectl_dir() -> Path | None:
    """The kubectl built with the control plane, if it was built (the emulator sandbox works without)."""
    gomod = (REPO / "test/controlplane/kubernetes/go.mod").read_text()
    version = gomod.split("require k8s.io/kubernetes ")[1].split()[0]
    cache = Path(os.environ.get("TOOLCATALOG_CACHE") or Path.home() / ".cache" / "toolcatalog")
    found = cache / "controlplane" / version
    return found if (found / "kubectl").exists() else None


async def _use_the_sandbox(box: Sandbox, kubectl_dir: Path | None) -> None:
    """What the sandbox tells a newcomer to do, done: kubectl, the plugin, a release, a refresh, then SIGTERM."""
    kubeconfig = await wait_until(box.kubeconfig, timeout=150, what="the sandbox to print its KUBECONFIG",
                                  operator=box)
    assert "The sandbox is running" in box.output()
    tools = run(BIN / "kubectl-toolcatalog", "tools", "toolserver/demo", "--all", kubeconfig=kubeconfig)
    assert tools.returncode == 0 and "create_task" in tools.stdout, tools.stderr
    if kubectl_dir is not None:
        listed = run("kubectl", "get", "toolservers", "-A", kubeconfig=kubeconfig, kubectl_dir=kubectl_dir)
        assert listed.returncode == 0 and "demo" in listed.stdout, listed.stderr
        header = listed.stdout.split()[:7]                              # the CRD's printer columns
        assert header == ["NAMESPACE", "NAME", "URL", "TOOLS", "READY", "SYNCED", "LAST"], listed.stdout
        status = run("kubectl", "toolcatalog", "status", "-A", kubeconfig=kubeconfig, kubectl_dir=kubectl_dir)
        assert status.returncode == 0 and "mcpts/demo" in status.stdout, status.stderr
    box.process.send_signal(signal.SIGUSR1)
    await wait_until(lambda: "shipped a new release" in box.output(), what="the demo server's release",
                     operator=box)
    # The server notifies its listeners: the operator may have synced the release before the refresh
    # (which then finds nothing new); either way the catalog has the new tool afterwards.
    refreshed = run(BIN / "kubectl-toolcatalog", "refresh", "toolserver/demo", "--force", "--wait",
                    kubeconfig=kubeconfig)
    assert refreshed.returncode == 0 and "Result:           Succeeded" in refreshed.stdout, \
        refreshed.stdout + refreshed.stderr
    after = run(BIN / "kubectl-toolcatalog", "tools", "toolserver/demo", kubeconfig=kubeconfig)
    assert after.returncode == 0 and "assign_task" in after.stdout, after.stdout + after.stderr

    workdir = kubeconfig.parent
    started = time.monotonic()
    box.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(box.process.wait, 60)
    print(f"\nsandbox stopped {time.monotonic() - started:.1f}s after SIGTERM, exit {code}")
    assert code == 0, box.log_tail()
    assert "==> stopped" in box.output()
    assert not workdir.exists()
    gone = run(BIN / "kubectl-toolcatalog", "status", "-A", kubeconfig=kubeconfig)
    assert gone.returncode != 0                         # nothing answers there any more


@pytest.mark.emulator_only("the default sandbox runs its own emulator")
@pytest.mark.timeout(240)
async def test_the_sandbox_serves_kubectl_and_the_plugin_until_sigterm(sandbox):
    box = sandbox()
    kubectl_dir = _kubectl_dir() if shutil.which("kubectl") is None else None
    await _use_the_sandbox(box, kubectl_dir)


@pytest.mark.cluster_only("`sandbox --real` needs the real control plane built")
@pytest.mark.timeout(300)
async def test_the_real_sandbox_runs_the_operator_as_its_service_account(sandbox):
    box = sandbox("--real")
    await wait_until(box.kubeconfig, timeout=200, what="the real sandbox to print its KUBECONFIG", operator=box)
    assert "the operator runs as ServiceAccount toolcatalog-system/toolcatalog" in box.output()
    await _use_the_sandbox(box, _kubectl_dir())
