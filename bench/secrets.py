"""Secrets that are none of the operator's business, on the real control plane (section `secrets`).

One ToolServer uses one Secret; then N Secrets of 10 KiB each (random, as credentials are) are created
in a namespace nothing references. Measured, through an API proxy on loopback that counts what the API
server sends the operator (toolcatalog_dev.apiproxy), on a fresh control plane per run:

- while they are created: the operator's RSS growth (settled: its CPU idle again), its peak, its CPU
  seconds, and the bytes of the answers to its Secret requests (lists, watches, GETs, on the wire);
- a start with them all present: the operator's RSS once ready, against its RSS at the first start
  (without them), and the bytes its start took.

With `--secrets-baseline REF` the same is measured first with the operator code of that git ref (its
operator/ tree, put first on the operator's PYTHONPATH): the code before Secrets were watched as
metadata only, kopf's watch of whole Secrets, is the figure docs/reference/rbac.md compares with.

    python -m bench --only secrets [--secrets-count 5000] [--secrets-baseline REF]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    NAMESPACE,
    TS,
    Backend,
    McpFleet,
    Operator,
    ProcStats,
    create_all,
    log,
    real_cluster,
    synced,
    toolserver,
    until,
)
from toolcatalog_dev.apiproxy import ApiProxy
from toolcatalog_dev.mcpserver import free_port

NOISE = "unrelated"
SECRET_BYTES = 10 * 1024
SECRET_PATHS = r"^/api/v1/(namespaces/[^/]+/)?secrets([/?]|$)"
SETTLE_SECONDS = 5.0


@contextlib.contextmanager
def operator_tree(repo: Path, ref: str | None) -> Iterator[dict[str, str]]:
    """The environment that runs the operator code of `ref` (git archive of its operator/), or of this tree."""
    if ref is None:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="toolcatalog-baseline-") as directory:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref, "operator"],
                                 capture_output=True, check=True).stdout
        tar_path = Path(directory) / "operator.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(directory, filter="data")
        yield {"PYTHONPATH": str(Path(directory) / "operator")}


def _token(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    return str(config["users"][0]["user"]["token"])


async def _settle(stats: ProcStats, *, idle_share: float = 0.02, timeout: float = 180.0) -> None:
    """Until the operator's CPU has been idle (under `idle_share` of a core) for two seconds in a row."""
    deadline = time.monotonic() + timeout
    calm = 0
    before = stats.cpu_seconds()
    while time.monotonic() < deadline and calm < 2:
        await asyncio.sleep(1.0)
        now = stats.cpu_seconds()
        calm = calm + 1 if now - before < idle_share else 0
        before = now
    await asyncio.sleep(SETTLE_SECONDS)     # what the allocator gives back, it gives back by then


@contextlib.asynccontextmanager
async def _proxied(backend: Backend, workdir: Path) -> AsyncIterator[tuple[ApiProxy, Backend]]:
    with ApiProxy(backend.url, ssl_context=backend.ssl_context) as proxy:
        kubeconfig = proxy.write_kubeconfig(workdir / f"proxied-{time.monotonic_ns()}.kubeconfig",
                                            token=_token(backend.operator_kubeconfig), namespace=NAMESPACE)
        yield proxy, dataclasses.replace(backend, operator_kubeconfig=kubeconfig)


def _secret(name: str, namespace: str, value: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {"token": base64.b64encode(value).decode()}}


async def _ready(url: str) -> bool:
    def get() -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False
    return await asyncio.to_thread(get)


