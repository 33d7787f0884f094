"""What every benchmark needs: an API server (the real control plane or the emulator), the operator as a
process with its CPU and memory read from /proc, kube-apiserver's own request counter, percentiles.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolcatalog_dev.cluster import Cluster
from toolcatalog_dev.controlplane import ControlPlane, build, write_kubeconfig
from toolcatalog_dev.operatorproc import OperatorProcess
from toolcatalog_dev.wait import wait_for

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
TS = "toolcatalog.dev/v1alpha1/toolservers"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(samples), 2), "p95": round(percentile(samples, 0.95), 2),
            "n": len(samples)}


# ------------------------------------------------------------------------------ a process from /proc


@dataclass
class ProcStats:
    """CPU seconds and memory of one process (and, for the operator, its children: none)."""

    pid: int
    peak_rss: int = 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                value = int(line.split()[1]) * 1024
                self.peak_rss = max(self.peak_rss, value)
                return value
        return 0

    async def sample_peak(self, stop: asyncio.Event, interval: float = 0.2) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                self.rss()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


# ------------------------------------------------------------------------------ API servers


_REQUESTS = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$')


@dataclass
class Backend:
    """An API server with our CRDs, a client working in the bench namespace, and kubeconfigs."""

    name: str
    client: Cluster
    admin_kubeconfig: Path
    operator_kubeconfig: Path
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


@contextlib.asynccontextmanager
async def real_cluster(workdir: Path) -> AsyncIterator[Backend]:
    """The real control plane, with the CRDs, deploy/rbac.yaml and a namespace for the bench."""
    plane = ControlPlane(bin_dir=build(quiet=True), crds=sorted((REPO / "crds").glob("*.yaml")))
    plane.start()
    try:
        plane.kubectl("apply", "-f", str(REPO / "deploy" / "namespace.yaml"))
        plane.kubectl("apply", "-f", str(REPO / "deploy" / "rbac.yaml"))
        plane.kubectl("create", "namespace", NAMESPACE)
        token = plane.service_account_token("toolcatalog-system", "toolcatalog")
        operator_kubeconfig = write_kubeconfig(workdir / "operator.kubeconfig", server=plane.url,
                                               ca=plane.pki.ca_cert, token=token, user="toolcatalog")
        client = Cluster(plane.url, namespace=NAMESPACE, ssl_context=plane.ssl_context())
        try:
            yield Backend("real control plane", client, plane.kubeconfig, operator_kubeconfig, plane)
        finally:
            await client.aclose()
    finally:
        plane.stop()


@contextlib.asynccontextmanager
async def emulator(workdir: Path) -> AsyncIterator[Backend]:
    from toolcatalog_dev.emulator import ApiEmulator

    async with ApiEmulator() as emu:
        kubeconfig = emu.write_kubeconfig(workdir / "emulator.kubeconfig", namespace=NAMESPACE)
        client = Cluster(emu.url, namespace=NAMESPACE)
        try:
            yield Backend("emulator", client, kubeconfig, kubeconfig, extra={"emulator": emu})
        finally:
            await client.aclose()


def start_operator(backend: Backend, workdir: Path, *args: str, verbose: bool = False) -> OperatorProcess:
    flags = ["--verbose"] if verbose else ["--quiet"]
    return OperatorProcess(backend.operator_kubeconfig, workdir / f"operator-{time.monotonic_ns()}.log",
                           args=[*flags, *args]).start()


async def until(check: Callable[[], Awaitable[Any] | Any], timeout: float, what: str,
                process: OperatorProcess | None = None, interval: float = 0.01) -> Any:
    return await wait_for(check, timeout=timeout, what=what, process=process, interval=interval)


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="toolcatalog-bench-"))
