"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries come from the Go modules in test/controlplane/ (build.sh builds them once per
version into ~/.cache/toolcatalog/controlplane/<version>/). They are started the way envtest
starts them: etcd on a temporary data directory; kube-apiserver with a client-certificate admin,
RBAC authorization and service-account signing keys (so the TokenRequest API works); and
kube-controller-manager with only the garbage collector and namespace controllers. Every process
listens on 127.0.0.1 only, is started in its own process group, dies with the process that
started it (PR_SET_PDEATHSIG), and is stopped by PID.

    python -m toolcatalog_dev.controlplane      # start one for a person (make cluster), until Ctrl-C
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cluster import Cluster
from .pki import Pki, make_pki

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "test" / "controlplane" / "build.sh"
START_TIMEOUT = 120.0       # a cold start on 2 cores: etcd, then the API server's post-start hooks
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the parent dies, whatever way it dies (a kube-apiserver
    left without etcd ignores SIGTERM for minutes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    print(f"[controlplane {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class NotBuilt(RuntimeError):
    """An artifact the tests need is missing or out of date; the message names the `make` target."""


def build(*, quiet: bool = False, check: bool = False) -> Path:
    """Build (or find cached) binaries with test/controlplane/build.sh; returns their directory.

    `check`: build nothing (tests never build inside their timeout): NotBuilt when a binary is missing or
    out of date, naming `make controlplane`.
    """
    if shutil.which("go") is None and not check:
        raise RuntimeError("the real control plane needs Go (1.26 or newer) on PATH and the Go module proxy; "
                           "see docs/development/control-plane.md")
    result = subprocess.run(["bash", str(BUILD_SCRIPT), *(["--check"] if check else [])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if check else subprocess.DEVNULL if quiet else None, text=True,
                            check=False)
    if check and result.returncode == 3:
        raise NotBuilt(result.stderr.strip() or "the control plane is not built: run `make controlplane`")
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit status {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class Process:
    """One started binary: its Popen, its log file, and how to stop it."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None       # None: this process's environment
    cwd: Path | None = None

    def start(self) -> Process:
        # PR_SET_PDEATHSIG fires when the forking *thread* ends: only tie children to the main thread.
        tie = _die_with_parent if threading.current_thread() is threading.main_thread() else None
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, preexec_fn=tie, env=self.env, cwd=self.cwd)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.popen = None

    def rss_bytes(self) -> int:
        """Resident memory of the process, from /proc (0 when it is not running)."""
        if not self.running() or self.pid is None:
            return 0
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the process has used so far."""
        if not self.running() or self.pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, in a temporary directory."""

    bin_dir: Path
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="toolcatalog-cp-")))
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    crds: Sequence[Path] = ()
    processes: dict[str, Process] = field(default_factory=dict)
    started_in: float = 0.0
    _admin: Any = field(default=None, init=False, repr=False)     # the official client, for get_raw

    # -- locations ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def pki(self) -> Pki:
        return Pki(self.work_dir / "pki")

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in group system:masters)."""
        return self.work_dir / "admin.kubeconfig"

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def version(self) -> str:
        return self.bin_dir.name

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> ControlPlane:
        began = time.monotonic()
        try:
            make_pki(self.pki.directory)
            self._start_etcd()
            self._start_apiserver()
            write_kubeconfig(self.kubeconfig, server=self.url, ca=self.pki.ca_cert,
                             client_cert=self.pki.admin_cert, client_key=self.pki.admin_key, user="admin")
            for crd in self.crds:   # before the garbage collector starts, so its discovery knows them
                self.kubectl("apply", "-f", str(crd))
            if self.crds:
                self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _start_etcd(self) -> None:
        data = self.work_dir / "etcd"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.processes["etcd"] = Process("etcd", [
            self.binary("etcd"), "--name=default", f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--unsafe-no-fsync", "--log-level=warn",
        ], self.work_dir / "etcd.log").start()
        self._wait("etcd", lambda: _http_ok(f"{self.etcd_url}/health"))

    def apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            self.binary("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={self.url}", f"--service-account-key-file={pki.sa_public}",
            f"--service-account-signing-key-file={pki.sa_private}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=false",
            "--profiling=false",
            "--v=0",
        ]

    def _start_apiserver(self) -> None:
        self.processes["kube-apiserver"] = Process(
            "kube-apiserver", self.apiserver_args(), self.work_dir / "kube-apiserver.log").start()
        self._wait("kube-apiserver", self.ready)

    def _start_controller_manager(self) -> None:
        config = str(self.kubeconfig)
        self.processes["kube-controller-manager"] = Process("kube-controller-manager", [
            self.binary("kube-controller-manager"),
            f"--kubeconfig={config}", f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--controllers=garbage-collector-controller,namespace-controller",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--concurrent-gc-syncs=5",
            "--v=0",
        ], self.work_dir / "kube-controller-manager.log").start()
        # It has no readiness endpoint that says the collector is running; it logs nothing useful
        # either. It is up when it is alive a moment later; the tests wait on what it does.
        time.sleep(0.5)
        if not self.processes["kube-controller-manager"].running():
            raise RuntimeError("kube-controller-manager exited at start:\n"
                               + self.processes["kube-controller-manager"].tail())

    def _wait(self, name: str, check: Any, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while not check():
            if not process.running():
                raise RuntimeError(f"{name} exited at start:\n{process.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready within {timeout:g}s:\n{process.tail()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        """kube-apiserver's /readyz answers ok to the admin."""
        import kubernetes
        import urllib3

        try:
            return self.get_raw("/readyz", timeout=2.0) == b"ok"
        except (OSError, urllib3.exceptions.HTTPError, kubernetes.client.ApiException):
            return False

    def stop(self) -> None:
        """Stop every process (controller manager, API server, etcd) and remove the work directory."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver, wait, and start it again on the same port and etcd."""
        self.processes["kube-apiserver"].stop()
        time.sleep(down_seconds)
        self._start_apiserver()

    def stop_apiserver(self) -> None:
        self.processes["kube-apiserver"].stop()

    def start_apiserver(self) -> None:
        self._start_apiserver()

    # -- etcd ---------------------------------------------------------------------------------

    def etcd_call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """etcd's JSON gateway (the gRPC API over HTTP), e.g. /v3/kv/compaction."""
        request = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision: every watch resumed from an older one gets 410 Gone."""
        revision = int(self.etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
        self.etcd_call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    # -- talking to it ---------------------------------------------------------------------

    def admin_access(self) -> dict[str, Path]:
        """The admin's credentials as `Cluster` takes them: the server's CA and the client certificate."""
        return {"ca": self.pki.ca_cert, "client_cert": self.pki.admin_cert, "client_key": self.pki.admin_key}

    def client(self, namespace: str = "default") -> Cluster:
        """An async client (the operator's KubeClient under `Cluster`) working as the admin in `namespace`."""
        return Cluster(self.url, namespace=namespace, **self.admin_access())

    def get_raw(self, path: str, timeout: float = 10.0) -> bytes:
        """A non-resource path (/readyz, /metrics) as the admin, with the official client (synchronous: the
        control plane is started and probed from threads)."""
        import kubernetes

        if self._admin is None:
            configuration = kubernetes.client.Configuration()
            configuration.host = self.url
            configuration.ssl_ca_cert = str(self.pki.ca_cert)
            configuration.cert_file, configuration.key_file = str(self.pki.admin_cert), str(self.pki.admin_key)
            configuration.retries = False   # one try: ready() polls, and urllib3 would log each retry
            self._admin = kubernetes.client.ApiClient(configuration)
        response = self._admin.call_api(*self._admin.param_serialize("GET", path), _request_timeout=timeout)
        data = bytes(response.read())
        if not 200 <= response.status < 300:
            raise kubernetes.client.ApiException(status=response.status, reason=response.reason, body=data)
        return data

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the kubectl built with the control plane, as admin unless another kubeconfig is given."""
        result = subprocess.run([self.binary("kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
                                input=input, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def service_account_token(self, namespace: str, name: str, seconds: int = 86400) -> str:
        """A token for the ServiceAccount from the TokenRequest API (as a pod would get one)."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": seconds}}
        result = self.kubectl("create", "--raw",
                              f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", "-f", "-",
                              input=json.dumps(request))
        return str(json.loads(result.stdout)["status"]["token"])

    def memory(self) -> dict[str, int]:
        return {name: process.rss_bytes() for name, process in self.processes.items()}

    def cpu(self) -> dict[str, float]:
        return {name: process.cpu_seconds() for name, process in self.processes.items()}


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def write_kubeconfig(path: Path, *, server: str, ca: Path | None = None, client_cert: Path | None = None,
                     client_key: Path | None = None, token: str | None = None, user: str = "user",
                     namespace: str = "default") -> Path:
    """A kubeconfig with one cluster, one user and one context (data embedded, so it can be moved)."""
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    credentials: dict[str, Any] = {}
    if client_cert is not None and client_key is not None:
        credentials["client-certificate-data"] = base64.b64encode(client_cert.read_bytes()).decode()
        credentials["client-key-data"] = base64.b64encode(client_key.read_bytes()).decode()
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [{"name": "toolcatalog", "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "toolcatalog", "user": user, "namespace": namespace}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def running_control_plane(*, crds: Sequence[Path] = (), quiet_build: bool = False,
                          check_built: bool = False) -> Iterator[ControlPlane]:
    """Build if needed (`check_built`: NotBuilt instead of building), start, yield, and stop: nothing is
    left running afterwards."""
    bin_dir = build(quiet=quiet_build, check=check_built)
    plane = ControlPlane(bin_dir=bin_dir, crds=crds)
    log(f"starting etcd, kube-apiserver and kube-controller-manager {plane.version} on 127.0.0.1")
    plane.start()
    log(f"control plane up in {plane.started_in:.1f}s at {plane.url}")
    try:
        yield plane
    finally:
        plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`make cluster`: a control plane for a person, with the CRDs applied, until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m toolcatalog_dev.controlplane", description=main.__doc__)
    parser.add_argument("--no-crds", action="store_true", help="do not apply crds/")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="also copy the admin kubeconfig here (default: only the temporary one)")
    args = parser.parse_args(argv)
    crds = [] if args.no_crds else sorted((REPO / "crds").glob("*.yaml"))
    stop = {"now": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    with running_control_plane(crds=crds) as plane:
        kubeconfig = plane.kubeconfig
        if args.kubeconfig is not None:
            shutil.copyfile(plane.kubeconfig, args.kubeconfig)
            args.kubeconfig.chmod(0o600)
            kubeconfig = args.kubeconfig
        print(f"\nKubernetes {plane.version} is running on {plane.url} (etcd {plane.etcd_url}).\n"
              f"kubectl: {plane.binary('kubectl')}\n\n"
              f"    export KUBECONFIG={kubeconfig}\n"
              f"    export PATH={plane.bin_dir}:$PATH\n\n"
              "Then: kubectl get toolcatalog -A, .venv/bin/toolcatalog run -A, kubectl toolcatalog ...\n"
              "Press Ctrl-C to stop it; everything is removed.", flush=True)
        try:
            while not stop["now"]:
                if not all(process.running() for process in plane.processes.values()):
                    dead = [name for name, process in plane.processes.items() if not process.running()]
                    log(f"{', '.join(dead)} exited; stopping")
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
