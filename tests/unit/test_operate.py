"""The operating pieces in-process: JSON log lines and the per-sync line (handlers/logs.py), the watches'
liveness check and readiness (handlers/health.py), and where a shutdown may cut a sync (handlers/drain.py).
The same behaviours end to end: tests/e2e/test_operate.py."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from toolcatalog.api import constants as c
from toolcatalog.api.models import ErrorInfo, LastSync, Status
from toolcatalog.api.redact import Redactor
from toolcatalog.cli import configure_logging
from toolcatalog.config import OperatorConfig
from toolcatalog.engine.objects import ObjectCache
from toolcatalog.engine.reconciler import Outcome
from toolcatalog.engine.runtime import Engine
from toolcatalog.handlers.drain import Drain
from toolcatalog.handlers.health import Readiness, Scopes, WatchCheck, exact_namespaces, namespace_matches
from toolcatalog.handlers.logs import log_sync, sync_fields
from toolcatalog.reconcile.catalog import CatalogDiff
from toolcatalog.reconcile.decide import Decision
from toolcatalog.reconcile.plan import Plan

TOKEN = "unit-Secret-Token-0042"


# ------------------------------------------------------------------------------ logs


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, Redactor]]:
    """The operator's logging as `--log-format json` configures it (kopf's JSON formatter, the redacting
    filter, StructuredFields), its output into a string; the root logger restored afterwards."""
    root, asyncio_logger = logging.getLogger(), logging.getLogger("asyncio")
    saved = (root.handlers[:], root.level, asyncio_logger.handlers[:], asyncio_logger.propagate)
    redactor = Redactor()
    root.handlers[:] = []               # pytest's own handlers get no filters of ours
    configure_logging(OperatorConfig(log_format="json", verbose=True), redactor)
    stream = io.StringIO()
    (handler,) = root.handlers
    handler.setStream(stream)
    logger = logging.getLogger("test.operate.json")
    try:
        yield logger, stream, redactor
    finally:
        root.handlers[:], asyncio_logger.handlers[:], asyncio_logger.propagate = saved[0], saved[2], saved[3]
        root.setLevel(saved[1])


def outcome(result: str = "Succeeded", reason: str | None = None, trigger: str = "refresh") -> Outcome:
    error = ErrorInfo(reason=reason, message=f"server said {TOKEN}") if reason else None
    status = Status(tool_count=4, last_sync=LastSync(trigger=trigger, started_at="2026-01-01T00:00:00Z",
                                                     completed_at="2026-01-01T00:00:01Z", duration_ms=37,
                                                     result=result, error=error))
    plan = Plan(status=status, diff=CatalogDiff(new=["a", "b"], removed=["c"], changed=[]), synced=True)
    return Outcome(("ToolServer", "team-a", "tasks"), Decision(action="sync", trigger=trigger), plan)


def test_a_json_line_is_kopfs_json_format_with_the_sync_fields_at_the_top_level(captured):
    logger, stream, _ = captured
    logger.info("hello %s", "world", extra={"sync": {"kind": "ToolServer", "name": "tasks", "new": 2},
                                            "other": [1, "x"]})
    line = json.loads(stream.getvalue())
    assert line["message"] == "hello world" and line["severity"] == "info" and line["logger"] == "test.operate.json"
    assert line["kind"] == "ToolServer" and line["name"] == "tasks" and line["new"] == 2 and line["other"] == [1, "x"]
    assert "sync" not in line
    assert datetime.fromisoformat(line["timestamp"]).utcoffset() == timedelta(0)
    assert "\n" not in stream.getvalue().rstrip("\n")


def test_a_kopf_per_object_line_carries_the_object_it_is_about(captured):
    _, stream, _ = captured
    body = kopf.Body({"apiVersion": c.API_VERSION, "kind": "ToolServer",
                      "metadata": {"namespace": "team-a", "name": "tasks", "uid": "u-1"}})
    kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()).warning("about it")
    line = json.loads(stream.getvalue())
    assert line["message"] == "about it" and line["severity"] == "warn" and line["logger"] == "kopf.objects"
    assert line["object"] == {"apiVersion": c.API_VERSION, "kind": "ToolServer", "namespace": "team-a",
                              "name": "tasks", "uid": "u-1"}
    assert "settings" not in line and "k8s_skip" not in line and "k8s_ref" not in line


def test_json_lines_mask_every_credential_in_every_field_and_the_traceback(captured):
    logger, stream, redactor = captured
    redactor.add(TOKEN)
    body = kopf.Body({"apiVersion": c.API_VERSION, "kind": "ToolServer",
                      "metadata": {"namespace": "team-a", "name": f"n-{TOKEN}", "uid": "u-1"}})
    try:
        raise ValueError(f"boom {TOKEN}")
    except ValueError:
        logger.exception("failed with %s", TOKEN, stack_info=True, extra={
            "sync": {"error": f"said {TOKEN}", f"key-{TOKEN}": "k"},
            "nested": {"deep": [f"x{TOKEN}y", ValueError(TOKEN)], "url": f"http://u:{TOKEN}@127.0.0.1/"},
            "plain": f"Bearer {TOKEN}"})
    kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()).info("object %s", TOKEN)
    logger.info({"message": f"a dict {TOKEN}", "field": [TOKEN]})          # python-json-logger's own form
    text = stream.getvalue()
    for form in (TOKEN, base64.b64encode(TOKEN.encode()).decode().rstrip("=")):
        assert form not in text
    first, second, third = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "failed with ***" and first["error"] == "said ***" and first["key-***"] == "k"
    assert first["nested"] == {"deep": ["x***y", "***"], "url": "http://***@127.0.0.1/"}
    assert first["plain"] == "***" and "boom ***" in first["exc_info"] and "test_operate.py" in first["stack_info"]
    assert second["message"] == "object ***" and second["object"]["name"] == "n-***"
    assert third["message"] == "a dict ***" and third["field"] == ["***"] and third["logger"] == "test.operate.json"


def test_a_record_through_two_handlers_gives_the_same_line_twice(captured):
    logger, stream, redactor = captured
    redactor.add(TOKEN)
    first = logging.getLogger().handlers[0]
    other = io.StringIO()
    second = logging.StreamHandler(other)
    second.setFormatter(first.formatter)
    for attached in first.filters:
        second.addFilter(attached)
    logging.getLogger().addHandler(second)
    logger.warning("twice %s", TOKEN, extra={"sync": {"name": "tasks", "error": TOKEN}})
    line = json.loads(stream.getvalue())
    assert json.loads(other.getvalue()) | {"timestamp": ""} == line | {"timestamp": ""}
    assert line["message"] == "twice ***" and line["name"] == "tasks" and line["error"] == "***"


def test_the_sync_line_has_resource_trigger_result_reason_duration_and_diff_counts():
    fields = sync_fields(outcome("Failed", "ServerUnavailable"))
    assert fields == {"kind": "ToolServer", "namespace": "team-a", "name": "tasks", "trigger": "refresh",
                      "result": "Failed", "reason": "ServerUnavailable", "durationMs": 37, "totalMs": 0,
                      "cacheWritten": False, "tools": 4, "new": 2, "removed": 1, "changed": 0,
                      "error": f"server said {TOKEN}"}
    assert sync_fields(Outcome(("ToolServer", "a", "b"), Decision(action="wait"))) is None


def test_log_sync_logs_success_at_info_and_failure_at_warning(caplog):
    caplog.set_level(logging.INFO, logger="toolcatalog.sync")
    log_sync(outcome())
    log_sync(outcome("Failed", "Timeout", trigger="schedule"))
    first, second = caplog.records
    assert first.levelno == logging.INFO and first.getMessage() == (
        "ToolServer team-a/tasks: refresh sync Succeeded in 37 ms; 4 usable tools, 2 new, 1 removed, 0 changed")
    assert second.levelno == logging.WARNING and "schedule sync Failed (Timeout)" in second.getMessage()
    assert second.sync["reason"] == "Timeout"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ health


def test_namespace_patterns_are_kopfs():
    assert namespace_matches("team-a", ["team-*"]) and not namespace_matches("ops", ["team-*"])
    assert namespace_matches("team-a", ["team-*,!team-b"]) and not namespace_matches("team-b", ["team-*,!team-b"])
    assert namespace_matches("x", ["!y"]) and namespace_matches("ops", ["team-*", "ops"])
    # kopf's rule exactly (its documented examples): later inclusive globs only re-match what the first matched.
    assert not namespace_matches("team-b", ["team-a,team-b"])
    pattern = ["myapp-*, !*-pr-*, *pr-123"]
    assert namespace_matches("myapp-pr-123", pattern) and namespace_matches("myapp-live", pattern)
    assert not namespace_matches("myapp-pr-456", pattern) and not namespace_matches("otherapp-pr-123", pattern)
    assert namespace_matches("otherapp-pr-123", ["!*-pr-*, *pr-123"])
    assert exact_namespaces(["a", "b"]) and not exact_namespaces(["a", "team-*"]) and not exact_namespaces([])


class FakeKube:
    """An API server's view of our resources for the watch check: objects, a log of changes (watch events),
    lists, and a history floor below which a watch from a version is 410 Gone."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.changes: list[tuple[int, str, str, dict[str, Any]]] = []     # version, type, kind, metadata
        self.version = 100
        self.floor = 100
        self.failing = False
        self.full_lists = 0

    def _fail(self) -> None:
        if self.failing:
            from toolcatalog.kube.errors import ApiError
            raise ApiError(0, "Unavailable", "cannot reach the API server")

    def put(self, kind: str, namespace: str, name: str, uid: str = "") -> dict[str, Any]:
        self.version += 1
        body = {"metadata": {"namespace": namespace, "name": name, "uid": uid or f"uid-{name}",
                             "resourceVersion": str(self.version)}, "spec": {"url": "http://127.0.0.1:1/mcp"}}
        kind_key = (kind, namespace, name)
        self.changes.append((self.version, "MODIFIED" if kind_key in self.objects else "ADDED", kind,
                             dict(body["metadata"])))
        self.objects[kind_key] = body
        return body

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.version += 1
        meta = dict(self.objects.pop((kind, namespace, name))["metadata"], resourceVersion=str(self.version))
        self.changes.append((self.version, "DELETED", kind, meta))

    def _in(self, kind: str, namespace: str | None, meta_kind: str, meta: dict[str, Any]) -> bool:
        return meta_kind == kind and (namespace is None or meta["namespace"] == namespace)

    async def collection_version(self, kind: str, namespace: str | None = None) -> tuple[str, bool]:
        self._fail()
        return str(self.version), any(k == kind and (namespace is None or ns == namespace)
                                      for k, ns, _ in self.objects)

    async def changes_since(self, kind: str, namespace: str | None, resource_version: str,
                            seconds: int = 1) -> list[dict[str, Any]]:
        self._fail()
        if int(resource_version) < self.floor:
            from toolcatalog.kube.errors import ApiError
            raise ApiError(410, "Expired", "too old resource version")
        return [{"type": type_, "metadata": meta} for version, type_, meta_kind, meta in self.changes
                if version > int(resource_version) and self._in(kind, namespace, meta_kind, meta)]

    async def list_metadata(self, kind: str, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        self._fail()
        self.full_lists += 1
        return [body["metadata"] for (k, ns, _), body in sorted(self.objects.items())
                if k == kind and (namespace is None or ns == namespace)], str(self.version)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeReconciler:
    def __init__(self) -> None:
        self.objects = ObjectCache()
        self.looked: set[tuple[str, str, str]] = set()

    def looked_at(self, key: tuple[str, str, str]) -> bool:
        return key in self.looked


def engine() -> Engine:
    return Engine(FakeReconciler())  # type: ignore[arg-type]


def watch_check(kube: FakeKube, cache: ObjectCache, clock: Clock, namespaces: tuple[str, ...] = (),
                owns: Any = None, stall_after: float = 60) -> WatchCheck:
    return WatchCheck(SimpleNamespace(objects=cache), kube, Scopes(namespaces, owns),  # type: ignore[arg-type]
                      stall_after=stall_after, clock=clock)


async def test_the_watch_check_tells_a_passing_lag_from_a_stall_and_never_lists():
    kube, cache, clock = FakeKube(), ObjectCache(), Clock()
    cache.observe(c.KIND_TOOLSERVER, kube.put(c.KIND_TOOLSERVER, "a", "one"))
    check = watch_check(kube, cache, clock)
    await check.begin()
    verdict = await check.check()
    assert (verdict.behind, verdict.stalled) == (0, [])

    kube.put(c.KIND_TOOLSERVER, "a", "one")                  # a change the watch has not delivered (yet)
    two = kube.put(c.KIND_CONNECTORCONFIG, "a", "two")       # a new one neither
    verdict = await check.check()
    assert (verdict.behind, verdict.stalled) == (2, [])
    clock.now += 59
    assert (await check.check()).stalled == []
    cache.observe(c.KIND_CONNECTORCONFIG, two)               # delivered: caught up
    clock.now += 1
    verdict = await check.check()
    assert (verdict.behind, verdict.stalled) == (1, ["ToolServer a/one (60s)"])

    cache.observe(c.KIND_TOOLSERVER, kube.objects[(c.KIND_TOOLSERVER, "a", "one")])     # delivered at last
    verdict = await check.check()
    assert (verdict.behind, verdict.stalled) == (0, [])
    assert kube.full_lists == 0


async def test_deletions_missed_count_and_other_shards_and_namespaces_do_not():
    kube, cache, clock = FakeKube(), ObjectCache(), Clock()
    mine = lambda meta: meta["uid"] != "theirs"  # noqa: E731
    cache.observe(c.KIND_TOOLSERVER, kube.put(c.KIND_TOOLSERVER, "team-b", "gone"))
    check = watch_check(kube, cache, clock, namespaces=("team-*",), owns=mine, stall_after=10)
    await check.begin()
    kube.put(c.KIND_TOOLSERVER, "team-a", "theirs", uid="theirs")   # another shard's: never cached here
    kube.put(c.KIND_TOOLSERVER, "ops", "elsewhere")                 # not a watched namespace
    kube.delete(c.KIND_TOOLSERVER, "team-b", "gone")                # deleted; the watch missed it
    verdict = await check.check()
    assert (verdict.behind, verdict.gone) == (1, 1)
    clock.now += 10
    assert (await check.check()).stalled == ["ToolServer team-b/gone (10s)"]
    cache.forget((c.KIND_TOOLSERVER, "team-b", "gone"))
    assert (await check.check()).behind == 0


async def test_when_the_server_forgot_the_version_the_check_compares_a_full_listing_once():
    kube, cache, clock = FakeKube(), ObjectCache(), Clock()
    for name in ("a", "b"):
        cache.observe(c.KIND_TOOLSERVER, kube.put(c.KIND_TOOLSERVER, "ns", name))
    check = watch_check(kube, cache, clock)
    await check.begin()
    kube.put(c.KIND_TOOLSERVER, "ns", "a")                   # missed by the watch ...
    kube.floor = kube.version                 # ... and the version checked is out of the watch cache
    verdict = await check.check()
    assert verdict.behind == 1 and kube.full_lists == 2      # one listing per kind
    cache.observe(c.KIND_TOOLSERVER, kube.objects[(c.KIND_TOOLSERVER, "ns", "a")])
    assert (await check.check()).behind == 0 and kube.full_lists == 2    # from the listing's version on


async def test_an_api_server_out_of_reach_is_no_stall():
    kube, cache, clock = FakeKube(), ObjectCache(), Clock()
    check = watch_check(kube, cache, clock, stall_after=0)
    await check.begin()
    kube.put(c.KIND_TOOLSERVER, "a", "unseen")
    assert (await check.check()).behind == 1
    kube.failing = True
    verdict = await check.check()
    assert verdict.stalled == [] and "cannot reach the API server" in (verdict.error or "")


async def test_readiness_waits_for_the_listings_then_every_resource_then_a_look_at_each():
    kube, running = FakeKube(), engine()
    kube.put(c.KIND_TOOLSERVER, "a", "one")
    index: dict[tuple[str, str], Any] = {}
    check = watch_check(kube, running.objects, Clock())
    expected = lambda: [(c.KIND_TOOLSERVER, ns, name) for ns, name in index]  # noqa: E731
    readiness = Readiness(running, expected, check.anything, poll=0.01)
    task = asyncio.ensure_future(readiness.run())
    await asyncio.sleep(0.05)
    assert readiness.answer() == (503, {"ready": False, "state": "waiting for the initial listing"})
    index[("a", "one")] = True          # kopf indexed its listing, and delivered the first event
    running.watching = True
    await asyncio.sleep(0.05)
    assert readiness.answer()[1]["state"] == ("waiting for the initial listing: 1 of 1 resources not delivered "
                                              "by the watches yet")
    running.objects.observe(c.KIND_TOOLSERVER, kube.objects[(c.KIND_TOOLSERVER, "a", "one")])
    await asyncio.sleep(0.05)
    assert readiness.answer()[1]["state"] == "taking every resource once: 1 of 1 not looked at yet"
    running.reconciler.looked.add((c.KIND_TOOLSERVER, "a", "one"))  # type: ignore[attr-defined]
    await asyncio.wait_for(task, 1)
    assert readiness.answer() == (200, {"ready": True, "state": "ready"})
    readiness.stopping = True
    assert readiness.answer()[0] == 503


async def test_readiness_with_nothing_to_list_is_ready_without_waiting_for_an_event():
    kube, running = FakeKube(), engine()
    readiness = Readiness(running, lambda: [], watch_check(kube, running.objects, Clock()).anything, poll=0.01)
    await asyncio.wait_for(readiness.run(), 1)
    assert readiness.ready


# ------------------------------------------------------------------------------ drain


class SlowStore:
    """Every call waits on its event: reads forever, writes until released."""

    def __init__(self) -> None:
        self.release_writes = asyncio.Event()
        self.wrote: list[str] = []

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        await asyncio.Event().wait()
        return None

    async def patch_configmap(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        await self.release_writes.wait()
        self.wrote.append("configmap")
        return {}

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Any,
                           resource_version: str | None = None) -> dict[str, Any]:
        self.wrote.append("status")
        return {}


@pytest.mark.looptime
async def test_a_shutdown_cuts_syncs_that_read_and_lets_those_that_write_finish(looptime):
    drain, slow = Drain(), SlowStore()
    store = drain.store(slow)  # type: ignore[arg-type]

    async def reading() -> None:
        await store.read_secret("a", "s")

    async def writing() -> None:
        await store.patch_configmap("a", "cm", {})
        with drain.cuttable():              # a sync that has begun to write is never cut, even here
            await asyncio.sleep(0)
        await store.patch_status("ToolServer", "a", "ts", {})

    reader, writer = asyncio.ensure_future(reading()), asyncio.ensure_future(writing())
    await asyncio.sleep(0.01)
    await drain.stop(grace=0.05)
    assert float(looptime) == pytest.approx(0.06)   # the reader was cut when the grace ran out
    assert reader.cancelled() and drain.cut == 1
    await asyncio.sleep(60)
    assert not writer.done()                        # a writer is never cut: it waits for its write
    slow.release_writes.set()
    await writer
    assert slow.wrote == ["configmap", "status"]
    with pytest.raises(asyncio.CancelledError):
        await store.read_secret("a", "after the stop")


@pytest.mark.looptime
async def test_a_read_that_ends_within_the_grace_is_not_cut(looptime):
    drain = Drain()

    async def quick() -> str:
        with drain.cuttable():
            await asyncio.sleep(0.05)
        return "done"

    task = asyncio.ensure_future(quick())
    await asyncio.sleep(0.01)
    await drain.stop(grace=1.0)
    assert float(looptime) == pytest.approx(0.05)   # the stop returned when the read ended, not at the grace
    assert await task == "done" and drain.cut == 0
