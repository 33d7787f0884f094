"""`toolcatalog sandbox`: the demo, kept running, for a newcomer to use kubectl and the plugin against.

Everything listens on 127.0.0.1: a Kubernetes API (kmock's emulator with our CRDs; with `--real`, the
real control plane that `make controlplane` builds: etcd, kube-apiserver, kube-controller-manager),
the demo MCP server, and the operator. The sample ToolServer (deploy/samples/toolserver.yaml) is
applied and synced; then the sandbox prints a KUBECONFIG and what to try, and runs until Ctrl-C or
SIGTERM, when it stops everything it started and removes its files.

On the real control plane the operator runs as deploy/'s ServiceAccount, with the RBAC
`kubectl kustomize deploy/` renders and a TokenRequest token, never as admin; the KUBECONFIG printed
is the admin's. SIGUSR1 makes the demo MCP server ship its next release (a new tool, a changed one) and
notify its listeners, as a server that advertises tools.listChanged does: the operator syncs it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from toolcatalog.api import constants as c

from .cluster import Cluster
from .demo import OPERATOR_ARGS, SAMPLE, DemoFailed, load_sample, with_url
from .operatorproc import OperatorProcess
from .wait import WaitFailed, wait_for

TS = f"{c.API_VERSION}/{c.PLURAL[c.KIND_TOOLSERVER]}"
SYNC_TIMEOUT = 60.0
KUBECONFIG_LINE = "KUBECONFIG="     # the line a script (or a test) reads: KUBECONFIG=/path


@contextlib.contextmanager
def _control_plane(real: bool) -> Iterator[Any]:
    """The real control plane, started here, in the main thread (its processes die with this one)."""
    if not real:
        yield None
        return
    from .controlplane import REPO, running_control_plane

    with running_control_plane(crds=sorted((REPO / "crds").glob("*.yaml"))) as plane:
        yield plane


class Sandbox:
    def __init__(self, out: TextIO, workdir: Path, plane: Any) -> None:
        self.out, self.workdir, self.plane = out, workdir, plane
        self.operator: OperatorProcess | None = None
        self.server: Any = None
        self.released = False
        self.serving = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def run(self, stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            client, user_kubeconfig, operator_kubeconfig = await self._api(stack)
            stack.push_async_callback(client.aclose)

            from .demoserver import DemoServer

            self.server = await asyncio.to_thread(DemoServer(fallback_to_free_port=True).start)
            stack.callback(self.server.stop)
            sample = load_sample()
            if self.server.port_was_busy:
                sample = with_url(sample, self.server.url)
            self.say(f"==> the demo MCP server (tasks-demo) serves {len(self.server.tool_names())} tools at "
                     f"{self.server.url}")

            self.operator = OperatorProcess(operator_kubeconfig, self.workdir / "operator.log",
                                            args=OPERATOR_ARGS).start()
            stack.push_async_callback(self._stop_operator)
            self.say(f"==> the operator runs: toolcatalog run -A --standalone (log: {self.operator.log_path})")

            namespace, name = sample["metadata"].get("namespace", "default"), sample["metadata"]["name"]
            await client.create(sample)
            self.say(f"==> applied {SAMPLE.relative_to(SAMPLE.parents[2])}: ToolServer {namespace}/{name}")

            async def synced() -> dict[str, Any] | None:
                obj = await client.get(TS, namespace, name)
                conditions = ((obj or {}).get("status") or {}).get("conditions") or []
                return obj if any(cond.get("type") == c.COND_SYNCED and cond.get("status") == "True"
                                  for cond in conditions) else None

            try:
                obj = await wait_for(synced, timeout=SYNC_TIMEOUT, what=f"ToolServer {name} Synced=True",
                                     process=self.operator)
            except WaitFailed as failure:
                raise DemoFailed(str(failure)) from None
            self.say(f"==> synced: {obj['status'].get('toolCount')} usable tools cached in ConfigMap "
                     f"{(obj['status'].get('cache') or {}).get('configMap')}")
            if self.plane is not None:
                await self._discovered(user_kubeconfig)
            self._help(user_kubeconfig, name)
            self.serving = True
            await stop.wait()
            self.say("==> stopping the operator, the MCP server and the API server")

    async def _api(self, stack: contextlib.AsyncExitStack) -> tuple[Cluster, Path, Path]:
        """A client, the user's kubeconfig and the operator's, for the emulator or the real control plane."""
        if self.plane is None:
            from .emulator import ApiEmulator

            api = await stack.enter_async_context(ApiEmulator())
            kubeconfig = api.write_kubeconfig(self.workdir / "kubeconfig")
            self.say(f"==> a Kubernetes API emulator (kmock) with the CRDs listens on {api.url}")
            return Cluster(api.url), kubeconfig, kubeconfig
        from .controlplane import write_kubeconfig
        from .deploy import install_operator_access

        plane = self.plane
        kubeconfig = self.workdir / "kubeconfig"
        shutil.copyfile(plane.kubeconfig, kubeconfig)
        kubeconfig.chmod(0o600)
        token = await asyncio.to_thread(install_operator_access, plane)
        operator_kubeconfig = write_kubeconfig(self.workdir / "operator.kubeconfig", server=plane.url,
                                               ca=plane.pki.ca_cert, token=token, user="toolcatalog")
        self.say(f"==> Kubernetes {plane.version} (etcd, kube-apiserver, kube-controller-manager) listens on "
                 f"{plane.url}; the operator runs as ServiceAccount toolcatalog-system/toolcatalog")
        return plane.client(), kubeconfig, operator_kubeconfig

    async def _discovered(self, kubeconfig: Path) -> None:
        """kube-apiserver lists a new CRD's category in its discovery a few seconds after the CRD: wait until
        `kubectl get toolcatalog`, the first command the help suggests, finds it."""
        kubectl = self.plane.binary("kubectl")

        async def listed() -> bool:
            process = await asyncio.create_subprocess_exec(
                kubectl, "--kubeconfig", str(kubeconfig), "get", "toolcatalog", "-A",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            return await process.wait() == 0

        try:
            await wait_for(listed, timeout=SYNC_TIMEOUT, interval=0.5,
                           what="kube-apiserver's discovery to list the toolcatalog category")
        except WaitFailed as failure:
            raise DemoFailed(str(failure)) from None

    def _kubectl_dir(self) -> Path | None:
        """Where a kubectl is: the control plane's, else the one on PATH, else the cached build, if any."""
        if self.plane is not None:
            return Path(self.plane.binary("kubectl")).parent
        found = shutil.which("kubectl")
        if found:
            return None
        from .controlplane import REPO

        version = next((line.split()[2] for line in (REPO / "test/controlplane/kubernetes/go.mod").read_text()
                        .splitlines() if line.startswith("require k8s.io/kubernetes ")), "")
        cache = Path(os.environ.get("TOOLCATALOG_CACHE") or Path.home() / ".cache" / "toolcatalog")
        cached = cache / "controlplane" / version
        return cached if (cached / "kubectl").exists() else None

    def _help(self, kubeconfig: Path, name: str) -> None:
        plugin_dir = Path(sys.executable).parent
        kubectl_dir = self._kubectl_dir()
        path = ":".join(str(d) for d in dict.fromkeys([plugin_dir, *([kubectl_dir] if kubectl_dir else [])]))
        has_kubectl = kubectl_dir is not None or shutil.which("kubectl") is not None
        lines = [f"export KUBECONFIG={kubeconfig}", f"export PATH={path}:$PATH"]
        if has_kubectl:
            lines += ["kubectl get toolcatalog -A",
                      f"kubectl toolcatalog tools toolserver/{name} --all",
                      "kubectl toolcatalog status -A",
                      f"kill -USR1 {os.getpid()}      # the MCP server ships its next release (new and changed tools)",
                      f"kubectl toolcatalog refresh toolserver/{name} --wait"]
        else:
            lines += [f"kubectl-toolcatalog tools toolserver/{name} --all      # the plugin works without kubectl",
                      "kubectl-toolcatalog status -A",
                      f"kill -USR1 {os.getpid()}",
                      f"kubectl-toolcatalog refresh toolserver/{name} --wait"]
        self.say("\nThe sandbox is running. In another terminal:\n\n" + "\n".join(f"    {line}" for line in lines)
                 + "\n\nPress Ctrl-C to stop it; everything it started is stopped and removed.")
        self.say(f"{KUBECONFIG_LINE}{kubeconfig}")

    def release(self) -> None:
        """SIGUSR1: the demo MCP server ships its next release (once)."""
        if self.server is None or self.released:
            self.say("==> (the demo MCP server has shipped its one update already)")
            return
        self.released = True
        self.server.publish_update(notify=True)
        self.say(f"==> the demo MCP server shipped a new release and notified its listeners: "
                 f"{', '.join(self.server.tool_names())}")

    async def _stop_operator(self) -> None:
        if self.operator is not None:
            code = await asyncio.to_thread(self.operator.stop)
            if code not in (0, None):
                self.say(f"the operator exited with {code}; log: {self.operator.log_path}")


