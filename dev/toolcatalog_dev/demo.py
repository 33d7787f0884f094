"""`toolcatalog demo`: the whole loop on one machine, no cluster needed.

A Kubernetes API emulator (kmock, with our CRDs), the demo MCP server and the operator
(`toolcatalog run -A --standalone`, as users run it) all listen on 127.0.0.1. The demo
applies deploy/samples/toolserver.yaml, waits for Synced=True, prints the cached tools,
the status and the Events, then shows a forced refresh after the server's tools change.
It prints what it does as it goes: this is a command's output, not logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yaml

from toolcatalog.api import constants as c
from toolcatalog.api.models import Condition
from toolcatalog.kubectl.format import (
    find_condition,
    format_tools_table,
    new_refresh_token,
    one_line,
    printable,
    refresh_patch,
)
from toolcatalog.reconcile.cachedoc import CacheParseError, parse_cache

from .operatorproc import OperatorProcess

if TYPE_CHECKING:
    from .demoserver import DemoServer
    from .emulator import ApiEmulator

_T = TypeVar("_T")
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "deploy" / "samples" / "toolserver.yaml"
TS = f"{c.API_VERSION}/{c.PLURAL[c.KIND_TOOLSERVER]}"
SYNC_TIMEOUT, REFRESH_TIMEOUT, OPERATOR_START_TIMEOUT, OPERATOR_STOP_TIMEOUT = 60.0, 20.0, 60.0, 10.0
EVENTS_GRACE = 3.0  # kopf posts Events asynchronously, shortly after the status patch
PROGRESS_EVERY, POLL, LOG_TAIL_LINES = 5.0, 0.02, 40
# The demo's operator may only connect to loopback: all the demo runs there.
OPERATOR_ARGS = ("--egress-allow=127.0.0.0/8,::1/128",)


class DemoFailed(Exception):
    """A step did not work out; the message says what the user sees."""


# ---------------------------------------------------------------------------- pure parts


def load_sample(path: Path = SAMPLE) -> dict[str, Any]:
    try:
        sample = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DemoFailed(f"the sample {path} is missing: run the demo from a checkout of the repository") from None
    if not isinstance(sample, dict) or sample.get("kind") != c.KIND_TOOLSERVER:
        raise DemoFailed(f"{path} does not hold a ToolServer")
    return sample


def with_url(sample: dict[str, Any], url: str) -> dict[str, Any]:
    changed = copy.deepcopy(sample)
    changed["spec"]["url"] = url
    return changed


def describe_condition(cond: Condition | None) -> str:
    if cond is None:
        return "(not reported)"
    text = f"{cond.type}={cond.status} ({cond.reason})"
    return f"{text}: {printable(cond.message)}" if cond.message else text


def format_status(obj: dict[str, Any]) -> str:
    """The status block as `kubectl get -o yaml` shows it."""
    return yaml.safe_dump({"status": obj.get("status") or {}}, sort_keys=False, default_flow_style=False).rstrip()


def format_events(events: list[dict[str, Any]]) -> str:
    """`kubectl get events`-like: TYPE, REASON, OBJECT, MESSAGE."""
    if not events:
        return "(no Events yet)"
    rows = [["TYPE", "REASON", "OBJECT", "MESSAGE"]]
    for event in events:
        involved = event.get("involvedObject") or {}
        rows.append([event.get("type") or "", event.get("reason") or "",
                     f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
                     one_line(event.get("message"), 100)])
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("   ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]).rstrip()
                     for row in rows)


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter to read)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


# ---------------------------------------------------------------------------- processes


# ---------------------------------------------------------------------------- the demo


class Demo:
    def __init__(self, out: TextIO, workdir: Path) -> None:
        self.out, self.workdir = out, workdir
        self.operator: OperatorProcess | None = None
        self.started = time.monotonic()
        self.keep_workdir = False  # something worth a look happened: keep the operator's log

    def step(self, text: str) -> None:
        print(f"==> {text}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(_indent(text), file=self.out, flush=True)

    def block(self, text: str) -> None:
        print(_indent(text, "      "), file=self.out, flush=True)

    async def wait_for(self, check: Callable[[], _T], *, timeout: float, what: str) -> _T:
        """The first truthy check(); progress every few seconds; fails if the operator exits."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_note = start + PROGRESS_EVERY
        while not (value := check()):
            if self.operator and self.operator.process and (code := self.operator.process.poll()) is not None:
                raise DemoFailed(f"the operator exited with code {code} while waiting for {what}")
            now = loop.time()
            if now - start > timeout:
                raise TimeoutError(f"{what}: not within {timeout:g} s")
            if now >= next_note:
                self.note(f"... still waiting for {what} ({now - start:.0f} s)")
                next_note += PROGRESS_EVERY
            await asyncio.sleep(POLL)
        return value

    async def run(self, keep_running: bool, interrupted: asyncio.Event) -> None:
        import kmock

        from .demoserver import DemoServer
        from .emulator import ApiEmulator

        stopping = 0.0
        async with contextlib.AsyncExitStack() as stack:
            api = ApiEmulator()
            self.step(f"starting a Kubernetes API emulator (kmock) with the CRDs from {_shown(api.crds_dir)}/")
            await stack.enter_async_context(api)
            kubeconfig = api.write_kubeconfig(self.workdir / "kubeconfig")
            self.note(f"listening on {api.url}; kubeconfig: {kubeconfig}")

            self.step("starting the demo MCP server (tasks-demo, streamable HTTP)")
            server = await asyncio.to_thread(DemoServer(fallback_to_free_port=True).start)
            stack.callback(server.stop)
            sample = load_sample()
            if server.port_was_busy:
                self.note(f"port {server.requested_port} is busy: using port {server.port} instead, and"
                          f" rewriting the sample's spec.url to {server.url}")
                sample = with_url(sample, server.url)
            self.note(f"serving {len(server.tool_names())} tools at {server.url}: {', '.join(server.tool_names())}")

            self.step("starting the operator: toolcatalog run -A --standalone")
            self.operator = OperatorProcess(kubeconfig, self.workdir / "operator.log", args=OPERATOR_ARGS).start()
            stack.push_async_callback(self._stop_operator)
            self.note(f"KUBECONFIG={kubeconfig}; log: {self.operator.log_path}")
            began, watch = time.monotonic(), (kmock.action.WATCH, kmock.resource(TS))
            await self.wait_for(lambda: any((r.action, r.resource) == watch for r in api.emulator),
                                timeout=OPERATOR_START_TIMEOUT, what="the operator to watch ToolServers")
            self.note(f"the operator is watching ToolServers ({time.monotonic() - began:.1f} s after start)")

            obj = await self.apply_and_sync(api, sample)
            await self.show_catalog(api, obj)
            await self.show_refresh(api, server, obj)

            if keep_running:
                self.keep_running_help(kubeconfig, obj)
                await interrupted.wait()
            self.step("stopping the operator, the MCP server and the API emulator")
            stopping = time.monotonic()
        self.note(f"stopped in {time.monotonic() - stopping:.1f} s")

    async def apply_and_sync(self, api: ApiEmulator, sample: dict[str, Any]) -> dict[str, Any]:
        meta = sample["metadata"]
        ns, name = meta.get("namespace", "default"), meta["name"]
        self.step(f"applying {_shown(SAMPLE)}: ToolServer {ns}/{name} -> {sample['spec']['url']}")
        created = time.monotonic()
        await api.create(sample)
        self.step(f"waiting for Synced=True (at most {SYNC_TIMEOUT:g} s)")
        last_seen: list[str] = []

        def synced() -> dict[str, Any] | None:
            obj = api.get(TS, ns, name)
            cond = find_condition(obj or {}, c.COND_SYNCED)
            text = describe_condition(cond)
            if cond is not None and text not in last_seen:
                last_seen.append(text)
                self.note(text)
            if cond is not None and cond.status == "False" and cond.reason == c.REASON_INVALID_SPEC:
                raise DemoFailed(f"the sample was rejected: {text}")
            return obj if cond is not None and cond.status == "True" else None

        try:
            obj = await self.wait_for(synced, timeout=SYNC_TIMEOUT, what=f"ToolServer {name} Synced=True")
        except TimeoutError:
            raise DemoFailed(f"ToolServer {name} did not reach Synced=True within {SYNC_TIMEOUT:g} s;"
                             f" last: {last_seen[-1] if last_seen else 'no status'}") from None
        elapsed = time.monotonic() - created
        duration = ((obj.get("status") or {}).get("lastSync") or {}).get("durationMs")
        self.note(f"synced {elapsed * 1000:.0f} ms after create (the sync itself: {duration} ms)")
        return obj

    async def show_catalog(self, api: ApiEmulator, obj: dict[str, Any]) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        ns, name = meta["namespace"], meta["name"]
        cm_name = (status.get("cache") or {}).get("configMap")
        self.step(f"tools cached in ConfigMap {ns}/{cm_name} (tools.json), as `kubectl toolcatalog tools"
                  f" toolserver/{name} --all` shows them")
        self.block(self.tools_table(api, ns, cm_name))
        self.note(f"toolCount: {status.get('toolCount')} (available, enabled and selected)")
        self.step(f"kubectl get toolserver {name} -o yaml (the status)")
        self.block(format_status(obj))
        await self.wait_for_events(api, ns, name, 1)
        self.step(f"Events for toolserver/{name}")
        self.block(format_events(api.events(ns, name)))

    def tools_table(self, api: ApiEmulator, ns: str, cm_name: str | None) -> str:
        configmap = api.get("v1/configmaps", ns, cm_name) if cm_name else None
        if configmap is None:
            raise DemoFailed(f"no cache ConfigMap {ns}/{cm_name} after Synced=True")
        try:
            doc = parse_cache(configmap)
        except CacheParseError as error:
            raise DemoFailed(f"the cache ConfigMap {ns}/{cm_name} is unreadable: {error}") from None
        width = shutil.get_terminal_size((0, 0)).columns if self.out.isatty() else None
        return format_tools_table(doc.tools, show_selected=True, terminal_width=(width - 6) if width else None)

    async def wait_for_events(self, api: ApiEmulator, ns: str, name: str, count: int) -> None:
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: len(api.events(ns, name)) >= count, timeout=EVENTS_GRACE,
                                what="the operator's Events")

    async def show_refresh(self, api: ApiEmulator, server: DemoServer, obj: dict[str, Any]) -> None:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        events_before = len(api.events(ns, name))
        self.step("the MCP server ships a new version: adds assign_task, rewords list_tasks")
        await asyncio.to_thread(server.publish_update)
        token, reason = new_refresh_token(), "tasks-demo released a new version"
        self.step(f"kubectl toolcatalog refresh toolserver/{name} --force --reason {reason!r}  (annotations:"
                  f" {c.ANN_REFRESH}={token}, {c.ANN_REFRESH_FORCE}={token}: the same token, so the force applies"
                  " to this refresh only and bypasses the rate limit)")
        requested = time.monotonic()
        await api.patch(TS, ns, name, refresh_patch(token, reason=reason, force=True))

        def answered() -> dict[str, Any] | None:
            current = api.get(TS, ns, name) or {}
            last_refresh = (current.get("status") or {}).get("lastRefresh") or {}
            return current if last_refresh.get("token") == token else None

        try:
            obj = await self.wait_for(answered, timeout=REFRESH_TIMEOUT,
                                      what="status.lastRefresh.token to answer the refresh")
        except TimeoutError:
            self.keep_workdir = True
            self.note(f"note: the operator did not answer the refresh within {REFRESH_TIMEOUT:g} s"
                      f" (status.lastRefresh.token is not {token}); the rest of the demo worked."
                      f" Operator log: {self.operator.log_path if self.operator else '-'}")
            return
        self.note(f"answered {(time.monotonic() - requested) * 1000:.0f} ms after the annotation was set")
        status = obj.get("status") or {}
        self.step("status.lastRefresh")
        self.block(yaml.safe_dump({"lastRefresh": status.get("lastRefresh")}, sort_keys=False).rstrip())
        self.note(f"condition {describe_condition(find_condition(obj or {}, c.COND_REFRESHED))}")
        self.step("tools after the refresh")
        self.block(self.tools_table(api, ns, (status.get("cache") or {}).get("configMap")))
        await self.wait_for_events(api, ns, name, events_before + 1)
        new_events = api.events(ns, name)[events_before:]
        if new_events:
            self.step("new Events")
            self.block(format_events(new_events))

    def keep_running_help(self, kubeconfig: Path, obj: dict[str, Any]) -> None:
        name, cm_name = obj["metadata"]["name"], ((obj.get("status") or {}).get("cache") or {}).get("configMap")
        self.step("everything keeps running; in another terminal:")
        self.block("\n".join([
            f"export KUBECONFIG={kubeconfig}",
            "kubectl get toolcatalog                  # ToolServers and ConnectorConfigs",
            f"kubectl get toolserver {name} -o yaml",
            f"kubectl toolcatalog tools toolserver/{name} --all",
            f"kubectl toolcatalog refresh toolserver/{name} --force --wait",
            f"kubectl get configmap {cm_name} -o jsonpath='{{.data.tools\\.json}}'",
        ]))
        self.note(f"(no kubectl? the plugin runs alone too: kubectl-toolcatalog tools toolserver/{name} --all)")
        self.step("press Ctrl-C to stop")

    async def _stop_operator(self) -> None:
        """In a thread: the emulator on this loop must keep answering kopf while it stops."""
        if self.operator is not None:
            code = await asyncio.to_thread(self.operator.stop)
            if code not in (0, None, -signal.SIGTERM):
                self.note(f"the operator exited with code {code}; log: {self.operator.log_path}")


