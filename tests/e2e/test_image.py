"""The container image, run the way deploy/base/deployment.yaml runs it, against the real control plane.

The image is built by `make image` (test/image/build.sh), a step of .ci/run before any test: cached, so
it costs well under a second when the sources have not changed, and a few minutes on a fresh machine
(podman, runc and debootstrap are installed with apt-get, a Debian bookworm base is made with
debootstrap, then the Dockerfile is built). The tests never build it: without an image of exactly these
sources they fail at once, naming `make image`. TOOLCATALOG_TEST_IMAGE names an image to test instead.

The container runs with podman (test/image/podman.sh: runc, cgroupfs, lowered ulimits) on the host's
network, so that it reaches the control plane and the MCP test server on 127.0.0.1, as 10001:10001
with a read-only root filesystem and only /tmp writable, with every capability dropped, and with the
arguments of deploy/base/deployment.yaml (its ports moved to free loopback ones).

The tests skip, saying why, when podman cannot work here: not root (podman is set up for root only),
or podman missing with no apt-get to install it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.k8s import TS, condition, toolserver, wait_until

try:
    from tests.support.mcpservers import McpTestServer, free_port, make_tools
except ImportError:  # the MCP test server's new home, as the package layout is being reorganised
    from toolcatalog_dev.mcpserver import McpTestServer, free_port, make_tools  # type: ignore[no-redef]

pytestmark = [pytest.mark.e2e,
              pytest.mark.cluster_only("runs the built image with podman against the real control plane")]

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "test" / "image" / "build.sh"
PODMAN = REPO / "test" / "image" / "podman.sh"
UID_GID = "10001:10001"          # deploy/base/deployment.yaml's runAsUser/runAsGroup
GRACE = 30                       # deploy/base/deployment.yaml's terminationGracePeriodSeconds
CONTAINER_KUBECONFIG = "/var/run/toolcatalog/kubeconfig"
DEPLOYMENT = REPO / "deploy" / "base" / "deployment.yaml"


def deployment_args(health_port: int, ready_port: int, metrics_port: int) -> list[str]:
    """The container's arguments in deploy/base/deployment.yaml, with its ports moved to free ones on 127.0.0.1
    (the container shares the host's network)."""
    (container,) = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]["containers"]
    args: list[str] = []
    for arg in container["args"]:
        if arg == "--metrics-port=9090":
            args += [f"--metrics-port={metrics_port}", "--metrics-address=127.0.0.1"]
            continue
        args.append(arg.replace("0.0.0.0:8080", f"127.0.0.1:{health_port}")
                    .replace("0.0.0.0:8081", f"127.0.0.1:{ready_port}"))
    assert not any("0.0.0.0" in arg for arg in args), args
    return args


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(PODMAN), *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


