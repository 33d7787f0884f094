"""What every benchmark needs: an API server (the real control plane or the emulator), MCP servers in a
process of their own, the operator as a process with its CPU and memory read from /proc, watches to
time answers, kube-apiserver's own request counter, percentiles.

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import urllib3

from toolcatalog_dev.cluster import Cluster, split_resource
from toolcatalog_dev.controlplane import ControlPlane, build, write_kubeconfig
from toolcatalog_dev.deploy import install_operator_access
from toolcatalog_dev.operatorproc import OperatorProcess
from toolcatalog_dev.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
TS = "toolcatalog.dev/v1alpha1/toolservers"
LOOPBACK = "127.0.0.1"
OUR_RESOURCES = ("toolservers", "connectorconfigs", "configmaps", "secrets", "events")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(samples), 2), "p95": round(percentile(samples, 0.95), 2),
            "n": len(samples)}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ a process from /proc


@dataclass
class ProcStats:
    """CPU seconds and memory of one process, read from /proc."""

    pid: int
    peak_rss: int = 0

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    value = int(line.split()[1]) * 1024
                    self.peak_rss = max(self.peak_rss, value)
                    return value
        except OSError:
            pass
        return 0

    async def sample_peak(self, stop: asyncio.Event, interval: float = 0.2) -> None:
        """Sample RSS until `stop` (peak_rss keeps the highest)."""
        while not stop.is_set():
            self.rss()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def self_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


# ------------------------------------------------------------------------------ MCP servers


class McpFleet:
    """MCP servers (McpTestServer, TCP_NODELAY) in a child process of their own, so that neither the
    operator nor the bench shares a GIL with them; driven by one-line JSON commands over a pipe."""

    def __init__(self, catalogs: list[int], page_size: int | None = None, *, sdk_defaults: bool = False) -> None:
        self.catalogs, self.page_size, self.sdk_defaults = catalogs, page_size, sdk_defaults
        self.process: subprocess.Popen[str] | None = None
        self.urls: list[str] = []

    def __enter__(self) -> McpFleet:
        args = [sys.executable, "-m", "bench.mcpfleet", "--catalogs", ",".join(map(str, self.catalogs))]
        if self.page_size:
            args += ["--page-size", str(self.page_size)]
        if self.sdk_defaults:
            args.append("--sdk-defaults")
        self.process = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.urls = self.command({"op": "urls"})["urls"]
        for url in self.urls:
            assert url.startswith(f"http://{LOOPBACK}:"), url
        return self

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the MCP fleet exited ({self.process.poll()})")
        return dict(json.loads(line))

    def set_tools(self, index: int, count: int) -> None:
        self.command({"op": "tools", "server": index, "count": count})

    def list_calls(self) -> list[int]:
        return list(self.command({"op": "stats"})["list_calls"])

    def open_listens(self) -> int:
        """Change-notification streams open on all the servers now (`subscriptions/listen`)."""
        return sum(self.command({"op": "stats"})["open_listens"])

    @property
    def behaviour(self) -> str:
        return "sdk-defaults (ttlMs 0, listChanged)" if self.sdk_defaults else "tuned (ttlMs a day, no listChanged)"

    @property
    def stats(self) -> ProcStats:
        assert self.process is not None
        return ProcStats(self.process.pid)

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.command({"op": "stop"})
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


# ------------------------------------------------------------------------------ API servers


_REQUESTS = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')
_BODY_BYTES = re.compile(r'^apiserver_request_body_size_bytes_sum\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')
_ETCD = {"etcd_disk_wal_write_bytes_total": "wal_bytes", "etcd_mvcc_put_total": "puts"}
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def api_writes(delta: dict[tuple[str, str], float]) -> float:
    """Writes (create, update, patch, delete) on our resources in a `request_delta`."""
    return sum(value for (verb, resource), value in delta.items() if verb in WRITE_VERBS and resource in OUR_RESOURCES)


def request_delta(before: dict[tuple[str, str], float],
                  after: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """How much each (verb, resource) request count of `request_counts()` grew from `before` to `after`."""
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value - before.get(key, 0.0) > 0}


def requests_by_verb(delta: dict[tuple[str, str], float], ours: bool = True) -> dict[str, float]:
    """`delta` as {"VERB resource": count}, watches left out: on our resources, or (`ours=False`) on others."""
    return {f"{verb} {resource or '(non-resource)'}": value for (verb, resource), value in sorted(delta.items())
            if value > 0 and verb not in ("WATCH", "CONNECT") and (resource in OUR_RESOURCES) == ours}


@dataclass
class Backend:
    """An API server with our CRDs, a client working in the bench namespace, and kubeconfigs."""

    name: str
    client: Cluster
    admin_kubeconfig: Path
    operator_kubeconfig: Path
    url: str
    plane: ControlPlane | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def request_counts(self) -> dict[tuple[str, str], float]:
        """kube-apiserver's own apiserver_request_total by (verb, resource), all clients."""
        assert self.plane is not None
        counts: dict[tuple[str, str], float] = {}
        for line in self.plane.get_raw("/metrics").decode().splitlines():
            match = _REQUESTS.match(line)
            if not match:
                continue
            labels = dict(part.split("=", 1) for part in match["labels"].split(","))
            key = (labels.get("verb", "").strip('"'), labels.get("resource", "").strip('"'))
            counts[key] = counts.get(key, 0.0) + float(match["value"])
        return counts

    def request_body_bytes(self) -> dict[tuple[str, str], float]:
        """kube-apiserver's apiserver_request_body_size_bytes (sum) by (VERB, resource): bytes clients sent."""
        assert self.plane is not None
        found: dict[tuple[str, str], float] = {}
        for line in self.plane.get_raw("/metrics").decode().splitlines():
            match = _BODY_BYTES.match(line)
            if match:
                labels = dict(part.split("=", 1) for part in match["labels"].split(","))
                key = (labels.get("verb", "").strip('"').upper(), labels.get("resource", "").strip('"'))
                found[key] = found.get(key, 0.0) + float(match["value"])
        return found

    def etcd_counters(self) -> dict[str, float]:
        """etcd's own counters: bytes written to its write-ahead log, and keys put."""
        assert self.plane is not None
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))     # 127.0.0.1, never a proxy
        with direct.open(f"{self.plane.etcd_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        found: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in _ETCD:
                found[_ETCD[name]] = float(value)
        return found

    def control_plane_cpu(self) -> dict[str, float]:
        return self.plane.cpu() if self.plane is not None else {}

    @contextlib.asynccontextmanager
    async def watch(self, resource: str, namespace: str) -> AsyncIterator[WatchStream]:
        """A watch on `resource` in `namespace` from now on (after an initial list, which it yields first)."""
        stream = WatchStream(self, resource, namespace)
        await stream.start()
        try:
            yield stream
        finally:
            await stream.aclose()


# Core resources the benchmarks watch, by plural: the official client's list call (any custom resource
# is listed by CustomObjectsApi).
_CORE_LISTS = {"configmaps": "list_namespaced_config_map", "secrets": "list_namespaced_secret",
               "events": "list_namespaced_event"}


def _list_call(api: Any, resource: str, namespace: str) -> tuple[Callable[..., Any], tuple[str, ...]]:
    """The official client's namespaced list call for `resource` (also its watch), and its arguments."""
    group, version, plural = split_resource(resource)
    if group:
        return kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object, (group, version, namespace,
                                                                                        plural)
    if version != "v1" or plural not in _CORE_LISTS:
        raise ValueError(f"WatchStream watches custom resources and {sorted(_CORE_LISTS)}, not {resource!r}")
    return getattr(kubernetes.client.CoreV1Api(api), _CORE_LISTS[plural]), (namespace,)


class WatchStream:
    """One watch stream: `objects` holds the latest body of every object by name; `changes` wakes
    waiters on every event. Waiting on a watch, not polling, keeps the bench off the API server's CPU.

    The official client's watch (synchronous) reads the stream in a thread of its own and hands each
    event to the event loop; the objects are only changed on the loop."""

    def __init__(self, backend: Backend, resource: str, namespace: str) -> None:
        self.backend, self.resource, self.namespace = backend, resource, namespace
        self.objects: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Condition()
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None
        self.errors: list[str] = []
        self._api = kubernetes.config.new_client_from_config(config_file=str(backend.admin_kubeconfig))
        self._list_call, self._where = _list_call(self._api, resource, namespace)
        self._watch = kubernetes.watch.Watch()
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ended: BaseException | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        items, version = await asyncio.to_thread(self._list)
        for item in items:
            self._apply("ADDED", item)
        self._thread = threading.Thread(target=self._run, args=(version,), name=f"watch {self.resource}",
                                        daemon=True)
        self._thread.start()

    def _list(self) -> tuple[list[dict[str, Any]], str | None]:
        listing = self._list_call(*self._where, _preload_content=False)
        body = json.loads(listing.data)
        return list(body.get("items") or []), (body.get("metadata") or {}).get("resourceVersion")

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            return
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        if self.on_event is not None:
            self.on_event(name, obj)

    async def _deliver(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for kind, obj in events:
            self._apply(kind, obj)
        async with self.changed:
            self.changed.notify_all()

    def _hand_over(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """From the watch thread to the loop, in order."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._deliver(events), self._loop)

    def _run(self, version: str | None) -> None:
        """Watch from `version`; resume after the server ends a stream, list again after 410 Gone."""
        try:
            while not self._closing.is_set():
                try:
                    for event in self._watch.stream(self._list_call, *self._where, resource_version=version,
                                                    allow_watch_bookmarks=True, timeout_seconds=3600):
                        obj = event["raw_object"]
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if event["type"] != "BOOKMARK":
                            self._hand_over([(str(event["type"]), obj)])
                except kubernetes.client.ApiException as error:
                    if error.status != 410:
                        raise
                    items, version = self._list()
                    self._hand_over([("ADDED", item) for item in items])
                except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                    if self._closing.is_set():
                        return
                    self.errors.append(f"{type(error).__name__}: {error}")
                    self._closing.wait(0.2)
        except Exception as error:          # reported to the waiters, not lost in a thread
            self._ended = error
            if self._loop is not None and not self._loop.is_closed():
                self._hand_over([])

    async def until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """The first truthy predicate() (checked on every event), or TimeoutError naming `what`."""
        async def wait() -> Any:
            async with self.changed:
                while True:
                    value = predicate()
                    if value:
                        return value
                    if self._ended is not None:
                        raise RuntimeError(f"the watch of {self.resource} ended while waiting for {what}: "
                                           f"{self._ended!r}")
                    await self.changed.wait()
        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}") from None

    async def aclose(self) -> None:
        self._closing.set()
        self._watch.stop()                  # shuts the stream's socket: the thread's read returns
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
        self._api.close()


def synced(obj: dict[str, Any] | None) -> bool:
    return any(cond.get("type") == "Synced" and cond.get("status") == "True"
               for cond in ((obj or {}).get("status") or {}).get("conditions") or [])


@contextlib.asynccontextmanager
async def real_cluster(workdir: Path) -> AsyncIterator[Backend]:
    """The real control plane, with the CRDs, deploy/'s namespace and RBAC, and a namespace for the bench;
    the operator runs as deploy/'s ServiceAccount (TokenRequest), never as admin."""
    plane = ControlPlane(bin_dir=build(quiet=True), crds=sorted((REPO / "crds").glob("*.yaml")))
    await asyncio.to_thread(plane.start)
    try:
        token = install_operator_access(plane)
        plane.kubectl("create", "namespace", NAMESPACE)
        operator_kubeconfig = write_kubeconfig(workdir / "operator.kubeconfig", server=plane.url,
                                               ca=plane.pki.ca_cert, token=token, user="toolcatalog")
        client = plane.client(NAMESPACE)
        try:
            yield Backend("real", client, plane.kubeconfig, operator_kubeconfig, plane.url, plane)
        finally:
            await client.aclose()
    finally:
        await asyncio.to_thread(plane.stop)


@contextlib.asynccontextmanager
async def emulator(workdir: Path) -> AsyncIterator[Backend]:
    from toolcatalog_dev.emulator import ApiEmulator

    async with ApiEmulator() as emu:
        kubeconfig = emu.write_kubeconfig(workdir / "emulator.kubeconfig", namespace=NAMESPACE)
        client = Cluster(emu.url, namespace=NAMESPACE)
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        try:
            yield Backend("emulator", client, kubeconfig, kubeconfig, emu.url, extra={"emulator": emu})
        finally:
            await client.aclose()


# ------------------------------------------------------------------------------ the operator


def operator_python() -> str:
    """The Python the operator runs with: $BENCH_OPERATOR_PYTHON (make bench: a virtual environment with
    the runtime dependencies only, as the image has them), else this one."""
    return os.environ.get("BENCH_OPERATOR_PYTHON") or sys.executable


def operator_environment() -> dict[str, Any]:
    """What the operator's Python can import that changes its footprint (kopf imports the kubernetes
    client whenever it is installed, ~19 MiB; the image does not have it)."""
    python = operator_python()
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('kubernetes') is not None)"],
                           capture_output=True, text=True, check=False)
    return {"python": python, "kubernetes_client_installed": probe.stdout.strip() == "True",
            "runtime_dependencies_only": python != sys.executable}


class Operator(OperatorProcess):
    """`toolcatalog run -A --standalone --quiet ARGS` with operator_python(), as a child process in its own
    session; a context manager."""

    def __init__(self, backend: Backend, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        from toolcatalog_dev.mcpserver import free_port

        self.metrics_port = free_port()
        super().__init__(backend.operator_kubeconfig, workdir / f"operator-{time.monotonic_ns()}.log", env=env,
                         args=["--quiet", "--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1",
                               *args], command=[operator_python(), "-m", "toolcatalog.cli"])

    def metric_total(self, name: str) -> float:
        """The sum of a metric's samples over every label, as Prometheus would scrape it from the operator."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name)

    @property
    def stats(self) -> ProcStats:
        assert self.pid is not None
        return ProcStats(self.pid)

    def __enter__(self) -> Operator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def until(check: Callable[[], Awaitable[Any] | Any], timeout: float, what: str,
                process: Any = None, interval: float = 0.05) -> Any:
    return await wait_for(check, timeout=timeout, what=what, process=process, interval=interval)


def toolserver(name: str, url: str, **sync: Any) -> dict[str, Any]:
    return {"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer", "metadata": {"name": name},
            "spec": {"url": url, "sync": {"ttlSeconds": 86400, "minIntervalSeconds": 0, **sync}}}


async def create_all(client: Cluster, objects: list[dict[str, Any]], concurrency: int = 32) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def create(obj: dict[str, Any]) -> None:
        async with semaphore:
            await client.create(obj)
    await asyncio.gather(*(create(obj) for obj in objects))


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="toolcatalog-bench-"))


# ------------------------------------------------------------------------------ profiles (py-spy)


@contextlib.contextmanager
def profiled(pid: int, directory: Path | None, name: str) -> Iterator[dict[str, Any]]:
    """py-spy record (raw collapsed stacks) of `pid` for the block, when `directory` is given and py-spy is
    installed (`make bench-profile`); yields a dict that gets the summary (share of samples by package)."""
    found: dict[str, Any] = {}
    spy = Path(sys.executable).parent / "py-spy"
    if directory is None or not spy.exists():
        yield found
        return
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{name}.txt"
    process = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                                "--output", str(output), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield found
    finally:
        os.kill(process.pid, 2)     # SIGINT: py-spy writes what it has and exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if output.exists():
            found.update(summarize_profile(output))
            found["file"] = str(output)


_FRAME = re.compile(r"\((?P<file>[^():]+):\d+\)$")


def _package(path: str) -> str | None:
    """The package a frame's file belongs to (py-spy names files relative to their sys.path entry);
    None for the standard library."""
    path = path.split("site-packages/", 1)[-1]
    top = path.split("/", 1)[0].removesuffix(".py")
    if top.startswith("<") or top in sys.stdlib_module_names or path.startswith("/"):
        return None
    if top == "toolcatalog":
        parts = path.split("/")
        return "toolcatalog." + parts[1].removesuffix(".py") if len(parts) > 2 else "toolcatalog"
    return top


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Shares of samples by the innermost non-stdlib frame's package (stdlib-only stacks: the event loop and
    what it runs directly), and the hottest leaf functions."""
    by_package: dict[str, float] = {}
    by_leaf: dict[str, float] = {}
    total = 0.0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = float(count_text)
        frames = stack.split(";")
        total += count
        owner = "stdlib (event loop, ssl, json ...)"
        for frame in reversed(frames):
            match = _FRAME.search(frame.strip())
            package = _package(match["file"]) if match else None
            if package is not None:
                owner = package
                break
        by_package[owner] = by_package.get(owner, 0.0) + count
        leaf = frames[-1].strip()
        by_leaf[leaf] = by_leaf.get(leaf, 0.0) + count
    if not total:
        return {"samples": 0}
    def shares(table: dict[str, float]) -> dict[str, float]:
        return {key: round(100 * value / total, 1)
                for key, value in sorted(table.items(), key=lambda item: -item[1])[:top]}
    return {"samples": int(total), "percent_by_package": shares(by_package), "percent_by_leaf": shares(by_leaf)}