async def _run(demo: Demo, keep_running: bool) -> int:
    """The demo as a task that Ctrl-C (or SIGTERM) cancels; cleanup runs either way."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    task = asyncio.ensure_future(demo.run(keep_running, interrupted))

    def on_signal() -> None:
        if keep_running and not interrupted.is_set():
            interrupted.set()  # the demo is waiting for exactly this: a clean finish
        else:
            task.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        await task
        return 0
    except asyncio.CancelledError:
        print("\ninterrupted: stopped everything", file=demo.out, flush=True)
        return 130
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def run_demo(keep_running: bool = False, *, out: TextIO | None = None) -> int:
    """Run the demo; 0 when the sample synced, 1 when something failed (the reason is printed)."""
    out = out or sys.stdout
    # Before MCPServer's constructor configures the root logger at INFO.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    missing = [name for name in ("kmock", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: the demo needs {', '.join(missing)}: run it with `make demo`", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="toolcatalog-demo-"))
    demo = Demo(out, workdir)
    try:
        code = asyncio.run(_run(demo, keep_running))
    except (DemoFailed, OSError) as error:
        print(f"error: {error}", file=out, flush=True)
        if demo.operator is not None:
            print(f"operator log ({demo.operator.log_path}), last lines:", file=out)
            print(_indent(demo.operator.log_tail()), file=out, flush=True)
        print(f"(kept {workdir} for a look)", file=out, flush=True)
        return 1
    if code == 0:
        print(f"==> {'stopped after' if keep_running else 'demo finished in'}"
              f" {time.monotonic() - demo.started:.1f} s", file=out, flush=True)
    if demo.keep_workdir:
        print(f"(kept {workdir} for a look)", file=out, flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return code


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m toolcatalog_dev.demo", description=__doc__)
    parser.add_argument("--keep-running", action="store_true", help="keep everything running after the demo")
    return run_demo(keep_running=parser.parse_args(argv).keep_running)


if __name__ == "__main__":
    sys.exit(main())