async def _main(sandbox: Sandbox) -> int:
    """The sandbox as a task: Ctrl-C or SIGTERM ends it cleanly once it serves, and cuts its start short
    before (the cleanup runs either way)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(sandbox.run(stop))

    def on_signal() -> None:
        if sandbox.serving:
            stop.set()
        else:
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.run_in_executor(None, sandbox.release))
    try:
        await task
        return 0
    except asyncio.CancelledError:
        sandbox.say("interrupted while starting: stopped everything")
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            loop.remove_signal_handler(signum)


def run_sandbox(real: bool = False, *, out: TextIO | None = None) -> int:
    """0 after a clean stop; 1 when it could not start (the reason is printed)."""
    out = out or sys.stdout
    # Before the MCP server's constructor configures the root logger at INFO: the output is the sandbox's.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="toolcatalog-sandbox-"))
    started = time.monotonic()
    sandbox: Sandbox | None = None
    try:
        with _control_plane(real) as plane:
            sandbox = Sandbox(out, workdir, plane)
            code = asyncio.run(_main(sandbox))
    except (DemoFailed, RuntimeError, OSError) as error:
        print(f"error: {error}", file=out, flush=True)
        if sandbox is not None and sandbox.operator is not None:
            print(f"operator log ({sandbox.operator.log_path}), last lines:\n{sandbox.operator.log_tail()}", file=out)
        print(f"(kept {workdir} for a look)", file=out, flush=True)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"==> stopped; the sandbox ran {time.monotonic() - started:.0f} s", file=out, flush=True)
    return code