def _why_podman_cannot_work() -> str | None:
    if os.geteuid() != 0:
        return "podman is set up for root only on these machines (test/image/lib.sh); not root"
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        return "podman is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def image() -> str:
    """The image's name: TOOLCATALOG_TEST_IMAGE, or the one `make image` (a step of .ci/run) built from these
    very sources. Nothing is built here: a missing or outdated image fails at once, naming `make image`."""
    if os.environ.get("TOOLCATALOG_TEST_IMAGE"):
        return os.environ["TOOLCATALOG_TEST_IMAGE"]
    why = _why_podman_cannot_work()
    if why:
        pytest.skip(why)
    result = subprocess.run(["bash", str(BUILD), "--check"], capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode == 3:
        pytest.fail(result.stderr.strip(), pytrace=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


class Container:
    """`podman run` attached (its exit status is the container's), its output in a file. Quacks like the
    operator's process object for wait_until and waiter (`operator=`), which then fail at once, with
    the container's log, when the container exits."""

    def __init__(self, image: str, args: list[str], podman_args: list[str], log_path: Path) -> None:
        self.name = f"toolcatalog-e2e-{secrets.token_hex(4)}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", str(PODMAN), "run", "--name", self.name, *podman_args, image, *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def exited(self) -> int | None:
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def container() -> Iterator[Callable[..., Container]]:
    """Starts containers for a test; every one is removed at teardown, whatever happened."""
    started: list[Container] = []

    def start(*args: Any, **kwargs: Any) -> Container:
        started.append(Container(*args, **kwargs))
        return started[-1]

    yield start
    for one in started:
        one.remove()


def http_get(url: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None


def test_image_holds_only_the_operator(image):
    """The runtime image: the operator's venv and entry points, as 10001:10001; no pip in the venv, no
    compiler, no dev/ package, no tests, no sources, no wheels."""
    config = podman("image", "inspect", "--format", "{{json .Config.Entrypoint}} {{.Config.User}}", image).stdout
    assert config.split() == ['["toolcatalog"]', UID_GID]
    script = """if True:
        import importlib.util as u, os, shutil, sys
        print(os.getuid(), os.getgid())
        assert sys.prefix == "/opt/toolcatalog", sys.prefix
        assert u.find_spec("toolcatalog") and u.find_spec("kopf")
        print([m for m in ("pip", "setuptools", "toolcatalog_dev", "tests", "bench") if u.find_spec(m)])
        print([c for c in ("gcc", "cc", "c++", "g++", "clang", "make", "ld") if shutil.which(c)])
        print([p for p in ("/src", "/wheels", "/opt/toolcatalog/bin/pip") if os.path.exists(p)])
    """
    result = podman("run", "--rm", "--network=host", "--read-only", "--entrypoint", "python3", image, "-c", script)
    uid_gid, present, compilers, leftovers = result.stdout.splitlines()
    assert uid_gid == "10001 10001"
    assert present == "[]", f"not for the image: {present}"
    assert compilers == "[]", f"build tools in the image: {compilers}"
    assert leftovers == "[]", f"build leftovers in the image: {leftovers}"


async def test_image_syncs_serves_health_and_metrics_and_stops_cleanly(image, api, operator_kubeconfig, waiter,
                                                                        container, tmp_path):
    # The operator's ServiceAccount kubeconfig, readable by the container's user only (as a Secret
    # volume would be), mounted read-only.
    kubeconfig = tmp_path / "operator.kubeconfig"
    shutil.copyfile(operator_kubeconfig, kubeconfig)
    os.chown(kubeconfig, 10001, 10001)
    kubeconfig.chmod(0o400)
    health_port, ready_port, metrics_port = free_port(), free_port(), free_port()
    operator = container(
        image,
        deployment_args(health_port, ready_port, metrics_port),
        ["--network=host", "--read-only", "--read-only-tmpfs=false", "--tmpfs=/tmp:rw,size=64m,mode=1777",
         f"--user={UID_GID}", "--cap-drop=ALL", "--security-opt=no-new-privileges",
         f"--volume={kubeconfig}:{CONTAINER_KUBECONFIG}:ro", f"--env=KUBECONFIG={CONTAINER_KUBECONFIG}"],
        tmp_path / "container.log")

    with McpTestServer(tools=make_tools(3)) as server:
        await api.create(toolserver("imaged", server.url))
        synced = await waiter.status(TS, "imaged", lambda o: condition(o, "Synced").get("status") == "True",
                                     "synced by the operator in the container", timeout=60, operator=operator)
    assert synced["status"]["toolCount"] == 3
    assert [tool["name"] for tool in synced["status"]["tools"]] == ["tool_000", "tool_001", "tool_002"]

    health = await wait_until(lambda: http_get(f"http://127.0.0.1:{health_port}/healthz"), what="/healthz answers",
                              operator=operator)
    assert health[0] == 200, health
    ready = await wait_until(lambda: (got := http_get(f"http://127.0.0.1:{ready_port}/readyz")) and got[0] == 200
                             and got, what="/readyz says ready", operator=operator)
    assert '"ready": true' in ready[1]
    # --log-format=json, as the Deployment runs it: one JSON object a line, one of them this sync's.
    lines = [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]
    assert not re.search(r"^\[\d{4}-\d\d-\d\d ", operator.log(), re.MULTILINE), "a text log line"
    assert any(line.get("logger") == "toolcatalog.sync" and line.get("name") == "imaged"
               and line.get("result") == "Succeeded" for line in lines), operator.log_tail()

    def metrics_with_syncs():
        got = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        return got if got and got[0] == 200 and "toolcatalog_syncs_total" in got[1] else None

    _, text = await wait_until(metrics_with_syncs, what="/metrics with toolcatalog_syncs_total", operator=operator)
    syncs = [sample for family in text_string_to_metric_families(text) for sample in family.samples
             if sample.name == "toolcatalog_syncs_total" and sample.labels.get("kind") == "ToolServer"
             and sample.labels.get("result") == "Succeeded"]
    assert sum(sample.value for sample in syncs) >= 1, text

    # SIGTERM, as the kubelet sends it: the operator must exit by itself, cleanly, well within the grace.
    assert operator.running(), operator.log_tail()
    started = time.monotonic()
    stop = podman("stop", "--time", str(GRACE), operator.name, timeout=GRACE + 30, check=False)
    status = operator.process.wait(timeout=30)
    took = time.monotonic() - started
    state = podman("inspect", "--format", "{{.State.ExitCode}}", operator.name).stdout.strip()
    print(f"\nSIGTERM: the container exited with status {status} (podman inspect: {state}) in {took:.2f}s")
    assert stop.returncode == 0, stop.stderr
    assert (status, state) == (0, "0"), f"exit status {status} after SIGTERM:\n{operator.log_tail()}"
    assert took < GRACE / 3, f"took {took:.1f}s to stop after SIGTERM (grace {GRACE}s):\n{operator.log_tail()}"