async def measure(count: int, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """One run on a fresh control plane with the operator code `env` names."""
    async with real_cluster(workdir) as backend, _proxied(backend, workdir) as (proxy, proxied):
        api = backend.client
        assert backend.plane is not None
        backend.plane.kubectl("create", "namespace", NOISE)
        with McpFleet([5]) as fleet:
            await api.create(_secret("used", NAMESPACE, b"token-0"))
            reader = toolserver("reader", fleet.urls[0])
            reader["spec"]["auth"] = {"bearerToken": {"secretKeyRef": {"name": "used", "key": "token"}}}
            await api.create(reader)
            readiness = f"http://127.0.0.1:{free_port()}/readyz"
            with Operator(proxied, workdir, f"--readiness={readiness}", env=env) as operator:
                stats = operator.stats
                await until(lambda: _ready(readiness), 120, "the operator ready", process=operator)
                await until(lambda: _synced(api, "reader"), 60, "the ToolServer synced", process=operator)
                code = (await asyncio.to_thread(subprocess.run, [*operator.command[:1], "-c",
                        "import toolcatalog, os; print(os.path.dirname(toolcatalog.__file__))"],
                        capture_output=True, text=True, env={**os.environ, **env}, check=False)).stdout.strip()
                await _settle(stats)
                rss0, bytes0, cpu0 = stats.rss(), proxy.received_bytes(SECRET_PATHS), stats.cpu_seconds()
                stats.peak_rss = rss0
                stop = asyncio.Event()
                sampler = asyncio.get_running_loop().create_task(stats.sample_peak(stop))
                log(f"secrets: creating {count} Secrets of {SECRET_BYTES} bytes in namespace {NOISE}")
                started = time.monotonic()
                await create_all(api, [_secret(f"noise-{index:05d}", NOISE, os.urandom(SECRET_BYTES))
                                       for index in range(count)], concurrency=32)
                created = time.monotonic() - started
                # The operator has read past every creation once it answers a change made after them.
                await api.patch("v1/secrets", NAMESPACE, "used", {"data": {"token": base64.b64encode(
                    b"token-1").decode()}})
                await until(lambda: _answered(api, "reader"), 300, "the resync after the rotation", process=operator)
                await _settle(stats)
                stop.set()
                await sampler
                rss1, bytes1, cpu1 = stats.rss(), proxy.received_bytes(SECRET_PATHS), stats.cpu_seconds()
            # A start with them all present.
            bytes2 = proxy.received_bytes(SECRET_PATHS)
            with Operator(proxied, workdir, f"--readiness={readiness}", env=env) as again:
                restarted = again.stats
                began = time.monotonic()
                await until(lambda: _ready(readiness), 300, "the restarted operator ready", process=again)
                ready_after = time.monotonic() - began
                await _settle(restarted)
                rss3, bytes3 = restarted.rss(), proxy.received_bytes(SECRET_PATHS)
    mib = 2 ** 20
    return {
        "operator_code": code, "secrets": count, "secret_bytes": SECRET_BYTES,
        "create_seconds": round(created, 1),
        "rss_before_mib": round(rss0 / mib, 1), "rss_after_mib": round(rss1 / mib, 1),
        "rss_growth_mib": round((rss1 - rss0) / mib, 1), "peak_rss_mib": round(stats.peak_rss / mib, 1),
        "cpu_seconds_while_created": round(cpu1 - cpu0, 2),
        "secret_bytes_received_while_created": bytes1 - bytes0,
        "start_with_them": {"ready_seconds": round(ready_after, 1), "rss_mib": round(rss3 / mib, 1),
                            "rss_over_first_start_mib": round((rss3 - rss0) / mib, 1),
                            "secret_bytes_received": bytes3 - bytes2},
    }


async def _synced(api: Any, name: str) -> bool:
    return synced(await api.get(TS, api.ns, name))


async def _answered(api: Any, name: str) -> bool:
    """The sync after the rotation: the one whose trigger is the Secret."""
    status = ((await api.get(TS, api.ns, name)) or {}).get("status") or {}
    return (status.get("lastSync") or {}).get("trigger") == "secret" and synced({"status": status})


async def run(count: int, workdir: Path, repo: Path, baseline: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, ref in (("baseline", baseline), ("current", None)):
        if label == "baseline" and ref is None:
            continue
        log(f"secrets: {count} unrelated Secrets, operator code {ref or 'of this tree'}")
        with operator_tree(repo, ref) as env:
            results[label] = await measure(count, workdir, env)
        results[label]["ref"] = ref or "this tree"
    return results
